//! A loopback fake of Twitch's IRC server, over plain TCP or WebSocket: each accepted connection
//! hands the test the lines the client sent and a way to send raw text (one WS frame per send).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

pub struct FakeConnection {
    pub from_client: mpsc::Receiver<String>,
    pub to_client: mpsc::Sender<String>,
}

impl FakeConnection {
    /// Wait (bounded) for the client's line starting with `prefix`, skipping others.
    pub async fn expect(&mut self, prefix: &str) -> String {
        let found = tokio::time::timeout(Duration::from_secs(600), async {
            while let Some(line) = self.from_client.recv().await {
                if line.starts_with(prefix) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            _ => panic!("the client never sent {prefix:?}"),
        }
    }

    pub async fn send(&self, raw: &str) {
        let _ = self.to_client.send(raw.to_owned()).await;
    }

    /// The client's login: CAP, NICK, JOIN; returns the NICK line. Answers like Twitch does.
    pub async fn handshake(&mut self) -> String {
        self.expect("CAP REQ :twitch.tv/tags twitch.tv/commands")
            .await;
        let nick = self.expect("NICK ").await;
        self.expect("JOIN #").await;
        self.send(":tmi.twitch.tv 001 justinfan :Welcome, GLHF!\r\n:tmi.twitch.tv CAP * ACK :twitch.tv/tags twitch.tv/commands\r\n").await;
        self.send("@room-id=1 :tmi.twitch.tv ROOMSTATE #chan\r\n")
            .await;
        nick
    }
}

#[derive(Clone, Copy)]
pub enum Transport {
    Tcp,
    WebSocket,
}

/// Start the fake; returns the URL for `TWITCH_IRC_URL` and the stream of connections.
pub async fn start(transport: Transport) -> (String, mpsc::Receiver<FakeConnection>) {
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(error) => panic!("bind: {error}"),
    };
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (conn_tx, conn_rx) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (from_tx, from_rx) = mpsc::channel(64);
            let (to_tx, mut to_rx) = mpsc::channel::<String>(64);
            if conn_tx
                .send(FakeConnection {
                    from_client: from_rx,
                    to_client: to_tx,
                })
                .await
                .is_err()
            {
                return;
            }
            match transport {
                Transport::Tcp => {
                    tokio::spawn(async move {
                        let (read, mut write) = stream.into_split();
                        let mut lines = BufReader::new(read).lines();
                        loop {
                            tokio::select! {
                                line = lines.next_line() => match line {
                                    Ok(Some(line)) => { let _ = from_tx.send(line).await; }
                                    _ => return,
                                },
                                raw = to_rx.recv() => match raw {
                                    Some(raw) => { if write.write_all(raw.as_bytes()).await.is_err() { return; } }
                                    // The test dropped the connection: close it.
                                    None => return,
                                },
                            }
                        }
                    });
                }
                Transport::WebSocket => {
                    tokio::spawn(async move {
                        let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                            return;
                        };
                        loop {
                            tokio::select! {
                                frame = socket.next() => match frame {
                                    Some(Ok(Message::Text(text))) => {
                                        for line in text.as_str().split("\r\n").filter(|l| !l.is_empty()) {
                                            let _ = from_tx.send(line.to_owned()).await;
                                        }
                                    }
                                    Some(Ok(_)) => {}
                                    _ => return,
                                },
                                raw = to_rx.recv() => match raw {
                                    Some(raw) => { if socket.send(Message::text(raw)).await.is_err() { return; } }
                                    None => { let _ = socket.close(None).await; return; }
                                },
                            }
                        }
                    });
                }
            }
        }
    });
    let url = match transport {
        Transport::Tcp => format!("irc://{address}"),
        Transport::WebSocket => format!("ws://{address}"),
    };
    (url, conn_rx)
}

pub async fn next_connection(connections: &mut mpsc::Receiver<FakeConnection>) -> FakeConnection {
    match tokio::time::timeout(Duration::from_secs(600), connections.recv()).await {
        Ok(Some(connection)) => connection,
        _ => panic!("the adapter never connected"),
    }
}

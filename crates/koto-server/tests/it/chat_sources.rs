//! The chat adapters started from config, against a loopback fake Twitch IRC server: events
//! reach the sender the intake passes, and `/health` shows each adapter's status.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{TOKEN, serve};

/// Accept one client, wait for its JOIN, then say the channel's state and one message.
async fn fake_twitch() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("JOIN #chan") {
                write.write_all(b"@room-id=1 :tmi.twitch.tv ROOMSTATE #chan\r\n@id=m-1;user-id=7;display-name=Ann :ann!ann@ann PRIVMSG #chan :hello from chat\r\n").await.unwrap();
            }
        }
    });
    format!("irc://{address}")
}

#[tokio::test]
async fn configured_adapters_feed_the_given_sender_and_show_on_health() {
    let url = fake_twitch().await;
    let server = serve(&[("TWITCH_CHANNEL", "chan"), ("TWITCH_IRC_URL", &url)]).await;
    let health: Value = server
        .client
        .get(format!("{}/health", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["chat"]["adapters"],
        serde_json::json!([]),
        "nothing runs before the intake starts them"
    );
    let chat = server.server.as_ref().unwrap().chat_sources.clone();
    let (tx, mut rx) = mpsc::channel(16);
    assert_eq!(
        chat.start(tx, CancellationToken::new()),
        1,
        "one adapter configured"
    );
    let event = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            event.platform.as_str(),
            event.message_id.as_str(),
            event.text.as_str()
        ),
        ("twitch", "m-1", "hello from chat")
    );
    assert_eq!(event.user.name, "Ann");
    let adapters = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let health: Value = server
                .client
                .get(format!("{}/health", server.base))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let adapters = health["chat"]["adapters"].clone();
            if adapters[0]["health"]["state"] == "live" && adapters[0]["lastMessageMs"].is_i64() {
                return adapters;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(adapters[0]["platform"], "twitch");
    assert_eq!(adapters[0]["channel"], "#chan");
    assert!(adapters[0]["sinceMs"].is_i64());
    server.shutdown().await;
    assert!(
        rx.recv().await.is_none(),
        "shutting the server down stops the adapters"
    );
}

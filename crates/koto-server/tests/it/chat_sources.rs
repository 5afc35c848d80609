//! The chat adapters started from config, against a loopback fake Twitch IRC server: the
//! platform's messages reach live chat's intake (queued, picked, answered), `/health` shows the
//! adapter's status, and a moderator's CLEARMSG on the platform retracts the spoken answer
//! through the one STOP path.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::live_chat::{socket, speech_chunks_within, stored_ending, stored_user_row, until};
use crate::{TestServer, serve};

/// Accept one client; after its JOIN say the channel's state and one message; on `delete`,
/// send the moderator's CLEARMSG for it.
async fn fake_twitch(delete: oneshot::Receiver<()>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("JOIN #chan") {
                write.write_all(b"@room-id=1 :tmi.twitch.tv ROOMSTATE #chan\r\n@id=m-1;user-id=7;display-name=Ann :ann!ann@ann PRIVMSG #chan :tell us a story about dragons\r\n").await.unwrap();
                break;
            }
        }
        if delete.await.is_ok() {
            write
                .write_all(b"@login=ann;target-msg-id=m-1;tmi-sent-ts=1 :tmi.twitch.tv CLEARMSG #chan :tell us a story about dragons\r\n")
                .await
                .unwrap();
        }
        // Keep the connection open (the adapter stays live) until the test ends.
        while let Ok(Some(_)) = lines.next_line().await {}
    });
    format!("irc://{address}")
}

async fn adapters(server: &TestServer) -> Value {
    server.health().await["chat"]["adapters"].clone()
}

#[tokio::test]
async fn a_twitch_message_is_answered_and_a_moderators_clearmsg_retracts_it() {
    let (delete, deleted) = oneshot::channel();
    let url = fake_twitch(deleted).await;
    let app = serve(&[
        ("TWITCH_CHANNEL", "chan"),
        ("TWITCH_IRC_URL", &url),
        ("CHAT_ANSWER_EVERY_S", "0"),
        ("SYNC_TTS_STREAMING", "true"),
        ("TTS_PROVIDER", "mock"),
    ])
    .await;
    let mut live = socket(&app, "/ws/live?session=live-chat").await;
    let mut chunks = 0;
    // The pick's CHAT_DECISION may go out before this socket is open; the turn's audio cannot
    // (the answer takes seconds to speak).
    until(&mut live, "audio of the answer to the Twitch viewer", |f| {
        if f["type"] == "SPEECH_CHUNK" {
            chunks += 1;
        }
        chunks >= 3
    })
    .await;
    let (text, meta) = stored_user_row(&app, 0).await;
    assert!(text.contains("tell us a story about dragons"), "{text}");
    assert_eq!(
        (
            meta["source"].as_str(),
            meta["messageId"].as_str(),
            meta["user"]["name"].as_str()
        ),
        (Some("twitch"), Some("m-1"), Some("Ann")),
        "the adapter's message went through the queue into a turn: {meta}"
    );
    let adapters = adapters(&app).await;
    assert_eq!(adapters[0]["platform"], "twitch");
    assert_eq!(adapters[0]["channel"], "#chan");
    assert_eq!(adapters[0]["health"]["state"], "live", "{adapters}");
    assert!(adapters[0]["lastMessageMs"].is_i64(), "{adapters}");

    delete.send(()).unwrap();
    let frames = until(&mut live, "STOP_ACK", |f| {
        f["type"] == "CONTROL" && f["action"] == "STOP_ACK"
    })
    .await;
    assert!(
        frames.iter().any(|f| f["type"] == "CHAT_DECISION"
            && f["decision"] == "retracted"
            && f["messageId"] == "m-1"),
        "the platform's deletion retracts the answer: {frames:?}"
    );
    assert_eq!(
        speech_chunks_within(&mut live, Duration::from_millis(600)).await,
        0,
        "no chunk of the retracted answer after STOP_ACK"
    );
    let (interrupted, reason) = stored_ending(&app, 0).await;
    assert!(interrupted, "the answer is stored as interrupted");
    assert_eq!(reason.as_deref(), Some("retracted"));
    app.shutdown().await;
}

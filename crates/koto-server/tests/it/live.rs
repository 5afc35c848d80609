//! Speech over the wire: `/tts/speak`, `/ws/live` clients, STOP over WebSocket and HTTP, and a
//! remote producer on `/ws/ingest`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::{TOKEN, TestServer, read_sse, serve};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn speaking(provider: &str) -> TestServer {
    serve(&[("SYNC_TTS_STREAMING", "true"), ("TTS_PROVIDER", provider)]).await
}

async fn connect(app: &TestServer, path_and_query: &str) -> Socket {
    let url = format!("{}{path_and_query}", app.base.replace("http://", "ws://"));
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket upgrade");
    socket
}

/// Next JSON text frame (pings and pongs skipped); `None` when closed or after 10 s of silence.
async fn next_json(socket: &mut Socket) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .ok()??
            .ok()?;
        match message {
            Message::Text(text) => return serde_json::from_str(&text).ok(),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// Frames until a CONTROL with `action` arrives (inclusive).
async fn until_control(socket: &mut Socket, action: &str) -> Vec<Value> {
    let mut frames = Vec::new();
    while let Some(frame) = next_json(socket).await {
        let done = frame["type"] == "CONTROL" && frame["action"] == action;
        frames.push(frame);
        if done {
            break;
        }
    }
    frames
}

#[tokio::test]
async fn live_sockets_need_the_token_and_an_own_origin() {
    let app = speaking("mock").await;
    let url = format!("{}/ws/live", app.base.replace("http://", "ws://"));
    let refused = tokio_tungstenite::connect_async(url.clone())
        .await
        .expect_err("no token");
    assert!(refused.to_string().contains("401"), "{refused}");
    let mut request = format!("{url}?token={TOKEN}")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let refused = tokio_tungstenite::connect_async(request)
        .await
        .expect_err("foreign origin");
    assert!(
        refused.to_string().contains("403"),
        "cross-site WebSocket hijacking is refused: {refused}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn spoken_text_reaches_live_clients_as_real_pcm_with_subtitles_then_end() {
    let app = speaking("espeak").await;
    let mut live = connect(&app, &format!("/ws/live?token={TOKEN}&session=s1")).await;
    let response = app
        .post("/tts/speak")
        .json(&json!({"sessionId":"s1","text":"Hello stream. Nice to see you."}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let frames = read_sse(response).await;
    assert!(
        frames
            .iter()
            .any(|f| f.event == "control" && f.data["action"] == "HINT_TTS_START")
    );
    let stats = &frames.last().unwrap().data["stats"];
    assert!(
        stats["first_audio_ms"].as_f64().is_some(),
        "first audio measured: {stats}"
    );

    let live_frames = until_control(&mut live, "END").await;
    assert_eq!(
        live_frames[0]["type"], "USER_INPUT",
        "the transcript starts with the input"
    );
    let chunks: Vec<&Value> = live_frames
        .iter()
        .filter(|f| f["type"] == "SPEECH_CHUNK")
        .collect();
    assert!(
        chunks.len() > 20,
        "about a second of speech in 20 ms chunks: {}",
        chunks.len()
    );
    let seqs: Vec<u64> = chunks.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "contiguous seq from 0"
    );
    let loud = chunks.iter().any(|c| {
        use base64::Engine as _;
        let pcm = base64::engine::general_purpose::STANDARD
            .decode(c["pcm"].as_str().unwrap())
            .unwrap();
        pcm.chunks_exact(2)
            .any(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs() > 1000)
    });
    assert!(loud, "espeak-ng produced real speech, not silence");
    assert_eq!(
        chunks[0]["sampleRate"], 24000,
        "resampled to the stream rate"
    );
    let subtitles: String = chunks
        .iter()
        .filter_map(|c| c["segment"]["text"].as_str())
        .collect();
    assert_eq!(
        subtitles, "Hello stream. Nice to see you.",
        "segment texts are the subtitles"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_stop_from_a_live_client_fences_the_turn() {
    let app = speaking("mock").await;
    let mut live = connect(&app, &format!("/ws/live?token={TOKEN}&session=s1")).await;
    let long_text =
        "This is a rather long announcement that keeps going for a good while. ".repeat(3);
    let response = app
        .post("/tts/speak")
        .json(&json!({"sessionId":"s1","text":long_text}))
        .send()
        .await
        .unwrap();
    loop {
        let frame = next_json(&mut live).await.expect("audio flows");
        if frame["type"] == "SPEECH_CHUNK" {
            break;
        }
    }
    let stop = json!({"type":"CONTROL","action":"STOP","sessionId":"s1","reason":"user_interrupt"});
    live.send(Message::Text(stop.to_string().into()))
        .await
        .unwrap();
    let mut after_ack = 0;
    let mut acked = false;
    while let Ok(Some(frame)) =
        tokio::time::timeout(Duration::from_millis(600), next_json(&mut live)).await
    {
        if acked && frame["type"] == "SPEECH_CHUNK" && frame["turn"] == 0 {
            after_ack += 1;
        }
        if frame["type"] == "CONTROL" && frame["action"] == "STOP_ACK" {
            acked = true;
        }
    }
    assert!(acked, "the client got STOP_ACK");
    assert_eq!(after_ack, 0, "no chunk of the stopped turn after STOP_ACK");
    let frames = read_sse(response).await;
    assert_eq!(frames.last().unwrap().data["stats"]["interrupted"], true);
    app.shutdown().await;
}

#[tokio::test]
async fn a_remote_producer_gets_its_sessions_stops_and_bad_frames_get_errors() {
    let app = speaking("mock").await;
    let mut producer = connect(&app, &format!("/ws/ingest?token={TOKEN}")).await;
    let mut live = connect(&app, &format!("/ws/live?token={TOKEN}&session=remote")).await;
    use base64::Engine as _;
    let pcm = base64::engine::general_purpose::STANDARD.encode([0u8; 960]);
    for seq in 0..3 {
        let chunk = json!({"type":"SPEECH_CHUNK","sessionId":"remote","turn":7,"seq":seq,"pcm":pcm,"viseme":{"mouthOpen":0.1}});
        producer
            .send(Message::Text(chunk.to_string().into()))
            .await
            .unwrap();
    }
    for seq in 0..3 {
        let frame = next_json(&mut live).await.expect("relayed");
        assert_eq!(
            (frame["type"].as_str(), frame["seq"].as_u64()),
            (Some("SPEECH_CHUNK"), Some(seq))
        );
    }
    producer
        .send(Message::Text("{not json".into()))
        .await
        .unwrap();
    let error = next_json(&mut producer).await.expect("an error frame");
    assert_eq!(
        error["type"], "ERROR",
        "malformed frames get an error, the socket stays: {error}"
    );
    let unknown = json!({"type":"DANCE","sessionId":"remote"});
    producer
        .send(Message::Text(unknown.to_string().into()))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut producer).await.expect("error")["type"],
        "ERROR"
    );

    let client = app.client.clone();
    let stop_url = format!("{}/control/stop", app.base);
    let stopper = tokio::spawn(async move {
        client
            .post(stop_url)
            .bearer_auth(TOKEN)
            .json(&json!({"sessionId":"remote"}))
            .send()
            .await
            .unwrap()
            .status()
    });
    let stop = next_json(&mut producer)
        .await
        .expect("the producer of that session gets the STOP");
    assert_eq!(
        (stop["type"].as_str(), stop["action"].as_str()),
        (Some("CONTROL"), Some("STOP"))
    );
    assert_eq!(stop["sessionId"], "remote");
    let ack = json!({"type":"CONTROL","action":"STOP_ACK","sessionId":"remote","turn":7});
    producer
        .send(Message::Text(ack.to_string().into()))
        .await
        .unwrap();
    assert_eq!(stopper.await.unwrap(), 200);
    let late = json!({"type":"SPEECH_CHUNK","sessionId":"remote","turn":7,"seq":3,"pcm":pcm,"viseme":{"mouthOpen":0.1}});
    producer
        .send(Message::Text(late.to_string().into()))
        .await
        .unwrap();
    let frames = until_control(&mut live, "STOP_ACK").await;
    assert!(
        frames
            .iter()
            .all(|f| f["type"] != "SPEECH_CHUNK" || f["seq"] != 3),
        "nothing after the fence"
    );
    let after = tokio::time::timeout(Duration::from_millis(300), next_json(&mut live)).await;
    assert!(
        !matches!(after, Ok(Some(ref f)) if f["type"] == "SPEECH_CHUNK"),
        "the late chunk was dropped: {after:?}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn without_barge_in_a_live_stop_is_refused_with_a_clear_code() {
    let app = serve(&[
        ("SYNC_TTS_STREAMING", "true"),
        ("TTS_PROVIDER", "mock"),
        ("SYNC_TTS_BARGE_IN", "false"),
    ])
    .await;
    let mut live = connect(&app, &format!("/ws/live?token={TOKEN}&session=s1")).await;
    let stop = json!({"type":"CONTROL","action":"STOP","sessionId":"s1"});
    live.send(Message::Text(stop.to_string().into()))
        .await
        .unwrap();
    let answer = next_json(&mut live).await.expect("an answer");
    assert_eq!(
        (answer["type"].as_str(), answer["code"].as_str()),
        (Some("ERROR"), Some("barge_in_disabled"))
    );
    app.shutdown().await;
}

/// The close code the server sent; `None` when the connection just ended (what a browser
/// reports as 1006). Frames before it are skipped; 10 s of silence is a failure.
pub(crate) async fn close_code(socket: &mut Socket) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the server answers within 10 s")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|frame| u16::from(frame.code)),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return None,
        }
    }
}

/// A text frame whose payload is not UTF-8 (tungstenite's `Message::Text` cannot hold one).
pub(crate) fn invalid_utf8_text() -> Message {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    Message::Frame(Frame::message(
        vec![b'{', 0xff, 0xfe, b'}'],
        OpCode::Data(Data::Text),
        true,
    ))
}

#[tokio::test]
async fn oversized_and_non_utf8_messages_close_live_and_ingest_with_1009_and_1007() {
    let app = speaking("mock").await;
    let two_mb = "x".repeat(2_000_000);
    for path in ["/ws/live", "/ws/ingest"] {
        let mut socket = connect(&app, &format!("{path}?token={TOKEN}")).await;
        socket
            .send(Message::Text(two_mb.clone().into()))
            .await
            .expect("sent");
        assert_eq!(
            close_code(&mut socket).await,
            Some(1009),
            "{path}: a 2 MB message is too big"
        );
        let mut socket = connect(&app, &format!("{path}?token={TOKEN}")).await;
        socket.send(invalid_utf8_text()).await.expect("sent");
        assert_eq!(
            close_code(&mut socket).await,
            Some(1007),
            "{path}: a text frame that is not UTF-8"
        );
    }
    // The limit is on the message: a large but allowed one still goes through the protocol.
    let mut live = connect(&app, &format!("/ws/live?token={TOKEN}")).await;
    live.send(Message::Text("y".repeat(500_000).into()))
        .await
        .expect("sent");
    let answer = next_json(&mut live)
        .await
        .expect("an error frame, not a close");
    assert_eq!(answer["code"], "invalid_json", "{answer}");
    app.shutdown().await;
}

#[tokio::test]
async fn ingest_refuses_producers_with_4403_when_speech_is_off() {
    let app = serve(&[("SYNC_TTS_STREAMING", "false")]).await;
    let mut producer = connect(&app, &format!("/ws/ingest?token={TOKEN}")).await;
    assert_eq!(close_code(&mut producer).await, Some(4403));
    let mut live = connect(&app, &format!("/ws/live?token={TOKEN}")).await;
    live.send(Message::Text("{}".into())).await.expect("sent");
    assert!(
        next_json(&mut live).await.is_some(),
        "/ws/live still serves clients (text deltas, user inputs)"
    );
    app.shutdown().await;
}

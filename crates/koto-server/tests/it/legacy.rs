//! The original Vue front end's protocol (CONTRACTS §4) over real sockets: `/ws/input` uploads,
//! `/ws/output/{task_id}` replies, audio and controls.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::{TOKEN, TestServer, serve};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The reply the fake LLM gives in the speech tests: short, so its paced audio is brief.
const SHORT_REPLY: [&str; 2] = ["Hi ", "there."];

/// A server that speaks (mock TTS) a short scripted reply. Keep `fake` alive for the test.
async fn speaking() -> (TestServer, FakeOpenAi) {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::tokens(SHORT_REPLY))).await;
    let base_url = fake.base_url();
    let app = serve(&[
        ("SYNC_TTS_STREAMING", "true"),
        ("TTS_PROVIDER", "mock"),
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", base_url.as_str()),
    ])
    .await;
    (app, fake)
}

async fn connect(app: &TestServer, path: &str) -> Socket {
    let url = format!(
        "{}{path}?token={TOKEN}",
        app.base.replace("http://", "ws://")
    );
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket upgrade");
    socket
}

/// Next frame that is not a ping/pong; `None` once closed or after 10 s of silence (a bound
/// for a hung test, not a wait for something to happen).
async fn next_frame(socket: &mut Socket) -> Option<Message> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .ok()??
            .ok()?;
        match message {
            Message::Ping(_) | Message::Pong(_) => {}
            other => return Some(other),
        }
    }
}

async fn next_text(socket: &mut Socket) -> String {
    match next_frame(socket).await {
        Some(Message::Text(text)) => text.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

async fn next_json(socket: &mut Socket) -> Value {
    let text = next_text(socket).await;
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("expected JSON, got {text:?}"))
}

async fn send_json(socket: &mut Socket, value: Value) {
    socket
        .send(Message::Text(value.to_string().into()))
        .await
        .expect("sent");
}

/// Opens `/ws/input` and reads the task id it assigns.
async fn open_input(app: &TestServer) -> (Socket, String) {
    let mut input = connect(app, "/ws/input").await;
    let assigned = next_json(&mut input).await;
    assert_eq!(
        (assigned["type"].as_str(), assigned["action"].as_str()),
        (Some("system"), Some("task_id_assigned")),
        "the first frame assigns the task: {assigned}"
    );
    let task_id = assigned["task_id"].as_str().expect("task_id").to_owned();
    assert!(
        uuid::Uuid::parse_str(&task_id).is_ok_and(|id| id.get_version_num() == 4),
        "task ids are UUIDv4: {task_id}"
    );
    (input, task_id)
}

/// Uploads `text` inline and returns the `upload_processed` answer.
async fn upload_inline(input: &mut Socket, text: &str) -> Value {
    send_json(
        input,
        json!({"type":"text","chunk_id":0,"action":"data_chunk","content":text}),
    )
    .await;
    send_json(input, json!({"action":"upload_complete"})).await;
    next_json(input).await
}

/// What an output socket received, in order, until the server closed it.
#[derive(Debug, Default)]
struct Output {
    /// Every JSON frame; an audio chunk's binary frame is recorded as `{"binary": n_bytes}`.
    frames: Vec<Value>,
    close_code: Option<u16>,
}

async fn read_output(socket: &mut Socket) -> Output {
    let mut output = Output::default();
    loop {
        match next_frame(socket).await {
            Some(Message::Text(text)) => output
                .frames
                .push(serde_json::from_str(&text).expect("output frames are JSON")),
            Some(Message::Binary(pcm)) => output.frames.push(json!({"binary": pcm.len()})),
            Some(Message::Close(frame)) => {
                output.close_code = frame.map(|frame| u16::from(frame.code));
                return output;
            }
            None => return output,
            Some(other) => panic!("unexpected frame {other:?}"),
        }
    }
}

impl Output {
    fn position(&self, wanted: impl Fn(&Value) -> bool) -> Option<usize> {
        self.frames.iter().position(wanted)
    }

    fn success(&self) -> Option<&Value> {
        self.frames.iter().find(|f| f["status"] == "success")
    }

    fn chunk_ids(&self) -> Vec<u64> {
        self.frames
            .iter()
            .filter(|f| f["type"] == "audio_chunk")
            .map(|f| f["chunk_id"].as_u64().expect("chunk_id"))
            .collect()
    }
}

/// The spoken round trip's output, checked in full.
fn assert_spoken_reply(output: &Output, task_id: &str) {
    let success = output.success().expect("a success frame");
    assert_eq!(
        success["content"],
        SHORT_REPLY.concat(),
        "content is the full reply"
    );
    assert_eq!(success["task_id"], task_id);
    assert_eq!(success["audio_present"], true, "the reply is spoken");
    let chunk_ids = output.chunk_ids();
    assert!(
        !chunk_ids.is_empty(),
        "audio was streamed: {:?}",
        output.frames
    );
    assert_eq!(
        chunk_ids,
        (0..chunk_ids.len() as u64).collect::<Vec<_>>(),
        "chunk ids are the relay's contiguous seq from 0"
    );
    for (i, frame) in output.frames.iter().enumerate() {
        if frame["type"] != "audio_chunk" {
            continue;
        }
        assert_eq!(frame["total_chunks"], Value::Null, "streamed: no total");
        assert_eq!(frame["sample_rate"], 24000, "s16le at the stream rate");
        let binary = output.frames[i + 1]["binary"]
            .as_u64()
            .expect("each audio_chunk is followed by one binary frame");
        assert!(
            binary > 0 && binary.is_multiple_of(2),
            "whole 16-bit samples: {binary}"
        );
    }
    let is_end = |f: &Value| f["type"] == "control" && f["action"] == "END";
    let end = output.position(is_end).expect("END");
    let success_at = output
        .position(|f| f["status"] == "success")
        .expect("success");
    let last_chunk = output
        .frames
        .iter()
        .rposition(|f| f["type"] == "audio_chunk")
        .expect("chunks");
    assert!(
        success_at < end && last_chunk < end,
        "END follows the reply and the last chunk"
    );
    assert_eq!(output.frames[end]["task_id"], task_id);
    assert_eq!(
        output.frames.last(),
        Some(&json!({"type":"audio_complete","task_id":task_id})),
        "the original client's done signal is last"
    );
    assert_eq!(output.close_code, Some(1000), "closed normally when done");
}

#[tokio::test]
async fn text_round_trip_gives_the_reply_its_audio_and_end() {
    let (app, _fake) = speaking().await;
    let (mut input, task_id) = open_input(&app).await;
    // Like the Vue client: the output socket opens as soon as the task id is known.
    let mut output = connect(&app, &format!("/ws/output/{task_id}")).await;
    let processed = upload_inline(&mut input, "hello").await;
    assert_eq!(
        processed,
        json!({"type":"system","action":"upload_processed","status":"queued","task_id":task_id})
    );
    assert!(
        matches!(next_frame(&mut input).await, Some(Message::Close(_)) | None),
        "the input socket is done after one upload"
    );
    let received = read_output(&mut output).await;
    assert_spoken_reply(&received, &task_id);
    app.shutdown().await;
}

#[tokio::test]
async fn an_output_socket_connected_after_the_turn_ended_still_gets_all_of_it() {
    let (app, _fake) = speaking().await;
    let (mut input, task_id) = open_input(&app).await;
    // A witness on the relay tells us when the turn's audio is over, without sleeping.
    let url = format!(
        "{}/ws/live?token={TOKEN}&session={task_id}",
        app.base.replace("http://", "ws://")
    );
    let (mut witness, _) = tokio_tungstenite::connect_async(url).await.expect("live");
    assert_eq!(upload_inline(&mut input, "hello").await["status"], "queued");
    drop(input);
    loop {
        let frame = next_json(&mut witness).await;
        if frame["type"] == "CONTROL" && frame["action"] == "END" {
            break;
        }
    }
    let mut output = connect(&app, &format!("/ws/output/{task_id}")).await;
    let received = read_output(&mut output).await;
    assert_spoken_reply(&received, &task_id);
    let mut again = connect(&app, &format!("/ws/output/{task_id}")).await;
    assert_eq!(
        read_output(&mut again).await.frames,
        received.frames,
        "every output socket gets the same replay"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn text_in_one_binary_frame_is_the_input_and_a_text_only_reply_closes_after_success() {
    let app = serve(&[]).await;
    let (mut input, task_id) = open_input(&app).await;
    let mut output = connect(&app, &format!("/ws/output/{task_id}")).await;
    send_json(
        &mut input,
        json!({"type":"text","chunk_id":0,"action":"data_chunk"}),
    )
    .await;
    input
        .send(Message::Binary("what to play".as_bytes().to_vec().into()))
        .await
        .unwrap();
    assert_eq!(next_text(&mut input).await, "File chunk received");
    send_json(&mut input, json!({"action":"upload_complete"})).await;
    assert_eq!(next_json(&mut input).await["status"], "queued");
    let received = read_output(&mut output).await;
    assert_eq!(
        received.frames.len(),
        1,
        "text only: one success frame: {:?}",
        received.frames
    );
    let success = &received.frames[0];
    assert_eq!(success["status"], "success");
    assert_eq!(success["audio_present"], false, "SYNC_TTS_STREAMING=false");
    assert!(
        success["content"]
            .as_str()
            .is_some_and(|c| c.contains("what to play")),
        "the mock LLM echoes the binary frame's text: {success}"
    );
    assert_eq!(received.close_code, Some(1000));
    app.shutdown().await;
}

#[tokio::test]
async fn a_chunk_id_gap_is_reported_and_the_upload_goes_on() {
    let app = serve(&[]).await;
    let (mut input, _task_id) = open_input(&app).await;
    send_json(
        &mut input,
        json!({"type":"text","chunk_id":1,"action":"data_chunk"}),
    )
    .await;
    assert_eq!(
        next_text(&mut input).await,
        "Chunk ID mismatch: expected 0, got 1"
    );
    input
        .send(Message::Binary(b"lost".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut input).await,
        "Error: No metadata received before binary data",
        "the mismatched chunk was not accepted"
    );
    send_json(
        &mut input,
        json!({"type":"text","chunk_id":0,"action":"data_chunk"}),
    )
    .await;
    input
        .send(Message::Binary(b"hello".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(next_text(&mut input).await, "File chunk received");
    send_json(&mut input, json!({"action":"upload_complete"})).await;
    assert_eq!(next_json(&mut input).await["status"], "queued");
    app.shutdown().await;
}

#[tokio::test]
async fn an_audio_upload_is_refused_clearly_on_both_sockets() {
    let app = serve(&[]).await;
    let (mut input, task_id) = open_input(&app).await;
    let mut output = connect(&app, &format!("/ws/output/{task_id}")).await;
    for chunk_id in 0..2 {
        send_json(
            &mut input,
            json!({"type":"audio","chunk_id":chunk_id,"action":"data_chunk"}),
        )
        .await;
        // A WebM header's first bytes: what the Vue client's MediaRecorder sends.
        input
            .send(Message::Binary(vec![0x1a, 0x45, 0xdf, 0xa3].into()))
            .await
            .unwrap();
        assert_eq!(
            next_text(&mut input).await,
            "File chunk received",
            "one answer per binary frame"
        );
    }
    send_json(&mut input, json!({"action":"upload_complete"})).await;
    let processed = next_json(&mut input).await;
    assert_eq!(
        (processed["action"].as_str(), processed["status"].as_str()),
        (Some("upload_processed"), Some("error")),
        "{processed}"
    );
    assert_eq!(processed["code"], "not_available");
    assert!(
        processed["error"]
            .as_str()
            .is_some_and(|e| e.contains("ASR provider")),
        "the message says why: {processed}"
    );
    let received = read_output(&mut output).await;
    assert_eq!(received.frames.len(), 1, "{:?}", received.frames);
    assert_eq!(received.frames[0]["status"], "error");
    assert_eq!(received.frames[0]["task_id"], task_id);
    assert_eq!(received.frames[0]["error"], processed["error"]);
    app.shutdown().await;
}

#[tokio::test]
async fn an_abandoned_upload_ends_the_task_with_an_error() {
    let app = serve(&[]).await;
    let (mut input, task_id) = open_input(&app).await;
    let mut output = connect(&app, &format!("/ws/output/{task_id}")).await;
    send_json(
        &mut input,
        json!({"type":"text","chunk_id":0,"action":"data_chunk","content":"never sent"}),
    )
    .await;
    input.close(None).await.unwrap();
    let received = read_output(&mut output).await;
    assert_eq!(received.frames.len(), 1, "{:?}", received.frames);
    assert_eq!(received.frames[0]["status"], "error");
    assert!(
        received.frames[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("before upload_complete"))
    );
    app.shutdown().await;
}

#[tokio::test]
async fn output_paths_that_are_not_a_known_task_close_with_4004() {
    let app = serve(&[]).await;
    let mut bad = connect(&app, "/ws/output/not-a-uuid").await;
    let received = read_output(&mut bad).await;
    assert!(received.frames.is_empty(), "{:?}", received.frames);
    assert_eq!(received.close_code, Some(4004), "non-UUID task id");

    let unknown_id = uuid::Uuid::new_v4().to_string();
    let mut unknown = connect(&app, &format!("/ws/output/{unknown_id}")).await;
    let received = read_output(&mut unknown).await;
    assert_eq!(received.close_code, Some(4004), "a UUID no task has");
    assert_eq!(
        (
            received.frames[0]["status"].as_str(),
            received.frames[0]["code"].as_str()
        ),
        (Some("error"), Some("not_found")),
        "and the client is told why: {:?}",
        received.frames
    );
    app.shutdown().await;
}

#[tokio::test]
async fn malformed_frames_get_error_replies_and_the_socket_stays_usable() {
    let app = serve(&[]).await;
    let (mut input, task_id) = open_input(&app).await;
    input.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(next_text(&mut input).await, "Invalid JSON format");
    for bad in [
        json!([1, 2]),
        json!({"action":"dance"}),
        json!({"type":"text","action":"data_chunk"}),
        json!({"type":"text","action":"data_chunk","chunk_id":"zero"}),
    ] {
        send_json(&mut input, bad.clone()).await;
        let answer = next_text(&mut input).await;
        assert!(answer.starts_with("Error: "), "{bad} → {answer}");
    }
    let processed = upload_inline(&mut input, "still works").await;
    assert_eq!(processed["status"], "queued", "{processed}");
    assert_eq!(processed["task_id"], task_id);
    app.shutdown().await;
}

#[tokio::test]
async fn an_llm_failure_reaches_the_output_socket_as_an_error() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::error(401, "bad key"))).await;
    let base_url = fake.base_url();
    let app = serve(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", base_url.as_str()),
    ])
    .await;
    let (mut input, task_id) = open_input(&app).await;
    let mut output = connect(&app, &format!("/ws/output/{task_id}")).await;
    assert_eq!(
        upload_inline(&mut input, "hi").await["status"],
        "queued",
        "the failure is the turn's, after it started"
    );
    let received = read_output(&mut output).await;
    assert_eq!(received.frames.len(), 1, "{:?}", received.frames);
    let error = &received.frames[0];
    assert_eq!(
        (error["status"].as_str(), error["code"].as_str()),
        (Some("error"), Some("llm_auth")),
        "{error}"
    );
    assert_eq!(error["task_id"], task_id);
    assert!(received.success().is_none(), "no text was invented");
    app.shutdown().await;
}

#[tokio::test]
async fn legacy_sockets_need_the_token_and_an_own_origin() {
    let app = serve(&[]).await;
    let ws_base = app.base.replace("http://", "ws://");
    for path in [
        "/ws/input",
        "/ws/output/3f0e4b1c-93a4-4f59-9d1e-2c1f9f0f5b6e",
    ] {
        let refused = tokio_tungstenite::connect_async(format!("{ws_base}{path}"))
            .await
            .expect_err("no token");
        assert!(
            refused.to_string().contains("401"),
            "{path} without ?token=: {refused}"
        );
        let mut request = format!("{ws_base}{path}?token={TOKEN}")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("origin", "http://evil.example".parse().unwrap());
        let refused = tokio_tungstenite::connect_async(request)
            .await
            .expect_err("foreign origin");
        assert!(refused.to_string().contains("403"), "{path}: {refused}");
    }
    app.shutdown().await;
}

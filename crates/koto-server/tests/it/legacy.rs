//! The original Vue front end's protocol (CONTRACTS §4) over real sockets: `/ws/input` uploads,
//! `/ws/output/{task_id}` replies, audio and controls.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript, FakeStream};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::{TOKEN, TestServer, save_settings, serve};

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
async fn an_audio_upload_without_an_asr_is_refused_clearly_on_both_sockets() {
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
            .is_some_and(|e| e.contains("ASR_PROVIDER")),
        "the message names the key to set: {processed}"
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

/// Opens `path` as a browser at `origin` would (no token), or as a tool with neither.
async fn connect_as(
    app: &TestServer,
    path: &str,
    origin: Option<&str>,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("{}{path}", app.base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

/// A reply slow enough (40 ms a token, about 2 s) that a STOP lands while the LLM still writes
/// and its first audio already plays, on any pacing of text and audio.
fn slow_reply() -> FakeResponse {
    let tokens: Vec<String> = (0..48)
        .map(|i| format!("w{i}{}", if i % 6 == 5 { ". " } else { " " }))
        .collect();
    FakeResponse::Stream(FakeStream::new(tokens).with_token_gap(Duration::from_millis(40)))
}

/// A speaking server whose LLM gives `first`, then the short reply for every later turn.
async fn speaking_with(first: FakeResponse, extra: &[(&str, &str)]) -> (TestServer, FakeOpenAi) {
    // The script's last response repeats for every later request.
    let short = FakeResponse::tokens(SHORT_REPLY);
    let fake = FakeOpenAi::start(FakeScript::sequence(vec![first, short])).await;
    let base_url = fake.base_url();
    let mut env = vec![
        ("SYNC_TTS_STREAMING", "true"),
        ("TTS_PROVIDER", "mock"),
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", base_url.as_str()),
    ];
    env.extend_from_slice(extra);
    (serve(&env).await, fake)
}

async fn stop(app: &TestServer, task_id: &str) -> Value {
    let answer = app
        .post("/control/stop")
        .json(&json!({"sessionId": task_id}))
        .send()
        .await
        .expect("stop sent");
    assert_eq!(answer.status(), 200, "STOP is accepted");
    answer.json().await.expect("JSON answer")
}

fn is_stop_ack(frame: &Value) -> bool {
    frame["type"] == "control" && frame["action"] == "STOP_ACK"
}

/// What a stopped task's output ends with: STOP_ACK, the heard text (no success frame had
/// gone), `audio_complete`, a normal close; no audio after STOP_ACK. Returns the heard text.
fn assert_stopped_tail(output: &Output, task_id: &str) -> String {
    let acks: Vec<usize> = (0..output.frames.len())
        .filter(|&i| is_stop_ack(&output.frames[i]))
        .collect();
    assert_eq!(acks.len(), 1, "one STOP_ACK: {:?}", output.frames);
    let tail = &output.frames[acks[0] + 1..];
    assert_eq!(tail.len(), 2, "success and audio_complete follow: {tail:?}");
    assert_eq!(tail[0]["status"], "success", "{tail:?}");
    assert_eq!(tail[0]["task_id"], task_id);
    assert_eq!(tail[0]["audio_present"], true);
    assert_eq!(
        tail[1],
        json!({"type":"audio_complete","task_id":task_id}),
        "the page's done signal"
    );
    assert_eq!(output.close_code, Some(1000), "closed normally");
    assert_eq!(
        output
            .frames
            .iter()
            .filter(|f| f["status"] == "success")
            .count(),
        1,
        "one success frame in all"
    );
    tail[0]["content"].as_str().expect("content").to_owned()
}

fn squeeze(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

#[tokio::test]
async fn a_stop_mid_audio_ends_the_task_so_the_page_takes_the_next_message() {
    let (app, _fake) = speaking_with(slow_reply(), &[]).await;
    let (mut input, task_id) = open_input(&app).await;
    let mut output = connect(&app, &format!("/ws/output/{task_id}")).await;
    assert_eq!(
        upload_inline(&mut input, "talk a while").await["status"],
        "queued"
    );
    let mut before = Output::default();
    loop {
        match next_frame(&mut output).await {
            Some(Message::Text(text)) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                let is_audio = frame["type"] == "audio_chunk";
                before.frames.push(frame);
                if is_audio {
                    break;
                }
            }
            Some(Message::Binary(pcm)) => before.frames.push(json!({"binary": pcm.len()})),
            other => panic!("audio before the end: {other:?}"),
        }
    }
    let answer = stop(&app, &task_id).await;
    assert_eq!(answer["stopped"], json!([0]), "the task's turn: {answer}");
    let mut received = read_output(&mut output).await;
    before.frames.append(&mut received.frames);
    before.close_code = received.close_code;
    let output_frames = before;
    let heard = assert_stopped_tail(&output_frames, &task_id);
    let ack = output_frames.position(is_stop_ack).unwrap();
    assert!(
        !output_frames.frames[ack..]
            .iter()
            .any(|f| f["type"] == "audio_chunk"),
        "no audio after STOP_ACK"
    );
    let full: String = slow_reply_text();
    assert!(
        squeeze(&full).starts_with(&squeeze(&heard)) && squeeze(&heard) != squeeze(&full),
        "the heard text is the start of the reply, not all of it: {heard:?}"
    );

    // STOP twice: nothing is left to stop, and the task's output does not change.
    let again = stop(&app, &task_id).await;
    assert_eq!(again["stopped"], json!([]), "{again}");
    let mut replay = connect(&app, &format!("/ws/output/{task_id}")).await;
    assert_eq!(
        read_output(&mut replay).await.frames,
        output_frames.frames,
        "the second STOP added nothing"
    );

    // The page's next message: a new task, answered in full.
    let (mut input, next_id) = open_input(&app).await;
    let mut output = connect(&app, &format!("/ws/output/{next_id}")).await;
    assert_eq!(
        upload_inline(&mut input, "and now?").await["status"],
        "queued"
    );
    assert_spoken_reply(&read_output(&mut output).await, &next_id);
    app.shutdown().await;
}

fn slow_reply_text() -> String {
    match slow_reply() {
        FakeResponse::Stream(stream) => stream.text(),
        _ => unreachable!("slow_reply is a stream"),
    }
}

#[tokio::test]
async fn a_stop_before_any_audio_still_ends_the_task() {
    let first = FakeResponse::Stream(
        FakeStream::new(["never ", "heard."]).with_first_token_delay(Duration::from_secs(20)),
    );
    let (app, _fake) = speaking_with(first, &[("LEGACY_AUDIO_LINGER", "1")]).await;
    let (mut input, task_id) = open_input(&app).await;
    let mut output = connect(&app, &format!("/ws/output/{task_id}")).await;
    assert_eq!(
        upload_inline(&mut input, "hello?").await["status"],
        "queued"
    );
    stop(&app, &task_id).await;
    let received = read_output(&mut output).await;
    assert!(is_stop_ack(&received.frames[0]), "{:?}", received.frames);
    let heard = assert_stopped_tail(&received, &task_id);
    assert_eq!(heard, "", "nothing was said, nothing was heard");
    assert!(received.chunk_ids().is_empty(), "no audio");
    app.shutdown().await;
}

#[tokio::test]
async fn the_success_frame_comes_with_the_reply_text_before_the_end_of_its_audio() {
    // Depends on the engine emitting `eos` when the LLM ends (CONTRACTS §1 as amended).
    let (app, _fake) = speaking_with(FakeResponse::tokens(SHORT_REPLY), &[]).await;
    let (mut input, task_id) = open_input(&app).await;
    let mut output = connect(&app, &format!("/ws/output/{task_id}")).await;
    assert_eq!(upload_inline(&mut input, "hi").await["status"], "queued");
    let received = read_output(&mut output).await;
    assert_spoken_reply(&received, &task_id);
    let success = received.position(|f| f["status"] == "success").unwrap();
    let last_chunk = received
        .frames
        .iter()
        .rposition(|f| f["type"] == "audio_chunk")
        .unwrap();
    assert!(
        success < last_chunk,
        "the text is complete before its audio has played: {:?}",
        received.frames
    );
    app.shutdown().await;
}

#[tokio::test]
async fn an_oversized_or_non_utf8_upload_is_answered_then_closed_with_1009_or_1007() {
    let app = serve(&[]).await;
    let (mut input, task_id) = open_input(&app).await;
    let mut output = connect(&app, &format!("/ws/output/{task_id}")).await;
    input
        .send(Message::Binary(vec![0u8; 2_000_000].into()))
        .await
        .expect("sent");
    let answer = next_json(&mut input).await;
    assert_eq!(
        (
            answer["action"].as_str(),
            answer["status"].as_str(),
            answer["code"].as_str()
        ),
        (
            Some("upload_processed"),
            Some("error"),
            Some("payload_too_large")
        ),
        "{answer}"
    );
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("1 MiB")),
        "{answer}"
    );
    assert_eq!(
        crate::live::close_code(&mut input).await,
        Some(1009),
        "then the close code"
    );
    let received = read_output(&mut output).await;
    assert_eq!(received.frames.len(), 1, "{:?}", received.frames);
    assert_eq!(received.frames[0]["code"], "payload_too_large");

    let (mut input, _) = open_input(&app).await;
    input
        .send(crate::live::invalid_utf8_text())
        .await
        .expect("sent");
    let answer = next_json(&mut input).await;
    assert_eq!(answer["status"], "error", "{answer}");
    assert_eq!(crate::live::close_code(&mut input).await, Some(1007));
    app.shutdown().await;
}

#[tokio::test]
async fn an_idle_input_socket_is_pinged_and_kept_open() {
    // Short bounds so the test is quick: pings every 0.2 s, uploads idle for 0.3 s time out.
    let app = serve(&[
        ("LEGACY_PEER_TIMEOUT", "0.6"),
        ("LEGACY_UPLOAD_IDLE", "0.3"),
    ])
    .await;
    let (mut input, task_id) = open_input(&app).await;
    // Reading answers the pings (tungstenite does), as a browser does.
    let mut pings = 0;
    let quiet = tokio::time::timeout(Duration::from_millis(1500), async {
        while let Some(Ok(message)) = input.next().await {
            match message {
                Message::Ping(_) => pings += 1,
                other => return other,
            }
        }
        panic!("the idle input socket was closed");
    })
    .await;
    assert!(quiet.is_err(), "nothing but pings: {quiet:?}");
    assert!(pings > 0, "the server checks the peer is alive");
    let processed = upload_inline(&mut input, "still here").await;
    assert_eq!(processed["status"], "queued", "{processed}");
    assert_eq!(processed["task_id"], task_id);

    // Once an upload has begun, its idle bound applies.
    let (mut input, _) = open_input(&app).await;
    send_json(
        &mut input,
        json!({"type":"text","chunk_id":0,"action":"data_chunk"}),
    )
    .await;
    let answer = next_json(&mut input).await;
    assert_eq!(answer["status"], "error", "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("in time")),
        "{answer}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn listed_origins_use_the_legacy_sockets_without_the_token_and_no_one_else_does() {
    let app = serve(&[]).await;
    for origin in ["http://localhost:3000", "http://127.0.0.1:3000"] {
        let mut input = connect_as(&app, "/ws/input", Some(origin))
            .await
            .unwrap_or_else(|e| panic!("{origin} may open /ws/input: {e}"));
        let assigned = next_json(&mut input).await;
        let task_id = assigned["task_id"].as_str().expect("a task").to_owned();
        let mut output = connect_as(&app, &format!("/ws/output/{task_id}"), Some(origin))
            .await
            .unwrap_or_else(|e| panic!("{origin} may open /ws/output: {e}"));
        assert_eq!(upload_inline(&mut input, "hi").await["status"], "queued");
        let received = read_output(&mut output).await;
        assert_eq!(
            received.frames[0]["status"], "success",
            "{:?}",
            received.frames
        );
    }
    let task = "/ws/output/3f0e4b1c-93a4-4f59-9d1e-2c1f9f0f5b6e";
    for (path, origin, status) in [
        ("/ws/input", Some("http://localhost:3001"), "403"),
        ("/ws/input", Some("http://evil.example"), "403"),
        (task, Some("http://evil.example"), "403"),
        ("/ws/input", None, "401"),
        (task, None, "401"),
        // The exception covers the two legacy sockets only.
        ("/ws/live", Some("http://localhost:3000"), "403"),
    ] {
        let refused = connect_as(&app, path, origin).await.expect_err("refused");
        assert!(
            refused.to_string().contains(status),
            "{path} from {origin:?}: {refused}"
        );
    }
    let settings = app
        .client
        .get(format!("{}/settings", app.base))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(settings.status(), 403, "nor any HTTP route");
    app.shutdown().await;
}

#[tokio::test]
async fn an_empty_legacy_list_leaves_the_token_required() {
    let app = serve(&[("KOTODAMA_LEGACY_ORIGINS", "")]).await;
    let refused = connect_as(&app, "/ws/input", Some("http://localhost:3000"))
        .await
        .expect_err("refused");
    assert!(refused.to_string().contains("403"), "{refused}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_input_peer_that_answers_no_ping_is_closed_with_1001() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = serve(&[("LEGACY_PEER_TIMEOUT", "0.3")]).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    // A raw client: a WebSocket library would answer the pings; a dead peer does not.
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let handshake = format!(
        "GET /ws/input?token={TOKEN} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(handshake.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
            // A server frame is unmasked: 0x88 (FIN + close), length, then the code.
            if let Some(at) = received.windows(2).position(|w| w[0] == 0x88 && w[1] >= 2)
                && received.len() >= at + 4
            {
                return Some(u16::from_be_bytes([received[at + 2], received[at + 3]]));
            }
        }
    })
    .await
    .expect("the server gives up on the peer within 10 s");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 101"), "upgraded: {text}");
    assert!(text.contains("task_id_assigned"), "{text}");
    assert!(
        received.windows(2).any(|w| w == [0x89, 0x00]),
        "it was pinged first"
    );
    assert_eq!(close, Some(1001), "then closed as gone");
    app.shutdown().await;
}

#[test]
fn legacy_keys_are_read_and_bad_values_name_the_key() {
    use koto_server::config::RawConfig;
    let build = |pairs: &[(&str, &str)]| {
        let mut raw = RawConfig::default();
        raw.merge_env(|name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        });
        raw.build()
    };
    let defaults = build(&[]).expect("defaults are valid");
    assert_eq!(
        defaults.legacy,
        koto_server::routes::legacy::LegacyLimits::default(),
        "the keys' defaults are the documented limits"
    );
    assert_eq!(
        defaults.legacy_origins,
        ["http://localhost:3000", "http://127.0.0.1:3000"],
        "the original dev server"
    );
    assert_eq!(defaults.body_read_timeout, Duration::from_secs(10));
    let set = build(&[
        ("LEGACY_MAX_TASKS", "4"),
        ("LEGACY_UPLOAD_IDLE", "1.5"),
        ("KOTODAMA_LEGACY_ORIGINS", " http://a.example/ , "),
        ("BODY_READ_TIMEOUT", "2"),
    ])
    .expect("valid");
    assert_eq!(set.legacy.max_tasks, 4);
    assert_eq!(set.legacy.upload_idle, Duration::from_millis(1500));
    assert_eq!(set.legacy_origins, ["http://a.example"], "trimmed");
    assert_eq!(set.body_read_timeout, Duration::from_secs(2));
    for (env, value) in [
        ("LEGACY_MAX_TASKS", "0"),
        ("LEGACY_MAX_CHUNKS", "-1"),
        ("LEGACY_RETAIN", "1e300"),
        ("LEGACY_PEER_TIMEOUT", "0"),
        ("LEGACY_AUDIO_LINGER", "NaN"),
        ("BODY_READ_TIMEOUT", "7200"),
        ("BODY_READ_TIMEOUT", "-1"),
    ] {
        let error = build(&[(env, value)]).expect_err("refused");
        assert!(error.to_string().contains(env), "{env}={value}: {error}");
    }
}

/// Uploads `bytes` as the page's MediaRecorder does (one metadata + binary frame per timeslice of
/// `chunk` bytes), checking every chunk's answer; returns the `upload_processed` answer.
async fn upload_audio(input: &mut Socket, bytes: &[u8], chunk: usize) -> Value {
    for (chunk_id, piece) in bytes.chunks(chunk).enumerate() {
        send_json(
            input,
            json!({"type":"audio","chunk_id":chunk_id,"action":"data_chunk","meta":{"lang":"en"}}),
        )
        .await;
        input
            .send(Message::Binary(piece.to_vec().into()))
            .await
            .unwrap();
        assert_eq!(
            next_text(input).await,
            "File chunk received",
            "chunk {chunk_id} is acknowledged"
        );
    }
    send_json(input, json!({"action":"upload_complete"})).await;
    next_json(input).await
}

#[tokio::test]
async fn a_mediarecorder_recording_is_heard_answered_and_stored_as_speech() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::tokens(SHORT_REPLY))).await;
    let base_url = fake.base_url();
    let app = serve(&[
        ("SYNC_TTS_STREAMING", "true"),
        ("TTS_PROVIDER", "mock"),
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", base_url.as_str()),
        ("ASR_PROVIDER", "mock"),
        ("ASR_MOCK_TEXT", "what shall we play tonight"),
    ])
    .await;
    let (mut input, task_id) = open_input(&app).await;
    let mut output = connect(&app, &format!("/ws/output/{task_id}")).await;
    let processed = upload_audio(&mut input, crate::audio::WEBM, 4096).await;
    assert_eq!(
        (processed["action"].as_str(), processed["status"].as_str()),
        (Some("upload_processed"), Some("queued")),
        "the recording was heard and its turn started: {processed}"
    );
    let received = read_output(&mut output).await;
    assert_spoken_reply(&received, &task_id);
    let (text, kind, meta) =
        crate::audio::stored_user_row(&app, &task_id, 0).expect("the user row is stored");
    assert_eq!(text, "what shall we play tonight", "what the ASR heard");
    assert_eq!(kind.as_deref(), Some("ASR_FINAL"), "stored as speech");
    let meta = meta.expect("meta");
    assert_eq!(meta["source"], "mic", "from the microphone");
    assert_eq!(
        meta["durationMs"],
        crate::audio::heard_ms(crate::audio::WEBM),
        "the whole recording, joined from its chunks in order"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn recordings_that_cannot_be_heard_get_the_documented_error_and_store_nothing() {
    let asr = koto_testkit::fake_openai_transcription::FakeOpenAiTranscription::start(vec![
        koto_testkit::fake_openai_transcription::TranscriptionResponse::Garbage,
    ])
    .await;
    let app = serve(&[
        ("ASR_PROVIDER", "openai"),
        ("ASR_BASE_URL", asr.base_url().as_str()),
        ("ASR_MAX_UPLOAD_BYTES", "40000"),
    ])
    .await;
    // Half a second of a tone: decodable and small, so only the ASR can fail on it.
    let tone: Vec<i16> = (0..8000)
        .map(|i| if i % 40 < 20 { 4000 } else { -4000 })
        .collect();
    let tone_wav = koto_providers::audio::wav::encode_mono_s16(&tone, 16_000);
    let cases: [(&[u8], &str); 4] = [
        (crate::audio::WAV, "payload_too_large"),
        (b"<html>not audio</html>", "unsupported_audio"),
        // The recording, cut inside its last block.
        (
            &crate::audio::WEBM[..crate::audio::WEBM.len() - 5],
            "unsupported_audio",
        ),
        (&tone_wav, "asr_failed"),
    ];
    for (bytes, code) in cases {
        let (mut input, task_id) = open_input(&app).await;
        let mut output = connect(&app, &format!("/ws/output/{task_id}")).await;
        let processed = upload_audio(&mut input, bytes, 4096).await;
        assert_eq!(processed["status"], "error", "{code}: {processed}");
        assert_eq!(processed["code"], code, "{processed}");
        let received = read_output(&mut output).await;
        assert_eq!(
            received.frames.len(),
            1,
            "{code}: one error frame: {:?}",
            received.frames
        );
        assert_eq!(received.frames[0]["status"], "error", "{code}");
        assert_eq!(
            received.frames[0]["error"], processed["error"],
            "{code}: the same words on both sockets"
        );
        assert!(
            crate::audio::stored_user_row(&app, &task_id, 0).is_none(),
            "{code}: nothing was stored"
        );
    }
    assert_eq!(
        asr.requests().len(),
        1,
        "only the decodable recording reached the ASR"
    );
    app.shutdown().await;
}

/// Sends `pieces` as audio chunks numbered from `first_id`, checking each answer.
async fn send_audio_chunks(input: &mut Socket, pieces: &[&[u8]], first_id: usize) {
    for (n, piece) in pieces.iter().enumerate() {
        send_json(
            input,
            json!({"type":"audio","chunk_id":first_id + n,"action":"data_chunk"}),
        )
        .await;
        input
            .send(Message::Binary(piece.to_vec().into()))
            .await
            .unwrap();
        assert_eq!(next_text(input).await, "File chunk received");
    }
}

/// `ASR_MAX_UPLOAD_BYTES` saved while the app runs is the bound of the next upload, on
/// `/chat/audio` (the guard's early 413 too, raised or lowered) and on the original front end's
/// `/ws/input`; an original-front-end upload already under way keeps the bound it began with.
#[tokio::test]
async fn a_saved_upload_limit_bounds_the_next_chat_audio_and_legacy_upload_without_a_restart() {
    let app = crate::serve_saved(
        &[("ASR_PROVIDER", "mock"), ("ASR_MOCK_TEXT", "hello there")],
        "asr_max_upload_bytes = 1024\n",
    )
    .await;
    let wav_upload = || {
        app.post("/chat/audio?sessionId=live-limit")
            .body(crate::audio::WAV.to_vec())
            .send()
    };
    let refused = wav_upload().await.unwrap();
    assert_eq!(
        refused.status(),
        413,
        "81 KB over a 1 KB bound (the guard's, at start)"
    );

    let answer = save_settings(&app, json!({"asr_max_upload_bytes": 10_485_760})).await;
    assert_eq!(answer["restartRequired"], json!([]), "{answer}");
    assert_eq!(
        answer["appliedNow"],
        json!(["asr_max_upload_bytes"]),
        "{answer}"
    );
    assert_eq!(
        wav_upload().await.unwrap().status(),
        200,
        "raised without a restart: the guard's early 413 follows the saved bound"
    );

    // An original-front-end upload begins under the 10 MB bound…
    let (mut early, _) = open_input(&app).await;
    let webm = crate::audio::WEBM;
    let pieces: Vec<&[u8]> = webm.chunks(4096).collect();
    let (first_half, second_half) = pieces.split_at(pieces.len() / 2);
    send_audio_chunks(&mut early, first_half, 0).await;

    // …then the bound is lowered.
    let answer = save_settings(&app, json!({"asr_max_upload_bytes": 1024})).await;
    assert_eq!(answer["restartRequired"], json!([]), "{answer}");
    assert_eq!(
        answer["appliedNow"],
        json!(["asr_max_upload_bytes"]),
        "{answer}"
    );
    assert_eq!(app.health().await["asr"]["maxUploadBytes"], 1024);
    crate::expect_error(wav_upload().await.unwrap(), 413, "payload_too_large").await;
    let form = crate::audio::multipart(&[("sessionId", "live-limit")], Some(("a.webm", webm)));
    let over = app
        .post("/chat/audio")
        .header("content-type", form.content_type)
        .body(form.body)
        .send()
        .await
        .unwrap();
    crate::expect_error(over, 413, "payload_too_large").await;
    let (mut next, _) = open_input(&app).await;
    let processed = upload_audio(&mut next, webm, 4096).await;
    assert_eq!(
        (processed["status"].as_str(), processed["code"].as_str()),
        (Some("error"), Some("payload_too_large")),
        "the next recording gets the new bound: {processed}"
    );

    send_audio_chunks(&mut early, second_half, first_half.len()).await;
    send_json(&mut early, json!({"action":"upload_complete"})).await;
    let processed = next_json(&mut early).await;
    assert_eq!(
        processed["status"], "queued",
        "begun under 10 MB, it keeps that bound: {processed}"
    );
    app.shutdown().await;
}

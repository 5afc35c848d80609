//! One STOP on every path: each way to stop a spoken reply, driven through its real entry point
//! mid-speech, must give the same result — a STOP_ACK to every `/ws/live` client, no chunk of the
//! turn after it, the turn stored as interrupted with exactly what the relay released before
//! the fence, and (where the caller is still there) `STOPPED` with that same heard text.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{TOKEN, TestServer, parse_sse, serve};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Debug, Clone, Copy)]
enum Path {
    /// `POST /control/stop` (the panel's button, the tray and the hotkey call the same
    /// `Engine::interrupt`).
    ControlRoute,
    /// `CONTROL STOP` from a `/ws/live` client (the OBS overlay, the app window).
    LiveSocket,
    /// `COMMAND stop` on `/chat/stream` (the panel's typed `/stop`).
    Command,
    /// The SSE client of the turn goes away.
    Disconnect,
    /// The app shuts down mid-reply.
    Shutdown,
}

async fn connect(app: &TestServer, session: &str) -> Socket {
    let url = format!(
        "{}/ws/live?token={TOKEN}&session={session}",
        app.base.replace("http://", "ws://")
    );
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket upgrade")
        .0
}

/// Next JSON frame; `None` when the socket closed or stayed silent for `wait`.
async fn next_json(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(wait, socket.next())
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

/// What a live client saw of turn 0 of the session.
#[derive(Debug, Default)]
struct Seen {
    /// Segment texts in the order their first chunk arrived, and each one's chunk count.
    segments: Vec<(String, usize)>,
    /// The reply text as written (TEXT_DELTA frames).
    written: String,
    stop_ack: bool,
    chunks_after_ack: usize,
    ends: usize,
}

impl Seen {
    fn take(&mut self, frame: &Value) {
        let turn0 = frame["turn"] == 0;
        match frame["type"].as_str() {
            Some("SPEECH_CHUNK") if turn0 => {
                if self.stop_ack {
                    self.chunks_after_ack += 1;
                } else if let Some(text) = frame["segment"]["text"].as_str() {
                    self.segments.push((text.to_owned(), 1));
                } else if let Some(last) = self.segments.last_mut() {
                    last.1 += 1;
                }
            }
            Some("TEXT_DELTA") if turn0 => {
                self.written
                    .push_str(frame["content"].as_str().unwrap_or_default());
            }
            Some("CONTROL") if frame["action"] == "STOP_ACK" => self.stop_ack = true,
            Some("CONTROL") if frame["action"] == "END" && turn0 => self.ends += 1,
            _ => {}
        }
    }

    /// Segments the client got whole: every one followed by the next segment's first chunk.
    fn whole_segments(&self) -> String {
        let n = self.segments.len().saturating_sub(1);
        self.segments[..n]
            .iter()
            .map(|(text, _)| text.as_str())
            .collect()
    }

    /// Everything up to and including the segment being played at the STOP.
    fn through_current_segment(&self) -> String {
        self.segments
            .iter()
            .map(|(text, _)| text.as_str())
            .collect()
    }
}

async fn stop_mid_speech(path: Path) {
    let session = format!("stop-{path:?}").to_lowercase();
    let app = serve(&[
        ("SYNC_TTS_STREAMING", "true"),
        ("TTS_PROVIDER", "mock"),
        ("MOCK_LLM_TOKEN_MS", "1"),
    ])
    .await;
    let mut live = connect(&app, &session).await;
    let response = app
        .chat(json!({"sessionId": session, "content": "tell me a story"}))
        .await;
    assert_eq!(response.status(), 200, "{path:?}: the turn starts");
    let mut sse = Some(Box::pin(response.bytes_stream()));
    let mut seen = Seen::default();
    // A few chunks into the reply: the STOP lands mid-speech.
    while seen.segments.iter().map(|(_, n)| n).sum::<usize>() < 5 {
        let frame = next_json(&mut live, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("{path:?}: audio flows"));
        seen.take(&frame);
    }

    if let Path::Disconnect = path {
        sse = None;
    }
    send_stop(&app, &mut live, &session, path).await;
    // Until STOP_ACK, and 600 ms past it: nothing of the turn may follow.
    let mut after_ack_wait = None::<tokio::time::Instant>;
    loop {
        let wait = match after_ack_wait {
            Some(deadline) => deadline.saturating_duration_since(tokio::time::Instant::now()),
            None => Duration::from_secs(20),
        };
        let Some(frame) = next_json(&mut live, wait).await else {
            break;
        };
        seen.take(&frame);
        if seen.stop_ack && after_ack_wait.is_none() {
            after_ack_wait = Some(tokio::time::Instant::now() + Duration::from_millis(600));
        }
    }
    assert!(seen.stop_ack, "{path:?}: every live client gets STOP_ACK");
    assert_eq!(
        seen.chunks_after_ack, 0,
        "{path:?}: no chunk of the stopped turn after STOP_ACK"
    );
    assert_eq!(seen.ends, 0, "{path:?}: no END for a stopped turn");

    // The caller, where it is still there, is told what was heard.
    let stopped_heard = match path {
        Path::Disconnect | Path::Shutdown => None,
        Path::ControlRoute | Path::LiveSocket | Path::Command => {
            let mut body = Vec::new();
            let mut sse = sse.take().expect("the caller is still there");
            while let Some(bytes) = sse.next().await {
                body.extend_from_slice(&bytes.expect("SSE read"));
            }
            let frames = parse_sse(&String::from_utf8_lossy(&body));
            let done = frames.last().expect("done");
            assert_eq!(done.event, "done", "{path:?}: done is last");
            assert_eq!(done.data["stats"]["interrupted"], true, "{path:?}");
            let stopped = frames
                .iter()
                .rfind(|f| f.event == "control" && f.data["action"] == "STOPPED")
                .unwrap_or_else(|| panic!("{path:?}: STOPPED on SSE: {frames:?}"));
            Some(
                stopped.data["heard"]
                    .as_str()
                    .expect("heard text")
                    .to_owned(),
            )
        }
    };

    let (stored, interrupted, reason) = stored_reply(&app, &session).await;
    assert!(
        interrupted,
        "{path:?}: stored as interrupted, not completed"
    );
    let expected_reason = match path {
        Path::Disconnect => "client_disconnected",
        Path::Shutdown => "shutdown",
        Path::ControlRoute | Path::LiveSocket | Path::Command => "user_interrupt",
    };
    assert_eq!(
        reason.as_deref(),
        Some(expected_reason),
        "{path:?}: the reason is stored"
    );
    let whole = seen.whole_segments();
    let through = seen.through_current_segment();
    assert!(
        stored.starts_with(&whole),
        "{path:?}: every segment the client got whole was heard: stored {stored:?}, whole {whole:?}"
    );
    // The relay may have released a chunk the client had not read yet when the STOP purged its
    // queue: what is stored can run into that one next segment, never further.
    assert!(
        seen.written.starts_with(&stored) && stored.len() < seen.written.len(),
        "{path:?}: a prefix of the reply is stored, not the whole: {stored:?}"
    );
    assert!(
        through.starts_with(&stored) || stored.starts_with(&through),
        "{path:?}: nothing beyond what was released is stored: {stored:?} vs {through:?}"
    );
    if let Some(heard) = stopped_heard {
        assert_eq!(
            heard, stored,
            "{path:?}: STOPPED tells the stored heard text"
        );
    }
    if let Some(server) = app.server {
        server.shutdown().await.expect("clean shutdown");
    }
}

/// Stops `session`'s running turn 0 through `path`'s real entry point (for `Disconnect` the
/// caller drops its SSE response).
async fn send_stop(app: &TestServer, live: &mut Socket, session: &str, path: Path) {
    match path {
        Path::ControlRoute => {
            let answer: Value = app
                .post("/control/stop")
                .json(&json!({"sessionId": session}))
                .send()
                .await
                .expect("stop sent")
                .json()
                .await
                .expect("stop answer");
            assert_eq!(answer["ok"], true, "{answer}");
            assert_eq!(answer["stopped"], json!([0]), "the turn is named: {answer}");
        }
        Path::LiveSocket => {
            let stop = json!({"type":"CONTROL","action":"STOP","sessionId":session,"reason":"user_interrupt"});
            live.send(Message::Text(stop.to_string().into()))
                .await
                .expect("stop sent");
        }
        Path::Command => {
            let answer = app
                .chat(json!({"sessionId": session, "type": "COMMAND", "content": "stop"}))
                .await;
            assert_eq!(answer.status(), 200);
            let frames = parse_sse(&answer.text().await.expect("command answer"));
            assert!(
                frames
                    .iter()
                    .any(|f| f.event == "control" && f.data["action"] == "STOPPED"),
                "the command says it stopped: {frames:?}"
            );
        }
        Path::Disconnect => {}
        Path::Shutdown => app
            .server
            .as_ref()
            .expect("running")
            .shutdown_token()
            .cancel(),
    }
}

/// The stored reply of turn 0, whether it is marked interrupted, and the turn's end reason,
/// read from the database itself (the server may be gone).
async fn stored_reply(app: &TestServer, session: &str) -> (String, bool, Option<String>) {
    let db = app.dir.path().join("kotodama.sqlite3");
    let session = session.to_owned();
    // The turn records its ending after the fence; poll (bounded) until it has.
    for _ in 0..200 {
        let row = {
            let conn = rusqlite::Connection::open_with_flags(
                &db,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .expect("open db");
            conn.query_row(
                "SELECT a.text, a.interrupted, u.end_reason FROM turns AS a JOIN turns AS u
                   ON u.sessionId = a.sessionId AND u.turn = a.turn AND u.role = 'user'
                 WHERE a.sessionId = ?1 AND a.turn = 0 AND a.role = 'assistant'",
                [&session],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .ok()
        };
        if let Some(row) = row {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("turn 0 of {session} was never recorded");
}

#[tokio::test]
async fn control_route_stop_fences_the_turn() {
    stop_mid_speech(Path::ControlRoute).await;
}

#[tokio::test]
async fn live_socket_stop_fences_the_turn() {
    stop_mid_speech(Path::LiveSocket).await;
}

#[tokio::test]
async fn typed_stop_command_fences_the_turn() {
    stop_mid_speech(Path::Command).await;
}

#[tokio::test]
async fn sse_disconnect_fences_the_turn() {
    stop_mid_speech(Path::Disconnect).await;
}

#[tokio::test]
async fn shutdown_fences_the_turn() {
    stop_mid_speech(Path::Shutdown).await;
}

/// What holds the reply back when the STOP comes: nothing of the reply itself is heard yet.
#[derive(Debug, Clone, Copy)]
enum Held {
    /// `QUICK_ACK_MS`: the filler plays while the LLM's first token is late.
    QuickAck,
    /// `VETO_WINDOW_MS`: the first line is on the panel, its audio held.
    VetoWindow,
}

/// A STOP on `path` while the reply is held (`held`): the same fence as mid-speech — STOP_ACK,
/// no chunk after it, no END — and the turn is stored as interrupted with nothing heard: a
/// filler is never the reply, and a held line was never spoken.
async fn stop_while_held(path: Path, held: Held) {
    use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript, FakeStream};
    let session = format!("held-{held:?}-{path:?}").to_lowercase();
    let reply = FakeStream::new(["Never ", "heard, ", "this ", "line. ", "Nor this."]);
    let reply = match held {
        // Late enough that the STOP always lands inside the filler or before the first token.
        Held::QuickAck => reply.with_first_token_delay(Duration::from_secs(4)),
        Held::VetoWindow => reply,
    };
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::Stream(reply))).await;
    let base_url = fake.base_url();
    let hold = match held {
        Held::QuickAck => ("QUICK_ACK_MS", "100"),
        Held::VetoWindow => ("VETO_WINDOW_MS", "10000"),
    };
    let app = serve(&[
        ("SYNC_TTS_STREAMING", "true"),
        ("TTS_PROVIDER", "mock"),
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", base_url.as_str()),
        hold,
    ])
    .await;
    if let Held::QuickAck = held {
        let engine = app.server.as_ref().expect("running").engine.clone();
        for _ in 0..500 {
            if engine.quick_acks_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(engine.quick_acks_ready(), "the fillers are made at start");
    }
    let mut live = connect(&app, &session).await;
    let response = app
        .chat(json!({"sessionId": session, "content": "tell me a story"}))
        .await;
    assert_eq!(response.status(), 200, "{path:?}: the turn starts");
    let mut sse = Some(Box::pin(response.bytes_stream()));
    // The moment the reply is held: the filler's first chunk, or the held line on screen.
    let mut chunks_before_stop = 0;
    loop {
        let frame = next_json(&mut live, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("{held:?} {path:?}: the turn shows itself"));
        match (held, frame["type"].as_str()) {
            (Held::QuickAck, Some("SPEECH_CHUNK")) => {
                chunks_before_stop += 1;
                assert!(
                    frame["segment"]["text"].as_str().is_none_or(str::is_empty),
                    "the filler is not a segment of the reply: {frame}"
                );
                break;
            }
            (Held::VetoWindow, Some("TEXT_DELTA")) => break,
            (Held::VetoWindow, Some("SPEECH_CHUNK")) => {
                panic!("{path:?}: audio inside the veto window: {frame}")
            }
            _ => {}
        }
    }

    if let Path::Disconnect = path {
        sse = None;
    }
    send_stop(&app, &mut live, &session, path).await;
    let mut stop_ack = false;
    let mut after_ack = 0;
    let mut ends = 0;
    let mut deadline = None::<tokio::time::Instant>;
    loop {
        let wait = match deadline {
            Some(at) => at.saturating_duration_since(tokio::time::Instant::now()),
            None => Duration::from_secs(20),
        };
        let Some(frame) = next_json(&mut live, wait).await else {
            break;
        };
        match frame["type"].as_str() {
            Some("SPEECH_CHUNK") if frame["turn"] == 0 => {
                if stop_ack {
                    after_ack += 1;
                } else {
                    chunks_before_stop += 1;
                }
            }
            Some("CONTROL") if frame["action"] == "STOP_ACK" && !stop_ack => {
                stop_ack = true;
                deadline = Some(tokio::time::Instant::now() + Duration::from_millis(600));
            }
            Some("CONTROL") if frame["action"] == "END" && frame["turn"] == 0 => ends += 1,
            _ => {}
        }
    }
    assert!(
        stop_ack,
        "{held:?} {path:?}: STOP_ACK reaches the live client"
    );
    assert_eq!(after_ack, 0, "{held:?} {path:?}: no chunk after STOP_ACK");
    assert_eq!(ends, 0, "{held:?} {path:?}: no END for a stopped turn");
    if let Held::VetoWindow = held {
        assert_eq!(
            chunks_before_stop, 0,
            "{path:?}: not a sound of the held line"
        );
    }
    drop(sse);

    let (heard, reason) = stored_turn0(&app, &session).await;
    let expected_reason = match path {
        Path::Disconnect => "client_disconnected",
        Path::Shutdown => "shutdown",
        Path::ControlRoute | Path::LiveSocket | Path::Command => "user_interrupt",
    };
    assert_eq!(
        reason, expected_reason,
        "{held:?} {path:?}: the reason is stored"
    );
    assert!(
        heard.as_deref().is_none_or(str::is_empty),
        "{held:?} {path:?}: nothing of the reply was heard, so nothing is stored as said: {heard:?}"
    );
    if let Some(server) = app.server {
        server.shutdown().await.expect("clean shutdown");
    }
}

/// Turn 0's stored reply text (none when no reply row was written) and the turn's end reason,
/// from the database itself, once the turn has recorded its ending.
async fn stored_turn0(app: &TestServer, session: &str) -> (Option<String>, String) {
    let db = app.dir.path().join("kotodama.sqlite3");
    for _ in 0..200 {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .expect("open db");
        let reason: Option<String> = conn
            .query_row(
                "SELECT end_reason FROM turns WHERE sessionId = ?1 AND turn = 0 AND role = 'user'",
                [session],
                |row| row.get(0),
            )
            .ok()
            .flatten();
        if let Some(reason) = reason {
            let heard = conn
                .query_row(
                    "SELECT text FROM turns WHERE sessionId = ?1 AND turn = 0 AND role = 'assistant'",
                    [session],
                    |row| row.get(0),
                )
                .ok();
            return (heard, reason);
        }
        drop(conn);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("turn 0 of {session} never recorded its ending");
}

#[tokio::test]
async fn every_stop_path_silences_the_quick_acknowledgment() {
    for path in [
        Path::ControlRoute,
        Path::LiveSocket,
        Path::Command,
        Path::Disconnect,
        Path::Shutdown,
    ] {
        stop_while_held(path, Held::QuickAck).await;
    }
}

#[tokio::test]
async fn every_stop_path_drops_a_line_held_in_the_veto_window() {
    for path in [
        Path::ControlRoute,
        Path::LiveSocket,
        Path::Command,
        Path::Disconnect,
        Path::Shutdown,
    ] {
        stop_while_held(path, Held::VetoWindow).await;
    }
}

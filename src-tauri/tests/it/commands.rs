//! `app_info` and `stop_talking` as the panel calls them, and who may call them.

use std::time::Duration;

use koto_core::SessionId;
use koto_core::turn::InputKind;
use koto_engine::{Submission, TurnEvent, TurnHandle, TurnRequest};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::Harness;

/// So slow that no turn can finish during a test: a STOP always finds it running.
const NEVER_FINISHES_MS: u64 = 60_000;

fn session(raw: &str) -> SessionId {
    SessionId::parse(raw).expect("valid session id")
}

fn submit(harness: &Harness, session_id: &str) -> TurnHandle {
    let engine = harness.shell().engine().expect("engine running");
    let request = TurnRequest {
        session: session(session_id),
        turn: None,
        kind: InputKind::Text,
        content: "What shall we play tonight?".to_owned(),
        lang: Some("en".to_owned()),
        meta: Default::default(),
        received_at: tokio::time::Instant::now(),
    };
    match tauri::async_runtime::block_on(engine.submit(request)) {
        Ok(Submission::Turn(handle)) => handle,
        other => panic!("a text input starts a turn, got {other:?}"),
    }
}

/// The turn's events until `Done`, bounded.
fn finish(mut handle: TurnHandle) -> Vec<TurnEvent> {
    tauri::async_runtime::block_on(async move {
        let mut events = Vec::new();
        let collect = async {
            while let Some(event) = handle.events.recv().await {
                events.push(event);
            }
        };
        tokio::time::timeout(Duration::from_secs(20), collect)
            .await
            .expect("a stopped turn ends promptly");
        events
    })
}

fn interrupted(events: &[TurnEvent]) -> bool {
    matches!(events.last(), Some(TurnEvent::Done(stats)) if stats.interrupted)
}

/// `GET path` on the server with raw HTTP/1.1; returns the status code.
fn http_status(harness: &Harness, path: &str) -> u16 {
    let addr = format!(
        "{}:{}",
        harness.origin.host_str().expect("host"),
        harness.origin.port().expect("port")
    );
    tauri::async_runtime::block_on(async {
        let mut stream = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("an HTTP status line")
    })
}

#[test]
fn app_info_gives_the_panel_what_the_server_accepts() {
    let harness = Harness::start(25);
    let info = harness
        .invoke("app_info", json!({}))
        .expect("allowed from the panel");
    let token = info["token"].as_str().expect("token");
    let url = info["url"].as_str().expect("url");
    let overlay = info["overlayUrl"].as_str().expect("overlayUrl");
    assert_eq!(
        url,
        format!("{}?token={token}", harness.origin),
        "the panel URL is the server's root with the token"
    );
    assert_eq!(
        overlay,
        format!("{}overlay?token={token}", harness.origin),
        "the OBS overlay URL carries the same per-install token"
    );
    assert_eq!(
        http_status(&harness, &format!("/stats?token={token}")),
        200,
        "the token app_info reports is the one the server checks"
    );
    assert_eq!(
        http_status(&harness, "/stats?token=wrong-token-123456"),
        401,
        "and the server does check it"
    );
    assert_eq!(
        info["hotkey"]["state"], "off",
        "no hotkey was installed in this harness, and app_info says so"
    );
}

#[test]
fn commands_are_refused_to_every_other_origin() {
    let harness = Harness::start(25);
    let other_port = format!(
        "http://127.0.0.1:{}/",
        harness.origin.port().expect("port").wrapping_add(1)
    );
    for page in [
        "http://evil.example/",
        other_port.as_str(),
        "http://localhost.evil.example/",
    ] {
        let answer = harness.invoke_from(page, "app_info", json!({}));
        assert!(
            answer.is_err(),
            "{page} must not read the token through IPC: {answer:?}"
        );
    }
}

#[test]
fn stop_talking_rejects_a_bad_session_id_as_code_and_message() {
    let harness = Harness::start(25);
    let error = harness
        .invoke("stop_talking", json!({"sessionId": "not valid!"}))
        .expect_err("an invalid id is refused");
    assert_eq!(
        error["code"], "invalid_session_id",
        "the same closed code set as the HTTP routes: {error}"
    );
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a message for people: {error}"
    );
}

#[test]
fn stop_talking_interrupts_the_named_session_only() {
    let harness = Harness::start(NEVER_FINISHES_MS);
    let stopped = submit(&harness, "live-001");
    // Running too, but not named: the answer must not list it.
    let other = submit(&harness, "live-002");
    let answer = harness
        .invoke("stop_talking", json!({"sessionId": "live-001"}))
        .expect("stop is allowed from the panel");
    assert_eq!(
        answer,
        json!({"ok": true, "sessions": [{"sessionId": "live-001", "stopped": [stopped.turn]}]}),
        "the running turn of that session is reported stopped"
    );
    assert!(
        interrupted(&finish(stopped)),
        "the turn ends interrupted, like a STOP over HTTP"
    );
    drop(other);
}

#[test]
fn stop_without_a_session_stops_the_sessions_seen_on_the_relay() {
    let harness = Harness::start(NEVER_FINISHES_MS);
    let turn = submit(&harness, "live-007");
    harness.wait_until("the relay to announce live-007", |harness| {
        harness
            .shell()
            .recent_sessions()
            .contains(&session("live-007"))
    });
    let answer = harness
        .invoke("stop_talking", json!({}))
        .expect("stop is allowed from the panel");
    assert_eq!(
        answer["sessions"][0],
        json!({"sessionId": "live-007", "stopped": [turn.turn]}),
        "the tray's and hotkey's STOP found the running session: {answer}"
    );
    assert!(interrupted(&finish(turn)), "and interrupted its turn");
}

#[test]
fn commands_after_shutdown_say_shutting_down() {
    let harness = Harness::start(25);
    tauri::async_runtime::block_on(harness.shell().shutdown());
    let error = harness
        .invoke("stop_talking", json!({}))
        .expect_err("nothing to stop after quit");
    assert_eq!(error["code"], "shutting_down", "{error}");
}

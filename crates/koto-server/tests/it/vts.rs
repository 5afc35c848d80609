//! `VTS_URL`: a spoken reply moves VTube Studio's `MouthOpen` and closes it when the audio ends
//! or at a STOP;
//! the connection state is on `/health`; a VTube Studio that is not running changes nothing
//! for the turn. Against a loopback fake speaking the plugin API's JSON envelope.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::{read_sse, serve};

/// Accepts plugins, grants every token, records the `MouthOpen` values injected.
async fn fake_vts() -> (String, Arc<Mutex<Vec<f64>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let values = Arc::new(Mutex::new(Vec::new()));
    let seen = values.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let request: Value = serde_json::from_str(&text).unwrap_or_default();
                    let (kind, data) = match request["messageType"].as_str().unwrap_or_default() {
                        "AuthenticationTokenRequest" => (
                            "AuthenticationTokenResponse",
                            json!({"authenticationToken": "granted"}),
                        ),
                        "AuthenticationRequest" => (
                            "AuthenticationResponse",
                            json!({"authenticated": true, "reason": "ok"}),
                        ),
                        "InjectParameterDataRequest" => {
                            for value in request["data"]["parameterValues"]
                                .as_array()
                                .into_iter()
                                .flatten()
                            {
                                if value["id"] == "MouthOpen" {
                                    seen.lock()
                                        .unwrap()
                                        .push(value["value"].as_f64().unwrap_or(-1.0));
                                }
                            }
                            ("InjectParameterDataResponse", json!({}))
                        }
                        _ => (
                            "APIError",
                            json!({"errorID": 7, "message": "Request type unknown."}),
                        ),
                    };
                    let reply = json!({
                        "apiName": "VTubeStudioPublicAPI", "apiVersion": "1.0",
                        "requestID": request["requestID"], "messageType": kind, "data": data,
                    });
                    if socket.send(Message::text(reply.to_string())).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, values)
}

async fn poll<T>(mut check: impl FnMut() -> Option<T>, what: &str) -> T {
    for _ in 0..500 {
        if let Some(value) = check() {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_spoken_reply_moves_the_avatars_mouth_and_closes_it_at_the_end() {
    let (url, values) = fake_vts().await;
    let llm = FakeOpenAi::start(FakeScript::always(FakeResponse::tokens(["Hi ", "there."]))).await;
    let base_url = llm.base_url();
    let app = serve(&[
        ("SYNC_TTS_STREAMING", "true"),
        ("TTS_PROVIDER", "mock"),
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", base_url.as_str()),
        ("VTS_URL", url.as_str()),
    ])
    .await;
    for _ in 0..500 {
        if app.health().await["vts"]["state"] == "connected" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.health().await["vts"]["state"], "connected");
    assert_eq!(
        std::fs::read_to_string(app.dir.path().join("vts-token")).unwrap(),
        "granted",
        "the granted token is kept in the data dir"
    );
    let frames = read_sse(app.chat(json!({"sessionId":"vts","content":"hi"})).await).await;
    assert_eq!(frames.last().map(|f| f.event.as_str()), Some("done"));
    poll(
        || {
            values
                .lock()
                .unwrap()
                .iter()
                .any(|v| *v > 0.05)
                .then_some(())
        },
        "the mouth to open while the reply plays",
    )
    .await;
    poll(
        || {
            let values = values.lock().unwrap();
            let opened = values.iter().position(|v| *v > 0.05)?;
            values[opened..].contains(&0.0).then_some(())
        },
        "the mouth to close after the reply",
    )
    .await;
    assert!(
        values
            .lock()
            .unwrap()
            .iter()
            .all(|v| (0.0..=1.0).contains(v)),
        "bounded 0..1"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_stop_closes_the_avatars_mouth_and_keeps_it_closed() {
    let (url, values) = fake_vts().await;
    // A long reply, so the STOP lands while the co-host speaks.
    let llm = FakeOpenAi::start(FakeScript::always(FakeResponse::tokens([
        "This is a long answer that goes on. ",
        "It keeps going for quite a while. ",
        "And then it goes on some more.",
    ])))
    .await;
    let base_url = llm.base_url();
    let app = serve(&[
        ("SYNC_TTS_STREAMING", "true"),
        ("TTS_PROVIDER", "mock"),
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", base_url.as_str()),
        ("VTS_URL", url.as_str()),
    ])
    .await;
    let request = app
        .post("/chat/stream")
        .json(&json!({"sessionId":"vts-stop","content":"talk"}));
    let turn = tokio::spawn(async move { read_sse(request.send().await.unwrap()).await });
    let opened = poll(
        || values.lock().unwrap().iter().position(|v| *v > 0.05),
        "the mouth to open while the reply plays",
    )
    .await;
    let status = app
        .post("/control/stop")
        .json(&json!({"sessionId": "vts-stop"}))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
    let closed = poll(
        || {
            let values = values.lock().unwrap();
            values[opened..]
                .iter()
                .position(|v| *v == 0.0)
                .map(|at| at + opened)
        },
        "the mouth to close after the STOP",
    )
    .await;
    let frames = turn.await.unwrap();
    assert!(
        frames.iter().any(|f| f.event == "control"),
        "the turn was stopped"
    );
    // Keep-alives go on while connected: none of them may open the mouth again.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after: Vec<f64> = values.lock().unwrap()[closed..].to_vec();
    assert!(after.len() > 1, "keep-alives were sent: {after:?}");
    assert!(
        after.iter().all(|v| *v == 0.0),
        "closed at STOP and kept closed: {after:?}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn no_vtube_studio_running_is_a_state_not_a_failure() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = serve(&[("VTS_URL", url.as_str())]).await;
    let health = app.health().await;
    assert!(
        matches!(
            health["vts"]["state"].as_str(),
            Some("connecting" | "disconnected")
        ),
        "{health}"
    );
    let frames = read_sse(app.chat(json!({"sessionId":"novts","content":"hi"})).await).await;
    assert_eq!(
        frames.last().map(|f| f.event.as_str()),
        Some("done"),
        "the turn does not wait on VTube Studio"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_vts_url_that_is_not_a_websocket_is_refused() {
    let mut raw = koto_server::config::RawConfig::default();
    raw.merge_env(|name| (name == "VTS_URL").then(|| "http://127.0.0.1:8001".to_owned()));
    let error = raw.build().expect_err("not ws://").to_string();
    assert!(
        error.contains("vts_url") && error.contains("ws://"),
        "{error}"
    );
}

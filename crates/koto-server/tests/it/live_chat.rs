//! Live chat through the local chat API: bad input is refused with the field named, messages are
//! queued with scores, a pick becomes a turn that names the viewer, decisions reach `/ws/live`
//! as CHAT_DECISION frames and `/metrics` as counters, and a moderator's delete stops the answer
//! through the one STOP path (STOP_ACK, nothing after it, stored as `retracted`).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{TOKEN, TestServer, expect_error, serve};

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const SESSION: &str = "live-chat";

pub(crate) async fn socket(app: &TestServer, path: &str) -> Socket {
    let url = format!(
        "{}{path}{}token={TOKEN}",
        app.base.replace("http://", "ws://"),
        if path.contains('?') { "&" } else { "?" }
    );
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket upgrade")
        .0
}

pub(crate) async fn next_json(socket: &mut Socket, wait: Duration) -> Option<Value> {
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

/// Reads frames until one matches; every frame read is returned too (in order).
pub(crate) async fn until(
    socket: &mut Socket,
    what: &str,
    mut matches: impl FnMut(&Value) -> bool,
) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let frame = next_json(socket, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("{what}: never came; saw {seen:?}"));
        let done = matches(&frame);
        seen.push(frame);
        if done {
            return seen;
        }
    }
}

fn message(id: &str, user: &str, kind: &str, text: &str) -> Value {
    json!({"id": id, "platform": "twitch", "user": {"id": user, "name": format!("{user}_tv")}, "kind": kind, "text": text})
}

fn moderation(kind: &str, target: &str) -> Value {
    json!({"id": format!("mod-{target}"), "platform": "twitch", "user": {"id": "mod"}, "kind": kind, "targetId": target})
}

async fn post(app: &TestServer, messages: Vec<Value>) -> reqwest::Response {
    app.post("/chat/messages")
        .json(&json!({ "messages": messages }))
        .send()
        .await
        .expect("request sent")
}

async fn queue(app: &TestServer) -> Value {
    app.client
        .get(format!("{}/chat/queue", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("queue read")
        .json()
        .await
        .expect("queue is JSON")
}

/// Polls `GET /chat/queue` (bounded) until `done` holds.
async fn queue_until(app: &TestServer, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let view = queue(app).await;
        if done(&view) {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: the queue never got there: {}", queue(app).await);
}

fn decisions_of(view: &Value, id: &str) -> Vec<(String, String)> {
    view["decisions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["messageId"] == id)
        .map(|d| {
            (
                d["decision"].as_str().unwrap_or_default().to_owned(),
                d["reasonCode"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn bad_batches_are_refused_with_the_field_named() {
    let app = serve(&[("CHAT_ANSWER", "false"), ("CHAT_BATCH_MAX", "2")]).await;
    let unauthenticated = app
        .client
        .post(format!("{}/chat/messages", app.base))
        .json(&json!({"messages": [message("m1", "u1", "message", "hi")]}))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        unauthenticated.status(),
        401,
        "the local chat API needs the token"
    );
    expect_error(
        post(&app, vec![message("m1", "u1", "shout", "hi")]).await,
        400,
        "invalid_request",
    )
    .await;
    let body: Value = post(&app, vec![message("m1", "u1", "delete", "")])
        .await
        .json()
        .await
        .expect("error body");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("messages[0].targetId")),
        "the field is named: {body}"
    );
    expect_error(post(&app, Vec::new()).await, 400, "invalid_request").await;
    let three = vec![
        message("a", "u1", "message", "1"),
        message("b", "u2", "message", "2"),
        message("c", "u3", "message", "3"),
    ];
    expect_error(post(&app, three).await, 400, "invalid_request").await;
    let not_json = app
        .post("/chat/messages")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("sent");
    expect_error(not_json, 400, "invalid_json").await;
    assert_eq!(
        queue(&app).await["stats"]["received"],
        0,
        "a refused batch queues nothing"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn messages_wait_with_scores_and_moderation_removes_them() {
    let app = serve(&[("CHAT_ANSWER", "false")]).await;
    let accepted = post(
        &app,
        vec![
            message("m1", "alice", "message", "nice stream"),
            message("m2", "bob", "question", "what game is this?"),
            message("m3", "bob", "message", "hello"),
        ],
    )
    .await;
    assert_eq!(accepted.status(), 202);
    assert_eq!(
        accepted.json::<Value>().await.expect("json"),
        json!({"accepted": 3})
    );
    let view = queue_until(&app, "three wait", |v| {
        v["waiting"].as_array().map(Vec::len) == Some(3)
    })
    .await;
    assert_eq!(
        view["waiting"][0]["messageId"], "m2",
        "the question scores first: {view}"
    );
    assert!(
        view["waiting"][0]["score"].as_f64() > view["waiting"][1]["score"].as_f64(),
        "scores are shown, best first: {view}"
    );

    post(
        &app,
        vec![moderation("delete", "m1"), moderation("ban", "bob")],
    )
    .await;
    let view = queue_until(&app, "all removed", |v| {
        v["waiting"].as_array().map(Vec::len) == Some(0)
    })
    .await;
    assert_eq!(
        decisions_of(&view, "m1"),
        [("dropped".to_owned(), "deleted".to_owned())]
    );
    assert_eq!(
        decisions_of(&view, "m2"),
        [("dropped".to_owned(), "banned".to_owned())]
    );
    assert_eq!(
        decisions_of(&view, "m3"),
        [("dropped".to_owned(), "banned".to_owned())]
    );

    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("koto_chat_decisions_total{decision=\"dropped\",reason=\"banned\"} 2"),
        "decisions are counted by reason:\n{metrics}"
    );
    assert!(
        metrics.contains("koto_chat_messages_total 3"),
        "messages are counted"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn the_chat_socket_takes_the_same_batches_and_survives_bad_ones() {
    let app = serve(&[("CHAT_ANSWER", "false")]).await;
    let mut chat = socket(&app, "/ws/chat").await;
    chat.send(Message::Text("not json".into()))
        .await
        .expect("sent");
    let error = next_json(&mut chat, Duration::from_secs(10))
        .await
        .expect("answer");
    assert_eq!(error["error"]["code"], "invalid_json", "{error}");
    let batch = json!({"messages": [message("w1", "carol", "message", "from the socket")]});
    chat.send(Message::Text(batch.to_string().into()))
        .await
        .expect("sent");
    let answer = next_json(&mut chat, Duration::from_secs(10))
        .await
        .expect("answer");
    assert_eq!(
        answer,
        json!({"accepted": 1}),
        "the socket stays open after a bad frame"
    );
    queue_until(&app, "the socket's message waits", |v| {
        v["waiting"][0]["messageId"] == "w1"
    })
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn the_streamer_can_pin_skip_and_answer_now() {
    let app = serve(&[("CHAT_ANSWER", "false")]).await;
    post(
        &app,
        vec![
            message("p1", "a", "message", "plain one"),
            message("p2", "b", "message", "plain two"),
        ],
    )
    .await;
    queue_until(&app, "both wait", |v| {
        v["waiting"].as_array().map(Vec::len) == Some(2)
    })
    .await;
    let action = |id: &str, what: &str| app.post(&format!("/chat/queue/{id}/{what}")).send();
    assert_eq!(action("p1", "pin").await.expect("pin").status(), 200);
    let view = queue(&app).await;
    assert_eq!(view["waiting"][0]["pinned"], true, "a pin shows: {view}");
    assert_eq!(action("p2", "skip").await.expect("skip").status(), 200);
    expect_error(action("p2", "skip").await.expect("skip"), 404, "not_found").await;
    assert_eq!(action("p1", "answer").await.expect("answer").status(), 200);
    let view = queue_until(&app, "answered", |v| !decisions_of(v, "p1").is_empty()).await;
    assert_eq!(
        decisions_of(&view, "p1"),
        [("picked".to_owned(), "answer_now".to_owned())]
    );
    assert_eq!(
        decisions_of(&view, "p2"),
        [("dropped".to_owned(), "skipped".to_owned())]
    );
    let (user_text, meta) = stored_user_row(&app, 0).await;
    assert_eq!(
        user_text, "plain one",
        "the viewer's words are the turn's input"
    );
    assert_eq!(meta["source"], "twitch", "{meta}");
    assert_eq!(meta["user"], json!({"id": "a", "name": "a_tv"}), "{meta}");
    assert_eq!(meta["messageId"], "p1", "{meta}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_pick_becomes_a_turn_that_names_the_viewer() {
    let app = serve(&[("CHAT_ANSWER_EVERY_S", "0")]).await;
    let mut live = socket(&app, &format!("/ws/live?session={SESSION}")).await;
    post(
        &app,
        vec![message("q1", "dora", "question", "what game is this?")],
    )
    .await;
    let frames = until(&mut live, "the pick", |f| f["type"] == "CHAT_DECISION").await;
    let pick = frames.last().expect("a frame");
    assert_eq!(pick["decision"], "picked", "{pick}");
    assert_eq!(pick["messageId"], "q1");
    assert_eq!(pick["platform"], "twitch");
    assert!(
        pick["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("question, waited")),
        "the reason is a sentence: {pick}"
    );
    let frames = until(&mut live, "the reply", |f| {
        f["type"] == "TEXT_DELTA" && f["eos"] == true
    })
    .await;
    let reply: String = frames
        .iter()
        .filter(|f| f["type"] == "TEXT_DELTA")
        .filter_map(|f| f["content"].as_str())
        .collect();
    // The mock LLM quotes the start of the user message it was given: the prompt's line.
    assert!(
        reply.contains("dora_tv (on twit"),
        "the prompt names the viewer and platform: {reply:?}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_delete_while_answering_retracts_the_spoken_answer() {
    let app = serve(&[
        ("CHAT_ANSWER_EVERY_S", "0"),
        ("SYNC_TTS_STREAMING", "true"),
        ("TTS_PROVIDER", "mock"),
    ])
    .await;
    let mut live = socket(&app, &format!("/ws/live?session={SESSION}")).await;
    post(
        &app,
        vec![message("d1", "eve", "message", "tell us a story")],
    )
    .await;
    let mut chunks = 0;
    until(&mut live, "audio of the answer", |f| {
        if f["type"] == "SPEECH_CHUNK" {
            chunks += 1;
        }
        chunks >= 3
    })
    .await;
    post(&app, vec![moderation("delete", "d1")]).await;
    let frames = until(&mut live, "STOP_ACK", |f| {
        f["type"] == "CONTROL" && f["action"] == "STOP_ACK"
    })
    .await;
    assert!(
        frames.iter().any(|f| f["type"] == "CHAT_DECISION"
            && f["decision"] == "retracted"
            && f["messageId"] == "d1"
            && f["reasonCode"] == "deleted"),
        "the retraction is published before the STOP_ACK: {frames:?}"
    );
    assert_eq!(
        speech_chunks_within(&mut live, Duration::from_millis(600)).await,
        0,
        "no chunk of the retracted answer after STOP_ACK"
    );
    let (interrupted, reason) = stored_ending(&app, 0).await;
    assert!(interrupted, "the answer is stored as interrupted");
    assert_eq!(
        reason.as_deref(),
        Some("retracted"),
        "with the reason retracted"
    );
    app.shutdown().await;
}

/// SPEECH_CHUNKs that arrive within `window` (a STOP_ACK's aftermath: any is a leak).
pub(crate) async fn speech_chunks_within(live: &mut Socket, window: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + window;
    let mut chunks = 0;
    loop {
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(frame) = next_json(live, wait).await else {
            return chunks;
        };
        if frame["type"] == "SPEECH_CHUNK" {
            chunks += 1;
        }
    }
}

pub(crate) async fn stored_user_row(app: &TestServer, turn: i64) -> (String, Value) {
    let row = poll_row(
        app,
        "SELECT text, meta FROM turns WHERE sessionId = ?1 AND turn = ?2 AND role = 'user'",
        turn,
        |row| Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?)),
    )
    .await;
    let meta = row
        .1
        .and_then(|m| serde_json::from_str(&m).ok())
        .unwrap_or(Value::Null);
    (row.0, meta)
}

pub(crate) async fn stored_ending(app: &TestServer, turn: i64) -> (bool, Option<String>) {
    poll_row(
        app,
        "SELECT a.interrupted, u.end_reason FROM turns AS a JOIN turns AS u
           ON u.sessionId = a.sessionId AND u.turn = a.turn AND u.role = 'user'
         WHERE a.sessionId = ?1 AND a.turn = ?2 AND a.role = 'assistant'",
        turn,
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .await
}

/// Polls the database (bounded) until the query finds its row.
async fn poll_row<T>(
    app: &TestServer,
    sql: &str,
    turn: i64,
    read: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> T {
    let db = app.dir.path().join("kotodama.sqlite3");
    for _ in 0..200 {
        let found =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .ok()
                .and_then(|conn| {
                    conn.query_row(sql, rusqlite::params![SESSION, turn], |row| read(row))
                        .ok()
                });
        if let Some(found) = found {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("turn {turn} of {SESSION} was never stored: {sql}");
}

#[tokio::test]
async fn a_returning_viewer_is_recalled_and_can_be_forgotten() {
    use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript};
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::tokens(["Nice", "."]))).await;
    let base_url = fake.base_url();
    let app = serve(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", base_url.as_str()),
        ("CHAT_ANSWER_EVERY_S", "0"),
    ])
    .await;
    post(
        &app,
        vec![message("r1", "alice", "message", "my cat is called Mochi")],
    )
    .await;
    // The LTM worker writes the viewer's memory after the answer (asynchronously): poll.
    let db = app.dir.path().join("kotodama.sqlite3");
    let remembered = || {
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()
            .and_then(|conn| {
                conn.query_row(
                    "SELECT count(*) FROM viewer_memories WHERE platform = 'twitch' AND user_id = 'alice'",
                    [],
                    |row| row.get::<_, i64>(0),
                )
                .ok()
            })
            .unwrap_or(0)
    };
    for _ in 0..200 {
        if remembered() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        remembered(),
        1,
        "the exchange is kept for the viewer (twitch + alice)"
    );

    post(
        &app,
        vec![message("r2", "alice", "message", "do you remember me")],
    )
    .await;
    let mut system = String::new();
    for _ in 0..200 {
        let requests = fake.requests();
        if requests.len() >= 2 {
            // Recalled memories go with the new input, in the last user message.
            system = requests[1]["messages"]
                .as_array()
                .and_then(|messages| messages.last())
                .and_then(|m| m["content"].as_str())
                .unwrap_or_default()
                .to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        system.contains("alice_tv (on twitch) is a returning viewer: first seen today"),
        "the second answer's prompt knows the viewer: {system:?}"
    );
    assert!(
        system.contains("alice_tv said: my cat is called Mochi | you answered: Nice."),
        "and what they said and were answered: {system:?}"
    );

    for _ in 0..200 {
        if remembered() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(remembered(), 2, "the second exchange is kept too");
    let forgot: Value = app
        .client
        .delete(format!("{}/chat/viewers/twitch/alice", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("forget sent")
        .json()
        .await
        .expect("json");
    assert_eq!(forgot["ok"], true, "{forgot}");
    assert_eq!(
        forgot["memories"], 2,
        "both exchanges are forgotten: {forgot}"
    );
    assert_eq!(remembered(), 0, "forgotten");
    app.shutdown().await;
}

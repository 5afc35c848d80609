//! `GET /sessions` and `GET /sessions/{id}/history` over real turns on real SQLite: content and
//! order, paging, interrupted and failed turns, a restart, bad input, the token.

use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript};
use serde_json::{Value, json};

use crate::{TOKEN, TestServer, expect_error, parse_sse, read_sse, serve};

impl TestServer {
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).send().await.expect("request sent");
        assert_eq!(response.status(), 200, "GET {path} succeeds");
        response.json().await.expect("JSON body")
    }

    /// Runs one turn to its end; returns the reply text as streamed.
    async fn turn(&self, session: &str, content: &str) -> String {
        let frames = read_sse(
            self.chat(json!({"sessionId": session, "content": content}))
                .await,
        )
        .await;
        assert_eq!(
            frames.last().map(|frame| frame.event.as_str()),
            Some("done"),
            "the turn ran to its end"
        );
        frames
            .iter()
            .filter(|frame| frame.event == "text-delta")
            .map(|frame| frame.data["content"].as_str().expect("delta content"))
            .collect()
    }
}

fn turn_numbers(history: &Value) -> Vec<u64> {
    history["turns"]
        .as_array()
        .expect("turns is an array")
        .iter()
        .map(|turn| turn["turn"].as_u64().expect("turn number"))
        .collect()
}

#[tokio::test]
async fn history_lists_stored_turns_oldest_first_and_pages_back() {
    let app = serve(&[]).await;
    let mut replies = Vec::new();
    for content in ["first question", "second question", "third question"] {
        replies.push(app.turn("hist-001", content).await);
    }
    app.turn("hist-002", "elsewhere").await;

    let history = app.get_json("/sessions/hist-001/history").await;
    assert_eq!(history["sessionId"], "hist-001");
    assert_eq!(history["more"], false, "all three fit the default page");
    assert_eq!(
        turn_numbers(&history),
        [0, 1, 2],
        "oldest first, only this session"
    );
    let first = &history["turns"][0];
    assert_eq!(first["user"], "first question", "the input as sent");
    assert_eq!(
        first["assistant"], replies[0],
        "the stored reply is the streamed reply"
    );
    assert_eq!(first["status"], "completed");
    assert_eq!(first["kind"], "TEXT");
    let started = first["startedMs"].as_i64().expect("startedMs");
    let ended = first["endedMs"].as_i64().expect("endedMs");
    assert!(started > 0 && ended >= started, "times in ms: {first}");

    let newest = app.get_json("/sessions/hist-001/history?limit=2").await;
    assert_eq!(turn_numbers(&newest), [1, 2], "the newest page");
    assert_eq!(newest["more"], true, "turn 0 is left");
    let older = app
        .get_json("/sessions/hist-001/history?limit=2&before=1")
        .await;
    assert_eq!(turn_numbers(&older), [0], "the page before turn 1");
    assert_eq!(older["more"], false, "nothing is older");
    let unknown = app.get_json("/sessions/never-used/history").await;
    assert_eq!(
        unknown,
        json!({"sessionId":"never-used","turns":[],"more":false}),
        "an unknown session is an empty transcript"
    );

    let listed = app.get_json("/sessions").await;
    let sessions: Vec<(&str, u64)> = listed["sessions"]
        .as_array()
        .expect("sessions array")
        .iter()
        .map(|entry| {
            (
                entry["sessionId"].as_str().expect("sessionId"),
                entry["turns"].as_u64().expect("turns"),
            )
        })
        .collect();
    assert_eq!(
        sessions,
        [("hist-002", 1), ("hist-001", 3)],
        "most recently active first, with their turn counts"
    );
    assert!(
        listed["sessions"][0]["lastActiveMs"].as_i64()
            >= listed["sessions"][1]["lastActiveMs"].as_i64(),
        "ordered by lastActiveMs: {listed}"
    );
    let one = app.get_json("/sessions?limit=1").await;
    assert_eq!(
        one["sessions"].as_array().map(Vec::len),
        Some(1),
        "limit applies"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_stopped_turn_is_interrupted_with_what_was_delivered() {
    let app = serve(&[("MOCK_LLM_TOKEN_MS", "200")]).await;
    let mut response = app
        .chat(json!({"sessionId":"cut","content":"talk for a while"}))
        .await;
    let first = response.chunk().await.unwrap().expect("first bytes");
    assert!(
        String::from_utf8_lossy(&first).contains("text-delta"),
        "the turn is streaming"
    );
    let stopped: Value = app
        .post("/control/stop")
        .json(&json!({"sessionId":"cut"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stopped["stopped"], json!([0]), "turn 0 was stopped");
    let mut body = String::from_utf8_lossy(&first).into_owned();
    while let Some(chunk) = response.chunk().await.unwrap() {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let streamed: String = parse_sse(&body)
        .iter()
        .filter(|frame| frame.event == "text-delta")
        .map(|frame| frame.data["content"].as_str().unwrap().to_owned())
        .collect();

    // `done` is sent after the turn is recorded, so the row is there now.
    let history = app.get_json("/sessions/cut/history").await;
    let turn = &history["turns"][0];
    assert_eq!(turn["status"], "interrupted", "the STOP shows: {turn}");
    assert_eq!(
        turn["reason"], "user_interrupt",
        "and who stopped it: {turn}"
    );
    assert_eq!(
        turn["assistant"], streamed,
        "without speech, what reached the caller is what was stored, unmarked"
    );
    // `say` skips the slow mock LLM: the next turn ends normally.
    read_sse(
        app.chat(json!({"sessionId":"cut","type":"COMMAND","content":"say and now?"}))
            .await,
    )
    .await;
    let history = app.get_json("/sessions/cut/history").await;
    assert_eq!(
        history["turns"][1]["status"], "completed",
        "the next turn is not affected"
    );
    assert_eq!(history["turns"][1]["kind"], "COMMAND");
    app.shutdown().await;
}

#[tokio::test]
async fn a_failed_turn_shows_its_input_and_no_reply() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::error(401, "bad key"))).await;
    let base_url = fake.base_url();
    let app = serve(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", base_url.as_str()),
        ("LLM_MODEL", "fake-model"),
    ])
    .await;
    let frames = read_sse(
        app.chat(json!({"sessionId":"sad","content":"hello?"}))
            .await,
    )
    .await;
    assert_eq!(frames[0].event, "error", "the LLM failed");
    let history = app.get_json("/sessions/sad/history").await;
    let turn = &history["turns"][0];
    assert_eq!(turn["status"], "failed");
    assert_eq!(turn["user"], "hello?", "the input is kept");
    assert_eq!(
        turn["assistant"],
        Value::Null,
        "no reply was invented or stored"
    );
    let (started, ended) = (turn["startedMs"].as_i64(), turn["endedMs"].as_i64());
    assert!(
        started.is_some() && ended >= started,
        "a failed turn says when it ended (store M6): {turn}"
    );
    assert_eq!(
        turn["reason"], frames[0].data["code"],
        "the reason is the error the caller was sent: {turn}"
    );
    assert!(
        turn["reason"].as_str().is_some_and(|code| !code.is_empty()),
        "a failed turn says why: {turn}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn history_tells_why_each_turn_ended_and_what_was_heard() {
    use koto_core::{SessionId, TurnNo};
    use koto_store::{FailedTurn, FinishedTurn, NewTurn};

    let app = serve(&[]).await;
    // The engine's own store, so the route reads exactly what an ending of each kind commits
    // (which ending the engine picks is tested with the engine).
    let store = app.server.as_ref().expect("running").engine.store().clone();
    let session = SessionId::parse("why").expect("valid id");
    let begin = |turn: u64| {
        store
            .begin_turn(&NewTurn {
                session: session.clone(),
                turn: TurnNo(turn),
                user_text: format!("q{turn}"),
                kind: "TEXT".into(),
                meta: None,
                ts_ms: 1_000 + turn as i64,
            })
            .expect("begin");
    };
    let finish = |turn: u64, reply: &str, interrupted: bool, reason: Option<&str>| {
        store
            .finish_turn(&FinishedTurn {
                session: session.clone(),
                turn: TurnNo(turn),
                reply_text: reply.into(),
                interrupted,
                reason: reason.map(str::to_owned),
                ts_ms: 2_000 + turn as i64,
                events: Vec::new(),
            })
            .expect("finish");
    };
    let fail = |turn: u64, heard: &str, reason: &str| {
        store
            .fail_turn(&FailedTurn {
                session: session.clone(),
                turn: TurnNo(turn),
                heard_text: heard.into(),
                reason: reason.into(),
                ts_ms: 2_000 + turn as i64,
                events: Vec::new(),
            })
            .expect("fail");
    };
    begin(0);
    finish(0, "All of it.", false, None);
    begin(1);
    finish(1, "Some", true, Some("user_interrupt"));
    begin(2);
    finish(2, "Said in part.", false, Some("tts_failed"));
    begin(3);
    fail(3, "Half a", "speech_crashed");
    begin(4);
    fail(4, "", "llm_timeout");

    let history = app.get_json("/sessions/why/history").await;
    let summary: Vec<(Value, Value, Value)> = history["turns"]
        .as_array()
        .expect("turns")
        .iter()
        .map(|turn| {
            (
                turn["status"].clone(),
                turn["assistant"].clone(),
                turn["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (json!("completed"), json!("All of it."), Value::Null),
            (json!("interrupted"), json!("Some"), json!("user_interrupt")),
            (
                json!("completed"),
                json!("Said in part."),
                json!("tts_failed")
            ),
            (json!("failed"), json!("Half a"), json!("speech_crashed")),
            (json!("failed"), Value::Null, json!("llm_timeout")),
        ],
        "status, heard reply and reason per turn: {history}"
    );
    assert!(
        history["turns"][0]
            .as_object()
            .is_some_and(|turn| turn.contains_key("reason")),
        "a clean turn has \"reason\": null, not a missing key"
    );
    assert_eq!(
        history["turns"][3]["endedMs"], 2_003,
        "a failure that stored heard text has its time"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn history_survives_a_restart() {
    let mut first = serve(&[]).await;
    let reply = first.turn("kept", "remember me").await;
    first
        .server
        .take()
        .expect("running")
        .shutdown()
        .await
        .expect("clean shutdown");
    let data_dir = first.dir.path().to_string_lossy().into_owned();
    let second = serve(&[("KOTODAMA_DATA_DIR", data_dir.as_str())]).await;
    let history = second.get_json("/sessions/kept/history").await;
    assert_eq!(
        turn_numbers(&history),
        [0],
        "the turn is read from the file"
    );
    assert_eq!(history["turns"][0]["user"], "remember me");
    assert_eq!(history["turns"][0]["assistant"], reply);
    second.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_clear_codes() {
    let app = serve(&[]).await;
    let long = "x".repeat(65);
    for path in [
        "/sessions/bad%20id!/history".to_owned(),
        format!("/sessions/{long}/history"),
        "/sessions/%FF/history".to_owned(),
    ] {
        expect_error(
            app.get(&path).send().await.unwrap(),
            400,
            "invalid_session_id",
        )
        .await;
    }
    for query in [
        "limit=0",
        "limit=201",
        "limit=ten",
        "limit=-1",
        "before=-1",
        "before=x",
    ] {
        expect_error(
            app.get(&format!("/sessions/s/history?{query}"))
                .send()
                .await
                .unwrap(),
            400,
            "invalid_request",
        )
        .await;
    }
    let response = app
        .get("/sessions/s/history?limit=abc")
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("limit must be an integer from 1 to 200")),
        "the message says what is allowed: {body}"
    );
    for query in ["limit=0", "limit=501", "limit=many"] {
        expect_error(
            app.get(&format!("/sessions?{query}")).send().await.unwrap(),
            400,
            "invalid_request",
        )
        .await;
    }
    expect_error(
        app.post("/sessions").send().await.unwrap(),
        405,
        "invalid_request",
    )
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn history_and_sessions_need_the_token() {
    let app = serve(&[]).await;
    app.turn("private", "secret plans").await;
    for path in ["/sessions", "/sessions/private/history"] {
        let url = format!("{}{path}", app.base);
        expect_error(
            app.client.get(&url).send().await.unwrap(),
            401,
            "unauthorized",
        )
        .await;
        expect_error(
            app.client
                .get(&url)
                .bearer_auth("wrong-token-0123456789")
                .send()
                .await
                .unwrap(),
            401,
            "unauthorized",
        )
        .await;
    }
    let with_query_token = app
        .client
        .get(format!(
            "{}/sessions/private/history?token={TOKEN}",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        with_query_token.status(),
        200,
        "the token in the query works as on every route (the panel's WebSocket way)"
    );
    app.shutdown().await;
}

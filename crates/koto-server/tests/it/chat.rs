//! `POST /chat/stream`, `/control/stop`, `/health`, `/ready` against the mock LLM.

use serde_json::{Value, json};

use crate::{expect_error, read_sse, serve};

#[tokio::test]
async fn a_turn_streams_in_contract_order() {
    let app = serve(&[]).await;
    let response = app
        .chat(json!({"sessionId":"live-001","content":"hello there","meta":{"lang":"en"}}))
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"),
        "SSE content type"
    );
    let frames = read_sse(response).await;
    let names: Vec<&str> = frames.iter().map(|f| f.event.as_str()).collect();
    let deltas = names.iter().filter(|n| **n == "text-delta").count();
    assert!(deltas >= 3, "the mock streams several deltas: {names:?}");
    assert_eq!(names.last(), Some(&"done"), "done is last");
    assert_eq!(
        names.iter().filter(|n| **n == "done").count(),
        1,
        "done exactly once"
    );
    let eos: Vec<bool> = frames
        .iter()
        .filter(|f| f.event == "text-delta")
        .map(|f| f.data["eos"] == true)
        .collect();
    assert_eq!(eos.iter().filter(|e| **e).count(), 1, "one eos delta");
    assert!(
        eos.last().copied().unwrap(),
        "the eos delta is the last delta"
    );
    let stats = &frames.last().unwrap().data["stats"];
    assert_eq!(
        stats["tokens"].as_u64().unwrap() as usize,
        deltas - 1,
        "tokens = LLM deltas (eos excluded)"
    );
    assert!(stats["ttft_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(stats["interrupted"], false);
    app.shutdown().await;
}

#[tokio::test]
async fn turns_are_numbered_and_duplicates_conflict() {
    let app = serve(&[]).await;
    read_sse(
        app.chat(json!({"sessionId":"s","content":"a","turn":5}))
            .await,
    )
    .await;
    expect_error(
        app.chat(json!({"sessionId":"s","content":"b","turn":5}))
            .await,
        409,
        "turn_exists",
    )
    .await;
    let ok = app.chat(json!({"sessionId":"s","content":"c"})).await;
    assert_eq!(ok.status(), 200, "automatic turn after 5 is accepted");
    read_sse(ok).await;
    app.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_clear_codes_and_the_server_keeps_serving() {
    let app = serve(&[("MAX_CONTENT_CHARS", "10")]).await;
    let raw = |body: &'static str| {
        app.post("/chat/stream")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    expect_error(raw("{not json").await.unwrap(), 400, "invalid_json").await;
    expect_error(raw("[1,2]").await.unwrap(), 400, "invalid_request").await;
    expect_error(
        raw(r#"{"sessionId":"s"}"#).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    expect_error(
        raw(r#"{"sessionId":"s","content":7}"#).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    let cases = [
        (
            json!({"sessionId":"bad id!","content":"x"}),
            400,
            "invalid_session_id",
        ),
        (
            json!({"sessionId":"","content":"x"}),
            400,
            "invalid_session_id",
        ),
        (
            json!({"sessionId":"x".repeat(65),"content":"x"}),
            400,
            "invalid_session_id",
        ),
        (
            json!({"sessionId":"s","content":"x","turn":-1}),
            400,
            "invalid_turn",
        ),
        (
            json!({"sessionId":"s","content":"x","turn":"1"}),
            400,
            "invalid_turn",
        ),
        (
            json!({"sessionId":"s","content":"x","type":"SHOUT"}),
            400,
            "invalid_type",
        ),
        (
            json!({"sessionId":"s","content":"   "}),
            400,
            "empty_content",
        ),
        (
            json!({"sessionId":"s","content":"x".repeat(11)}),
            400,
            "content_too_long",
        ),
        (
            json!({"sessionId":"s","content":"dance","type":"COMMAND"}),
            400,
            "unknown_command",
        ),
    ];
    for (body, status, code) in cases {
        expect_error(app.chat(body).await, status, code).await;
    }
    let huge = format!(r#"{{"sessionId":"s","content":"{}"}}"#, "x".repeat(100_000));
    expect_error(
        app.post("/chat/stream").body(huge).send().await.unwrap(),
        413,
        "payload_too_large",
    )
    .await;
    expect_error(
        app.client
            .get(format!("{}/nope", app.base))
            .bearer_auth(crate::TOKEN)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    let still = app.chat(json!({"sessionId":"s","content":"ok"})).await;
    assert_eq!(
        still.status(),
        200,
        "the server still serves after all that"
    );
    read_sse(still).await;
    assert!(
        app.client
            .get(format!("{}/ready", app.base))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    app.shutdown().await;
}

#[tokio::test]
async fn commands_answer_as_sse() {
    let app = serve(&[]).await;
    let frames = read_sse(
        app.chat(json!({"sessionId":"s","content":"stop","type":"COMMAND"}))
            .await,
    )
    .await;
    assert_eq!(
        frames.iter().map(|f| f.event.as_str()).collect::<Vec<_>>(),
        ["control", "done"]
    );
    let frames = read_sse(
        app.chat(json!({"sessionId":"s","content":"reset","type":"COMMAND"}))
            .await,
    )
    .await;
    assert_eq!(frames.last().unwrap().event, "done");
    let said = read_sse(
        app.chat(json!({"sessionId":"s","content":"say hello there","type":"COMMAND"}))
            .await,
    )
    .await;
    assert_eq!(
        said[0].data["content"], "hello there",
        "say speaks its text verbatim, no LLM"
    );
    assert_eq!(said.last().unwrap().event, "done");
    app.shutdown().await;
}

#[tokio::test]
async fn control_stop_interrupts_a_running_turn() {
    let app = serve(&[("MOCK_LLM_TOKEN_MS", "200")]).await;
    let mut response = app.chat(json!({"sessionId":"s","content":"talk"})).await;
    let first = response.chunk().await.unwrap().expect("first bytes");
    assert!(
        String::from_utf8_lossy(&first).contains("text-delta"),
        "the turn is streaming"
    );
    let answer: serde_json::Value = app
        .post("/control/stop")
        .json(&json!({"sessionId":"s"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["stopped"], json!([0]), "turn 0 was stopped");
    let mut rest = String::from_utf8_lossy(&first).into_owned();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    let frames = crate::parse_sse(&rest);
    let control = frames
        .iter()
        .find(|f| f.event == "control")
        .expect("a control event");
    let written: String = frames
        .iter()
        .filter(|f| f.event == "text-delta")
        .map(|f| f.data["content"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        control.data,
        json!({"action":"STOPPED","reason":"user_interrupt","heard":written}),
        "text only: what was heard is what was delivered"
    );
    assert_eq!(frames.last().unwrap().data["stats"]["interrupted"], true);
    expect_error(
        app.post("/control/stop")
            .json(&json!({"sessionId":"no way"}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_session_id",
    )
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn flags_are_visible_over_http() {
    let app = serve(&[
        ("ENABLE_SYNC_CORE", "false"),
        ("SYNC_TTS_BARGE_IN", "false"),
    ])
    .await;
    expect_error(
        app.chat(json!({"sessionId":"s","content":"hi"})).await,
        503,
        "sync_core_disabled",
    )
    .await;
    expect_error(
        app.post("/control/stop")
            .json(&json!({"sessionId":"s"}))
            .send()
            .await
            .unwrap(),
        409,
        "barge_in_disabled",
    )
    .await;
    let health = app.health().await;
    assert_eq!(health["flags"]["ENABLE_SYNC_CORE"], false);
    assert_eq!(health["flags"]["SYNC_TTS_BARGE_IN"], false);
    app.shutdown().await;
}

#[tokio::test]
async fn health_reports_providers_flags_and_db() {
    let app = serve(&[]).await;
    let response = app
        .client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "health needs no token");
    let health: serde_json::Value = response.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["llm"]["provider"], "mock");
    assert_eq!(health["db"]["ok"], true);
    assert_eq!(
        health["db"]["journalMode"], "wal",
        "SQLite runs in WAL mode"
    );
    assert_eq!(health["flags"]["ENABLE_SYNC_CORE"], true);
    app.shutdown().await;
}

#[tokio::test]
async fn a_session_flood_is_rate_limited() {
    let app = serve(&[("INPUT_RATE_PER_SEC", "0.01"), ("INPUT_BURST", "2")]).await;
    for _ in 0..2 {
        read_sse(app.chat(json!({"sessionId":"flood","content":"hi"})).await).await;
    }
    let limited = app.chat(json!({"sessionId":"flood","content":"hi"})).await;
    assert!(
        limited.headers().contains_key("retry-after"),
        "says when to retry"
    );
    expect_error(limited, 429, "rate_limited").await;
    let other = app.chat(json!({"sessionId":"calm","content":"hi"})).await;
    assert_eq!(other.status(), 200, "other sessions are not limited");
    read_sse(other).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_second_start_on_a_busy_port_leaves_the_running_turns_alone() {
    let app = serve(&[("MOCK_LLM_TOKEN_MS", "100")]).await;
    let mut response = app.chat(json!({"sessionId":"s","content":"talk"})).await;
    let first = response.chunk().await.unwrap().expect("first bytes");
    assert!(
        String::from_utf8_lossy(&first).contains("text-delta"),
        "the turn is streaming (its row is open in the database)"
    );

    let addr = app.server.as_ref().unwrap().addr.to_string();
    let data_dir = app.dir.path().to_string_lossy().into_owned();
    let mut raw = koto_server::config::RawConfig::default();
    raw.merge_env(|name| match name {
        "KOTODAMA_BIND" => Some(addr.clone()),
        "KOTODAMA_DATA_DIR" => Some(data_dir.clone()),
        "KOTODAMA_TOKEN" => Some(crate::TOKEN.to_owned()),
        "SYNC_TTS_STREAMING" => Some("false".to_owned()),
        _ => None,
    });
    let second = koto_server::start(raw.build().unwrap()).await;
    assert!(
        matches!(second, Err(koto_server::StartError::PortInUse { .. })),
        "the second instance fails on the port: {second:?}"
    );

    let mut rest = String::from_utf8_lossy(&first).into_owned();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    let frames = crate::parse_sse(&rest);
    let done = frames.last().unwrap();
    assert_eq!(done.event, "done");
    assert!(
        frames.iter().all(|frame| frame.event != "error"),
        "the first instance's turn was not abandoned under it: {frames:?}"
    );
    assert_eq!(done.data["stats"]["interrupted"], false);
    app.shutdown().await;
}

/// A full disk (SQLite's `SQLITE_FULL` on the real file, through a page cap): an input that
/// cannot be stored is refused with 507 and a sentence saying what to do, the app keeps
/// running, everything stored before is intact, and the next input works once there is room.
#[tokio::test]
async fn a_full_disk_refuses_the_input_in_words_and_loses_nothing() {
    let app = serve(&[
        ("INPUT_RATE_PER_SEC", "100000"),
        ("INPUT_BURST", "100000"),
        ("INPUT_GLOBAL_RATE_PER_SEC", "100000"),
        ("INPUT_GLOBAL_BURST", "100000"),
    ])
    .await;
    let frames = read_sse(
        app.chat(json!({"sessionId":"disk","content":"before"}))
            .await,
    )
    .await;
    assert_eq!(frames.last().map(|f| f.event.as_str()), Some("done"));
    let store = app.server.as_ref().unwrap().engine.store().clone();
    store.fill_disk_for_tests(true).unwrap();
    let long = "y".repeat(3_900);
    // The user row is written beside the LLM's first token, the reply at the end: whichever
    // write does not fit, the turn says so in words (507 before the stream, or its SSE error).
    let mut refusal = None;
    for _ in 0..200 {
        let response = app.chat(json!({"sessionId":"disk","content": long})).await;
        if response.status() != 200 {
            assert_eq!(response.status(), 507);
            let body = response.json::<Value>().await.unwrap();
            refusal = Some(body["error"]["message"].as_str().unwrap().to_owned());
            break;
        }
        let frames = read_sse(response).await;
        if let Some(error) = frames.iter().find(|f| f.event == "error") {
            assert_eq!(error.data["code"], "storage_error", "{frames:?}");
            refusal = Some(error.data["message"].as_str().unwrap().to_owned());
            break;
        }
    }
    let message = refusal.expect("the capped database fills up");
    assert!(
        message.contains("disk") && message.contains("Free some space"),
        "{message}"
    );
    assert_eq!(app.health().await["status"], "ok", "the app keeps running");

    store.fill_disk_for_tests(false).unwrap();
    let frames = read_sse(
        app.chat(json!({"sessionId":"disk","content":"after"}))
            .await,
    )
    .await;
    assert_eq!(
        frames.last().map(|f| f.event.as_str()),
        Some("done"),
        "{frames:?}"
    );
    let history = app
        .client
        .get(format!("{}/sessions/disk/history", app.base))
        .bearer_auth(crate::TOKEN)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let text = history.to_string();
    assert!(
        text.contains("\"before\"") && text.contains("\"after\""),
        "{text}"
    );
}

/// Another program holding the database's write lock past the busy timeout (a backup, a
/// database viewer): the turn says so in words, the app keeps running, and once the lock is
/// gone the next input is stored, with everything before it intact.
#[tokio::test]
async fn a_database_locked_by_another_program_is_said_in_words_and_loses_nothing() {
    let app = serve(&[]).await;
    let frames = read_sse(
        app.chat(json!({"sessionId":"locked","content":"before"}))
            .await,
    )
    .await;
    assert_eq!(frames.last().map(|f| f.event.as_str()), Some("done"));
    let db = app.dir.path().join("kotodama.sqlite3");
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let response = app
        .chat(json!({"sessionId":"locked","content":"while locked"}))
        .await;
    let message = if response.status() == 200 {
        let frames = read_sse(response).await;
        let error = frames
            .iter()
            .find(|f| f.event == "error")
            .unwrap_or_else(|| panic!("the locked write is an error: {frames:?}"));
        assert_eq!(error.data["code"], "storage_error");
        error.data["message"].as_str().unwrap().to_owned()
    } else {
        assert_eq!(response.status(), 503);
        let body = response.json::<Value>().await.unwrap();
        body["error"]["message"].as_str().unwrap().to_owned()
    };
    assert!(message.contains("locked by another program"), "{message}");
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    assert_eq!(app.health().await["status"], "ok", "the app keeps running");
    let frames = read_sse(
        app.chat(json!({"sessionId":"locked","content":"after"}))
            .await,
    )
    .await;
    assert_eq!(
        frames.last().map(|f| f.event.as_str()),
        Some("done"),
        "{frames:?}"
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: Vec<String> = conn
        .prepare("SELECT text FROM turns WHERE sessionId = 'locked' AND role = 'user' AND status = 'done' ORDER BY turn")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(stored, ["before", "after"]);
}

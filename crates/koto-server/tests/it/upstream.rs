//! The app with the real OpenAI-compatible client against the loopback fake upstream.

use std::time::Duration;

use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript, FakeStream};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::json;

use crate::{read_sse, serve};

async fn serve_with(fake: &FakeOpenAi, extra: &[(&str, &str)]) -> crate::TestServer {
    let base_url = fake.base_url();
    let mut overrides = vec![
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", base_url.as_str()),
        ("LLM_MODEL", "fake-model"),
    ];
    overrides.extend_from_slice(extra);
    serve(&overrides).await
}

#[tokio::test]
async fn upstream_deltas_reach_the_client_and_the_prompt_holds_the_context() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::tokens([
        "你好", "，", "世界", "。",
    ])))
    .await;
    let app = serve_with(&fake, &[("SYSTEM_PROMPT", "persona here")]).await;
    let frames = read_sse(app.chat(json!({"sessionId":"s","content":"第一句"})).await).await;
    let text: String = frames
        .iter()
        .filter(|f| f.event == "text-delta")
        .map(|f| f.data["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        text, "你好，世界。",
        "deltas arrive intact, multi-byte characters included"
    );
    read_sse(app.chat(json!({"sessionId":"s","content":"第二句"})).await).await;
    let second = &fake.requests()[1];
    assert_eq!(second["model"], "fake-model");
    assert_eq!(second["stream"], true);
    let messages: Vec<(String, String)> = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("system", "persona here"),
        ("user", "第一句"),
        ("assistant", "你好，世界。"),
        ("user", "第二句"),
    ];
    assert_eq!(
        messages,
        expected.map(|(r, c)| (r.to_owned(), c.to_owned())),
        "system + window + input"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn an_upstream_error_is_an_error_event_then_done_never_mock_text() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::error(401, "bad key"))).await;
    let app = serve_with(&fake, &[]).await;
    let frames = read_sse(app.chat(json!({"sessionId":"s","content":"hi"})).await).await;
    let names: Vec<&str> = frames.iter().map(|f| f.event.as_str()).collect();
    assert_eq!(names, ["error", "done"], "no text was invented");
    assert_eq!(frames[0].data["code"], "llm_auth");
    app.shutdown().await;
}

#[tokio::test]
async fn a_silent_upstream_times_out_with_a_clear_code() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::Hang)).await;
    let app = serve_with(
        &fake,
        &[("LLM_REQUEST_TIMEOUT", "0.2"), ("LLM_MAX_RETRIES", "0")],
    )
    .await;
    let frames = read_sse(app.chat(json!({"sessionId":"s","content":"hi"})).await).await;
    assert_eq!(frames[0].event, "error");
    assert_eq!(frames[0].data["code"], "llm_timeout");
    assert_eq!(frames.last().unwrap().event, "done");
    let health = app
        .client
        .get(format!("{}/ready", app.base))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success(), "the server keeps serving");
    app.shutdown().await;
}

#[tokio::test]
async fn a_client_disconnect_closes_the_upstream_request() {
    let slow = FakeStream::new((0..400).map(|n| format!("w{n} ")))
        .with_token_gap(Duration::from_millis(20));
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::Stream(slow))).await;
    let app = serve_with(&fake, &[]).await;
    let mut response = app
        .chat(json!({"sessionId":"s","content":"talk a lot"}))
        .await;
    let first = response.chunk().await.unwrap().expect("streaming started");
    assert!(String::from_utf8_lossy(&first).contains("text-delta"));
    drop(response);
    // Event-driven: the fake tells us when it saw the connection close (bounded by the test runner).
    fake.wait_for_disconnects(1).await;
    assert!(
        fake.disconnects() >= 1,
        "the upstream saw the request go away"
    );
    app.shutdown().await;
}

/// What an upstream might send as `retry-after`: numbers of every size and form, HTTP-dates,
/// garbage. Values the client would really wait out (50 ms to 5 s) are left out: they are
/// ordinary, and waiting is not what this test is about.
fn retry_after_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| format!("{n:e}")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u128>().prop_map(|n| n.to_string()),
        "[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
        "[!-~][ -~]{0,20}",
        prop::sample::select(vec!["1e300", "-1", "NaN", "inf", "1e-300", "0"])
            .prop_map(str::to_owned),
    ]
    .prop_filter("a wait the client would sit out", |text| {
        koto_providers::retry_after::parse_seconds(text)
            .is_none_or(|wait| wait < Duration::from_millis(50) || wait > Duration::from_secs(5))
    })
}

/// Any `retry-after` on a 429 ends the turn with `done` (a `1e300` used to panic the turn
/// task: no `done`, the row left open), with the retry's reply or `llm_rate_limited`.
#[test]
fn any_retry_after_from_the_upstream_ends_the_turn_with_done() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let turn_ends = |retry_after: String| {
        let frames = runtime.block_on(async {
            let fake = FakeOpenAi::start(FakeScript::sequence(vec![
                FakeResponse::rate_limited_with(&retry_after),
                FakeResponse::reply("Back again."),
            ]))
            .await;
            let app = serve_with(&fake, &[("LLM_MAX_RETRIES", "1")]).await;
            let frames = read_sse(app.chat(json!({"sessionId":"s","content":"hi"})).await).await;
            // The row's ending may be written just after `done`: poll, bounded.
            let mut status = serde_json::Value::Null;
            for _ in 0..200 {
                let history: serde_json::Value = app
                    .client
                    .get(format!("{}/sessions/s/history", app.base))
                    .bearer_auth(crate::TOKEN)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                status = history["turns"][0]["status"].clone();
                if status != "open" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            app.shutdown().await;
            (frames, status)
        });
        let (frames, status) = frames;
        let names: Vec<&str> = frames.iter().map(|f| f.event.as_str()).collect();
        prop_assert_eq!(
            names.last().copied(),
            Some("done"),
            "retry-after {:?}: {:?}",
            retry_after,
            names
        );
        if let Some(error) = frames.iter().find(|f| f.event == "error") {
            prop_assert_eq!(
                &error.data["code"],
                "llm_rate_limited",
                "retry-after {:?}",
                retry_after
            );
        }
        prop_assert!(
            status == "completed" || status == "failed",
            "retry-after {:?}: the turn row is closed, not left open: {}",
            retry_after,
            status
        );
        Ok(())
    };
    // The values of the report first, then random ones.
    for retry_after in [
        "1e300",
        "-1",
        "NaN",
        "inf",
        "Wed, 21 Oct 2015 07:28:00 GMT",
        "soon",
    ] {
        if let Err(failure) = turn_ends(retry_after.to_owned()) {
            panic!("{failure}");
        }
    }
    if let Err(failure) = runner.run(&retry_after_text(), turn_ends) {
        panic!("{failure}");
    }
}

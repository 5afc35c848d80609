//! Events end to end in embedded mode (no Redis): `/stats`, `/metrics`, and a fact from an old
//! session recalled into a new session's prompt (ENABLE_LTM_INLINE).

use std::time::Duration;

use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript};
use serde_json::{Value, json};

use crate::{TOKEN, read_sse, serve};

#[tokio::test]
async fn stats_and_metrics_reflect_finished_turns() {
    let app = serve(&[]).await;
    for n in 0..3 {
        read_sse(
            app.chat(json!({"sessionId":"st","content":format!("hello {n}")}))
                .await,
        )
        .await;
    }
    // The analytics worker consumes the outbox in the background: wait for it, bounded.
    let stats = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let stats: Value = app
                .client
                .get(format!("{}/stats", app.base))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if stats.to_string().contains("\"st\"") && stats["global"]["turns"].as_u64() >= Some(3)
            {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the analytics worker counted the turns");
    assert_eq!(
        stats["global"]["turns"], 3,
        "three turns counted once each: {stats}"
    );

    let response = app
        .client
        .get(format!("{}/metrics", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for metric in [
        "koto_engine_ttft_seconds_bucket",
        "koto_engine_turns_total",
        "koto_outbox_backlog",
        "koto_relay_stops_total",
    ] {
        assert!(text.contains(metric), "/metrics exposes {metric}");
    }
    let unauthorised = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401, "metrics need the token too");
    app.shutdown().await;
}

#[tokio::test]
async fn a_fact_from_an_old_session_is_recalled_into_a_new_sessions_prompt() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::tokens(["Noted", "."]))).await;
    let base_url = fake.base_url();
    let app = serve(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", base_url.as_str()),
        ("ENABLE_LTM_INLINE", "true"),
        ("LTM_INLINE_BUDGET_MS", "2000"),
    ])
    .await;
    read_sse(
        app.chat(
            json!({"sessionId":"old-show","content":"My cat is called Mochi and she loves tuna."}),
        )
        .await,
    )
    .await;
    // The LTM worker stores the memory asynchronously; ask until the prompt carries it (bounded).
    let recalled = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            read_sse(
                app.chat(json!({"sessionId":"new-show","content":"What is my cat called?"}))
                    .await,
            )
            .await;
            let last = fake.requests().pop().unwrap();
            // Recalled memories go with the new input, in the last user message.
            let system: Vec<String> = last["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["role"] == "user")
                .map(|m| m["content"].as_str().unwrap().to_owned())
                .collect();
            if system.iter().any(|content| content.contains("Mochi")) {
                return system;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the memory reached the new session's prompt");
    assert!(
        recalled.iter().any(|c| c.contains("tuna")),
        "the whole remembered turn: {recalled:?}"
    );
    app.shutdown().await;
}

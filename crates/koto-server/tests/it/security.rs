//! Token, Origin and Host checks (CONTRACTS §3).

use serde_json::json;

use crate::{TOKEN, expect_error, serve};

#[tokio::test]
async fn token_is_required_except_for_health() {
    let app = serve(&[]).await;
    let url = format!("{}/chat/stream", app.base);
    let body = json!({"sessionId":"s","content":"hi"});
    expect_error(
        app.client.post(&url).json(&body).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        app.client
            .post(&url)
            .bearer_auth("wrong-token-000000")
            .json(&body)
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let via_query = app
        .client
        .post(format!("{url}?token={TOKEN}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        via_query.status(),
        200,
        "?token= works for clients that cannot set headers"
    );
    crate::read_sse(via_query).await;
    assert_eq!(
        app.client
            .get(format!("{}/health", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.shutdown().await;
}

#[tokio::test]
async fn foreign_origins_and_hosts_are_refused() {
    let app = serve(&[("KOTODAMA_ALLOWED_ORIGINS", "https://studio.example")]).await;
    let body = json!({"sessionId":"s","content":"hi"});
    let with_origin = |origin: &str| {
        app.post("/chat/stream")
            .header("origin", origin)
            .json(&body)
            .send()
    };
    expect_error(
        with_origin("https://evil.example").await.unwrap(),
        403,
        "forbidden_origin",
    )
    .await;
    expect_error(with_origin("null").await.unwrap(), 403, "forbidden_origin").await;
    let own = with_origin(&app.base).await.unwrap();
    assert_eq!(own.status(), 200, "the app's own origin is allowed");
    crate::read_sse(own).await;
    let configured = with_origin("https://studio.example").await.unwrap();
    assert_eq!(configured.status(), 200, "a configured origin is allowed");
    crate::read_sse(configured).await;
    let rebinding = app
        .post("/chat/stream")
        .header("host", "attacker.example:8000")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(rebinding, 403, "forbidden_host").await;
    let health = app
        .client
        .get(format!("{}/health", app.base))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.status(),
        403,
        "even /health refuses a rebinding Host"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn generated_token_is_stored_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut raw = koto_server::config::RawConfig::default();
    raw.set("bind", "127.0.0.1:0");
    raw.set("data_dir", dir.path().to_string_lossy());
    let server = koto_server::start(raw.build().unwrap()).await.unwrap();
    let stored = std::fs::read_to_string(dir.path().join("token")).unwrap();
    assert_eq!(
        stored.trim(),
        server.token.expose(),
        "the token in use is the one kept on disk"
    );
    assert!(stored.trim().len() >= 32, "long enough to guess never");
    server.shutdown().await.unwrap();
}

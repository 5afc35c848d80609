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

#[tokio::test]
async fn a_listed_origin_gets_cors_and_its_preflight_needs_no_token() {
    const STUDIO: &str = "https://studio.example";
    let app = serve(&[("KOTODAMA_ALLOWED_ORIGINS", STUDIO)]).await;
    let preflight = |origin: &str| {
        app.client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/control/stop", app.base),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let answer = preflight(STUDIO).await.unwrap();
    assert_eq!(answer.status(), 204, "no token on a preflight");
    let headers = answer.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    assert_eq!(header("access-control-allow-origin"), STUDIO);
    assert!(header("access-control-allow-methods").contains("post"));
    assert!(header("access-control-allow-methods").contains("put"));
    assert!(header("access-control-allow-headers").contains("authorization"));
    assert!(header("access-control-allow-headers").contains("content-type"));
    assert!(header("vary").contains("origin"));

    let call = app
        .post("/control/stop")
        .header("origin", STUDIO)
        .json(&json!({"sessionId":"s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), 200);
    assert_eq!(
        call.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some(STUDIO),
        "the actual response names the origin"
    );
    let without_token = app
        .client
        .get(format!("{}/stats", app.base))
        .header("origin", STUDIO)
        .send()
        .await
        .unwrap();
    assert_eq!(
        without_token.status(),
        401,
        "CORS is no way around the token"
    );
    assert!(
        without_token
            .headers()
            .contains_key("access-control-allow-origin"),
        "but the page may read why"
    );

    let foreign = preflight("https://evil.example").await.unwrap();
    assert_eq!(foreign.status(), 403, "an unlisted origin stays refused");
    assert!(
        !foreign
            .headers()
            .contains_key("access-control-allow-origin")
    );
    let no_origin = app
        .post("/control/stop")
        .json(&json!({"sessionId":"s"}))
        .send();
    let no_origin = no_origin.await.unwrap();
    assert_eq!(no_origin.status(), 200);
    assert!(
        !no_origin
            .headers()
            .contains_key("access-control-allow-origin"),
        "no Origin, no CORS headers"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_body_trickled_past_the_read_timeout_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = serve(&[("BODY_READ_TIMEOUT", "0.3")]).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let (mut reader, mut writer) = tokio::net::TcpStream::connect(&addr)
        .await
        .unwrap()
        .into_split();
    let body = json!({"sessionId":"slow","content":"a".repeat(200)}).to_string();
    let head = format!(
        "POST /chat/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    // One byte every 50 ms: the whole body would take over 10 s, far past the 0.3 s deadline.
    let trickle = tokio::spawn(async move {
        for byte in body.into_bytes() {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&answer).contains("request_timeout") {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        !trickle.is_finished(),
        "answered while the body was still trickling"
    );
    trickle.abort();
    assert!(read.is_ok(), "an answer within 10 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    app.shutdown().await;
}

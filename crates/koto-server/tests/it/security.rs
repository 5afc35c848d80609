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

#[tokio::test]
async fn health_without_the_token_names_no_path() {
    let app = serve(&[]).await;
    let data_dir = app.dir.path().to_string_lossy().into_owned();
    let public = app.health().await;
    let text = public.to_string();
    assert!(!text.contains(&data_dir), "no data dir in {text}");
    if let Some(home) = std::env::var_os("HOME").filter(|home| home.len() > 1) {
        assert!(
            !text.contains(home.to_string_lossy().as_ref()),
            "no home folder in {text}"
        );
    }
    assert!(
        public["db"].get("path").is_none(),
        "no database path: {}",
        public["db"]
    );
    assert_eq!(
        public["db"]["ok"], true,
        "the database's health is still shown"
    );
    assert_eq!(public["status"], "ok");
    let with_token: serde_json::Value = app
        .client
        .get(format!("{}/health", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        with_token["db"]["path"]
            .as_str()
            .is_some_and(|path| path.starts_with(&data_dir)),
        "the token's holder sees where the database is: {}",
        with_token["db"]
    );
    app.shutdown().await;
}

#[tokio::test]
async fn token_rotate_replaces_the_token_of_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut raw = koto_server::config::RawConfig::default();
    raw.set("bind", "127.0.0.1:0");
    raw.set("data_dir", dir.path().to_string_lossy());
    let server = koto_server::start(raw.build().unwrap()).await.unwrap();
    let old = server.token.expose().to_owned();
    let client = reqwest::Client::new();
    let sessions = format!("{}/sessions", server.base_url());
    let status_with = |token: String| {
        let request = client.get(&sessions).bearer_auth(token).send();
        async move { request.await.unwrap().status().as_u16() }
    };
    assert_eq!(status_with(old.clone()).await, 200, "the first token works");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kotodama"))
        .args(["token", "rotate", "--data-dir"])
        .arg(dir.path())
        .env_remove("KOTODAMA_TOKEN")
        .env_remove("KOTODAMA_DATA_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token_file = dir.path().join("token");
    assert!(
        stdout.contains(&token_file.display().to_string()),
        "it says where the token is: {stdout}"
    );
    let new = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_ne!(new, old, "a new token");
    assert!(new.len() >= 32, "as long as a generated one");
    assert!(!stdout.contains(&new), "the token itself is not printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "still readable by its owner only");
    }
    assert_eq!(
        status_with(old).await,
        401,
        "the old token is refused without a restart"
    );
    assert_eq!(
        status_with(new.clone()).await,
        200,
        "the new one is accepted at once"
    );
    server.shutdown().await.unwrap();

    // After a restart the server reads the rotated token.
    let mut raw = koto_server::config::RawConfig::default();
    raw.set("bind", "127.0.0.1:0");
    raw.set("data_dir", dir.path().to_string_lossy());
    let restarted = koto_server::start(raw.build().unwrap()).await.unwrap();
    assert_eq!(restarted.token.expose(), new, "kept across a restart");
    restarted.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_token_set_by_config_ignores_a_rotated_file() {
    let app = serve(&[]).await;
    koto_server::security::rotate_token(app.dir.path()).unwrap();
    let answer = app
        .client
        .get(format!("{}/sessions", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "KOTODAMA_TOKEN stays the token");
    app.shutdown().await;
}

#[test]
fn the_default_bind_is_loopback() {
    let config = koto_server::config::RawConfig::default()
        .build()
        .expect("the defaults build");
    assert_eq!(
        config.bind,
        "127.0.0.1:8000".parse().unwrap(),
        "nothing beyond this machine by default"
    );
}

#[test]
fn the_desktop_pages_csp_allows_no_inline_code_or_connections() {
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../src-tauri/tauri.conf.json");
    let conf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let security = &conf["app"]["security"];
    let csp = security["csp"].as_str().expect("a CSP is set");
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    for wanted in [
        "default-src 'self'",
        "script-src 'self'",
        "connect-src 'none'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ] {
        assert!(directives.contains(&wanted), "{wanted} in {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval") && !csp.contains('*'),
        "no inline code, no eval, no wildcard: {csp}"
    );
    assert_eq!(security["freezePrototype"], true);
    assert!(
        conf["app"]["windows"].as_array().is_some_and(Vec::is_empty),
        "no window from config: the panel window and its capability are built in code"
    );
}

//! The web UI's routes (`/`, `/overlay`, `/ui/*`) and the settings API (`GET/PUT /settings`),
//! over real HTTP; and `kotodama serve` reading the saved settings at start.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::{TOKEN, TestServer, expect_error, serve, settings_entry};

async fn get(app: &TestServer, path: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

/// `import … from './x.js'` targets of a module, as `/ui/js/x.js` paths.
fn imports(module: &str) -> Vec<String> {
    module
        .lines()
        .filter(|line| line.starts_with("import "))
        .filter_map(|line| line.split("from '").nth(1))
        .filter_map(|rest| rest.split('\'').next())
        .map(|relative| format!("/ui/js/{}", relative.trim_start_matches("./")))
        .collect()
}

#[tokio::test]
async fn pages_and_assets_load_without_the_token_and_with_a_strict_csp() {
    let app = serve(&[]).await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/overlay", "text/html"),
        // A wrong token must still get the page, so it can say what is wrong.
        ("/overlay?token=wrong-token-000000", "text/html"),
        ("/ui/css/panel.css", "text/css"),
        ("/ui/icon.svg", "image/svg+xml"),
    ] {
        let response = get(&app, path).await;
        assert_eq!(response.status(), 200, "{path} is public");
        assert!(
            header(&response, "content-type").starts_with(kind),
            "{path}"
        );
        assert_eq!(
            header(&response, "cache-control"),
            "no-cache",
            "{path} is revalidated after an upgrade"
        );
        let csp = header(&response, "content-security-policy");
        assert!(
            csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
            "{path}: no inline or foreign scripts: {csp}"
        );
        assert!(
            !csp.contains("unsafe-inline"),
            "{path}: the pages need no inline code: {csp}"
        );
        assert_eq!(
            header(&response, "referrer-policy"),
            "no-referrer",
            "{path}: URLs with the token are never sent on"
        );
    }
    // Every module the two pages load, transitively, is served as JavaScript.
    let mut queue = vec!["/ui/js/panel.js".to_owned(), "/ui/js/overlay.js".to_owned()];
    let mut seen = Vec::new();
    while let Some(path) = queue.pop() {
        if seen.contains(&path) {
            continue;
        }
        let response = get(&app, &path).await;
        assert_eq!(response.status(), 200, "{path} is embedded");
        assert!(
            header(&response, "content-type").starts_with("text/javascript"),
            "{path}: modules need a JavaScript type"
        );
        queue.extend(imports(&response.text().await.unwrap()));
        seen.push(path);
    }
    assert!(seen.len() >= 8, "the module graph was followed: {seen:?}");
    expect_error(get(&app, "/ui/js/missing.js").await, 404, "not_found").await;
    app.shutdown().await;
}

#[tokio::test]
async fn apis_behind_the_pages_still_need_the_token() {
    let app = serve(&[]).await;
    for path in ["/settings", "/stats", "/metrics", "/ws/live"] {
        expect_error(get(&app, path).await, 401, "unauthorized").await;
    }
    // The overlay asks this after a refused upgrade: 401 means "token rejected".
    expect_error(
        get(&app, "/ws/live?token=wrong-token-000000&audio=0").await,
        401,
        "unauthorized",
    )
    .await;
    let refused = app
        .client
        .put(format!("{}/settings", app.base))
        .json(&json!({"llm_model": "x"}))
        .send()
        .await
        .unwrap();
    expect_error(refused, 401, "unauthorized").await;
    let posted = app
        .client
        .post(format!("{}/", app.base))
        .send()
        .await
        .unwrap();
    assert_ne!(
        posted.status(),
        200,
        "only GET/HEAD of a page is public, not other methods"
    );
    app.shutdown().await;
}

async fn settings(app: &TestServer) -> Value {
    app.client
        .get(format!("{}/settings", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn put_settings(app: &TestServer, body: Value) -> reqwest::Response {
    app.client
        .put(format!("{}/settings", app.base))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn settings_report_every_bad_key_and_keep_the_old_values() {
    let app = serve(&[("OPENAI_API_KEY", "sk-secret-value")]).await;
    let view = settings(&app).await;
    assert_eq!(
        settings_entry(&view, "openai_api_key")["value"],
        "set",
        "secrets are masked"
    );
    assert!(
        !view.to_string().contains("sk-secret-value") && !view.to_string().contains(TOKEN),
        "no secret in the answer"
    );
    assert_eq!(settings_entry(&view, "llm_model")["value"], "gpt-4o-mini");
    assert!(
        settings_entry(&view, "llm_model")["doc"]
            .as_str()
            .is_some_and(|doc| !doc.is_empty()),
        "docs for the form"
    );

    let refused = put_settings(
        &app,
        json!({"llm_temperature": "9", "stm_context_turns": "many", "llm_model": "changed"}),
    )
    .await;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request");
    assert_eq!(
        body["fields"]["llm_temperature"], "expected 0 to 2",
        "field errors name the range: {body}"
    );
    assert!(
        body["fields"]["stm_context_turns"].is_string(),
        "every failing key, not only the first: {body}"
    );
    assert!(
        body["fields"].get("llm_model").is_none(),
        "a good value is not blamed"
    );
    let saved_file = app.dir.path().join("kotodama.toml");
    assert!(!saved_file.exists(), "a refused change saves nothing");
    assert!(
        settings_entry(&settings(&app).await, "llm_model")["saved"].is_null(),
        "the old settings stay"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn saved_settings_are_private_and_say_which_keys_wait_for_a_restart() {
    let app = serve(&[]).await;
    let saved = put_settings(
        &app,
        json!({"audio_lead_ms": 150, "input_burst": 7, "openai_api_key": "sk-new"}),
    )
    .await;
    assert_eq!(saved.status(), 200);
    let body: Value = saved.json().await.unwrap();
    assert_eq!(
        body["restartRequired"],
        json!(["audio_lead_ms", "input_burst"]),
        "the relay and the limiter are built at start, and the answer says so: {body}"
    );
    assert_eq!(
        body["appliedNow"],
        json!(["openai_api_key"]),
        "the LLM client is rebuilt with the new key"
    );
    assert!(
        body["message"].as_str().unwrap().contains("restart"),
        "{body}"
    );
    let path = app.dir.path().join("kotodama.toml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "it may hold API keys: owner only");
    }
    let view = settings(&app).await;
    let pending: Vec<&str> = view["pendingRestart"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        pending.contains(&"audio_lead_ms")
            && pending.contains(&"input_burst")
            && !pending.contains(&"openai_api_key"),
        "saved but not running yet, and only those: {pending:?}"
    );
    assert_eq!(
        settings_entry(&view, "openai_api_key")["saved"],
        "set",
        "a saved key is masked too"
    );
    assert_eq!(
        settings_entry(&view, "bind")["overriddenBy"]
            .as_str()
            .map(|by| by.contains("KOTODAMA_BIND")),
        Some(true),
        "a value the environment overrides says so"
    );
    let data_dir = app.dir.path().to_path_buf();
    let dir = app.dir;
    if let Some(server) = app.server {
        server.shutdown().await.unwrap();
    }

    // The next start reads the saved file (what `kotodama serve` does).
    let flags = [
        ("data_dir", data_dir.to_string_lossy().into_owned()),
        ("bind", "127.0.0.1:0".to_owned()),
    ];
    let (config, _) = koto_server::config::Config::load_with(None, &flags, |_: &str| None)
        .expect("the saved file is a valid config");
    assert_eq!(config.audio_lead, std::time::Duration::from_millis(150));
    assert_eq!(config.input_burst, 7, "saved keys apply after restart");
    assert_eq!(
        config.openai_api_key.as_ref().map(|key| key.expose()),
        Some("sk-new")
    );
    drop(dir);
}

#[tokio::test]
async fn serve_reads_the_settings_file_in_its_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kotodama.toml"),
        "enable_ltm_inline = \"true\"\nsync_tts_streaming = false\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kotodama"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("KOTODAMA_TOKEN")
        .env_remove("ENABLE_LTM_INLINE")
        .env_remove("SYNC_TTS_STREAMING")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let panel = line.split_whitespace().nth(2).unwrap();
    let url = panel.split("/?").next().unwrap().to_owned();
    let health: Value = reqwest::get(format!("{url}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        health["flags"]["ENABLE_LTM_INLINE"], true,
        "the saved flag is on: {health}"
    );
    assert!(
        health["tts"].is_null(),
        "saved `sync_tts_streaming = false` (a TOML bool) is read too: {health}"
    );
}

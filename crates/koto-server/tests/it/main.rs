//! The whole app over real HTTP on 127.0.0.1:0: routes, SSE, security, the binary itself.

#![allow(clippy::unwrap_used)]

mod audio;
mod binary;
mod chat;
mod chat_sources;
mod events;
mod failover;
mod fuzz_corpus;
mod history;
mod legacy;
mod limits;
mod live;
mod live_chat;
mod panel;
mod platform;
mod security;
mod settings;
mod setup;
mod stop_paths;
mod ui;
mod upstream;
mod voice;
mod vts;

use koto_server::RunningServer;
use koto_server::config::RawConfig;
use serde_json::Value;

pub const TOKEN: &str = "test-token-0123456789";

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub base: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

/// Starts the app with the mock LLM (fast tokens) plus `overrides` (env-style names).
pub async fn serve(overrides: &[(&str, &str)]) -> TestServer {
    serve_with(overrides, None).await
}

/// As [`serve`], embedded like the desktop shell embeds it (`desktop` applies its settings).
pub async fn serve_with(
    overrides: &[(&str, &str)],
    desktop: Option<std::sync::Arc<dyn koto_server::live_settings::DesktopSettings>>,
) -> TestServer {
    serve_saved_with(overrides, "", desktop).await
}

/// As [`serve`], with `saved` (TOML) already in the settings file as the panel saves it: a
/// value there can be changed by a save (an env var would override it).
pub async fn serve_saved(overrides: &[(&str, &str)], saved: &str) -> TestServer {
    serve_saved_with(overrides, saved, None).await
}

async fn serve_saved_with(
    overrides: &[(&str, &str)],
    saved: &str,
    desktop: Option<std::sync::Arc<dyn koto_server::live_settings::DesktopSettings>>,
) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut raw = RawConfig::default();
    if !saved.is_empty() {
        let settings_file = dir.path().join("kotodama.toml");
        std::fs::write(&settings_file, saved).expect("settings file written");
        raw.merge_toml_file(&settings_file)
            .expect("valid settings file");
    }
    let data_dir = dir.path().to_string_lossy().into_owned();
    let mut env: Vec<(String, String)> = vec![
        ("KOTODAMA_BIND".into(), "127.0.0.1:0".into()),
        ("KOTODAMA_DATA_DIR".into(), data_dir),
        ("KOTODAMA_TOKEN".into(), TOKEN.into()),
        ("MOCK_LLM_TOKEN_MS".into(), "1".into()),
        // Most tests are about text; the speech tests turn it back on with short replies.
        ("SYNC_TTS_STREAMING".into(), "false".into()),
    ];
    env.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    raw.merge_env(|name| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    });
    let config = raw.build().expect("valid test config");
    let server = koto_server::start_with(config, desktop)
        .await
        .expect("server starts");
    let base = server.base_url();
    TestServer {
        server: Some(server),
        base,
        client: reqwest::Client::new(),
        dir,
    }
}

impl TestServer {
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
    }

    pub async fn chat(&self, body: Value) -> reqwest::Response {
        self.post("/chat/stream")
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    /// `GET /health` (public: no token) as JSON.
    pub async fn health(&self) -> Value {
        self.client
            .get(format!("{}/health", self.base))
            .send()
            .await
            .expect("health answers")
            .json()
            .await
            .expect("health is JSON")
    }

    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
    }
}

/// One SSE frame: `event:` name and `data:` JSON.
#[derive(Debug, Clone)]
pub struct Frame {
    pub event: String,
    pub data: Value,
}

/// `PUT /settings` as the panel sends it: the status and the answer.
pub async fn put_settings(app: &TestServer, body: Value) -> (u16, Value) {
    let response = app
        .client
        .put(format!("{}/settings", app.base))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("settings answer");
    let status = response.status().as_u16();
    (status, response.json().await.expect("the answer is JSON"))
}

/// [`put_settings`] that must be accepted: the answer.
pub async fn save_settings(app: &TestServer, body: Value) -> Value {
    let (status, answer) = put_settings(app, body).await;
    assert_eq!(status, 200, "saved: {answer}");
    answer
}

/// One key's entry in a `GET /settings` view.
pub fn settings_entry<'a>(view: &'a Value, key: &str) -> &'a Value {
    view["keys"]
        .as_array()
        .expect("the view lists keys")
        .iter()
        .find(|entry| entry["key"] == key)
        .unwrap_or_else(|| panic!("{key} listed"))
}

/// Reads a whole SSE response (until the server closes it) into frames; comments are skipped.
pub async fn read_sse(response: reqwest::Response) -> Vec<Frame> {
    let text = response.text().await.expect("stream read");
    parse_sse(&text)
}

pub fn parse_sse(text: &str) -> Vec<Frame> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = Some(name.trim().to_owned());
                } else if let Some(chunk) = line.strip_prefix("data:") {
                    data.push_str(chunk.trim_start());
                }
            }
            let event = event?;
            Some(Frame {
                event,
                data: serde_json::from_str(&data).expect("data is JSON"),
            })
        })
        .collect()
}

/// Asserts an error answer: status and `error.code`.
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status().as_u16(), status, "status for {code}");
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["error"]["code"], code, "error code in {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "a message explains it"
    );
}

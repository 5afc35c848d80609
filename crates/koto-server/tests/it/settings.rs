//! Saved settings that apply to the running app: the engine's profile (persona, memory window,
//! LLM, voice) for the next turns, and the desktop shell's keys through its hook. A change the
//! running app cannot take is refused whole, before anything is saved.

use std::sync::{Arc, Mutex};

use koto_server::config::DesktopConfig;
use koto_server::live::{Choice, DesktopSettings};
use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript};
use serde_json::{Value, json};

use crate::{TOKEN, TestServer, read_sse, serve, serve_with};

async fn put(app: &TestServer, body: Value) -> (u16, Value) {
    let response = app
        .client
        .put(format!("{}/settings", app.base))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn get(app: &TestServer, path: &str) -> Value {
    app.client
        .get(format!("{}{path}", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn keys(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

#[tokio::test]
async fn persona_memory_window_and_model_apply_to_the_next_turn() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::reply("Okay."))).await;
    let base_url = fake.base_url();
    let app = serve(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", base_url.as_str()),
    ])
    .await;
    read_sse(app.chat(json!({"sessionId":"s","content":"first"})).await).await;

    let (status, body) = put(
        &app,
        json!({"system_prompt": "You are Hana, a cheerful cat.", "stm_context_turns": 0,
               "llm_model": "model-b", "enable_ltm_inline": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["restartRequired"],
        json!([]),
        "every one of these is live: {body}"
    );
    let mut applied = keys(&body["appliedNow"]);
    applied.sort_unstable();
    assert_eq!(
        applied,
        [
            "enable_ltm_inline",
            "llm_model",
            "stm_context_turns",
            "system_prompt"
        ]
    );
    assert_eq!(body["message"], "saved and applied");

    read_sse(app.chat(json!({"sessionId":"s","content":"second"})).await).await;
    let second = &fake.requests()[1];
    assert_eq!(second["model"], "model-b", "the new model is asked");
    let messages = second["messages"].as_array().unwrap();
    assert_eq!(
        messages[0]["content"], "You are Hana, a cheerful cat.",
        "the new persona leads the prompt"
    );
    assert_eq!(
        messages.len(),
        2,
        "memory window 0: persona and the new input only, not the first turn: {messages:?}"
    );
    let health = get(&app, "/health").await;
    assert_eq!(health["llm"]["model"], "model-b");
    assert_eq!(health["flags"]["ENABLE_LTM_INLINE"], true);
    let view = get(&app, "/settings").await;
    assert!(
        keys(&view["pendingRestart"]).is_empty(),
        "applied keys are running, not pending: {view}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn the_spoken_language_and_voices_apply_at_once_and_bad_ones_are_named() {
    let app = serve(&[]).await;
    let engine = &app.server.as_ref().expect("running").engine;
    let (status, body) = put(&app, json!({"default_lang": "chinese"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["fields"]["default_lang"]
            .as_str()
            .is_some_and(|reason| reason.contains("not a language tag")),
        "the key is named with the reason: {body}"
    );
    let (status, body) = put(
        &app,
        json!({"default_lang": "zh", "tts_voices": "zh=cmn,ja=ja"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut applied = keys(&body["appliedNow"]);
    applied.sort_unstable();
    assert_eq!(
        applied,
        ["default_lang", "tts_voices"],
        "both are live: {body}"
    );
    assert_eq!(
        engine.profile().config.default_lang.to_string(),
        "zh",
        "the next turns speak Chinese unless meta.lang says otherwise"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_voice_that_cannot_start_refuses_the_change_and_keeps_the_old_one() {
    let app = serve(&[("SYNC_TTS_STREAMING", "true")]).await;
    let before = get(&app, "/health").await;
    let (status, body) = put(
        &app,
        json!({"tts_provider": "piper", "piper_python": "/nonexistent/python3", "llm_model": "x"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    for key in ["tts_provider", "piper_python"] {
        assert!(
            body["fields"][key]
                .as_str()
                .is_some_and(|reason| reason.contains("voice cannot start")),
            "{key} is blamed with the reason: {body}"
        );
    }
    assert!(
        !app.dir.path().join("kotodama.toml").exists(),
        "nothing was saved"
    );
    let after = get(&app, "/health").await;
    assert_eq!(after["tts"], before["tts"], "the old voice speaks on");
    assert_eq!(
        after["llm"], before["llm"],
        "nothing of a refused change applies, not even its good keys"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn desktop_keys_are_saved_for_the_app_when_serving_headless() {
    let app = serve(&[]).await;
    assert_eq!(
        get(&app, "/desktop").await,
        json!({"available": false}),
        "serve plays nothing: the status bar says so"
    );
    let (status, body) = put(&app, json!({"output_volume": 0.5})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["restartRequired"], json!([]));
    assert!(
        body["notes"]["output_volume"]
            .as_str()
            .is_some_and(|note| note.contains("desktop app")),
        "serve says it has no use for it: {body}"
    );
    let (status, body) = put(&app, json!({"output_volume": 3})).await;
    assert_eq!(status, 400);
    assert_eq!(body["fields"]["output_volume"], "expected 0 to 2");
    app.shutdown().await;
}

/// What the desktop shell does, recorded.
#[derive(Debug, Default)]
struct RecordingDesktop {
    applied: Mutex<Vec<(String, DesktopConfig)>>,
}

impl DesktopSettings for RecordingDesktop {
    fn check(&self, key: &str, config: &DesktopConfig) -> Result<(), String> {
        match (key, config.output_device.as_deref()) {
            ("output_device", Some(device)) if device != "Cable A" => {
                Err(format!("no output device {device:?}"))
            }
            _ => Ok(()),
        }
    }

    fn apply(&self, key: &str, config: &DesktopConfig) -> Result<Option<String>, String> {
        self.applied
            .lock()
            .unwrap()
            .push((key.to_owned(), config.clone()));
        Ok((key == "output_device").then(|| "playing on Cable A".to_owned()))
    }

    fn status(&self) -> Value {
        json!({"playback": {"device": "Cable A", "nullSink": false}})
    }

    fn choices(&self, key: &str) -> Option<Vec<Choice>> {
        (key == "output_device").then(|| {
            vec![Choice {
                value: "Cable A".to_owned(),
                label: "Cable A (virtual)".to_owned(),
            }]
        })
    }
}

#[tokio::test]
async fn the_desktop_hook_checks_applies_and_lists_devices() {
    let desktop = Arc::new(RecordingDesktop::default());
    let app = serve_with(&[], Some(desktop.clone())).await;
    let view = get(&app, "/settings").await;
    let device = view["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["key"] == "output_device")
        .unwrap();
    assert_eq!(
        device["choices"],
        json!([{"value": "Cable A", "label": "Cable A (virtual)"}]),
        "the form lists the shell's devices"
    );
    assert_eq!(device["restartRequired"], false);

    assert_eq!(
        get(&app, "/desktop").await,
        json!({"available": true, "status": {"playback": {"device": "Cable A", "nullSink": false}}}),
        "the status bar reads the shell's own status"
    );

    let (status, body) = put(
        &app,
        json!({"output_device": "Ghost", "output_volume": 0.4}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["fields"]["output_device"],
        "no output device \"Ghost\""
    );
    assert!(
        desktop.applied.lock().unwrap().is_empty(),
        "a refused change applies nothing, not even the good volume"
    );

    let (status, body) = put(
        &app,
        json!({"output_device": "Cable A", "output_volume": 0.4, "stop_hotkey": "off"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["notes"]["output_device"], "playing on Cable A");
    let applied = desktop.applied.lock().unwrap().clone();
    let applied_keys: Vec<&str> = applied.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(
        applied_keys,
        ["output_device", "output_volume", "stop_hotkey"]
    );
    let (_, config) = &applied[0];
    assert_eq!(config.output_device.as_deref(), Some("Cable A"));
    assert!((config.output_volume - 0.4).abs() < 1e-6);
    assert_eq!(config.stop_hotkey, None, "`off` disables the hotkey");

    let (_, again) = put(&app, json!({"output_volume": 0.4})).await;
    assert_eq!(
        desktop.applied.lock().unwrap().len(),
        3,
        "an unchanged value is not applied again: {again}"
    );
    app.shutdown().await;
}

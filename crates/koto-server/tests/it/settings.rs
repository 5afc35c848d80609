//! Saved settings that apply to the running app: the engine's profile (persona, memory window,
//! LLM, voice) for the next turns, and the desktop shell's keys through its hook. A change the
//! running app cannot take is refused whole, before anything is saved.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use koto_server::config::{Config, DesktopConfig};
use koto_server::live_settings::{Choice, DesktopSettings};
use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript};
use serde_json::{Value, json};

use crate::put_settings as put;
use crate::{TOKEN, TestServer, read_sse, serve, serve_with, settings_entry};

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
        json!({"output_device": "Cable A", "output_volume": 0.4, "stop_hotkey": "off", "ptt_hotkey": "Alt+F8"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["notes"]["output_device"], "playing on Cable A");
    let applied = desktop.applied.lock().unwrap().clone();
    let applied_keys: Vec<&str> = applied.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(
        applied_keys,
        [
            "output_device",
            "output_volume",
            "stop_hotkey",
            "ptt_hotkey"
        ],
        "the push-to-talk hotkey is the shell's, applied live like the stop hotkey"
    );
    let (_, config) = &applied[0];
    assert_eq!(config.output_device.as_deref(), Some("Cable A"));
    assert!((config.output_volume - 0.4).abs() < 1e-6);
    assert_eq!(config.stop_hotkey, None, "`off` disables the hotkey");
    assert_eq!(config.ptt_hotkey.as_deref(), Some("Alt+F8"));

    let (_, again) = put(&app, json!({"output_volume": 0.4})).await;
    assert_eq!(
        desktop.applied.lock().unwrap().len(),
        4,
        "an unchanged value is not applied again: {again}"
    );
    app.shutdown().await;
}

/// A valid value other than the default for every restart-only key the settings API edits. A
/// new restart-only key fails the test below until it has one here.
fn restart_only_value(key: &str) -> &'static str {
    match key {
        // A port nobody holds: a saved bind must be free to listen on.
        "bind" => free_bind(),
        "allowed_origins" => "http://example.test",
        "log_format" => "json",
        "max_body_bytes" => "131072",
        "input_rate_per_sec" => "7",
        "input_burst" => "9",
        "input_global_rate_per_sec" => "30",
        "input_global_burst" => "90",
        "max_sessions" => "50",
        "max_live_clients" => "20",
        "max_sockets" => "40",
        "tts_sample_rate" => "16000",
        "audio_lead_ms" => "300",
        // Refused at once on loopback: the restarted app falls back to embedded events.
        "redis_url" => "redis://127.0.0.1:1/0",
        "outbox_batch" => "64",
        "outbox_retention_hours" => "24",
        "stream_maxlen" => "5000",
        "ltm_group" => "ltm-b",
        "analytics_group" => "analytics-b",
        "dlq_after_attempts" => "3",
        "reclaim_idle_ms" => "10000",
        "event_workers_in_process" => "false",
        "sync_tts_barge_in" => "false",
        "enable_async_ext" => "false",
        "playback" => "off",
        "legacy_origins" => "http://example.test:3000",
        "body_read_timeout" => "20",
        "legacy_max_tasks" => "8",
        "legacy_retain" => "30",
        "legacy_log_bytes" => "65536",
        "legacy_upload_idle" => "5",
        "legacy_upload_deadline" => "30",
        "legacy_peer_timeout" => "30",
        "legacy_max_chunks" => "100",
        "legacy_max_upload_bytes" => "1048576",
        "legacy_max_text_bytes" => "8192",
        "legacy_audio_linger" => "2",
        "asr_provider" => "mock",
        "asr_base_url" => "http://127.0.0.1:1/v1",
        // A secret shows as "set" in the view; saving that word keeps view and file comparable.
        "asr_api_key" => "set",
        "asr_model" => "whisper-large-v3",
        "asr_language" => "ja",
        "asr_timeout" => "12",
        "asr_max_retries" => "1",
        "asr_mock_text" => "hello",
        "asr_max_upload_bytes" => "2048",
        "asr_max_seconds" => "5",
        "twitch_channel" => "otherchannel",
        "twitch_irc_url" => "irc://127.0.0.1:1",
        "twitch_oauth_token" => "oauth:test",
        "twitch_nick" => "somebot",
        "youtube_api_key" => "test-key",
        "youtube_video_id" => "test-video",
        "youtube_api_url" => "http://127.0.0.1:1",
        "bilibili_room_id" => "1",
        "bilibili_identity_code" => "test-code",
        "bilibili_app_id" => "1",
        "bilibili_app_key" => "test-app-key",
        "bilibili_app_secret" => "test-app-secret",
        "bilibili_api_url" => "http://127.0.0.1:1",
        "bilibili_cookie" => "buvid3=test",
        "mic_mode" => "ptt",
        "mic_device" => "USB Microphone",
        "mic_session" => "mic-b",
        "voice_barge_in" => "true",
        "echo_cancel" => "headphones",
        "vad_threshold" => "0.7",
        "vad_min_speech_ms" => "150",
        "vad_hangover_ms" => "600",
        "mic_max_utterance_ms" => "20000",
        "barge_in_confirm_words" => "3",
        "barge_in_confirm_ms" => "800",
        "barge_in_window_ms" => "2500",
        "chat_session" => "chat-b",
        "chat_answer" => "false",
        "chat_answer_every_s" => "5",
        "chat_answer_during_streamer" => "true",
        "chat_queue_capacity" => "50",
        "chat_max_chars" => "100",
        "chat_allow_links" => "true",
        "chat_blocked_words" => "foo",
        "chat_duplicate_window_s" => "10",
        "chat_max_wait_s" => "60",
        "chat_max_per_user" => "2",
        "chat_names" => "Koto",
        "chat_batch_max" => "10",
        "chat_viewer_retention_days" => "30",
        "log_dir" => "/tmp/kotodama-restart-test-logs",
        "breaker_failures" => "5",
        "vts_url" => "ws://127.0.0.1:1",
        "breaker_cooldown_s" => "60",
        other => panic!("{other} is restart-only: give it a test value in restart_only_value"),
    }
}

/// `127.0.0.1:<a port free when first asked>`, the same for the whole test.
fn free_bind() -> &'static str {
    static BIND: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIND.get_or_init(|| {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    })
}

async fn stop_status(app: &TestServer) -> u16 {
    app.post("/control/stop")
        .json(&json!({"sessionId": "s"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn restart_only_keys_keep_their_running_value_through_later_live_changes() {
    let app = serve(&[("SYNC_TTS_STREAMING", "true"), ("TTS_PROVIDER", "mock")]).await;
    let engine = app.server.as_ref().unwrap().engine.clone();
    let started = engine.profile();
    let started_health = get(&app, "/health").await;
    let started_view = get(&app, "/settings").await;
    // Driven by the table (through the view): every key that says "restart to apply".
    let restart_only: Vec<String> = started_view["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["restartRequired"] == true && entry["desktopOnly"] == false)
        .map(|entry| entry["key"].as_str().unwrap().to_owned())
        .collect();
    for key in [
        "sync_tts_barge_in",
        "enable_async_ext",
        "tts_sample_rate",
        "bind",
    ] {
        assert!(
            restart_only.iter().any(|k| k == key),
            "{key} is restart-only: {restart_only:?}"
        );
    }
    assert_eq!(stop_status(&app).await, 200, "STOP is allowed at start");

    let mut saved_so_far: Vec<&str> = Vec::new();
    for (round, key) in restart_only.iter().enumerate() {
        let key = key.as_str();
        let value = restart_only_value(key);
        let running = settings_entry(&started_view, key)["value"].clone();
        assert_ne!(
            running, value,
            "{key}: the test value differs from the running one"
        );

        let (status, body) = put(&app, json!({ key: value })).await;
        assert_eq!(status, 200, "{key}: {body}");
        assert!(
            keys(&body["appliedNow"]).is_empty(),
            "{key} is not applied now: {body}"
        );
        let message = body["message"].as_str().unwrap();
        if key == "bind" {
            // The test harness sets KOTODAMA_BIND: the answer names the override instead.
            assert!(
                body["overridden"][key]
                    .as_str()
                    .is_some_and(|by| by.contains("KOTODAMA_BIND"))
                    && message.contains("overridden")
                    && message.contains(key),
                "an overridden key is not called applied: {body}"
            );
        } else {
            assert_eq!(
                keys(&body["restartRequired"]),
                [key],
                "the answer says a restart is needed: {body}"
            );
            assert!(
                message.contains("restart") && message.contains(key),
                "the message names the key to restart for: {body}"
            );
        }

        // A live change of each kind: engine (persona), LLM, voice. Each rebuilds its part.
        let persona = format!("persona {round}");
        let rate = format!("{:.2}", 0.6 + 0.05 * (round % 20) as f64);
        let voice_before = engine.profile().voice.clone().unwrap();
        let (status, body) = put(
            &app,
            json!({"system_prompt": persona, "llm_model": format!("model-{round}"), "tts_rate": rate}),
        )
        .await;
        assert_eq!(status, 200, "{key}: {body}");
        assert_eq!(body["restartRequired"], json!([]), "{key}: {body}");
        assert_eq!(body["message"], "saved and applied", "{key}: {body}");
        let mut applied = keys(&body["appliedNow"]);
        applied.sort_unstable();
        assert_eq!(
            applied,
            ["llm_model", "system_prompt", "tts_rate"],
            "{key}: {body}"
        );

        let profile = engine.profile();
        let voice = profile.voice.clone().unwrap();
        assert!(
            !std::sync::Arc::ptr_eq(&voice, &voice_before),
            "{key}: the voice was rebuilt for tts_rate"
        );
        assert_eq!(
            voice.sample_rate(),
            started.voice.as_ref().unwrap().sample_rate(),
            "{key}: the rebuilt voice keeps the running sample rate"
        );
        let mut expected = started.config.clone();
        expected.system_prompt = persona.clone();
        assert_eq!(
            format!("{:?}", profile.config),
            format!("{expected:?}"),
            "{key}: only the live key changed the engine's config (flags included)"
        );
        let health = get(&app, "/health").await;
        assert_eq!(health["flags"], started_health["flags"], "{key}");
        assert_eq!(health["tts"], started_health["tts"], "{key}");
        assert_eq!(
            stop_status(&app).await,
            200,
            "{key}: STOP is still allowed (not 409)"
        );

        saved_so_far.push(key);
        let view = get(&app, "/settings").await;
        let pending = keys(&view["pendingRestart"]);
        for earlier in &saved_so_far {
            assert_eq!(
                settings_entry(&view, earlier)["value"],
                settings_entry(&started_view, earlier)["value"],
                "{earlier}: the running value is unchanged after saving {key}"
            );
            // The view masks secrets (a chat token or cookie) as "set".
            let shown = if koto_server::config::is_secret(earlier) {
                "set"
            } else {
                restart_only_value(earlier)
            };
            assert_eq!(
                settings_entry(&view, earlier)["saved"],
                shown,
                "{earlier}: the file holds the saved value"
            );
            // bind stays the env's, now and after a restart: not pending.
            assert_eq!(
                pending.contains(earlier),
                *earlier != "bind",
                "{earlier}: pending restart after saving {key}: {pending:?}"
            );
        }
    }

    // A restart on the same data dir takes the saved values.
    let mut app = app;
    app.server.take().unwrap().shutdown().await.unwrap();
    let data_dir = app.dir.path().to_string_lossy().into_owned();
    let flags = [
        ("data_dir", data_dir),
        ("bind", "127.0.0.1:0".to_owned()),
        ("token", TOKEN.to_owned()),
        ("sync_tts_streaming", "true".to_owned()),
        ("tts_provider", "mock".to_owned()),
    ];
    let (config, _) = Config::load_with(None, &flags, |_: &str| None).unwrap();
    for key in &saved_so_far {
        if *key != "bind" {
            assert_eq!(
                config.raw.value(key),
                Some(restart_only_value(key)),
                "{key} takes effect at the next start"
            );
        }
    }
    let server = koto_server::start(config).await.unwrap();
    let restarted = TestServer {
        base: server.base_url(),
        server: Some(server),
        client: app.client.clone(),
        dir: app.dir,
    };
    let health = get(&restarted, "/health").await;
    assert_eq!(health["flags"]["SYNC_TTS_BARGE_IN"], false, "{health}");
    assert_eq!(health["flags"]["ENABLE_ASYNC_EXT"], false, "{health}");
    assert_eq!(health["tts"]["sampleRate"], 16000, "{health}");
    assert_eq!(
        stop_status(&restarted).await,
        409,
        "after the restart STOP is refused, as saved"
    );
    assert!(
        keys(&get(&restarted, "/settings").await["pendingRestart"]).is_empty(),
        "nothing is pending once restarted"
    );
    restarted.shutdown().await;
}

#[tokio::test]
async fn absurd_numbers_are_refused_naming_each_key_and_its_range() {
    let app = serve(&[]).await;
    let (status, body) = put(
        &app,
        json!({"llm_request_timeout": 1e300, "input_rate_per_sec": 1e-300,
               "outbox_retention_hours": -1, "reclaim_idle_ms": "18446744073709551616"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["fields"],
        json!({
            "llm_request_timeout": "expected 0.01 to 3600 seconds",
            "input_rate_per_sec": "expected 0.001 to 1000000 per second",
            "outbox_retention_hours": "expected 0.01 to 87600 hours",
            "reclaim_idle_ms": "expected 10 to 86400000 ms",
        }),
        "each key with its accepted range, nothing saved"
    );
    assert!(!app.dir.path().join("kotodama.toml").exists());
    assert_eq!(
        get(&app, "/ready").await["ready"],
        true,
        "the app is still up"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn an_output_filter_with_an_invalid_pattern_is_refused_inline_and_a_valid_one_applies_at_once()
 {
    let app = serve(&[]).await;
    let (status, body) = put(&app, json!({"output_filter_words": "傻逼, /x(/"})).await;
    assert_eq!(status, 400, "{body}");
    let reason = body["fields"]["output_filter_words"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("/x(/") && reason.contains("not a valid pattern"),
        "the entry is named with the reason: {body}"
    );
    let (status, body) = put(&app, json!({"output_filter_action": "beep"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = put(
        &app,
        json!({"output_filter_words": "傻逼, /f+u+c+k/i", "output_filter_action": "skip"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let view = get(&app, "/settings").await;
    assert!(
        !keys(&view["pendingRestart"]).contains(&"output_filter_words"),
        "applies to the next turn, no restart: {view}"
    );
    app.shutdown().await;
}

/// A persona file (`persona_file`, a `.toml` as the panel saves them) brings its own quick
/// acknowledgment when it is chosen, live, and another persona takes it away. The global key is
/// off. (At start: `config::tests::a_persona_toml_sets_the_prompt_and_its_quick_acknowledgment`.)
#[tokio::test]
async fn a_persona_file_brings_its_own_quick_acknowledgment_when_chosen_live() {
    use koto_testkit::fake_openai::FakeStream;
    let personas = tempfile::tempdir().unwrap();
    let chatty = personas.path().join("kira.toml");
    std::fs::write(
        &chatty,
        "name = \"Kira\"\nlang = \"en\"\nquick_ack_ms = 200\n",
    )
    .unwrap();
    let shy = personas.path().join("sora.toml");
    std::fs::write(&shy, "name = \"Sora\"\nlang = \"en\"\nquick_ack_ms = 0\n").unwrap();
    let too_eager = personas.path().join("rin.toml");
    std::fs::write(&too_eager, "name = \"Rin\"\nquick_ack_ms = 20\n").unwrap();
    // The first clause arrives late, so a character with a quick acknowledgment says "hmm…".
    let late = FakeStream::new(["Hi there. "]).with_first_token_delay(Duration::from_millis(700));
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::Stream(late))).await;
    let base_url = fake.base_url();
    let app = serve(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", base_url.as_str()),
        ("TTS_PROVIDER", "mock"),
        ("SYNC_TTS_STREAMING", "true"),
        ("QUICK_ACK_MS", "0"),
    ])
    .await;
    let (status, body) = put(&app, json!({"persona_file": chatty.to_str().unwrap()})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["appliedNow"], json!(["persona_file"]), "{body}");
    let engine = app.server.as_ref().unwrap().engine.clone();
    for _ in 0..500 {
        if engine.quick_acks_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(engine.quick_acks_ready(), "the fillers were made at start");

    let quick_ack = |frames: &[crate::Frame]| {
        let done = frames.iter().find(|f| f.event == "done").expect("done");
        done.data["stats"]["quick_ack_ms"].as_f64()
    };
    let frames = read_sse(app.chat(json!({"sessionId":"p","content":"hello"})).await).await;
    assert!(quick_ack(&frames).is_some(), "Kira says hmm: {frames:?}");
    let system = fake.requests().last().unwrap()["messages"][0]["content"].clone();
    assert!(
        system.as_str().unwrap().contains("You are Kira"),
        "{system}"
    );

    let (status, body) = put(&app, json!({"persona_file": shy.to_str().unwrap()})).await;
    assert_eq!(status, 200, "{body}");
    let frames = read_sse(app.chat(json!({"sessionId":"p","content":"again"})).await).await;
    assert_eq!(quick_ack(&frames), None, "Sora never says hmm: {frames:?}");
    let system = fake.requests().last().unwrap()["messages"][0]["content"].clone();
    assert!(
        system.as_str().unwrap().contains("You are Sora"),
        "{system}"
    );

    // A persona whose value the key itself would refuse is refused, naming the file.
    let (status, body) = put(&app, json!({"persona_file": too_eager.to_str().unwrap()})).await;
    assert_eq!(status, 400, "{body}");
    let text = body.to_string();
    assert!(
        text.contains("rin.toml") && text.contains("quick_ack_ms is 20"),
        "{text}"
    );
}

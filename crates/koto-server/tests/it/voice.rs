//! The microphone in the running app: its state in `/health`, push-to-talk from the panel's
//! route becoming an `ASR_FINAL` turn with `meta.source=mic`, and voice barge-in through the
//! one STOP path (pause → STOP + new turn; a cough → resume, nothing lost). A fake ASR and
//! synthetic mic frames: no sound card, no network.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use koto_core::SessionId;
use koto_core::asr::{AsrEvent, AsrProvider, AsrRequest, AsrStream, Transcript};
use koto_server::config::RawConfig;
use koto_server::voice::MicSource;
use koto_voice::VoiceInput;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{TOKEN, TestServer, read_sse, save_settings, serve};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Transcribes anything as `text`.
struct SaysAsr(&'static str);

impl AsrProvider for SaysAsr {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn transcribe(&self, request: AsrRequest) -> AsrStream {
        let event = AsrEvent::Final(Transcript {
            text: self.0.to_owned(),
            language: Some("en".into()),
            confidence: Some(0.87),
            duration_ms: request.duration_ms(),
        });
        Box::pin(futures_util::stream::iter([Ok(event)]))
    }
}

/// Push-to-talk unless `overrides` say otherwise.
async fn serve_voice(overrides: &[(&str, &str)], says: &'static str) -> TestServer {
    let mut env = vec![("MIC_MODE", "ptt")];
    env.extend_from_slice(overrides);
    serve_voice_saved(&env, "", says).await
}

/// As [`serve_voice`] (but `MIC_MODE` is its default, `off`, unless set), with `saved` (TOML)
/// already in the settings file as the panel would have saved it: a value there can be changed
/// by a save (an env var would override it).
async fn serve_voice_saved(
    overrides: &[(&str, &str)],
    saved: &str,
    says: &'static str,
) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings_file = dir.path().join("kotodama.toml");
    std::fs::write(&settings_file, saved).expect("settings file written");
    let mut env: Vec<(String, String)> = vec![
        ("KOTODAMA_BIND".into(), "127.0.0.1:0".into()),
        (
            "KOTODAMA_DATA_DIR".into(),
            dir.path().to_string_lossy().into_owned(),
        ),
        ("KOTODAMA_TOKEN".into(), TOKEN.into()),
        ("MOCK_LLM_TOKEN_MS".into(), "1".into()),
        ("SYNC_TTS_STREAMING".into(), "true".into()),
        ("TTS_PROVIDER".into(), "mock".into()),
    ];
    env.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let mut raw = RawConfig::default();
    raw.merge_toml_file(&settings_file)
        .expect("valid settings file");
    raw.merge_env(|name| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    });
    let config = raw.build().expect("valid test config");
    let asr: Arc<dyn AsrProvider> = Arc::new(SaysAsr(says));
    let server = koto_server::start_with_voice(config, None, Some(asr), MicSource::Frames)
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

async fn connect(app: &TestServer, session: &str) -> Socket {
    let url = format!(
        "{}/ws/live?token={TOKEN}&session={session}",
        app.base.replace("http://", "ws://")
    );
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket upgrade")
        .0
}

/// Frames until one matches `wanted` (returned), or 10 s of nothing matching.
async fn until(
    socket: &mut Socket,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> (Value, Vec<Value>) {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no {what} within 30 s; saw {:?}", types(&seen)));
        let Some(Ok(Message::Text(text))) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).expect("JSON frame");
        if wanted(&frame) {
            return (frame, seen);
        }
        seen.push(frame);
    }
}

/// The last frames seen, by type (for failure messages).
fn types(frames: &[Value]) -> Vec<String> {
    frames[frames.len().saturating_sub(20)..]
        .iter()
        .map(|f| {
            format!(
                "{}:{}",
                f["type"].as_str().unwrap_or("?"),
                f["action"].as_str().or(f["reason"].as_str()).unwrap_or("")
            )
        })
        .collect()
}

fn mic(app: &TestServer) -> tokio::sync::mpsc::Sender<VoiceInput> {
    app.server
        .as_ref()
        .expect("running")
        .voice
        .mic_sender()
        .expect("voice input runs")
}

/// `ms` of a 220 Hz tone in 10 ms blocks (push-to-talk sends whatever is held).
async fn talk(app: &TestServer, ms: u64) {
    let sender = mic(app);
    for block in 0..ms / 10 {
        let samples: Vec<i16> = (0..160)
            .map(|n| {
                let t = (block * 160 + n) as f32 / 16_000.0;
                ((t * 220.0 * std::f32::consts::TAU).sin() * 8_000.0) as i16
            })
            .collect();
        sender
            .send(VoiceInput::Mic(samples))
            .await
            .expect("pipeline takes audio");
    }
}

async fn ptt(app: &TestServer, pressed: bool, session: &str) -> Value {
    let response = app
        .post("/voice/ptt")
        .json(&json!({"pressed": pressed, "sessionId": session}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200, "push-to-talk accepted");
    response.json().await.expect("JSON")
}

async fn health_mic(app: &TestServer) -> Value {
    let health: Value = reqwest::get(format!("{}/health", app.base))
        .await
        .expect("health")
        .json()
        .await
        .expect("JSON");
    health["mic"].clone()
}

fn is_paused(app: &TestServer, session: &str) -> bool {
    let session = SessionId::parse(session).expect("valid");
    app.server
        .as_ref()
        .expect("running")
        .engine
        .relay()
        .expect("relay")
        .is_paused(&session)
}

#[tokio::test]
async fn the_mic_on_without_an_asr_or_a_device_says_so_and_text_keeps_working() {
    let app = serve(&[("MIC_MODE", "vad")]).await;
    let mic = health_mic(&app).await;
    assert_eq!(mic["mode"], "vad");
    assert!(
        mic["state"] == "no_device" || mic["state"] == "asr_off",
        "no sound card here, no ASR provider: a clear state, not silence: {mic}"
    );
    assert!(
        mic["warning"].as_str().is_some_and(|w| !w.is_empty()),
        "a warning to show: {mic}"
    );
    let frames = read_sse(
        app.chat(json!({"sessionId":"text-only","content":"still here?"}))
            .await,
    )
    .await;
    assert_eq!(
        frames.last().map(|f| f.event.as_str()),
        Some("done"),
        "typed input works"
    );
    let off = serve(&[]).await;
    assert_eq!(
        health_mic(&off).await["state"],
        "off",
        "MIC_MODE defaults to off"
    );
    app.shutdown().await;
    off.shutdown().await;
}

/// A synthetic mic (no device needed) in push-to-talk, and no ASR provider configured.
async fn serve_push_to_talk_without_asr() -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut raw = RawConfig::default();
    raw.set("bind", "127.0.0.1:0");
    raw.set("data_dir", dir.path().to_string_lossy().into_owned());
    raw.set("token", TOKEN);
    raw.set("mic_mode", "ptt");
    let config = raw.build().expect("valid");
    let server = koto_server::start_with_voice(config, None, None, MicSource::Frames)
        .await
        .expect("starts");
    TestServer {
        base: server.base_url(),
        server: Some(server),
        client: reqwest::Client::new(),
        dir,
    }
}

#[tokio::test]
async fn with_the_mic_on_but_no_asr_the_state_is_asr_off() {
    let app = serve_push_to_talk_without_asr().await;
    let mic = health_mic(&app).await;
    assert_eq!(mic["state"], "asr_off");
    assert_eq!(
        mic["warning"],
        "mic on but ASR_PROVIDER is off: nothing you say is heard"
    );
    let mut live = connect(&app, "noasr").await;
    ptt(&app, true, "noasr").await;
    talk(&app, 500).await;
    ptt(&app, false, "noasr").await;
    let (dropped, _) = until(&mut live, "VOICE_DROPPED", |f| f["type"] == "VOICE_DROPPED").await;
    assert_eq!(
        dropped["reason"], "asr_off",
        "the panel learns why nothing happened"
    );
    app.shutdown().await;
}

/// The microphone hears with the app's recognizer switch: started with ASR off, a saved
/// `asr_provider` turns it on without a restart, and the next utterance is a turn.
#[tokio::test]
async fn saving_an_asr_setting_turns_the_microphone_on_without_a_restart() {
    let app = serve_push_to_talk_without_asr().await;
    assert_eq!(health_mic(&app).await["state"], "asr_off");
    let answer = app
        .client
        .put(format!("{}/settings", app.base))
        .bearer_auth(TOKEN)
        .json(&json!({"asr_provider": "mock", "asr_mock_text": "switched on live"}))
        .send()
        .await
        .expect("settings answer");
    assert_eq!(answer.status(), 200);
    let mic = health_mic(&app).await;
    assert_eq!(mic["state"], "listening", "{mic}");
    assert_eq!(mic["asr"], "mock", "{mic}");
    let mut live = connect(&app, "live-asr").await;
    ptt(&app, true, "live-asr").await;
    talk(&app, 800).await;
    ptt(&app, false, "live-asr").await;
    let (input, _) = until(&mut live, "USER_INPUT", |f| f["type"] == "USER_INPUT").await;
    assert_eq!(input["content"], "switched on live");
    app.shutdown().await;
}

#[tokio::test]
async fn push_to_talk_from_the_panel_is_an_asr_final_turn_with_mic_meta() {
    let app = serve_voice(&[], "what game is next").await;
    let mut live = connect(&app, "ptt-1").await;
    let mic = health_mic(&app).await;
    assert_eq!(mic["state"], "listening", "{mic}");
    ptt(&app, true, "ptt-1").await;
    talk(&app, 1_000).await;
    ptt(&app, false, "ptt-1").await;
    let (input, seen) = until(&mut live, "USER_INPUT", |f| f["type"] == "USER_INPUT").await;
    assert_eq!(input["content"], "what game is next");
    assert!(
        seen.iter().any(|f| f["type"] == "MIC_LEVEL"),
        "the level meter reached the panel: {:?}",
        types(&seen)
    );
    // The engine writes the user row beside the LLM request (off the TTFT path), so it may
    // land just after USER_INPUT went out: poll for it, bounded.
    let db = rusqlite::Connection::open(app.dir.path().join("kotodama.sqlite3")).expect("db");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (kind, meta): (String, String) = loop {
        match db.query_row(
            "SELECT kind, meta FROM turns WHERE sessionId = 'ptt-1' AND role = 'user'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        ) {
            Ok(row) => break row,
            Err(rusqlite::Error::QueryReturnedNoRows) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("the voice turn is stored: {error}"),
        }
    };
    assert_eq!(kind, "ASR_FINAL");
    let meta: Value = serde_json::from_str(&meta).expect("meta is JSON");
    assert_eq!(meta["source"], "mic");
    assert!((meta["confidence"].as_f64().expect("confidence") - 0.87).abs() < 1e-3);
    assert!(
        meta["durationMs"].as_u64().expect("duration") >= 900,
        "{meta}"
    );
    // No SSE client saw the voice turn's done.stats: the mic's status keeps them.
    let turn = input["turn"].as_u64().expect("a turn number");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let last = loop {
        let mic = health_mic(&app).await;
        if mic["lastTurn"]["turn"].as_u64() == Some(turn) {
            break mic["lastTurn"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the turn ended: {mic}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(last["stats"]["ttft_ms"].as_f64().is_some(), "{last}");
    assert!(last["stats"]["first_audio_ms"].as_f64().is_some(), "{last}");
    app.shutdown().await;
}

async fn cohost_speaks(app: &TestServer, live: &mut Socket, session: &str) -> reqwest::Response {
    let text = "This is an announcement that keeps going for a while.";
    let response = app
        .post("/tts/speak")
        .json(&json!({"sessionId": session, "text": text}))
        .send()
        .await
        .expect("sent");
    until(live, "the co-host's audio", |f| f["type"] == "SPEECH_CHUNK").await;
    response
}

#[tokio::test]
async fn talking_over_the_co_host_pauses_it_then_stops_it_through_the_one_path() {
    let app = serve_voice(
        &[("VOICE_BARGE_IN", "true"), ("ECHO_CANCEL", "headphones")],
        "wait stop a second",
    )
    .await;
    let mut live = connect(&app, "vb").await;
    let speak = cohost_speaks(&app, &mut live, "vb").await;
    ptt(&app, true, "vb").await;
    // The press is the onset: the relay holds the co-host's audio at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !is_paused(&app, "vb") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "paused after the press"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // 800 ms of speech: the probe at 600 ms hears words → STOP.
    talk(&app, 800).await;
    let (stop, _) = until(&mut live, "STOP", |f| {
        f["type"] == "CONTROL" && f["action"] == "STOP"
    })
    .await;
    assert_eq!(stop["reason"], "voice_barge_in", "the one STOP path, named");
    until(&mut live, "STOP_ACK", |f| {
        f["type"] == "CONTROL" && f["action"] == "STOP_ACK"
    })
    .await;
    ptt(&app, false, "vb").await;
    let (input, _) = until(&mut live, "the new turn", |f| f["type"] == "USER_INPUT").await;
    assert_eq!(
        input["content"], "wait stop a second",
        "the utterance is the next turn"
    );
    let frames = read_sse(speak).await;
    assert_eq!(
        frames.last().expect("done").data["stats"]["interrupted"],
        true,
        "the co-host's turn was interrupted"
    );
    let mic = health_mic(&app).await;
    assert_eq!(mic["voiceStops"], 1);
    assert_eq!(mic["pauses"], 1);
    app.shutdown().await;
}

#[tokio::test]
async fn a_cough_over_the_co_host_resumes_it_with_nothing_lost() {
    let app = serve_voice(
        &[("VOICE_BARGE_IN", "true"), ("ECHO_CANCEL", "headphones")],
        "ignored",
    )
    .await;
    let mut live = connect(&app, "cough").await;
    let speak = cohost_speaks(&app, &mut live, "cough").await;
    ptt(&app, true, "cough").await;
    talk(&app, 100).await;
    ptt(&app, false, "cough").await;
    let (dropped, mut seen) =
        until(&mut live, "VOICE_DROPPED", |f| f["type"] == "VOICE_DROPPED").await;
    assert_eq!(dropped["reason"], "too_short");
    let (_, rest) = until(&mut live, "the END", |f| {
        f["type"] == "CONTROL" && f["action"] == "END"
    })
    .await;
    seen.extend(rest);
    assert!(
        !seen.iter().any(|f| f["type"] == "CONTROL" && (f["action"] == "STOP" || f["action"] == "STOP_ACK")),
        "a cough never stops the co-host: {:?}",
        types(&seen)
    );
    let seqs: Vec<u64> = seen
        .iter()
        .filter(|f| f["type"] == "SPEECH_CHUNK")
        .filter_map(|f| f["seq"].as_u64())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "every chunk after the first, in order, none lost: {seqs:?}"
    );
    let frames = read_sse(speak).await;
    assert_eq!(
        frames.last().expect("done").data["stats"]["interrupted"],
        false,
        "the turn completed"
    );
    let mic = health_mic(&app).await;
    assert_eq!(mic["falseAlarms"], 1);
    assert_eq!(mic["voiceStops"], 0);
    assert!(!is_paused(&app, "cough"));
    app.shutdown().await;
}

/// `text` spoken by espeak-ng at 16 kHz (what a mic would deliver after resampling).
fn espeak(text: &str) -> Vec<i16> {
    let output = std::process::Command::new("espeak-ng")
        .args(["-v", "en", "--stdout", text])
        .output()
        .expect("espeak-ng is installed");
    let mut decoder = koto_providers::audio::WavStreamDecoder::new();
    let block = decoder
        .push(&output.stdout)
        .expect("WAV")
        .expect("whole WAV");
    let mut resampler =
        koto_providers::audio::resample::StreamResampler::new(block.sample_rate, 16_000)
            .expect("rates");
    let mut samples = resampler.push(&block.samples);
    samples.extend(resampler.finish());
    samples
}

#[tokio::test]
async fn hands_free_speech_becomes_a_turn_and_silence_does_not() {
    let app = serve_voice(
        &[("MIC_MODE", "vad"), ("MIC_SESSION", "hands-free")],
        "is the boss next",
    )
    .await;
    let mut live = connect(&app, "hands-free").await;
    let sender = mic(&app);
    let mut audio = vec![0i16; 16_000];
    audio.extend(espeak("Is the boss next?"));
    audio.extend(vec![0i16; 16_000]);
    for block in audio.chunks(160) {
        sender
            .send(VoiceInput::Mic(block.to_vec()))
            .await
            .expect("pipeline takes audio");
    }
    let (input, seen) = until(&mut live, "USER_INPUT", |f| f["type"] == "USER_INPUT").await;
    assert_eq!(input["content"], "is the boss next");
    assert!(
        seen.iter()
            .any(|f| f["type"] == "MIC_LEVEL" && f["speaking"] == true),
        "the meter showed the speech: {:?}",
        types(&seen)
    );
    let mic = health_mic(&app).await;
    assert_eq!(
        mic["utterances"], 1,
        "one sentence between silences is one utterance: {mic}"
    );
    assert_eq!(mic["submitted"], 1);
    app.shutdown().await;
}

/// The answer says every key of `keys` applied now and none waits for a restart.
fn assert_applied_live(answer: &Value, keys: &[&str]) {
    assert_eq!(answer["restartRequired"], json!([]), "{answer}");
    for key in keys {
        assert!(
            answer["appliedNow"]
                .as_array()
                .is_some_and(|applied| applied.iter().any(|k| k == key)),
            "{key} applied to the running microphone: {answer}"
        );
    }
    assert_eq!(answer["message"], "saved and applied", "{answer}");
}

/// Sends `audio` as mic blocks, then enough silence that every block before it has been
/// handled (the queue holds 256 blocks; the pipeline takes one only after the last).
async fn hear_all(app: &TestServer, audio: &[i16]) {
    let sender = mic(app);
    let padding = vec![0i16; 300 * 160];
    for block in audio.chunks(160).chain(padding.chunks(160)) {
        sender
            .send(VoiceInput::Mic(block.to_vec()))
            .await
            .expect("pipeline takes audio");
    }
}

/// Two sentences 700 ms apart, then 5.5 s of silence (longer than any hangover).
fn two_sentences() -> Vec<i16> {
    let mut audio = vec![0i16; 8_000];
    audio.extend(espeak("Where is the key?"));
    audio.extend(vec![0i16; 11_200]);
    audio.extend(espeak("Behind the door."));
    audio.extend(vec![0i16; 88_000]);
    audio
}

#[tokio::test]
async fn saved_vad_settings_change_what_the_running_microphone_decides() {
    let app = serve_voice_saved(
        &[("MIC_MODE", "vad"), ("ECHO_CANCEL", "headphones")],
        "vad_hangover_ms = 5000\n",
        "where is the key",
    )
    .await;
    hear_all(&app, &two_sentences()).await;
    assert_eq!(
        health_mic(&app).await["utterances"],
        1,
        "a 5 s hangover joins the two sentences"
    );
    let answer = save_settings(&app, json!({"vad_hangover_ms": 300})).await;
    assert_applied_live(&answer, &["vad_hangover_ms"]);
    hear_all(&app, &two_sentences()).await;
    assert_eq!(
        health_mic(&app).await["utterances"],
        3,
        "no restart: the 700 ms gap now ends the first sentence (1 + 2)"
    );
    let answer = save_settings(&app, json!({"vad_threshold": 0.99})).await;
    assert_applied_live(&answer, &["vad_threshold"]);
    hear_all(&app, &two_sentences()).await;
    assert_eq!(
        health_mic(&app).await["utterances"],
        3,
        "no espeak frame scores 0.99: the same speech is no utterance now"
    );
    app.shutdown().await;
}

/// A co-host reply long enough (mock TTS, ~65 ms a character) to outlast the test's steps.
async fn cohost_speaks_long(app: &TestServer, live: &mut Socket, session: &str) {
    let text = "This is a long announcement about tonight's stream, the games we will play, \
                the people who will join us later, the giveaway at the end, and a few words \
                about the schedule for the rest of the week, so settle in and enjoy it.";
    let _reply = app
        .post("/tts/speak")
        .json(&json!({"sessionId": session, "text": text}))
        .send()
        .await
        .expect("sent");
    until(live, "the co-host's audio", |f| f["type"] == "SPEECH_CHUNK").await;
}

async fn wait_paused(app: &TestServer, session: &str, paused: bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while is_paused(app, session) != paused {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn saving_voice_barge_in_turns_the_pause_on_and_off_mid_pause_resumes_the_co_host() {
    let app = serve_voice_saved(
        &[("MIC_MODE", "ptt"), ("ECHO_CANCEL", "headphones")],
        "voice_barge_in = false\n",
        "hold on",
    )
    .await;
    let mut live = connect(&app, "live-vb").await;
    cohost_speaks_long(&app, &mut live, "live-vb").await;
    // Off: the press over the co-host is no onset. A short hold is dropped, which tells us the
    // pipeline has handled the press.
    ptt(&app, true, "live-vb").await;
    talk(&app, 100).await;
    ptt(&app, false, "live-vb").await;
    until(&mut live, "VOICE_DROPPED", |f| f["type"] == "VOICE_DROPPED").await;
    assert!(!is_paused(&app, "live-vb"), "barge-in off: never paused");
    assert_eq!(health_mic(&app).await["pauses"], 0);

    let answer = save_settings(&app, json!({"voice_barge_in": true})).await;
    assert_applied_live(&answer, &["voice_barge_in"]);
    assert_eq!(health_mic(&app).await["bargeIn"], true);
    ptt(&app, true, "live-vb").await;
    wait_paused(
        &app,
        "live-vb",
        true,
        "barge-in on without a restart: the press pauses",
    )
    .await;

    let answer = save_settings(&app, json!({"voice_barge_in": false})).await;
    assert_applied_live(&answer, &["voice_barge_in"]);
    wait_paused(
        &app,
        "live-vb",
        false,
        "turned off while paused: the co-host resumes, never left paused",
    )
    .await;
    assert_eq!(health_mic(&app).await["bargeIn"], false);
    ptt(&app, false, "live-vb").await;
    app.shutdown().await;
}

#[tokio::test]
async fn saving_echo_cancel_gate_mutes_the_running_microphone_over_the_co_host() {
    let app = serve_voice_saved(
        &[("MIC_MODE", "vad")],
        "echo_cancel = \"headphones\"\n",
        "can you hear me",
    )
    .await;
    let mut live = connect(&app, "live-echo").await;
    cohost_speaks_long(&app, &mut live, "live-echo").await;
    let mut sentence = vec![0i16; 8_000];
    sentence.extend(espeak("Can you hear me?"));
    sentence.extend(vec![0i16; 16_000]);
    hear_all(&app, &sentence).await;
    assert_eq!(
        health_mic(&app).await["utterances"],
        1,
        "headphones: heard over the co-host"
    );
    let answer = save_settings(&app, json!({"echo_cancel": "gate"})).await;
    assert_applied_live(&answer, &["echo_cancel"]);
    assert_eq!(health_mic(&app).await["echoCancel"], "gate");
    hear_all(&app, &sentence).await;
    assert!(
        !reply_ended(&mut live).await,
        "the co-host still speaks, so the gate is what muted the mic"
    );
    assert_eq!(
        health_mic(&app).await["utterances"],
        1,
        "the gate mutes the mic while the co-host speaks, without a restart"
    );
    app.shutdown().await;
}

/// Whether the reply on `live` has ended so far (its frames read until none comes for 50 ms).
async fn reply_ended(live: &mut Socket) -> bool {
    let mut ended = false;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_millis(50), live.next()).await
    {
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).expect("JSON frame");
            ended |= frame["type"] == "CONTROL" && frame["action"] == "END";
        }
    }
    ended
}

#[tokio::test]
async fn a_saved_mic_device_reopens_the_capture_and_a_missing_one_is_the_start_warning() {
    let app = serve(&[("MIC_MODE", "vad"), ("ASR_PROVIDER", "mock")]).await;
    let answer = save_settings(&app, json!({"mic_device": "no such microphone"})).await;
    assert_eq!(answer["restartRequired"], json!([]), "{answer}");
    assert!(
        answer["appliedNow"]
            .as_array()
            .is_some_and(|applied| applied.iter().any(|k| k == "mic_device")),
        "{answer}"
    );
    let note = answer["notes"]["mic_device"].as_str().unwrap_or_default();
    assert!(
        note.contains("no such microphone") || note.contains("no microphone found"),
        "the warning a start without it gives: {answer}"
    );
    let mic = health_mic(&app).await;
    assert_eq!(mic["state"], "no_device", "{mic}");
    assert_eq!(
        mic["warning"], note,
        "the panel shows the same words: {mic}"
    );
    let frames = read_sse(
        app.chat(json!({"sessionId":"text-still","content":"still here?"}))
            .await,
    )
    .await;
    assert_eq!(
        frames.last().map(|f| f.event.as_str()),
        Some("done"),
        "text keeps working"
    );
    let view: Value = app
        .client
        .get(format!("{}/settings", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("settings")
        .json()
        .await
        .expect("JSON");
    for key in [
        "mic_mode",
        "mic_device",
        "echo_cancel",
        "voice_barge_in",
        "vad_threshold",
        "vad_hangover_ms",
        "onset_echo_margin_db",
        "onset_min_dbfs",
        "asr_max_upload_bytes",
        "asr_max_seconds",
    ] {
        assert_eq!(
            crate::settings_entry(&view, key)["restartRequired"],
            false,
            "{key} is applied live: the panel must not ask for a restart"
        );
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_saved_mic_mode_switches_the_running_microphone_as_the_panel_does() {
    let app = serve_voice_saved(&[], "mic_mode = \"off\"\n", "switched by a save").await;
    assert_eq!(health_mic(&app).await["state"], "off");
    let answer = save_settings(&app, json!({"mic_mode": "ptt"})).await;
    assert_applied_live(&answer, &["mic_mode"]);
    let mic = health_mic(&app).await;
    assert_eq!(
        (mic["mode"].as_str(), mic["state"].as_str()),
        (Some("ptt"), Some("listening")),
        "{mic}"
    );
    let mut live = connect(&app, "saved-mode").await;
    ptt(&app, true, "saved-mode").await;
    talk(&app, 800).await;
    ptt(&app, false, "saved-mode").await;
    let (input, _) = until(&mut live, "USER_INPUT", |f| f["type"] == "USER_INPUT").await;
    assert_eq!(
        input["content"], "switched by a save",
        "push-to-talk works now"
    );
    let answer = save_settings(&app, json!({"mic_mode": "off"})).await;
    assert_applied_live(&answer, &["mic_mode"]);
    assert_eq!(health_mic(&app).await["state"], "off");
    app.shutdown().await;
}

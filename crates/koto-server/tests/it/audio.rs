//! Voice input from files over real HTTP: `POST /chat/audio/stream` and `POST /chat/audio` with
//! real recordings (Chromium's MediaRecorder WebM, opusenc OGG, espeak-ng WAV), the mock ASR and
//! the OpenAI-compatible client against a loopback fake reading the real multipart upload; what
//! is stored (an `ASR_FINAL` turn with `meta.source = mic`), and every refusal.

use koto_providers::audio::decode::{DecodeLimits, decode_upload};
use koto_testkit::fake_openai_transcription::{FakeOpenAiTranscription, TranscriptionResponse};
use serde_json::{Value, json};

use crate::{TestServer, expect_error, parse_sse, serve};

pub const WEBM: &[u8] =
    include_bytes!("../../../koto-providers/tests/fixtures/speech-mediarecorder.webm");
pub const OGG: &[u8] =
    include_bytes!("../../../koto-providers/tests/fixtures/speech-opus-mono.ogg");
pub const WAV: &[u8] = include_bytes!("../../../koto-providers/tests/fixtures/speech-22k-mono.wav");

/// The length the server will hear in `bytes` (the decoder's own answer, not a constant).
pub fn heard_ms(bytes: &[u8]) -> u64 {
    decode_upload(bytes, &DecodeLimits::default())
        .unwrap()
        .duration_ms()
}

/// A `multipart/form-data` body as browsers write it: text fields, then the file (if any).
pub struct Form {
    pub content_type: String,
    pub body: Vec<u8>,
}

pub fn multipart(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> Form {
    let boundary = "----KotoFormBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((filename, bytes)) = file {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Form {
        content_type: format!("multipart/form-data; boundary={boundary}"),
        body,
    }
}

fn form(session: &str, file: &[u8], name: &str) -> Form {
    multipart(&[("sessionId", session)], Some((name, file)))
}

trait Multipart {
    fn multipart(self, form: Form) -> Self;
}

impl Multipart for reqwest::RequestBuilder {
    fn multipart(self, form: Form) -> Self {
        self.header("content-type", form.content_type)
            .body(form.body)
    }
}

/// The user row of `turn`: (text, kind, meta JSON).
pub fn stored_user_row(
    app: &TestServer,
    session: &str,
    turn: u64,
) -> Option<(String, Option<String>, Option<Value>)> {
    let db = app.dir.path().join("kotodama.sqlite3");
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db");
    conn.query_row(
        "SELECT text, kind, meta FROM turns WHERE sessionId = ?1 AND turn = ?2 AND role = 'user'",
        rusqlite::params![session, turn as i64],
        |row| {
            let meta: Option<String> = row.get(2)?;
            Ok((
                row.get(0)?,
                row.get(1)?,
                meta.and_then(|m| serde_json::from_str(&m).ok()),
            ))
        },
    )
    .ok()
}

fn turns_of(app: &TestServer, session: &str) -> i64 {
    let db = app.dir.path().join("kotodama.sqlite3");
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db");
    conn.query_row(
        "SELECT count(*) FROM turns WHERE sessionId = ?1",
        [session],
        |row| row.get(0),
    )
    .expect("count")
}

#[tokio::test]
async fn a_mediarecorder_webm_becomes_asr_final_then_the_turn_stream_and_an_asr_final_turn() {
    let app = serve(&[
        ("ASR_PROVIDER", "mock"),
        ("ASR_MOCK_TEXT", "what shall we play tonight"),
    ])
    .await;
    let response = app
        .post("/chat/audio/stream")
        .multipart(form("voice-1", WEBM, "voice.webm"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "streamed");
    let frames = parse_sse(&response.text().await.unwrap());
    let names: Vec<&str> = frames.iter().map(|f| f.event.as_str()).collect();
    assert_eq!(
        names.first(),
        Some(&"asr-final"),
        "the transcript comes first: {names:?}"
    );
    assert_eq!(
        names.last(),
        Some(&"done"),
        "then the turn's events, done last: {names:?}"
    );
    assert!(
        names.contains(&"text-delta"),
        "the reply streams as in /chat/stream: {names:?}"
    );
    let heard = &frames[0].data;
    assert_eq!(
        heard["text"], "what shall we play tonight",
        "what the mock heard"
    );
    assert_eq!(heard["sessionId"], "voice-1", "its session");
    assert_eq!(
        heard["durationMs"],
        heard_ms(WEBM),
        "the decoded recording's length"
    );
    let turn = heard["turn"].as_u64().expect("the turn number");

    let (text, kind, meta) =
        stored_user_row(&app, "voice-1", turn).expect("the user row is stored");
    assert_eq!(
        text, "what shall we play tonight",
        "the transcript is the user's text"
    );
    assert_eq!(
        kind.as_deref(),
        Some("ASR_FINAL"),
        "stored as speech, not typed text"
    );
    let meta = meta.expect("meta is stored");
    assert_eq!(meta["source"], "mic", "from the microphone");
    assert_eq!(
        meta["durationMs"],
        heard_ms(WEBM),
        "with the utterance's length"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn chat_audio_answers_json_from_a_raw_ogg_body_through_the_openai_asr() {
    let fake = FakeOpenAiTranscription::start(vec![TranscriptionResponse::Describe]).await;
    let app = serve(&[
        ("ASR_PROVIDER", "openai"),
        ("ASR_BASE_URL", &fake.base_url()),
        ("ASR_LANGUAGE", "en"),
    ])
    .await;
    let response = app
        .post("/chat/audio?sessionId=voice-2&turn=4")
        .header("content-type", "audio/ogg")
        .body(OGG)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "answered");
    let body: Value = response.json().await.unwrap();
    let expected = format!("heard {} ms at 16000 Hz", heard_ms(OGG));
    assert_eq!(
        body["transcript"]["text"],
        expected.as_str(),
        "the ASR got the whole utterance at 16 kHz"
    );
    assert_eq!(
        body["transcript"]["language"], "en",
        "the configured language was sent and reported back"
    );
    assert_eq!(body["turn"], 4, "the requested turn number");
    let confidence = body["transcript"]["confidence"]
        .as_f64()
        .expect("a confidence from verbose_json");
    assert!(
        (confidence - (-0.25f64).exp()).abs() < 1e-4,
        "exp(avg_logprob): {confidence}"
    );
    assert!(
        body["reply"].as_str().is_some_and(|r| !r.is_empty()),
        "the reply text: {body}"
    );
    assert_eq!(body["interrupted"], false, "completed");
    let sent = &fake.requests()[0];
    assert_eq!(
        sent.field("language").as_deref(),
        Some("en"),
        "ASR_LANGUAGE reached the server"
    );
    let (text, kind, meta) = stored_user_row(&app, "voice-2", 4).expect("stored");
    assert_eq!(
        (text.as_str(), kind.as_deref()),
        (expected.as_str(), Some("ASR_FINAL")),
        "the transcript as an ASR_FINAL turn"
    );
    let meta = meta.unwrap();
    assert!(
        (meta["confidence"].as_f64().unwrap() - confidence).abs() < 1e-6,
        "the confidence is kept: {meta}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn asr_off_failing_or_hearing_nothing_stores_nothing_and_says_why() {
    let off = serve(&[]).await;
    expect_error(
        off.post("/chat/audio")
            .multipart(form("voice-3", WAV, "a.wav"))
            .send()
            .await
            .unwrap(),
        503,
        "not_available",
    )
    .await;
    let health = off.health().await;
    assert_eq!(
        health["asr"]["provider"], "off",
        "/health says voice input is off"
    );
    off.shutdown().await;

    let fake =
        FakeOpenAiTranscription::start(vec![TranscriptionResponse::error(500, "model crashed")])
            .await;
    let app = serve(&[
        ("ASR_PROVIDER", "openai"),
        ("ASR_BASE_URL", &fake.base_url()),
        ("ASR_MAX_RETRIES", "1"),
    ])
    .await;
    let response = app
        .post("/chat/audio/stream")
        .multipart(form("voice-3", WAV, "a.wav"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502, "the ASR failed");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "asr_failed", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("model crashed"),
        "the server's words: {body}"
    );
    assert_eq!(fake.requests().len(), 2, "tried twice (ASR_MAX_RETRIES=1)");
    assert_eq!(
        turns_of(&app, "voice-3"),
        0,
        "no turn was stored for audio nobody understood"
    );
    let health = app.health().await;
    assert_eq!(
        health["asr"]["provider"], "openai",
        "/health names the provider"
    );
    app.shutdown().await;

    let mock = serve(&[("ASR_PROVIDER", "mock")]).await;
    let silence: Vec<u8> = koto_providers::audio::wav::encode_mono_s16(&vec![0i16; 16_000], 16_000);
    let response = mock
        .post("/chat/audio?sessionId=voice-4")
        .body(silence)
        .send()
        .await
        .unwrap();
    expect_error(response, 422, "empty_content").await;
    assert_eq!(turns_of(&mock, "voice-4"), 0, "silence starts no turn");
    mock.shutdown().await;
}

#[tokio::test]
async fn bounds_and_bad_files_get_413_and_unsupported_audio() {
    let app = serve(&[
        ("ASR_PROVIDER", "mock"),
        ("ASR_MAX_UPLOAD_BYTES", "20000"),
        ("ASR_MAX_SECONDS", "1"),
    ])
    .await;
    let send = |body: Vec<u8>| app.post("/chat/audio?sessionId=voice-5").body(body).send();
    expect_error(send(WAV.to_vec()).await.unwrap(), 413, "payload_too_large").await;
    // 1.85 s of Opus in 8 KB: under the byte limit, over the duration limit.
    expect_error(send(OGG.to_vec()).await.unwrap(), 413, "payload_too_large").await;
    expect_error(
        send(b"<html>not audio</html>".to_vec()).await.unwrap(),
        415,
        "unsupported_audio",
    )
    .await;
    expect_error(send(Vec::new()).await.unwrap(), 415, "unsupported_audio").await;
    let truncated = send(OGG[..OGG.len() / 3].to_vec()).await.unwrap();
    assert_eq!(truncated.status(), 415, "a truncated file is unreadable");
    let body: Value = truncated.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_audio", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("unsupported audio: truncated ogg/opus"),
        "the origin's words, then why: {message}"
    );
    let over_form = app
        .post("/chat/audio")
        .multipart(multipart(&[("sessionId", "voice-5")], Some(("a.wav", WAV))))
        .send()
        .await
        .unwrap();
    expect_error(over_form, 413, "payload_too_large").await;
    expect_error(
        app.post("/chat/audio")
            .body(OGG[..100].to_vec())
            .send()
            .await
            .unwrap(),
        400,
        "invalid_session_id",
    )
    .await;
    let no_file = app
        .post("/chat/audio")
        .multipart(multipart(&[("sessionId", "voice-5")], None))
        .send()
        .await
        .unwrap();
    expect_error(no_file, 400, "invalid_request").await;
    assert_eq!(
        turns_of(&app, "voice-5"),
        0,
        "no refused upload left a turn"
    );
    app.shutdown().await;
}

#[test]
fn asr_keys_are_read_and_bad_values_name_the_key() {
    use koto_server::config::{AsrProviderKind, RawConfig};
    let build = |pairs: &[(&str, &str)]| {
        let mut raw = RawConfig::default();
        raw.merge_env(|name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        });
        raw.build()
    };
    let defaults = build(&[]).expect("defaults are valid");
    assert_eq!(
        defaults.asr.provider,
        AsrProviderKind::Off,
        "voice input is off by default"
    );
    assert_eq!(
        defaults.asr.limits,
        DecodeLimits {
            max_bytes: 10 * 1024 * 1024,
            max_duration_ms: 60_000
        },
        "the documented bounds"
    );
    assert_eq!(
        defaults.asr.openai.base_url, "http://127.0.0.1:8090/v1",
        "scripts/asr-server.sh's address"
    );
    let set = build(&[
        ("ASR_PROVIDER", "openai"),
        ("ASR_BASE_URL", "https://api.groq.com/openai/v1"),
        ("ASR_API_KEY", "gsk-secret"),
        ("ASR_MODEL", "whisper-large-v3"),
        ("ASR_LANGUAGE", "ja"),
        ("ASR_TIMEOUT", "2.5"),
        ("ASR_MAX_RETRIES", "0"),
        ("ASR_MAX_SECONDS", "0.5"),
    ])
    .expect("valid");
    assert_eq!(set.asr.provider, AsrProviderKind::OpenAi);
    assert_eq!(
        set.asr.openai.api_key.as_deref(),
        Some("gsk-secret"),
        "the key reaches the client"
    );
    assert!(
        !format!("{:?}", set).contains("gsk-secret"),
        "but never a log line"
    );
    assert_eq!(set.asr.openai.language.as_deref(), Some("ja"));
    assert_eq!(
        set.asr.openai.timeout,
        std::time::Duration::from_millis(2500)
    );
    assert_eq!(
        (set.asr.openai.max_retries, set.asr.limits.max_duration_ms),
        (0, 500)
    );
    for (key, env, value) in [
        ("asr_provider", "ASR_PROVIDER", "whisper"),
        ("asr_timeout", "ASR_TIMEOUT", "0"),
        ("asr_max_retries", "ASR_MAX_RETRIES", "11"),
        ("asr_max_upload_bytes", "ASR_MAX_UPLOAD_BYTES", "10"),
        ("asr_max_seconds", "ASR_MAX_SECONDS", "inf"),
    ] {
        let error = build(&[(env, value)]).unwrap_err().to_string();
        assert!(
            error.contains(key) && error.contains(env),
            "{value:?} names {key}: {error}"
        );
    }
}

#[tokio::test]
async fn an_openai_asr_with_a_bad_url_stops_start_up_naming_the_key() {
    let mut raw = koto_server::config::RawConfig::default();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_string_lossy().into_owned();
    let pairs = [
        ("KOTODAMA_BIND", "127.0.0.1:0"),
        ("KOTODAMA_DATA_DIR", data_dir.as_str()),
        ("ASR_PROVIDER", "openai"),
        ("ASR_BASE_URL", "ftp://127.0.0.1/v1"),
    ];
    raw.merge_env(|name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    });
    let error = koto_server::start(raw.build().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("ASR_PROVIDER") && error.contains("ftp://"),
        "a clear start-up error: {error}"
    );
}

/// `/chat/audio` with the real recogniser `scripts/test.sh` starts (`KOTODAMA_TEST_ASR_URL`);
/// the providers' test binary covers starting one, so this one only skips without it.
#[tokio::test]
async fn the_real_asr_hears_a_browser_recording_through_chat_audio() {
    let Some(url) = std::env::var("KOTODAMA_TEST_ASR_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        println!(
            "SKIP the_real_asr_hears_a_browser_recording_through_chat_audio: KOTODAMA_TEST_ASR_URL is not set (scripts/test.sh sets it)"
        );
        return;
    };
    let app = serve(&[
        ("ASR_PROVIDER", "openai"),
        ("ASR_BASE_URL", &url),
        ("ASR_TIMEOUT", "180"),
    ])
    .await;
    let response = app
        .post("/chat/audio")
        .multipart(form("voice-real", WEBM, "voice.webm"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "answered");
    let body: Value = response.json().await.unwrap();
    let text = body["transcript"]["text"].as_str().unwrap().to_lowercase();
    // The recording says "What shall we play tonight?".
    assert!(
        text.contains("play") && text.contains("tonight"),
        "whisper heard {text:?}"
    );
    assert_eq!(body["transcript"]["language"], "en", "detected as English");
    let (stored, kind, _) =
        stored_user_row(&app, "voice-real", body["turn"].as_u64().unwrap()).unwrap();
    assert_eq!(
        (stored.to_lowercase(), kind.as_deref()),
        (text, Some("ASR_FINAL")),
        "the transcript is the stored input"
    );
    app.shutdown().await;
}

/// The ASR keys apply while the app runs: switching the recognizer on, to another provider and
/// off again reaches the next upload at once (no restart), and one that cannot start is refused
/// before anything is saved, the running one kept. (The microphone's side:
/// `voice::saving_an_asr_setting_turns_the_microphone_on_without_a_restart`.)
#[tokio::test]
async fn saving_an_asr_setting_reaches_the_next_upload_without_a_restart() {
    let app = serve(&[]).await;
    let put = |body: serde_json::Value| {
        app.client
            .put(format!("{}/settings", app.base))
            .bearer_auth(crate::TOKEN)
            .json(&body)
            .send()
    };
    let upload = || {
        app.post("/chat/audio")
            .multipart(form("live-asr", WAV, "a.wav"))
            .send()
    };
    expect_error(upload().await.unwrap(), 503, "not_available").await;

    let answer = put(json!({"asr_provider": "mock", "asr_mock_text": "now I can hear you"}))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer: serde_json::Value = answer.json().await.unwrap();
    let applied = answer["appliedNow"].to_string();
    assert!(
        applied.contains("asr_provider") && applied.contains("asr_mock_text"),
        "{answer}"
    );
    assert_eq!(app.health().await["asr"]["provider"], "mock");
    let heard: serde_json::Value = upload().await.unwrap().json().await.unwrap();
    assert_eq!(heard["transcript"]["text"], "now I can hear you", "{heard}");

    // One that cannot start: refused naming the key, and the mock still hears.
    let refused = put(json!({"asr_provider": "openai", "asr_base_url": "ftp://127.0.0.1/v1"}))
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let refused = refused.text().await.unwrap();
    assert!(
        refused.contains("asr_provider") && refused.contains("ftp://"),
        "{refused}"
    );
    assert_eq!(app.health().await["asr"]["provider"], "mock");

    let answer = put(json!({"asr_provider": "off"})).await.unwrap();
    assert_eq!(answer.status(), 200);
    expect_error(upload().await.unwrap(), 503, "not_available").await;
    app.shutdown().await;
}

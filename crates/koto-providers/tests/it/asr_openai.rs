//! The OpenAI-compatible transcription client against a loopback fake that reads the real
//! multipart upload and answers in the real JSON shapes (`koto_testkit::fake_openai_transcription`).
//!
//! Timeouts around waits are failure guards (a hang becomes a failure), never "sleep long enough".

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use koto_core::ProviderError;
use koto_core::asr::{AsrEvent, AsrProvider, AsrRequest, Transcript};
use koto_providers::asr::{OpenAiAsr, OpenAiAsrConfig, TranscriptionFormat};
use koto_testkit::fake_openai_transcription::{
    FakeOpenAiTranscription, TranscriptionResponse as R, wav_facts,
};

const GUARD: Duration = Duration::from_secs(20);

fn tone(ms: usize) -> Vec<i16> {
    (0..ms * 16)
        .map(|i| ((i as f32 * 0.2).sin() * 8000.0) as i16)
        .collect()
}

fn request(samples: Vec<i16>, language: Option<&str>) -> AsrRequest {
    AsrRequest {
        samples: Arc::from(samples),
        language: language.map(str::to_owned),
        correlation_id: "live-001#3".into(),
    }
}

fn client(fake: &FakeOpenAiTranscription, tweak: impl FnOnce(&mut OpenAiAsrConfig)) -> OpenAiAsr {
    let mut config = OpenAiAsrConfig {
        base_url: fake.base_url(),
        api_key: Some("sk-test".into()),
        model: "whisper-base".into(),
        retry_delay: Duration::from_millis(1),
        ..Default::default()
    };
    tweak(&mut config);
    OpenAiAsr::new(config).expect("a valid config")
}

async fn transcribe(asr: &OpenAiAsr, request: AsrRequest) -> Result<Transcript, ProviderError> {
    let mut events = asr.transcribe(request);
    let first = tokio::time::timeout(GUARD, events.next())
        .await
        .expect("the transcription must not hang past its own timeout")
        .expect("one event");
    assert!(events.next().await.is_none(), "one event, then the end");
    first.map(|event| match event {
        AsrEvent::Final(transcript) => transcript,
        AsrEvent::Partial { text } => panic!("the API has no partials, got {text:?}"),
    })
}

#[tokio::test]
async fn uploads_a_16k_mono_wav_with_the_form_fields_and_reads_verbose_json() {
    let fake = FakeOpenAiTranscription::start(vec![R::Describe]).await;
    let asr = client(&fake, |_| {});
    let transcript = transcribe(&asr, request(tone(1250), Some("ja")))
        .await
        .unwrap();
    assert_eq!(
        transcript.text, "heard 1250 ms at 16000 Hz",
        "the fake heard the whole utterance at 16 kHz"
    );
    assert_eq!(
        transcript.language.as_deref(),
        Some("ja"),
        "the language the server reports"
    );
    let confidence = transcript
        .confidence
        .expect("verbose_json gives a confidence");
    assert!(
        (confidence - (-0.25f32).exp()).abs() < 1e-5,
        "exp(avg_logprob): {confidence}"
    );
    assert_eq!(transcript.duration_ms, 1250, "the request's length");

    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "one request, no retry");
    let sent = &requests[0];
    assert!(
        sent.header("content-type")
            .is_some_and(|ct| ct.starts_with("multipart/form-data; boundary=")),
        "multipart upload"
    );
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer sk-test"),
        "the key as a bearer token"
    );
    assert_eq!(
        sent.field("model").as_deref(),
        Some("whisper-base"),
        "model field"
    );
    assert_eq!(
        sent.field("response_format").as_deref(),
        Some("verbose_json"),
        "verbose first"
    );
    assert_eq!(
        sent.field("language").as_deref(),
        Some("ja"),
        "the request's hint"
    );
    let file = sent.part("file").expect("a file part");
    assert_eq!(
        file.filename.as_deref(),
        Some("audio.wav"),
        "a named WAV file"
    );
    assert_eq!(file.content_type.as_deref(), Some("audio/wav"), "its type");
    assert_eq!(
        wav_facts(&file.data),
        Some((16_000, 1, 16, 1250 * 16 * 2)),
        "16 kHz mono s16, every sample"
    );
}

#[tokio::test]
async fn a_server_refusing_verbose_json_is_asked_with_json_and_remembered() {
    let fake = FakeOpenAiTranscription::start(vec![
        R::error(400, "response_format 'verbose_json' is not supported"),
        R::Describe,
    ])
    .await;
    let asr = client(&fake, |c| c.language = Some("en".into()));
    let first = transcribe(&asr, request(tone(500), None)).await.unwrap();
    assert_eq!(first.text, "heard 500 ms at 16000 Hz", "the json answer");
    assert_eq!(first.confidence, None, "plain json has no confidence");
    let second = transcribe(&asr, request(tone(300), None)).await.unwrap();
    assert_eq!(
        second.text, "heard 300 ms at 16000 Hz",
        "the next utterance too"
    );
    let formats: Vec<_> = fake
        .requests()
        .iter()
        .map(|r| r.field("response_format"))
        .collect();
    assert_eq!(
        formats,
        [
            Some("verbose_json".into()),
            Some("json".into()),
            Some("json".into())
        ],
        "one refusal, then json for good"
    );
    assert_eq!(
        fake.requests()[0].field("language").as_deref(),
        Some("en"),
        "the configured language without a hint"
    );
}

#[tokio::test]
async fn server_errors_and_hangs_are_retried_then_reported_and_garbage_and_auth_are_not() {
    let flaky = FakeOpenAiTranscription::start(vec![R::error(500, "boom"), R::Describe]).await;
    let text = transcribe(&client(&flaky, |_| {}), request(tone(200), None))
        .await
        .unwrap()
        .text;
    assert_eq!(
        text, "heard 200 ms at 16000 Hz",
        "a 500 before any output is retried"
    );

    let broken = FakeOpenAiTranscription::start(vec![R::error(503, "overloaded")]).await;
    let error = transcribe(
        &client(&broken, |c| c.max_retries = 1),
        request(tone(200), None),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, ProviderError::Protocol(m) if m.contains("503") && m.contains("overloaded")),
        "the server's own words: {error}"
    );
    assert_eq!(broken.requests().len(), 2, "the first try and one retry");

    let garbage = FakeOpenAiTranscription::start(vec![R::Garbage, R::Describe]).await;
    let error = transcribe(&client(&garbage, |_| {}), request(tone(200), None))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Protocol(_)),
        "garbage is a protocol error: {error}"
    );
    assert_eq!(
        garbage.requests().len(),
        1,
        "a server that answers garbage is not asked again"
    );

    let denied = FakeOpenAiTranscription::start(vec![R::error(401, "Incorrect API key")]).await;
    let error = transcribe(&client(&denied, |_| {}), request(tone(200), None))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ProviderError::Auth(m) if m.contains("Incorrect API key")),
        "auth: {error}"
    );
    assert_eq!(
        denied.requests().len(),
        1,
        "bad credentials are not retried"
    );

    let hanging = FakeOpenAiTranscription::start(vec![R::Hang]).await;
    let asr = client(&hanging, |c| {
        c.timeout = Duration::from_millis(300);
        c.max_retries = 1;
    });
    let error = transcribe(&asr, request(tone(200), None))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ProviderError::Timeout(m) if m.contains("ASR_TIMEOUT")),
        "a hang is a timeout naming its key: {error}"
    );
    assert_eq!(
        hanging.requests().len(),
        2,
        "a timeout before any output is retried once"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_over_the_configured_delay() {
    let fake = FakeOpenAiTranscription::start(vec![R::rate_limited(1), R::Describe]).await;
    // A configured delay of an hour: only the server's `Retry-After: 1` lets this finish within GUARD.
    let asr = client(&fake, |c| c.retry_delay = Duration::from_secs(3600));
    let text = transcribe(&asr, request(tone(100), None))
        .await
        .unwrap()
        .text;
    assert_eq!(text, "heard 100 ms at 16000 Hz", "429 then success");

    let limited = FakeOpenAiTranscription::start(vec![R::rate_limited(0)]).await;
    let error = transcribe(
        &client(&limited, |c| c.max_retries = 2),
        request(tone(100), None),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, ProviderError::RateLimited { retry_after: Some(d) } if d.is_zero()),
        "the last 429 with its wait: {error:?}"
    );
    assert_eq!(limited.requests().len(), 3, "two retries");
}

#[tokio::test]
async fn empty_audio_is_refused_without_a_request_and_json_only_servers_can_be_forced() {
    let fake = FakeOpenAiTranscription::start(vec![R::Describe]).await;
    let error = transcribe(&client(&fake, |_| {}), request(Vec::new(), None))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Protocol(_)),
        "nothing to transcribe: {error}"
    );
    assert!(fake.requests().is_empty(), "no request for no audio");
    let json_only = client(&fake, |c| c.response_format = TranscriptionFormat::Json);
    transcribe(&json_only, request(tone(100), None))
        .await
        .unwrap();
    assert_eq!(
        fake.requests()[0].field("response_format").as_deref(),
        Some("json"),
        "json as configured"
    );
}

//! OpenAI-compatible `POST {base_url}/audio/transcriptions`: the utterance goes up as a 16 kHz
//! mono WAV in a `multipart/form-data` body with `model`, `language` (when known) and
//! `response_format`; one JSON transcript comes back, as one [`AsrEvent::Final`].
//!
//! `verbose_json` (OpenAI, whisper.cpp's server, faster-whisper servers) is asked for first: it
//! carries the language heard and per-segment `avg_logprob`, from which the confidence is the
//! exponential of their duration-weighted mean. A server that refuses it (HTTP 400/422 naming the
//! format) is asked again with plain `json` at once, and for the rest of this client's life.
//! Retries: the answer is all-or-nothing, so a timeout, a broken connection, a 429 (after its
//! `Retry-After`) or a 5xx is retried up to `max_retries` times — nothing has been shown yet.
//! Deliberately not here: streaming partials (the API has none), decoding uploads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::StatusCode;
use koto_core::ProviderError;
use koto_core::asr::{ASR_SAMPLE_RATE, AsrEvent, AsrProvider, AsrRequest, AsrStream, Transcript};
use serde::Deserialize;

use crate::audio::wav::encode_mono_s16;

/// The `response_format` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranscriptionFormat {
    /// `verbose_json`, falling back to `json` when the server refuses it.
    Auto,
    VerboseJson,
    Json,
}

/// Settings of the OpenAI-compatible transcription provider.
#[derive(Clone, PartialEq)]
pub struct OpenAiAsrConfig {
    /// Up to and including the version: `https://api.openai.com/v1`, `http://127.0.0.1:8090/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when present. Never logged.
    pub api_key: Option<String>,
    /// `whisper-1` (OpenAI), `whisper-large-v3` (Groq); local servers mostly ignore it.
    pub model: String,
    /// ISO 639-1 used when the request has no hint; `None` lets the server detect it.
    pub language: Option<String>,
    pub response_format: TranscriptionFormat,
    pub connect_timeout: Duration,
    /// Longest one attempt may take, upload and answer included.
    pub timeout: Duration,
    /// Attempts after the first, for retryable failures only.
    pub max_retries: u32,
    /// The wait before retry `n` is `n × retry_delay`, unless the server says `Retry-After`.
    pub retry_delay: Duration,
}

impl Default for OpenAiAsrConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".into(),
            api_key: None,
            model: "whisper-1".into(),
            language: None,
            response_format: TranscriptionFormat::Auto,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            max_retries: 2,
            retry_delay: Duration::from_millis(250),
        }
    }
}

impl std::fmt::Debug for OpenAiAsrConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiAsrConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("language", &self.language)
            .field("response_format", &self.response_format)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_delay", &self.retry_delay)
            .finish()
    }
}

/// The OpenAI-compatible transcription provider; holds one connection pool.
#[derive(Clone)]
pub struct OpenAiAsr {
    inner: Arc<Inner>,
}

struct Inner {
    config: OpenAiAsrConfig,
    endpoint: String,
    client: reqwest::Client,
    /// Set once the server refused `verbose_json` (format `Auto` only).
    verbose_refused: AtomicBool,
}

impl OpenAiAsr {
    pub fn new(config: OpenAiAsrConfig) -> Result<Self, ProviderError> {
        let base = config.base_url.trim_end_matches('/');
        if reqwest::Url::parse(base).is_err()
            || !(base.starts_with("http://") || base.starts_with("https://"))
        {
            return Err(ProviderError::Unavailable(format!(
                "invalid OpenAI transcription config: base_url {:?} is not an http(s) URL",
                config.base_url
            )));
        }
        if config.timeout.is_zero() {
            return Err(ProviderError::Unavailable(
                "invalid OpenAI transcription config: the timeout is 0".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| {
                ProviderError::Unavailable(format!("cannot build the HTTP client: {e}"))
            })?;
        let endpoint = format!("{base}/audio/transcriptions");
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                endpoint,
                client,
                verbose_refused: AtomicBool::new(false),
            }),
        })
    }

    pub fn config(&self) -> &OpenAiAsrConfig {
        &self.inner.config
    }

    /// The whole exchange, retries included.
    pub async fn transcribe_once(&self, request: AsrRequest) -> Result<Transcript, ProviderError> {
        self.inner.run(request).await
    }
}

impl AsrProvider for OpenAiAsr {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn transcribe(&self, request: AsrRequest) -> AsrStream {
        let inner = self.inner.clone();
        Box::pin(stream::once(async move {
            inner.run(request).await.map(AsrEvent::Final)
        }))
    }
}

/// How one attempt failed.
enum AttemptError {
    /// HTTP 400/422 about the response format: ask again with `json`.
    FormatRefused,
    Failed {
        error: ProviderError,
        retryable: bool,
        retry_after: Option<Duration>,
    },
}

impl Inner {
    async fn run(&self, request: AsrRequest) -> Result<Transcript, ProviderError> {
        let duration_ms = request.duration_ms();
        if request.samples.is_empty() {
            return Err(ProviderError::Protocol("no audio to transcribe".into()));
        }
        let wav = Bytes::from(encode_mono_s16(&request.samples, ASR_SAMPLE_RATE));
        let language = request
            .language
            .clone()
            .or_else(|| self.config.language.clone())
            .filter(|l| !l.trim().is_empty() && l != "auto");
        let mut verbose = match self.config.response_format {
            TranscriptionFormat::Auto => !self.verbose_refused.load(Ordering::Relaxed),
            TranscriptionFormat::VerboseJson => true,
            TranscriptionFormat::Json => false,
        };
        let mut attempt: u32 = 0;
        loop {
            let outcome = tokio::time::timeout(
                self.config.timeout,
                self.attempt(&wav, language.as_deref(), verbose, duration_ms),
            )
            .await
            .unwrap_or_else(|_elapsed| {
                Err(AttemptError::Failed {
                    error: ProviderError::Timeout(format!(
                        "no transcript within {:?} (ASR_TIMEOUT)",
                        self.config.timeout
                    )),
                    retryable: true,
                    retry_after: None,
                })
            });
            match outcome {
                Ok(transcript) => return Ok(transcript),
                Err(AttemptError::FormatRefused)
                    if verbose && self.config.response_format == TranscriptionFormat::Auto =>
                {
                    tracing::info!(correlationId = %request.correlation_id, "the transcription server refused verbose_json; using json");
                    self.verbose_refused.store(true, Ordering::Relaxed);
                    verbose = false;
                }
                Err(AttemptError::FormatRefused) => {
                    return Err(ProviderError::Protocol(
                        "the transcription server refused the response format".into(),
                    ));
                }
                Err(AttemptError::Failed {
                    error,
                    retryable,
                    retry_after,
                }) => {
                    if !retryable || attempt >= self.config.max_retries {
                        tracing::warn!(correlationId = %request.correlation_id, %error, attempts = attempt + 1, "transcription failed");
                        return Err(error);
                    }
                    attempt += 1;
                    let wait = retry_after.unwrap_or(self.config.retry_delay * attempt);
                    tracing::info!(correlationId = %request.correlation_id, %error, ?wait, attempt, "transcription retried");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn attempt(
        &self,
        wav: &Bytes,
        language: Option<&str>,
        verbose: bool,
        duration_ms: u64,
    ) -> Result<Transcript, AttemptError> {
        let format = if verbose { "verbose_json" } else { "json" };
        let mut fields = vec![
            ("model", self.config.model.as_str()),
            ("response_format", format),
        ];
        if let Some(language) = language {
            fields.push(("language", language));
        }
        let form = MultipartForm::new(&fields, wav);
        let mut http_request = self
            .client
            .post(&self.endpoint)
            .header(http::header::CONTENT_TYPE, form.content_type())
            .body(form.body);
        if let Some(key) = &self.config.api_key {
            http_request = http_request.bearer_auth(key);
        }
        let response = http_request
            .send()
            .await
            .map_err(|error| AttemptError::Failed {
                error: transport_error(&error),
                retryable: true,
                retry_after: None,
            })?;
        let status = response.status();
        let retry_after = crate::retry_after::from_headers(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|error| AttemptError::Failed {
                error: ProviderError::Transport(format!(
                    "the transcription body broke: {}",
                    transport_error(&error)
                )),
                retryable: true,
                retry_after: None,
            })?;
        if !status.is_success() {
            return Err(status_error(status, &body, retry_after));
        }
        parse_transcript(&body, duration_ms).map_err(|error| AttemptError::Failed {
            error,
            retryable: false,
            retry_after: None,
        })
    }
}

fn status_error(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> AttemptError {
    let message = error_message(body);
    let described = format!("the transcription server answered HTTP {status}: {message}");
    let failed = |error, retryable| AttemptError::Failed {
        error,
        retryable,
        retry_after,
    };
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
            if message.to_ascii_lowercase().contains("format") =>
        {
            AttemptError::FormatRefused
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            failed(ProviderError::Auth(described), false)
        }
        StatusCode::TOO_MANY_REQUESTS => failed(ProviderError::RateLimited { retry_after }, true),
        s if s.is_server_error() => failed(ProviderError::Protocol(described), true),
        _ => failed(ProviderError::Protocol(described), false),
    }
}

fn transport_error(error: &reqwest::Error) -> ProviderError {
    // reqwest's Display omits the cause ("error sending request"); the chain says what happened.
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if error.is_timeout() {
        ProviderError::Timeout(format!("connecting to the transcription server: {message}"))
    } else {
        ProviderError::Transport(message)
    }
}

/// `{"error":{"message":…}}` as OpenAI sends it, `{"error":"…"}`, `{"detail":"…"}` (FastAPI), else
/// the start of the body as text.
fn error_message(body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| {
            let error = json.get("error").or_else(|| json.get("detail"))?;
            error
                .get("message")
                .and_then(|m| m.as_str())
                .or_else(|| error.as_str())
                .map(str::to_owned)
        });
    from_json.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            "(empty body)".to_owned()
        } else {
            text.chars().take(300).collect()
        }
    })
}

#[derive(Deserialize)]
struct TranscriptionBody {
    text: String,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    segments: Option<Vec<SegmentBody>>,
}

#[derive(Deserialize)]
struct SegmentBody {
    #[serde(default)]
    start: f64,
    #[serde(default)]
    end: f64,
    #[serde(default)]
    avg_logprob: Option<f64>,
}

/// The transcript in a `json` or `verbose_json` body.
fn parse_transcript(body: &[u8], duration_ms: u64) -> Result<Transcript, ProviderError> {
    let parsed: TranscriptionBody = serde_json::from_slice(body).map_err(|error| {
        let start: String = String::from_utf8_lossy(body).chars().take(120).collect();
        ProviderError::Protocol(format!(
            "the transcription server's answer is not a transcript ({error}): {start:?}"
        ))
    })?;
    Ok(Transcript {
        text: parsed.text.trim().to_owned(),
        language: parsed.language.as_deref().and_then(language_code),
        confidence: parsed.segments.as_deref().and_then(confidence),
        duration_ms,
    })
}

/// `exp` of the duration-weighted mean `avg_logprob` (a segment of no length weighs as 1 ms), in 0..1.
fn confidence(segments: &[SegmentBody]) -> Option<f32> {
    let (mut weighted, mut total) = (0.0_f64, 0.0_f64);
    for segment in segments {
        let Some(logprob) = segment.avg_logprob.filter(|l| l.is_finite()) else {
            continue;
        };
        let weight = (segment.end - segment.start).max(0.001);
        weighted += logprob * weight;
        total += weight;
    }
    (total > 0.0).then(|| (weighted / total).exp().clamp(0.0, 1.0) as f32)
}

/// OpenAI's `verbose_json` names the language (`"english"`); local servers send the code (`"en"`).
/// Both become the ISO 639-1 code; an unknown name is kept lower-cased.
fn language_code(language: &str) -> Option<String> {
    const NAMES: [(&str, &str); 16] = [
        ("english", "en"),
        ("chinese", "zh"),
        ("japanese", "ja"),
        ("korean", "ko"),
        ("german", "de"),
        ("french", "fr"),
        ("spanish", "es"),
        ("italian", "it"),
        ("portuguese", "pt"),
        ("russian", "ru"),
        ("dutch", "nl"),
        ("polish", "pl"),
        ("turkish", "tr"),
        ("arabic", "ar"),
        ("vietnamese", "vi"),
        ("cantonese", "yue"),
    ];
    let language = language.trim().to_ascii_lowercase();
    if language.is_empty() {
        return None;
    }
    Some(
        NAMES
            .iter()
            .find(|(name, _)| *name == language)
            .map_or(language, |(_, code)| (*code).to_owned()),
    )
}

/// A `multipart/form-data` body built by hand (reqwest's `multipart` feature is not enabled and
/// the form is four parts): text fields, then the WAV as `file`.
struct MultipartForm {
    boundary: String,
    body: Bytes,
}

impl MultipartForm {
    fn new(fields: &[(&str, &str)], wav: &[u8]) -> Self {
        let boundary = format!("koto-{}", uuid::Uuid::new_v4().simple());
        let mut body = Vec::with_capacity(wav.len() + 512);
        for (name, value) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"audio.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(wav);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        Self {
            boundary,
            body: Bytes::from(body),
        }
    }

    fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn verbose_json_gives_language_and_confidence_and_json_gives_text_only() {
        let verbose = br#"{"task":"transcribe","language":"english","duration":2.0,"text":" Hello there. ",
            "segments":[{"id":0,"start":0.0,"end":1.0,"text":"Hello","avg_logprob":-0.1,"no_speech_prob":0.01},
                        {"id":1,"start":1.0,"end":4.0,"text":"there.","avg_logprob":-0.5,"no_speech_prob":0.02}]}"#;
        let t = parse_transcript(verbose, 2000).unwrap();
        assert_eq!(t.text, "Hello there.", "trimmed text");
        assert_eq!(
            t.language.as_deref(),
            Some("en"),
            "OpenAI's language name becomes the code"
        );
        let expected = ((-0.1 * 1.0 + -0.5 * 3.0) / 4.0_f64).exp() as f32;
        assert!(
            (t.confidence.unwrap() - expected).abs() < 1e-6,
            "duration-weighted mean log-probability, exponentiated: {:?} vs {expected}",
            t.confidence
        );
        let plain = parse_transcript(br#"{"text":"hi"}"#, 500).unwrap();
        assert_eq!(
            (plain.text.as_str(), plain.language, plain.confidence),
            ("hi", None, None),
            "plain json has only text"
        );
        assert_eq!(
            parse_transcript(br#"{"text":"x","language":"ja"}"#, 1)
                .unwrap()
                .language
                .as_deref(),
            Some("ja"),
            "codes pass through"
        );
        assert!(
            matches!(
                parse_transcript(b"<html>oops</html>", 1),
                Err(ProviderError::Protocol(_))
            ),
            "garbage is a protocol error"
        );
        assert!(
            matches!(
                parse_transcript(br#"{"segments":[]}"#, 1),
                Err(ProviderError::Protocol(_))
            ),
            "JSON without text is not a transcript"
        );
    }

    #[test]
    fn config_debug_never_shows_the_key_and_bad_urls_are_refused() {
        let config = OpenAiAsrConfig {
            api_key: Some("sk-secret".into()),
            ..Default::default()
        };
        assert!(
            !format!("{config:?}").contains("sk-secret"),
            "keys must not reach logs"
        );
        assert!(
            OpenAiAsr::new(OpenAiAsrConfig {
                base_url: "ftp://x".into(),
                ..Default::default()
            })
            .is_err(),
            "only http(s)"
        );
    }
}

//! OpenAI-compatible `POST {base_url}/audio/speech`, streamed: PCM blocks come out as the response
//! body arrives, and dropping the stream drops the HTTP request (the server sees the connection close).
//!
//! `pcm` is OpenAI's documented raw format (signed 16-bit little-endian, mono, 24 kHz; the rate is
//! configurable for compatible servers that differ); `mp3` is decoded incrementally with
//! [`crate::audio::mp3`]. Other formats (opus, aac, flac, wav) are deliberately not offered: they
//! would need decoders this crate does not carry. No retries here: a retry after partial audio
//! would repeat speech, so that decision belongs to the caller.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::StatusCode;
use koto_core::ProviderError;
use koto_core::tts::{PcmBlock, PcmStream, TtsProvider, TtsRequest};

use crate::audio::mp3::Mp3StreamDecoder;
use crate::tts::voice_map::VoiceMap;

/// The `response_format` to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenAiSpeechFormat {
    /// Raw s16le mono PCM: nothing to decode, the lowest latency.
    Pcm,
    /// MP3, for servers without `pcm`.
    Mp3,
}

impl OpenAiSpeechFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            OpenAiSpeechFormat::Pcm => "pcm",
            OpenAiSpeechFormat::Mp3 => "mp3",
        }
    }
}

/// Settings of the OpenAI-compatible speech provider.
#[derive(Clone, PartialEq)]
pub struct OpenAiTtsConfig {
    /// Up to and including the version, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8880/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when present. Never logged.
    pub api_key: Option<String>,
    pub model: String,
    /// The voice for a language without an entry in `voices`.
    pub voice: String,
    /// Voices by language (`TTS_VOICES`); OpenAI's voices speak every language, so this is
    /// only for taste (or a compatible server with per-language voices).
    pub voices: VoiceMap,
    pub response_format: OpenAiSpeechFormat,
    /// 0.25 ..= 4.0.
    pub speed: f32,
    /// Rate of the `pcm` format: 24 000 for OpenAI.
    pub pcm_sample_rate: u32,
    pub connect_timeout: Duration,
    /// Longest wait for the response headers or for the next piece of the body.
    pub idle_timeout: Duration,
}

impl Default for OpenAiTtsConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".into(),
            api_key: None,
            model: "tts-1".into(),
            voice: "alloy".into(),
            voices: VoiceMap::default(),
            response_format: OpenAiSpeechFormat::Pcm,
            speed: 1.0,
            pcm_sample_rate: 24_000,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
        }
    }
}

impl std::fmt::Debug for OpenAiTtsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiTtsConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("voice", &self.voice)
            .field("voices", &self.voices)
            .field("response_format", &self.response_format)
            .field("speed", &self.speed)
            .field("pcm_sample_rate", &self.pcm_sample_rate)
            .field("connect_timeout", &self.connect_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

/// The OpenAI-compatible speech provider; holds one connection pool.
pub struct OpenAiTts {
    config: OpenAiTtsConfig,
    endpoint: String,
    client: reqwest::Client,
}

impl OpenAiTts {
    pub fn new(config: OpenAiTtsConfig) -> Result<Self, ProviderError> {
        let invalid = |what: String| {
            Err(ProviderError::Unavailable(format!(
                "invalid OpenAI speech config: {what}"
            )))
        };
        let base = config.base_url.trim_end_matches('/');
        if reqwest::Url::parse(base).is_err()
            || !(base.starts_with("http://") || base.starts_with("https://"))
        {
            return invalid(format!(
                "base_url {:?} is not an http(s) URL",
                config.base_url
            ));
        }
        if !(0.25..=4.0).contains(&config.speed) {
            return invalid(format!("speed {} is outside 0.25..=4.0", config.speed));
        }
        if config.pcm_sample_rate == 0 {
            return invalid("pcm_sample_rate is 0".into());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| {
                ProviderError::Unavailable(format!("cannot build the HTTP client: {e}"))
            })?;
        let endpoint = format!("{base}/audio/speech");
        Ok(Self {
            config,
            endpoint,
            client,
        })
    }

    pub fn config(&self) -> &OpenAiTtsConfig {
        &self.config
    }
}

impl TtsProvider for OpenAiTts {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn synthesize(&self, request: TtsRequest) -> PcmStream {
        if request.text.trim().is_empty() {
            return Box::pin(stream::empty());
        }
        let body = serde_json::json!({
            "model": self.config.model,
            "input": request.text,
            "voice": self.config.voices.get(request.lang.as_deref()).unwrap_or(&self.config.voice),
            "response_format": self.config.response_format.as_str(),
            "speed": self.config.speed,
        });
        let mut http_request = self.client.post(&self.endpoint).json(&body);
        if let Some(key) = &self.config.api_key {
            http_request = http_request.bearer_auth(key);
        }
        let pending = PendingSpeech {
            http_request,
            idle_timeout: self.config.idle_timeout,
            body_decoder: match self.config.response_format {
                OpenAiSpeechFormat::Pcm => BodyDecoder::Pcm {
                    sample_rate: self.config.pcm_sample_rate,
                    odd_byte: None,
                },
                OpenAiSpeechFormat::Mp3 => BodyDecoder::Mp3(Box::default()),
            },
            correlation_id: request.correlation_id,
        };
        Box::pin(stream::unfold(
            SpeechStream::Requesting(Box::new(pending)),
            SpeechStream::advance,
        ))
    }
}

/// Where one synthesis stands; the stream owns the response, so dropping it aborts the request.
enum SpeechStream {
    Requesting(Box<PendingSpeech>),
    Receiving(Box<SpeechBody>),
    Done,
}

impl SpeechStream {
    async fn advance(self) -> Option<(Result<PcmBlock, ProviderError>, SpeechStream)> {
        let mut body = match self {
            SpeechStream::Requesting(pending) => {
                let correlation_id = pending.correlation_id.clone();
                match pending.send().await {
                    Ok(body) => Box::new(body),
                    Err(error) => {
                        tracing::warn!(correlationId = %correlation_id, %error, "openai speech could not start");
                        return Some((Err(error), SpeechStream::Done));
                    }
                }
            }
            SpeechStream::Receiving(body) => body,
            SpeechStream::Done => return None,
        };
        match body.next_block().await {
            Some(Ok(block)) => Some((Ok(block), SpeechStream::Receiving(body))),
            Some(Err(error)) => {
                tracing::warn!(correlationId = %body.correlation_id, %error, body_bytes = body.body_bytes, "openai speech failed");
                Some((Err(error), SpeechStream::Done))
            }
            None => None,
        }
    }
}

struct PendingSpeech {
    http_request: reqwest::RequestBuilder,
    idle_timeout: Duration,
    body_decoder: BodyDecoder,
    correlation_id: String,
}

impl PendingSpeech {
    async fn send(self) -> Result<SpeechBody, ProviderError> {
        let response = match tokio::time::timeout(self.idle_timeout, self.http_request.send()).await
        {
            Err(_elapsed) => {
                return Err(ProviderError::Timeout(format!(
                    "no response headers within {:?}",
                    self.idle_timeout
                )));
            }
            Ok(Err(error)) => return Err(transport_error(&error)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if !status.is_success() {
            return Err(status_error(response, self.idle_timeout).await);
        }
        tracing::debug!(correlationId = %self.correlation_id, %status, "openai speech streaming");
        Ok(SpeechBody {
            response,
            decoder: self.body_decoder,
            pending: VecDeque::new(),
            idle_timeout: self.idle_timeout,
            body_bytes: 0,
            finished: false,
            correlation_id: self.correlation_id,
        })
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
        ProviderError::Timeout(format!("connecting to the speech server: {message}"))
    } else {
        ProviderError::Transport(message)
    }
}

/// Maps an error status to the variant callers branch on, with the server's own message.
async fn status_error(response: reqwest::Response, idle_timeout: Duration) -> ProviderError {
    let status = response.status();
    let retry_after = crate::retry_after::from_headers(response.headers());
    let body = tokio::time::timeout(idle_timeout, response.bytes())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let message = error_message(&body);
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ProviderError::Auth(format!(
            "the speech server answered HTTP {status}: {message}"
        )),
        StatusCode::TOO_MANY_REQUESTS => ProviderError::RateLimited { retry_after },
        _ => ProviderError::Protocol(format!(
            "the speech server answered HTTP {status}: {message}"
        )),
    }
}

/// `{"error":{"message":…}}` as OpenAI sends it, else the start of the body as text.
fn error_message(body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| {
            let error = json.get("error")?;
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

/// The response body being turned into PCM.
struct SpeechBody {
    response: reqwest::Response,
    decoder: BodyDecoder,
    pending: VecDeque<PcmBlock>,
    idle_timeout: Duration,
    body_bytes: usize,
    finished: bool,
    correlation_id: String,
}

impl SpeechBody {
    async fn next_block(&mut self) -> Option<Result<PcmBlock, ProviderError>> {
        loop {
            if let Some(block) = self.pending.pop_front() {
                return Some(Ok(block));
            }
            if self.finished {
                return None;
            }
            let chunk = match tokio::time::timeout(self.idle_timeout, self.response.chunk()).await {
                Err(_elapsed) => {
                    return Some(Err(ProviderError::Timeout(format!(
                        "the speech body stalled for {:?} after {} bytes",
                        self.idle_timeout, self.body_bytes
                    ))));
                }
                Ok(Err(error)) => {
                    return Some(Err(ProviderError::Transport(format!(
                        "the speech body broke after {} bytes: {}",
                        self.body_bytes,
                        transport_error(&error)
                    ))));
                }
                Ok(Ok(chunk)) => chunk,
            };
            let decoded = match chunk {
                Some(bytes) => {
                    self.body_bytes += bytes.len();
                    self.decoder.push(bytes)
                }
                None => {
                    self.finished = true;
                    if self.body_bytes == 0 {
                        return Some(Err(ProviderError::Protocol(
                            "the speech response carried no audio".into(),
                        )));
                    }
                    self.decoder.finish()
                }
            };
            match decoded {
                Ok(blocks) => self
                    .pending
                    .extend(blocks.into_iter().filter(|b| !b.samples.is_empty())),
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

/// Turns body bytes, split anywhere, into PCM.
enum BodyDecoder {
    /// s16le: a chunk may end in the middle of a sample; its first byte waits for the next chunk.
    Pcm {
        sample_rate: u32,
        odd_byte: Option<u8>,
    },
    Mp3(Box<Mp3StreamDecoder>),
}

impl BodyDecoder {
    fn push(&mut self, bytes: Bytes) -> Result<Vec<PcmBlock>, ProviderError> {
        match self {
            BodyDecoder::Pcm {
                sample_rate,
                odd_byte,
            } => {
                let mut samples = Vec::with_capacity(bytes.len() / 2 + 1);
                let mut rest: &[u8] = &bytes;
                if let Some(low) = odd_byte.take() {
                    let Some((&high, tail)) = rest.split_first() else {
                        *odd_byte = Some(low);
                        return Ok(Vec::new());
                    };
                    samples.push(i16::from_le_bytes([low, high]));
                    rest = tail;
                }
                let mut pairs = rest.chunks_exact(2);
                samples.extend(
                    pairs
                        .by_ref()
                        .map(|pair| i16::from_le_bytes([pair[0], pair[1]])),
                );
                *odd_byte = pairs.remainder().first().copied();
                Ok(vec![PcmBlock {
                    sample_rate: *sample_rate,
                    samples,
                }])
            }
            BodyDecoder::Mp3(decoder) => Ok(decoder.push(&bytes)?),
        }
    }

    fn finish(&mut self) -> Result<Vec<PcmBlock>, ProviderError> {
        match self {
            BodyDecoder::Pcm { odd_byte, .. } => {
                if odd_byte.take().is_some() {
                    tracing::warn!(
                        "openai speech: the pcm body ended in the middle of a sample; dropping the byte"
                    );
                }
                Ok(Vec::new())
            }
            BodyDecoder::Mp3(decoder) => Ok(decoder.finish()?),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn pcm_split_at_odd_offsets_reassembles_every_sample() {
        let samples: Vec<i16> = (0..1000).map(|i| (i * 37 - 18_000) as i16).collect();
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        for piece in [1, 3, 7, 333, 2000] {
            let mut decoder = BodyDecoder::Pcm {
                sample_rate: 24_000,
                odd_byte: None,
            };
            let mut out = Vec::new();
            for chunk in bytes.chunks(piece) {
                for block in decoder.push(Bytes::copy_from_slice(chunk)).unwrap() {
                    assert_eq!(block.sample_rate, 24_000, "the configured pcm rate");
                    out.extend(block.samples);
                }
            }
            assert!(
                decoder.finish().unwrap().is_empty(),
                "an even-length body leaves nothing behind"
            );
            assert_eq!(
                out, samples,
                "{piece}-byte pieces must reassemble the exact samples"
            );
        }
    }

    #[test]
    fn error_messages_come_from_openai_json_or_the_raw_body() {
        assert_eq!(
            error_message(
                br#"{"error":{"message":"Incorrect API key","type":"invalid_request_error"}}"#
            ),
            "Incorrect API key",
            "OpenAI's error shape"
        );
        assert_eq!(
            error_message(br#"{"error":"model not found"}"#),
            "model not found",
            "a string error"
        );
        assert_eq!(
            error_message(b"Bad Gateway"),
            "Bad Gateway",
            "plain text passes through"
        );
        assert_eq!(
            error_message(b""),
            "(empty body)",
            "nothing to say is said explicitly"
        );
    }

    #[test]
    fn config_debug_never_shows_the_key() {
        let config = OpenAiTtsConfig {
            api_key: Some("sk-secret".into()),
            ..Default::default()
        };
        assert!(
            !format!("{config:?}").contains("sk-secret"),
            "keys must not reach logs"
        );
        assert!(
            OpenAiTts::new(OpenAiTtsConfig {
                speed: 9.0,
                ..Default::default()
            })
            .is_err(),
            "speed is bounded"
        );
        assert!(
            OpenAiTts::new(OpenAiTtsConfig::default()).is_ok(),
            "the defaults are valid"
        );
    }
}

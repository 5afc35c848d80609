//! Microsoft Edge read-aloud TTS over its WebSocket protocol (needs the internet in real use).
//!
//! One synthesis is one connection: handshake on `…/readaloud/edge/v1` with the token query
//! parameters (see [`token`]), a `speech.config` message, an `ssml` message, then the server
//! streams `turn.start`, binary MP3 frames and `turn.end`. MP3 is decoded as it arrives
//! ([`crate::audio::mp3`]) and PCM blocks come out at the stream's own rate (24 kHz by default).
//! Dropping the stream drops the socket at once.
//!
//! The endpoint is configurable so tests can point it at `koto_testkit::fake_edge` (plain `ws://`);
//! real use needs `wss://` to speech.platform.bing.com and therefore internet access. This module
//! does not split long texts (the engine speaks sentence by sentence), list voices, or surface
//! word-boundary metadata.

mod clock;
mod protocol;
pub mod token;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt, stream};
use http::StatusCode;
use koto_core::ProviderError;
use koto_core::tts::{PcmBlock, PcmStream, TtsProvider, TtsRequest};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::audio::mp3::Mp3StreamDecoder;
use crate::tts::voice_map::{self, VoiceMap};
use koto_core::lang::LangTag;
use protocol::{Prosody, ServerMessage};
use token::{ClockSkew, EdgeCredentials, EdgeTokenScheme, FileTimeSha256};

/// Microsoft's public read-aloud endpoint (without query parameters; those are added per connection).
pub const DEFAULT_ENDPOINT: &str =
    "wss://speech.platform.bing.com/consumer/speech/synthesize/readaloud/edge/v1";

/// What a 403 at the handshake means in practice.
pub const TOKEN_REJECTED: &str = "Edge rejected the token (Sec-MS-GEC); the token scheme may have changed \
     (Microsoft changed it before, e.g. in October 2026): implement a new \
     koto_providers::tts::edge::token::EdgeTokenScheme and pass it to EdgeTts::with_token_scheme";

/// Settings of the Edge provider. `Default` gives Microsoft's endpoint and Edge's own defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeTtsConfig {
    /// `wss://…/readaloud/edge/v1` (or `ws://` for a loopback fake); token parameters are appended.
    pub endpoint: String,
    /// A voice such as `zh-CN-XiaoxiaoNeural` for every language; `None` picks one by the
    /// request's language: its entry in `voices`, else [`default_voice_for`].
    pub voice: Option<String>,
    /// Voices by language (`TTS_VOICES`, `zh=zh-CN-YunxiNeural`).
    pub voices: VoiceMap,
    /// Speaking rate relative to normal, `+0%`, `-20%`, `+50%`.
    pub rate: String,
    /// Volume relative to normal, `+0%`.
    pub volume: String,
    /// Pitch shift, `+0Hz`, `-5Hz`.
    pub pitch: String,
    /// An Edge MP3 output format; only MP3 formats are accepted (that is what this client decodes).
    pub output_format: String,
    /// TCP + TLS + WebSocket handshake + sending the request.
    pub connect_timeout: Duration,
    /// Longest silence from the server between two messages.
    pub receive_timeout: Duration,
}

impl Default for EdgeTtsConfig {
    fn default() -> Self {
        Self {
            endpoint: DEFAULT_ENDPOINT.into(),
            voice: None,
            voices: VoiceMap::default(),
            rate: "+0%".into(),
            volume: "+0%".into(),
            pitch: "+0Hz".into(),
            output_format: "audio-24khz-48kbitrate-mono-mp3".into(),
            connect_timeout: Duration::from_secs(10),
            receive_timeout: Duration::from_secs(10),
        }
    }
}

/// The voice used when none is configured for the language: Xiaoxiao for `zh` (HsiaoChen for
/// `zh-TW`, HiuMaan for `zh-HK`), Nanami for `ja`, SunHi for `ko`, Aria otherwise.
pub fn default_voice_for(lang: Option<&str>) -> &'static str {
    let Some(tag) = lang.and_then(|lang| LangTag::parse(lang).ok()) else {
        return "en-US-AriaNeural";
    };
    match (tag.primary(), tag.as_str()) {
        ("zh", tag) if tag.ends_with("-TW") || tag.contains("-Hant") => "zh-TW-HsiaoChenNeural",
        ("zh", tag) if tag.ends_with("-HK") => "zh-HK-HiuMaanNeural",
        ("zh" | "cmn", _) => "zh-CN-XiaoxiaoNeural",
        ("ja", _) => "ja-JP-NanamiNeural",
        ("ko", _) => "ko-KR-SunHiNeural",
        _ => "en-US-AriaNeural",
    }
}

/// The Edge read-aloud provider. Cheap to share: streams hold `Arc`s of its parts.
pub struct EdgeTts {
    config: Arc<EdgeTtsConfig>,
    token_scheme: Arc<dyn EdgeTokenScheme>,
    clock_skew: Arc<ClockSkew>,
}

impl EdgeTts {
    /// With the token scheme implemented in [`token::FileTimeSha256`].
    pub fn new(config: EdgeTtsConfig) -> Result<Self, ProviderError> {
        Self::with_token_scheme(config, Arc::new(FileTimeSha256::default()))
    }

    /// With another token scheme, for when Microsoft changes theirs.
    pub fn with_token_scheme(
        config: EdgeTtsConfig,
        token_scheme: Arc<dyn EdgeTokenScheme>,
    ) -> Result<Self, ProviderError> {
        validate(&config)?;
        Ok(Self {
            config: Arc::new(config),
            token_scheme,
            clock_skew: Arc::new(ClockSkew::default()),
        })
    }

    pub fn config(&self) -> &EdgeTtsConfig {
        &self.config
    }

    /// The voice for a request: the forced one (`TTS_VOICE`), else the language's entry in
    /// `voices`, else [`default_voice_for`] the language.
    pub fn voice_for(&self, lang: Option<&str>) -> &str {
        voice_map::choose(
            self.config.voice.as_deref(),
            &self.config.voices,
            lang,
            default_voice_for,
        )
    }
}

fn validate(config: &EdgeTtsConfig) -> Result<(), ProviderError> {
    let invalid = |what: String| {
        Err(ProviderError::Unavailable(format!(
            "invalid Edge TTS config: {what}"
        )))
    };
    let endpoint_ok = config.endpoint.starts_with("wss://") || config.endpoint.starts_with("ws://");
    if !endpoint_ok || config.endpoint.as_str().into_client_request().is_err() {
        return invalid(format!(
            "endpoint {:?} is not a ws:// or wss:// URL",
            config.endpoint
        ));
    }
    for (name, value, unit) in [
        ("rate", &config.rate, "%"),
        ("volume", &config.volume, "%"),
        ("pitch", &config.pitch, "Hz"),
    ] {
        if !is_signed_amount(value, unit) {
            return invalid(format!(
                "{name} {value:?} must look like +0{unit} or -10{unit}"
            ));
        }
    }
    if !config.output_format.contains("mp3") {
        return invalid(format!(
            "output_format {:?} is not an MP3 format (only MP3 is decoded)",
            config.output_format
        ));
    }
    if config.voice.as_deref().is_some_and(|v| v.trim().is_empty()) {
        return invalid("voice is blank".into());
    }
    Ok(())
}

/// `+10%`, `-5Hz`: a sign, digits, the unit.
fn is_signed_amount(value: &str, unit: &str) -> bool {
    let Some(number) = value
        .strip_prefix(['+', '-'])
        .and_then(|v| v.strip_suffix(unit))
    else {
        return false;
    };
    !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
}

impl TtsProvider for EdgeTts {
    fn name(&self) -> &'static str {
        "edge"
    }

    fn synthesize(&self, request: TtsRequest) -> PcmStream {
        let text = request.text.trim();
        if text.is_empty() {
            return Box::pin(stream::empty());
        }
        let voice = self.voice_for(request.lang.as_deref()).to_owned();
        let prosody = Prosody {
            voice: &voice,
            rate: &self.config.rate,
            volume: &self.config.volume,
            pitch: &self.config.pitch,
        };
        let ssml = protocol::ssml(text, &prosody);
        // Headers of the ssml message: ids, a timestamp and the names, well under 300 bytes.
        if ssml.len() + 300 > protocol::MAX_MESSAGE_BYTES {
            let error = ProviderError::Protocol(format!(
                "text too long for one Edge request ({} bytes of SSML; Edge accepts 64 KiB per message)",
                ssml.len()
            ));
            return Box::pin(stream::once(std::future::ready(Err(error))));
        }
        let connection = EdgeConnection {
            config: Arc::clone(&self.config),
            token_scheme: Arc::clone(&self.token_scheme),
            clock_skew: Arc::clone(&self.clock_skew),
            ssml,
            correlation_id: request.correlation_id,
        };
        Box::pin(stream::unfold(
            EdgeStream::Connecting(Box::new(connection)),
            EdgeStream::advance,
        ))
    }
}

/// Where one synthesis stands; the stream owns it, so dropping the stream drops the socket.
enum EdgeStream {
    Connecting(Box<EdgeConnection>),
    Receiving(Box<EdgeTurn>),
    Done,
}

impl EdgeStream {
    async fn advance(self) -> Option<(Result<PcmBlock, ProviderError>, EdgeStream)> {
        let mut turn = match self {
            EdgeStream::Connecting(connection) => {
                let correlation_id = connection.correlation_id.clone();
                match connection.open().await {
                    Ok(turn) => Box::new(turn),
                    Err(error) => {
                        tracing::warn!(correlationId = %correlation_id, %error, "edge tts could not start");
                        return Some((Err(error), EdgeStream::Done));
                    }
                }
            }
            EdgeStream::Receiving(turn) => turn,
            EdgeStream::Done => return None,
        };
        match turn.next_block().await {
            Some(Ok(block)) => Some((Ok(block), EdgeStream::Receiving(turn))),
            Some(Err(error)) => {
                tracing::warn!(correlationId = %turn.correlation_id, %error, audio_bytes = turn.audio_bytes, "edge tts failed");
                Some((Err(error), EdgeStream::Done))
            }
            None => None,
        }
    }
}

type EdgeSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Everything needed to open the connection and send the request.
struct EdgeConnection {
    config: Arc<EdgeTtsConfig>,
    token_scheme: Arc<dyn EdgeTokenScheme>,
    clock_skew: Arc<ClockSkew>,
    ssml: String,
    correlation_id: String,
}

/// Why one handshake attempt failed.
enum HandshakeFailure {
    /// 403 with the server's `Date` header, if it sent one.
    Forbidden {
        date: Option<String>,
    },
    Other(ProviderError),
}

impl EdgeConnection {
    async fn open(self) -> Result<EdgeTurn, ProviderError> {
        let mut retried_with_server_clock = false;
        loop {
            let local_now = SystemTime::now();
            let credentials = self
                .token_scheme
                .credentials(self.clock_skew.server_now(local_now));
            let attempt = tokio::time::timeout(
                self.config.connect_timeout,
                self.handshake_and_send(&credentials),
            );
            match attempt.await {
                Err(_elapsed) => {
                    return Err(ProviderError::Timeout(format!(
                        "connecting to Edge took longer than {:?}",
                        self.config.connect_timeout
                    )));
                }
                Ok(Ok(socket)) => {
                    tracing::debug!(correlationId = %self.correlation_id, "edge tts request sent");
                    return Ok(EdgeTurn {
                        socket,
                        decoder: Mp3StreamDecoder::new(),
                        pending: VecDeque::new(),
                        receive_timeout: self.config.receive_timeout,
                        audio_bytes: 0,
                        turn_ended: false,
                        correlation_id: self.correlation_id,
                    });
                }
                Ok(Err(HandshakeFailure::Forbidden { date })) => {
                    // A token from the wrong 5-minute window also gets 403: if the server's clock
                    // differs from ours, retry once with tokens made for its time.
                    let skew_learned = date
                        .as_deref()
                        .is_some_and(|d| self.clock_skew.learn_from_date_header(d, local_now));
                    if skew_learned && !retried_with_server_clock {
                        retried_with_server_clock = true;
                        tracing::info!(
                            correlationId = %self.correlation_id,
                            server_ahead_secs = self.clock_skew.server_ahead_secs(),
                            "edge rejected the token; retrying with the server's clock"
                        );
                        continue;
                    }
                    return Err(ProviderError::Auth(format!(
                        "{TOKEN_REJECTED} (HTTP 403 at the handshake)"
                    )));
                }
                Ok(Err(HandshakeFailure::Other(error))) => return Err(error),
            }
        }
    }

    async fn handshake_and_send(
        &self,
        credentials: &EdgeCredentials,
    ) -> Result<EdgeSocket, HandshakeFailure> {
        let connection_id = protocol::request_id();
        let url = format!(
            "{}{}TrustedClientToken={}&Sec-MS-GEC={}&Sec-MS-GEC-Version={}&ConnectionId={}",
            self.config.endpoint,
            if self.config.endpoint.contains('?') {
                '&'
            } else {
                '?'
            },
            query_value(&credentials.trusted_client_token),
            query_value(&credentials.sec_ms_gec),
            query_value(&credentials.sec_ms_gec_version),
            connection_id,
        );
        let mut request = url.into_client_request().map_err(|e| {
            HandshakeFailure::Other(ProviderError::Unavailable(format!(
                "invalid Edge endpoint: {e}"
            )))
        })?;
        let headers = request.headers_mut();
        for (name, value) in [
            ("Pragma", "no-cache"),
            ("Cache-Control", "no-cache"),
            ("Origin", protocol::EXTENSION_ORIGIN),
            ("Accept-Language", "en-US,en;q=0.9"),
            ("User-Agent", credentials.user_agent.as_str()),
        ] {
            let value = http::HeaderValue::from_str(value).map_err(|_| {
                HandshakeFailure::Other(ProviderError::Unavailable(format!(
                    "header {name} is not valid: {value:?}"
                )))
            })?;
            headers.insert(name, value);
        }

        let mut socket = match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _response)) => socket,
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status();
                if status == StatusCode::FORBIDDEN {
                    let date = response
                        .headers()
                        .get(http::header::DATE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    return Err(HandshakeFailure::Forbidden { date });
                }
                return Err(HandshakeFailure::Other(handshake_status_error(
                    status,
                    response.headers(),
                )));
            }
            Err(error) => {
                return Err(HandshakeFailure::Other(ProviderError::Transport(format!(
                    "Edge handshake failed: {error}"
                ))));
            }
        };

        // One timestamp for both messages, as Edge does.
        let timestamp = clock::javascript_date(SystemTime::now());
        let send_failed = |e: tungstenite::Error| {
            HandshakeFailure::Other(ProviderError::Transport(format!(
                "sending the Edge request failed: {e}"
            )))
        };
        socket
            .send(Message::text(protocol::speech_config_message(
                &timestamp,
                &self.config.output_format,
            )))
            .await
            .map_err(send_failed)?;
        socket
            .send(Message::text(protocol::ssml_message(
                &connection_id,
                &timestamp,
                &self.ssml,
            )))
            .await
            .map_err(send_failed)?;
        Ok(socket)
    }
}

fn handshake_status_error(status: StatusCode, headers: &http::HeaderMap) -> ProviderError {
    match status {
        StatusCode::UNAUTHORIZED => {
            ProviderError::Auth(format!("Edge refused the handshake: HTTP {status}"))
        }
        StatusCode::TOO_MANY_REQUESTS => ProviderError::RateLimited {
            retry_after: crate::retry_after::from_headers(headers),
        },
        _ => ProviderError::Protocol(format!(
            "Edge refused the WebSocket handshake: HTTP {status}"
        )),
    }
}

/// Percent-encodes a query value (tokens are hex today; a future scheme may not be).
fn query_value(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// An open connection whose request has been sent: reads until `turn.end`.
struct EdgeTurn {
    socket: EdgeSocket,
    decoder: Mp3StreamDecoder,
    /// Decoded blocks not yet handed out (one message can complete several frames).
    pending: VecDeque<PcmBlock>,
    receive_timeout: Duration,
    audio_bytes: usize,
    turn_ended: bool,
    correlation_id: String,
}

impl EdgeTurn {
    async fn next_block(&mut self) -> Option<Result<PcmBlock, ProviderError>> {
        loop {
            if let Some(block) = self.pending.pop_front() {
                return Some(Ok(block));
            }
            if self.turn_ended {
                return None;
            }
            let message = match tokio::time::timeout(self.receive_timeout, self.socket.next()).await
            {
                Err(_elapsed) => {
                    return Some(Err(ProviderError::Timeout(format!(
                        "Edge sent nothing for {:?} (after {} bytes of audio)",
                        self.receive_timeout, self.audio_bytes
                    ))));
                }
                Ok(None) => return Some(Err(self.closed_early("the connection closed"))),
                Ok(Some(Err(error))) => {
                    return Some(Err(
                        self.closed_early(&format!("the connection broke: {error}"))
                    ));
                }
                Ok(Some(Ok(message))) => message,
            };
            let outcome = match message {
                Message::Text(text) => self.on_text(text.as_str()),
                Message::Binary(frame) => self.on_binary(&frame),
                Message::Close(frame) => {
                    let reason = frame
                        .map(|f| format!("{} {}", f.code, f.reason))
                        .unwrap_or_default();
                    Err(self.closed_early(&format!("Edge closed the socket {reason}")))
                }
                // tungstenite answers pings itself.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
            };
            if let Err(error) = outcome {
                return Some(Err(error));
            }
        }
    }

    fn on_text(&mut self, text: &str) -> Result<(), ProviderError> {
        let message = protocol::parse_text_frame(text)
            .map_err(|e| ProviderError::Protocol(format!("unreadable Edge message: {e}")))?;
        match message {
            ServerMessage::TurnEnd => {
                self.pending.extend(self.decoder.finish()?);
                self.turn_ended = true;
                if self.audio_bytes == 0 {
                    return Err(ProviderError::Protocol(
                        "Edge ended the turn without audio (check the voice name and prosody values)".into(),
                    ));
                }
                tracing::debug!(correlationId = %self.correlation_id, audio_bytes = self.audio_bytes, "edge turn ended");
            }
            ServerMessage::TurnStart | ServerMessage::AudioMetadata | ServerMessage::Response => {}
            ServerMessage::Other(path) => {
                tracing::debug!(path, "edge: ignoring an unknown text message")
            }
            ServerMessage::Audio(_) => {}
        }
        Ok(())
    }

    fn on_binary(&mut self, frame: &[u8]) -> Result<(), ProviderError> {
        let message = protocol::parse_binary_frame(frame)
            .map_err(|e| ProviderError::Protocol(format!("unreadable Edge audio frame: {e}")))?;
        match message {
            ServerMessage::Audio(mp3) => {
                self.audio_bytes += mp3.len();
                self.pending.extend(self.decoder.push(mp3)?);
            }
            other => tracing::debug!(?other, "edge: ignoring a binary message that is not audio"),
        }
        Ok(())
    }

    fn closed_early(&self, what: &str) -> ProviderError {
        ProviderError::Transport(format!(
            "{what} before turn.end, after {} bytes of audio",
            self.audio_bytes
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_voices_follow_the_language() {
        assert_eq!(
            default_voice_for(Some("zh")),
            "zh-CN-XiaoxiaoNeural",
            "Chinese"
        );
        assert_eq!(
            default_voice_for(Some("zh-CN")),
            "zh-CN-XiaoxiaoNeural",
            "Mainland Chinese"
        );
        assert_eq!(
            default_voice_for(Some("zh-TW")),
            "zh-TW-HsiaoChenNeural",
            "Taiwanese Mandarin"
        );
        assert_eq!(default_voice_for(Some("ko")), "ko-KR-SunHiNeural", "Korean");
        assert_eq!(
            default_voice_for(Some("ja")),
            "ja-JP-NanamiNeural",
            "Japanese"
        );
        assert_eq!(default_voice_for(Some("en")), "en-US-AriaNeural", "English");
        assert_eq!(
            default_voice_for(None),
            "en-US-AriaNeural",
            "no hint: English"
        );
    }

    #[test]
    fn a_forced_voice_then_the_map_then_the_default() {
        let mapped = EdgeTts::new(EdgeTtsConfig {
            voices: "zh=zh-CN-YunxiNeural".parse().expect("a valid list"),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(mapped.voice_for(Some("zh")), "zh-CN-YunxiNeural");
        assert_eq!(mapped.voice_for(Some("ja")), "ja-JP-NanamiNeural");
        let forced = EdgeTts::new(EdgeTtsConfig {
            voice: Some("en-GB-SoniaNeural".into()),
            voices: "zh=zh-CN-YunxiNeural".parse().expect("a valid list"),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(
            forced.voice_for(Some("zh")),
            "en-GB-SoniaNeural",
            "TTS_VOICE wins"
        );
    }

    #[test]
    fn config_validation_rejects_what_edge_would_refuse() {
        assert!(
            EdgeTts::new(EdgeTtsConfig::default()).is_ok(),
            "the defaults are valid"
        );
        for config in [
            EdgeTtsConfig {
                rate: "fast".into(),
                ..Default::default()
            },
            EdgeTtsConfig {
                volume: "+10".into(),
                ..Default::default()
            },
            EdgeTtsConfig {
                pitch: "+5%".into(),
                ..Default::default()
            },
            EdgeTtsConfig {
                output_format: "riff-24khz-16bit-mono-pcm".into(),
                ..Default::default()
            },
            EdgeTtsConfig {
                endpoint: "https://example.invalid/".into(),
                ..Default::default()
            },
            EdgeTtsConfig {
                voice: Some(" ".into()),
                ..Default::default()
            },
        ] {
            assert!(
                matches!(
                    EdgeTts::new(config.clone()),
                    Err(ProviderError::Unavailable(_))
                ),
                "{config:?} must be refused up front, not at the first turn"
            );
        }
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query_value("1-130.0.2849.68"),
            "1-130.0.2849.68",
            "versions pass unchanged"
        );
        assert_eq!(
            query_value("a b&c"),
            "a%20b%26c",
            "separators cannot break the query"
        );
    }
}

//! `POST /chat/stream` (CONTRACTS §1): the request body and the SSE payloads.

use koto_core::turn::InputKind;
use serde::{Deserialize, Serialize};

/// The request body as it arrives, before validation. Unknown fields are ignored.
/// `sessionId` stays a string here so a bad one gets `invalid_session_id`, not `invalid_json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatStreamRequest {
    pub session_id: String,
    #[serde(default)]
    pub turn: Option<serde_json::Value>,
    #[serde(default, rename = "type")]
    pub kind: Option<serde_json::Value>,
    pub content: String,
    #[serde(default)]
    pub meta: ChatMeta,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChatMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// Everything else the client sent in `meta`, kept for plugins.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Parse the `type` field: absent → TEXT.
pub fn parse_input_kind(raw: Option<&serde_json::Value>) -> Result<InputKind, String> {
    match raw {
        None | Some(serde_json::Value::Null) => Ok(InputKind::Text),
        Some(serde_json::Value::String(s)) => match s.as_str() {
            "TEXT" => Ok(InputKind::Text),
            "ASR_FINAL" => Ok(InputKind::AsrFinal),
            "COMMAND" => Ok(InputKind::Command),
            other => Err(format!(
                "type must be TEXT, ASR_FINAL or COMMAND, not {other:?}"
            )),
        },
        Some(other) => Err(format!("type must be a string, not {other}")),
    }
}

/// Parse the optional `turn` field: an integer ≥ 0.
pub fn parse_turn(raw: Option<&serde_json::Value>) -> Result<Option<u64>, String> {
    match raw {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => match n.as_u64() {
            Some(turn) if turn <= koto_core::TurnNo::MAX => Ok(Some(turn)),
            Some(turn) => Err(format!(
                "turn {turn} is too large; the highest turn number is {}",
                koto_core::TurnNo::MAX
            )),
            None => Err(format!("turn must be an integer >= 0, not {n}")),
        },
        Some(other) => Err(format!("turn must be an integer >= 0, not {other}")),
    }
}

/// SSE event names, in the order CONTRACTS §1 allows them.
pub mod event {
    pub const TEXT_DELTA: &str = "text-delta";
    pub const CONTROL: &str = "control";
    pub const ERROR: &str = "error";
    pub const DONE: &str = "done";
    /// `/chat/audio/stream`: the transcript, before the turn's own events.
    pub const ASR_FINAL: &str = "asr-final";
}

/// What the ASR heard in an uploaded utterance: the `asr-final` SSE event of
/// `/chat/audio/stream` and the `transcript` of `/chat/audio`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AsrFinal {
    pub session_id: String,
    pub turn: u64,
    pub text: String,
    pub language: Option<String>,
    /// 0..1 when the ASR gives one.
    pub confidence: Option<f32>,
    pub duration_ms: u64,
}

/// The JSON answer of `POST /chat/audio`, once the turn has ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatAudioResponse {
    pub session_id: String,
    pub turn: u64,
    pub transcript: AsrFinal,
    /// The reply text as streamed (what was delivered, when interrupted).
    pub reply: String,
    pub interrupted: bool,
    /// A provider failure during the reply, as the SSE `error` event carries it.
    pub error: Option<crate::WireError>,
    pub stats: TurnStats,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextDelta {
    pub content: String,
    pub eos: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlEvent {
    /// `HINT_TTS_START` or `STOPPED`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// On `STOPPED`: the text whose audio was released before the fence (what the listener
    /// heard); the text delivered so far when the turn had no audio. Additive to CONTRACTS §1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heard: Option<String>,
}

impl ControlEvent {
    pub fn hint_tts_start() -> Self {
        ControlEvent {
            action: "HINT_TTS_START".into(),
            reason: None,
            heard: None,
        }
    }

    pub fn stopped(reason: impl Into<String>) -> Self {
        ControlEvent {
            action: "STOPPED".into(),
            reason: Some(reason.into()),
            heard: None,
        }
    }

    /// `STOPPED` with what was heard before the fence.
    pub fn stopped_after(reason: impl Into<String>, heard: impl Into<String>) -> Self {
        ControlEvent {
            heard: Some(heard.into()),
            ..ControlEvent::stopped(reason)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TurnStats {
    /// Request receipt → first text delta handed to the response, in ms; `null` if none came.
    pub ttft_ms: Option<f64>,
    /// LLM deltas received (not whitespace words).
    pub tokens: u64,
    /// Request receipt → first audio chunk handed to the relay; `null` without audio.
    pub first_audio_ms: Option<f64>,
    pub interrupted: bool,
    /// Request receipt → the LLM's stream ended (the whole reply text is out), in ms.
    #[serde(default)]
    pub llm_done_ms: Option<f64>,
    /// Request receipt → the turn's last audio chunk was released to listeners, in ms.
    #[serde(default)]
    pub last_audio_ms: Option<f64>,
    /// The reply was ended by a cap: `tokens` (the LLM's `max_tokens`: kept up to its last
    /// complete clause) or `duration` (`MAX_REPLY_SECONDS` of speech: kept up to the segment
    /// that reached it). Absent when the reply ended by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capped: Option<String>,
    /// Request receipt → the quick acknowledgment's filler went to the relay (`QUICK_ACK_MS`),
    /// in ms; absent when none played. Never counted as first audio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quick_ack_ms: Option<f64>,
    /// Request receipt → the first heard segment's text was cut and handed to the TTS, in ms.
    /// With `tts_first_chunk_ms`, it splits `first_audio_ms` into the LLM's share and the TTS's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_segment_ms: Option<f64>,
    /// That segment's synthesis: the TTS call → its first chunk of audio, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tts_first_chunk_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    pub stats: TurnStats,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ignores_unknown_fields_and_defaults_type() {
        let body =
            r#"{"sessionId":"live-001","content":"hi","extra":1,"meta":{"lang":"zh","x":2}}"#;
        let request: ChatStreamRequest = serde_json::from_str(body).expect("valid body");
        assert_eq!(
            parse_input_kind(request.kind.as_ref()),
            Ok(InputKind::Text),
            "type defaults to TEXT"
        );
        assert_eq!(request.meta.lang.as_deref(), Some("zh"));
        assert_eq!(
            request.meta.extra.get("x"),
            Some(&serde_json::json!(2)),
            "unknown meta keys kept"
        );
    }

    #[test]
    fn turn_must_be_a_non_negative_integer() {
        assert_eq!(parse_turn(Some(&serde_json::json!(42))), Ok(Some(42)));
        assert!(
            parse_turn(Some(&serde_json::json!(-1))).is_err(),
            "negative turn rejected"
        );
        assert!(
            parse_turn(Some(&serde_json::json!(1.5))).is_err(),
            "fractional turn rejected"
        );
        assert!(
            parse_turn(Some(&serde_json::json!("3"))).is_err(),
            "string turn rejected"
        );
        let max = koto_core::TurnNo::MAX;
        assert_eq!(parse_turn(Some(&serde_json::json!(max))), Ok(Some(max)));
        for too_large in [max + 1, 9_223_372_036_854_775_806, 1 << 63, u64::MAX] {
            assert!(
                parse_turn(Some(&serde_json::json!(too_large))).is_err(),
                "{too_large} rejected"
            );
        }
        assert!(
            parse_turn(Some(&serde_json::json!(1e300))).is_err(),
            "a float beyond u64 rejected"
        );
    }

    #[test]
    fn done_serialises_with_snake_case_stats() {
        let done = Done {
            stats: TurnStats {
                ttft_ms: Some(12.5),
                tokens: 3,
                first_audio_ms: None,
                interrupted: false,
                llm_done_ms: Some(40.0),
                last_audio_ms: None,
                capped: None,
                quick_ack_ms: None,
                first_segment_ms: None,
                tts_first_chunk_ms: None,
            },
        };
        assert_eq!(
            serde_json::to_string(&done).expect("serialise"),
            r#"{"stats":{"ttft_ms":12.5,"tokens":3,"first_audio_ms":null,"interrupted":false,"llm_done_ms":40.0,"last_audio_ms":null}}"#
        );
    }
}

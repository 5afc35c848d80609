//! Relay frames (CONTRACTS §2–§3): `SPEECH_CHUNK` and `CONTROL`, both directions.
//!
//! Shape only; the relay (`koto-relay`) decides what a frame means.

use base64::Engine as _;
use koto_core::{SessionId, TurnNo};
use serde::{Deserialize, Serialize};

pub const DEFAULT_SAMPLE_RATE: u32 = 24_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Viseme {
    #[serde(deserialize_with = "finite_f32")]
    pub mouth_open: f32,
}

/// A JSON number past `f32`'s range (`1e39`) would read as infinity, which JSON cannot carry on
/// to clients (it is written as `null`): refused instead (found by `fuzz/`'s `ws` target).
fn finite_f32<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f32, D::Error> {
    let value = f32::deserialize(deserializer)?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(serde::de::Error::custom(
            "mouthOpen must be a number within f32's range",
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentInfo {
    pub index: u32,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpeechChunk {
    pub session_id: SessionId,
    pub turn: TurnNo,
    pub seq: u64,
    /// Base64 of s16le mono PCM.
    pub pcm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    pub viseme: Viseme,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<SegmentInfo>,
}

impl SpeechChunk {
    pub fn encode_pcm(samples: &[i16]) -> String {
        let mut bytes = Vec::with_capacity(samples.len() * 2);
        for sample in samples {
            bytes.extend_from_slice(&sample.to_le_bytes());
        }
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Decode `pcm`; an odd byte count or bad base64 is an error.
    pub fn decode_pcm(&self) -> Result<Vec<i16>, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.pcm)
            .map_err(|e| format!("pcm is not valid base64: {e}"))?;
        if bytes.len() % 2 != 0 {
            return Err("pcm must hold whole 16-bit samples".into());
        }
        Ok(bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect())
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate.unwrap_or(DEFAULT_SAMPLE_RATE)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ControlAction {
    Stop,
    StopAck,
    End,
    /// Relay → clients: hold the session's audio where it is (a voice barge-in's duck).
    Pause,
    /// Relay → clients: play on from where `PAUSE` held it.
    Resume,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Control {
    pub action: ControlAction,
    pub session_id: SessionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<TurnNo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The user's input of a turn, for the transcript (relay → `/ws/live` clients).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInputFrame {
    pub session_id: SessionId,
    pub turn: TurnNo,
    pub content: String,
}

/// One LLM text delta, for the streaming transcript (relay → `/ws/live` clients, unpaced).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TextDeltaFrame {
    pub session_id: SessionId,
    pub turn: TurnNo,
    pub content: String,
    pub eos: bool,
}

/// A reasoning model's thinking, for the panel to show dimmed (`SHOW_REASONING`; relay →
/// `/ws/live` clients, unpaced). Never spoken, stored or sent back in a prompt; the overlay and
/// the original protocol do not show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningDeltaFrame {
    pub session_id: SessionId,
    pub turn: TurnNo,
    pub content: String,
}

/// `VETO_WINDOW_MS`: the reply's first line waits this long before it is heard, so the streamer
/// can veto it (a STOP with reason `vetoed`). For the panel; the overlay never gets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VetoPendingFrame {
    pub session_id: SessionId,
    pub turn: TurnNo,
    /// The line as it will be subtitled.
    pub text: String,
    /// How long from now until its audio starts.
    pub window_ms: u64,
}

/// A frame on `/ws/ingest` or `/ws/live`, tagged by `type`. Producers send `SPEECH_CHUNK`,
/// `CONTROL` (END, STOP_ACK) and may send `USER_INPUT`/`TEXT_DELTA`/`REASONING_DELTA`; clients
/// receive all of them.
/// `MIC_LEVEL`, `ASR_PARTIAL` and `VOICE_DROPPED` come from the app's own microphone (`voice`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RelayFrame {
    SpeechChunk(SpeechChunk),
    Control(Control),
    UserInput(UserInputFrame),
    TextDelta(TextDeltaFrame),
    ReasoningDelta(ReasoningDeltaFrame),
    MicLevel(crate::voice::MicLevelFrame),
    AsrPartial(crate::voice::AsrPartialFrame),
    VoiceDropped(crate::voice::VoiceDroppedFrame),
    /// Live chat: a message picked, dropped or retracted, with why (engine → clients).
    ChatDecision(crate::live_chat::ChatDecisionFrame),
    /// The first line of a reply, held for the streamer's veto (engine → the panel).
    VetoPending(VetoPendingFrame),
}

impl RelayFrame {
    pub fn session_id(&self) -> &SessionId {
        match self {
            RelayFrame::SpeechChunk(chunk) => &chunk.session_id,
            RelayFrame::Control(control) => &control.session_id,
            RelayFrame::UserInput(input) => &input.session_id,
            RelayFrame::TextDelta(delta) => &delta.session_id,
            RelayFrame::ReasoningDelta(delta) => &delta.session_id,
            RelayFrame::MicLevel(level) => &level.session_id,
            RelayFrame::AsrPartial(partial) => &partial.session_id,
            RelayFrame::VoiceDropped(dropped) => &dropped.session_id,
            RelayFrame::ChatDecision(decision) => &decision.session_id,
            RelayFrame::VetoPending(pending) => &pending.session_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speech_chunk_round_trips_in_contract_shape() {
        let session_id = SessionId::parse("live-001").expect("valid id");
        let frame = RelayFrame::SpeechChunk(SpeechChunk {
            session_id,
            turn: TurnNo(42),
            seq: 0,
            pcm: SpeechChunk::encode_pcm(&[1, -2, 300]),
            sample_rate: None,
            viseme: Viseme { mouth_open: 0.5 },
            segment: Some(SegmentInfo {
                index: 0,
                text: "你好。".into(),
            }),
        });
        let json = serde_json::to_value(&frame).expect("serialise");
        assert_eq!(json["type"], "SPEECH_CHUNK");
        assert_eq!(json["sessionId"], "live-001");
        assert_eq!(json["viseme"]["mouthOpen"], 0.5);
        let back: RelayFrame = serde_json::from_value(json).expect("parse back");
        let RelayFrame::SpeechChunk(chunk) = back else {
            panic!("kept its type")
        };
        assert_eq!(
            chunk.decode_pcm(),
            Ok(vec![1, -2, 300]),
            "pcm is s16le base64"
        );
    }

    #[test]
    fn a_mouth_open_past_f32s_range_is_refused_not_read_as_infinity() {
        let frame = |mouth: &str| {
            serde_json::from_str::<RelayFrame>(&format!(
                r#"{{"type":"SPEECH_CHUNK","sessionId":"a","turn":1,"seq":0,"pcm":"","viseme":{{"mouthOpen":{mouth}}}}}"#
            ))
        };
        assert!(
            frame("1e39").is_err(),
            "infinity would go out to clients as mouthOpen: null"
        );
        assert!(frame("-1e39").is_err(), "as would minus infinity");
        let RelayFrame::SpeechChunk(chunk) = frame("0.25").expect("an ordinary value") else {
            panic!("kept its type")
        };
        assert_eq!(
            chunk.viseme.mouth_open, 0.25,
            "finite values read as they are"
        );
    }

    #[test]
    fn control_stop_parses_without_turn() {
        let frame: RelayFrame = serde_json::from_str(
            r#"{"type":"CONTROL","action":"STOP","sessionId":"s1","reason":"user_interrupt"}"#,
        )
        .expect("valid stop");
        assert!(matches!(
            frame,
            RelayFrame::Control(Control {
                action: ControlAction::Stop,
                turn: None,
                ..
            })
        ));
    }
}

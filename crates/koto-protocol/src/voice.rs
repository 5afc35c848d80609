//! Frames of the app's microphone on `/ws/live` (`MIC_LEVEL`, `ASR_PARTIAL`, `VOICE_DROPPED`)
//! and the body of the push-to-talk route. Shape only; `koto-voice` decides what they mean.

use koto_core::SessionId;
use serde::{Deserialize, Serialize};

/// The mic's level, about ten times a second while it is on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MicLevelFrame {
    pub session_id: SessionId,
    /// RMS level, dBFS (−100 for silence).
    pub rms_dbfs: f32,
    /// The VAD's voice score of the last frame, 0..1.
    pub voice: f32,
    /// An utterance is being recorded (speech detected, or push-to-talk held).
    pub speaking: bool,
}

/// A partial transcript of the utterance in progress (shown, never answered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AsrPartialFrame {
    pub session_id: SessionId,
    pub text: String,
}

/// A voice input that did not become a turn, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceDroppedFrame {
    pub session_id: SessionId,
    /// `echo`, `too_short`, `false_alarm`, `empty`, `asr_failed`, `asr_off`.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `POST /voice/ptt`: push-to-talk pressed or released.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PttRequest {
    pub pressed: bool,
    /// The session the utterance goes to (the panel's current one); else `MIC_SESSION`.
    #[serde(default)]
    pub session_id: Option<String>,
}

/// `POST /voice/mode`: switch between `off`, `ptt` and `vad` while running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MicModeRequest {
    pub mode: String,
    /// The panel's current session (voice turns go there from now on).
    #[serde(default)]
    pub session_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::RelayFrame;

    #[test]
    fn voice_frames_are_tagged_like_the_other_live_frames() {
        let session_id = SessionId::parse("live-001").expect("valid id");
        let frame = RelayFrame::VoiceDropped(VoiceDroppedFrame {
            session_id,
            reason: "echo".into(),
            text: Some("welcome back".into()),
        });
        let json = serde_json::to_value(&frame).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({
                "type": "VOICE_DROPPED",
                "sessionId": "live-001",
                "reason": "echo",
                "text": "welcome back"
            })
        );
        let back: RelayFrame = serde_json::from_value(json).expect("parses");
        assert_eq!(back, frame);
        let level = serde_json::json!({
            "type": "MIC_LEVEL", "sessionId": "live-001", "rmsDbfs": -30.5, "voice": 0.9, "speaking": true
        });
        assert!(matches!(
            serde_json::from_value::<RelayFrame>(level),
            Ok(RelayFrame::MicLevel(_))
        ));
    }
}

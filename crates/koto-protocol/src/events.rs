//! Outbox / Redis Streams event payloads (CONTRACTS §5): names, streams and JSON shapes.

use koto_core::{SessionId, TurnNo};
use serde::{Deserialize, Serialize};

pub mod stream {
    pub const LTM: &str = "events.ltm";
    pub const ANALYTICS: &str = "events.analytics";
    pub const PLUGINS: &str = "events.plugins";
    pub const DLQ: &str = "events.dlq";
}

pub mod event_type {
    pub const LTM_WRITE_REQUESTED: &str = "LtmWriteRequested";
    pub const ANALYTICS_CHAT_STATS: &str = "AnalyticsChatStats";
    pub const TURN_COMPLETED: &str = "TurnCompleted";
    pub const TURN_INTERRUPTED: &str = "TurnInterrupted";
    pub const TURN_FAILED: &str = "TurnFailed";
    pub const USER_INPUT: &str = "UserInput";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LtmPayload {
    pub text: String,
    pub reply: String,
    pub vectorize: bool,
    /// The live chat viewer who asked (kept as per-viewer memory too); absent for the streamer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewer: Option<LtmViewer>,
}

/// A chat viewer, keyed by platform + the platform's user id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LtmViewer {
    pub platform: String,
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LtmWriteRequested {
    pub correlation_id: String,
    pub session_id: SessionId,
    pub turn: TurnNo,
    pub payload: LtmPayload,
    pub ts: i64,
}

/// Field names as CONTRACTS §5 fixes them (`ttft_ms` etc. in snake case, ids in camel case).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsChatStats {
    #[serde(rename = "correlationId")]
    pub correlation_id: String,
    #[serde(rename = "sessionId")]
    pub session_id: SessionId,
    pub turn: TurnNo,
    pub ttft_ms: Option<f64>,
    pub first_audio_ms: Option<f64>,
    pub tokens: u64,
    pub interrupted: bool,
    /// `completed`, `interrupted` or `failed`.
    pub outcome: String,
    pub ts: i64,
}

/// `TurnCompleted`, `TurnInterrupted` and `TurnFailed` share this shape on `events.plugins`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnFinished {
    pub correlation_id: String,
    pub session_id: SessionId,
    pub turn: TurnNo,
    pub input: String,
    /// For an interrupted turn: only what the listener heard.
    pub reply: String,
    pub interrupted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// What `OUTPUT_FILTER_WORDS` did to the reply, one entry per hit (`mask: 傻逼`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filtered: Option<Vec<String>>,
    pub ts: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInput {
    pub correlation_id: String,
    pub session_id: SessionId,
    pub turn: TurnNo,
    /// `TEXT`, `ASR_FINAL` or `COMMAND`.
    pub kind: String,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// Where the input came from when not typed (mic, a chat platform and its viewer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<koto_core::turn::InputMeta>,
    pub ts: i64,
}

//! Live chat on the wire: the local chat API (`POST /chat/messages`, `/ws/chat`), the queue as
//! `GET /chat/queue` shows it, and the `CHAT_DECISION` frame's body (a [`RelayFrame`] variant).
//!
//! [`RelayFrame`]: crate::ingest::RelayFrame

use koto_core::SessionId;
use serde::{Deserialize, Serialize};

/// `POST /chat/messages` and each text frame of `/ws/chat`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessagesIn {
    pub messages: Vec<ChatMessageIn>,
}

/// One message from a bridge (Streamer.bot, a Discord bot, a test). Kept loose (strings) so a
/// wrong value gets a 400 naming the field and the message, not a serde position.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessageIn {
    pub id: String,
    pub platform: String,
    #[serde(default)]
    pub channel: Option<String>,
    pub user: ChatUserIn,
    pub kind: String,
    #[serde(default)]
    pub text: String,
    /// In the currency's major units (`30` for ¥30, `4.99` for $4.99, `100` bits).
    #[serde(default)]
    pub amount: Option<f64>,
    #[serde(default)]
    pub currency: Option<String>,
    /// For `delete`: the message id; for `ban`: the user id.
    #[serde(default)]
    pub target_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatUserIn {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub badges: Vec<String>,
}

/// `202 {"accepted": n}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChatAccepted {
    pub accepted: usize,
}

/// `picked`, `dropped` or `retracted`, with its reason as a sentence and as a code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatDecisionFrame {
    /// The session chat answers go to (the relay routes frames by session).
    pub session_id: SessionId,
    pub message_id: String,
    pub platform: String,
    #[serde(default)]
    pub user_id: String,
    pub decision: String,
    /// `superchat ¥30, waited 4 s, score 231`, `duplicate ×12 of m1`.
    pub reason: String,
    /// A stable label (`best`, `duplicate`, `deleted`, …).
    #[serde(default)]
    pub reason_code: String,
    /// For a pick: the viewer's name and text, so the overlay can show what is being answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// When it was decided (ms since the epoch).
    pub ts: i64,
}

/// `GET /chat/queue`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatQueueView {
    pub session_id: SessionId,
    /// Best first.
    pub waiting: Vec<WaitingMessage>,
    /// The message being answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answering: Option<WaitingMessage>,
    /// Why nothing is picked right now (`empty`, `answering`, `streamer_talking`, `cadence`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    /// The latest decisions, newest last.
    pub decisions: Vec<ChatDecisionFrame>,
    pub stats: ChatQueueStats,
    pub capacity: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitingMessage {
    pub message_id: String,
    pub platform: String,
    pub user_id: String,
    pub user_name: String,
    pub kind: String,
    pub text: String,
    pub score: f64,
    pub waited_ms: i64,
    /// Near-identical messages it stands for.
    pub count: u32,
    pub pinned: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatQueueStats {
    pub received: u64,
    pub picked: u64,
    pub dropped: u64,
    pub retracted: u64,
    pub moderation: u64,
}

//! How a turn ends. Cancellation is not an error: an interrupted turn is a normal outcome.

use serde::{Deserialize, Serialize};

/// The kind of input that started a turn (CONTRACTS §1 `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InputKind {
    #[default]
    Text,
    AsrFinal,
    Command,
}

/// Where an input came from, beyond its kind (CONTRACTS §1 `meta`): stored with the user row
/// and sent with `UserInput`, so memory, analytics and the panel can tell a viewer from the
/// streamer's microphone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputMeta {
    /// `typed` (the streamer's keyboard, an API client), `mic`, or a chat platform (`twitch`).
    pub source: String,
    /// The viewer, for a turn from chat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<InputUser>,
    /// The chat message being answered (retracted if a moderator deletes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// ASR confidence 0..1, for a turn from speech.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
    /// Length of the utterance, for a turn from speech.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

impl InputMeta {
    pub const TYPED: &'static str = "typed";
    pub const MIC: &'static str = "mic";

    pub fn typed() -> Self {
        Self::from_source(Self::TYPED)
    }

    pub fn from_source(source: &str) -> Self {
        Self {
            source: source.to_owned(),
            user: None,
            message_id: None,
            confidence: None,
            duration_ms: None,
        }
    }

    pub fn is_typed(&self) -> bool {
        *self == Self::typed()
    }
}

impl Default for InputMeta {
    fn default() -> Self {
        Self::typed()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputUser {
    /// The platform's stable user id.
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TurnOutcome {
    Completed {
        reply: String,
    },
    /// Stopped by the user (or a disconnect); `spoken_text` is what actually reached the listener.
    Interrupted {
        spoken_text: String,
        reason: String,
    },
    Failed {
        code: String,
        message: String,
        partial_text: String,
    },
}

impl TurnOutcome {
    pub fn is_interrupted(&self) -> bool {
        matches!(self, TurnOutcome::Interrupted { .. })
    }
}

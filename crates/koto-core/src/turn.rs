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

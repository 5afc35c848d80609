//! Live chat's one normalised event, whatever platform it came from, and an adapter's health.
//!
//! Adapters (`koto-chat`) and the local chat API (`POST /chat/messages`, `/ws/chat`) produce
//! [`ChatEvent`]s; the scored queue and the engine consume them. Pure data, no IO.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatKind {
    Message,
    Question,
    Mention,
    Superchat,
    Gift,
    Sub,
    Raid,
    Redemption,
    /// A moderator deleted the message `target_id`.
    Delete,
    /// A moderator banned or timed out the user `target_id` (all their messages go).
    Ban,
}

impl ChatKind {
    /// Moderation events carry no text to answer; they retract.
    pub fn is_moderation(self) -> bool {
        matches!(self, ChatKind::Delete | ChatKind::Ban)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatUser {
    /// The platform's stable user id (Twitch `user-id`, YouTube channel id, Bilibili uid).
    pub id: String,
    pub name: String,
    /// Badges as the platform names them (`subscriber/12`, `moderator`, `member`, `guard:3`).
    #[serde(default)]
    pub badges: Vec<String>,
    #[serde(default)]
    pub roles: ChatRoles,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChatRoles {
    pub broadcaster: bool,
    pub moderator: bool,
    pub subscriber: bool,
    pub vip: bool,
    /// Twitch `first-msg`: the viewer's first message in the channel.
    pub first_message: bool,
}

/// A paid amount in the currency's minor units (cents, fen), so nothing rounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatAmount {
    pub minor_units: i64,
    /// ISO 4217 (`USD`, `CNY`, `JPY`) or a platform unit (`bits`).
    pub currency: String,
}

/// An emote's place in [`ChatEvent::text`], in chars (not bytes), end exclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatEmote {
    pub name: String,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatEvent {
    /// `twitch`, `youtube`, `bilibili`, or whatever a bridge names itself (`discord`).
    pub platform: String,
    /// The channel, video or room the message was read from.
    pub channel: String,
    /// The platform's message id (unique per platform): the key for dedupe and deletion.
    pub message_id: String,
    pub user: ChatUser,
    pub kind: ChatKind,
    /// The message as written, emotes kept as their names (see `emotes` to strip them).
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emotes: Vec<ChatEmote>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<ChatAmount>,
    /// For `delete`: the message id; for `ban`: the user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    /// The platform's timestamp (ms since the epoch), when it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_time_ms: Option<i64>,
    /// When Kotodama received it (ms since the epoch).
    pub received_ms: i64,
}

impl ChatEvent {
    /// The text without its emotes (for the prompt and for spam comparison).
    pub fn text_without_emotes(&self) -> String {
        if self.emotes.is_empty() {
            return self.text.clone();
        }
        let chars: Vec<char> = self.text.chars().collect();
        let mut keep = vec![true; chars.len()];
        for emote in &self.emotes {
            for slot in keep
                .iter_mut()
                .take(emote.end.min(chars.len()))
                .skip(emote.start)
            {
                *slot = false;
            }
        }
        let text: String = chars
            .iter()
            .zip(keep)
            .filter_map(|(c, keep)| keep.then_some(*c))
            .collect();
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// A chat adapter's state, shown in the panel and on `/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum AdapterHealth {
    Connecting,
    Live,
    /// No message or heartbeat for longer than the adapter's stale bound.
    Stale,
    /// Reading, but losing something (e.g. Bilibili masks names of guests).
    Degraded(String),
    /// The platform refused the credentials (expired token, Bilibili −352): the user must act.
    AuthNeeded(String),
    /// Gave up or waiting to reconnect; the reason says which.
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(text: &str, emotes: Vec<ChatEmote>) -> ChatEvent {
        ChatEvent {
            platform: "twitch".into(),
            channel: "c".into(),
            message_id: "m".into(),
            user: ChatUser::default(),
            kind: ChatKind::Message,
            text: text.into(),
            emotes,
            amount: None,
            target_id: None,
            platform_time_ms: None,
            received_ms: 0,
        }
    }

    #[test]
    fn emotes_are_stripped_by_char_position() {
        let e = event(
            "Kappa 你好 Kappa!",
            vec![
                ChatEmote {
                    name: "Kappa".into(),
                    start: 0,
                    end: 5,
                },
                ChatEmote {
                    name: "Kappa".into(),
                    start: 9,
                    end: 14,
                },
            ],
        );
        assert_eq!(e.text_without_emotes(), "你好 !");
    }

    #[test]
    fn health_serialises_with_its_reason() {
        let json = serde_json::to_string(&AdapterHealth::Degraded("names masked".into()));
        assert_eq!(
            json.ok().as_deref(),
            Some(r#"{"state":"degraded","reason":"names masked"}"#)
        );
        let json = serde_json::to_string(&AdapterHealth::Live);
        assert_eq!(json.ok().as_deref(), Some(r#"{"state":"live"}"#));
    }
}

//! The local chat API's messages → the normalised [`ChatEvent`]: every field checked, a clear
//! error naming the message and the field. No IO.

use koto_core::chat::{ChatAmount, ChatEvent, ChatKind, ChatRoles, ChatUser};
use koto_core::chat_queue::minor_digits;
use koto_protocol::live_chat::ChatMessageIn;

/// Longest text the API takes (the queue's `CHAT_MAX_CHARS` drops shorter ones with a reason;
/// past this the bridge is sending something that is not chat).
pub const MAX_TEXT_CHARS: usize = 2000;
const MAX_ID_CHARS: usize = 128;
const MAX_NAME_CHARS: usize = 64;
const MAX_BADGES: usize = 16;

/// Why a message batch was refused; the whole batch is refused, nothing is queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    #[error("messages must hold 1 to {max} messages, not {got}")]
    BatchSize { got: usize, max: usize },
    #[error("messages[{index}].{field}: {problem}")]
    Field {
        index: usize,
        field: &'static str,
        problem: String,
    },
}

/// Checks a batch and turns it into events, all or nothing.
pub fn events_from(
    messages: Vec<ChatMessageIn>,
    max_batch: usize,
    now_ms: i64,
) -> Result<Vec<ChatEvent>, IntakeError> {
    if messages.is_empty() || messages.len() > max_batch {
        return Err(IntakeError::BatchSize {
            got: messages.len(),
            max: max_batch,
        });
    }
    messages
        .into_iter()
        .enumerate()
        .map(|(index, message)| event_from(index, message, now_ms))
        .collect()
}

fn event_from(index: usize, message: ChatMessageIn, now_ms: i64) -> Result<ChatEvent, IntakeError> {
    let field = |field: &'static str, problem: &str| IntakeError::Field {
        index,
        field,
        problem: problem.to_owned(),
    };
    let id = bounded_id(&message.id).map_err(|p| field("id", p))?;
    let platform = message.platform.trim().to_ascii_lowercase();
    let platform_ok = !platform.is_empty()
        && platform.len() <= 32
        && platform
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !platform_ok {
        return Err(field(
            "platform",
            "expected 1 to 32 of a-z 0-9 - _ (twitch, youtube, bilibili, discord)",
        ));
    }
    let kind: ChatKind = serde_json::from_value(serde_json::Value::String(message.kind.clone()))
        .map_err(|_| {
            field(
                "kind",
                &format!(
                    "{:?} is not one of message, question, mention, superchat, gift, sub, raid, redemption, delete, ban",
                    message.kind
                ),
            )
        })?;
    let target_id = match (&message.target_id, kind.is_moderation()) {
        (Some(target), true) => Some(bounded_id(target).map_err(|p| field("targetId", p))?),
        (None, true) => {
            return Err(field(
                "targetId",
                "required for delete (the message id) and ban (the user id)",
            ));
        }
        (_, false) => None,
    };
    let user_id = message.user.id.trim();
    if !kind.is_moderation() {
        bounded_id(user_id).map_err(|p| field("user.id", p))?;
    }
    if user_id.chars().count() > MAX_ID_CHARS {
        return Err(field("user.id", "longer than 128 characters"));
    }
    let name = message.user.name.trim();
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(field("user.name", "longer than 64 characters"));
    }
    if message.user.badges.len() > MAX_BADGES {
        return Err(field("user.badges", "more than 16 badges"));
    }
    let chars = message.text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(field(
            "text",
            &format!("{chars} characters; the limit is {MAX_TEXT_CHARS}"),
        ));
    }
    let amount = match (message.amount, message.currency.as_deref().map(str::trim)) {
        (None, _) => None,
        (Some(_), None | Some("")) => {
            return Err(field(
                "currency",
                "required with amount (CNY, USD, JPY, bits)",
            ));
        }
        (Some(value), Some(currency)) => {
            let currency_ok =
                currency.len() <= 8 && currency.chars().all(|c| c.is_ascii_alphabetic());
            if !currency_ok {
                return Err(field(
                    "currency",
                    "expected a code such as CNY, USD, JPY or bits",
                ));
            }
            if !(value.is_finite() && (0.0..=1e9).contains(&value)) {
                return Err(field("amount", "expected a number from 0 to 1000000000"));
            }
            let scale = 10f64.powi(minor_digits(currency) as i32);
            Some(ChatAmount {
                // In range by the check above, so the cast cannot saturate.
                minor_units: (value * scale).round() as i64,
                currency: currency.to_owned(),
            })
        }
    };
    Ok(ChatEvent {
        platform,
        channel: message.channel.unwrap_or_default(),
        message_id: id,
        user: ChatUser {
            id: user_id.to_owned(),
            name: if name.is_empty() {
                user_id.to_owned()
            } else {
                name.to_owned()
            },
            badges: message.user.badges,
            roles: ChatRoles::default(),
        },
        kind,
        text: message.text,
        emotes: Vec::new(),
        amount,
        target_id,
        platform_time_ms: None,
        received_ms: now_ms,
    })
}

fn bounded_id(raw: &str) -> Result<String, &'static str> {
    let id = raw.trim();
    if id.is_empty() {
        return Err("must not be empty");
    }
    if id.chars().count() > MAX_ID_CHARS {
        return Err("longer than 128 characters");
    }
    if id.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use koto_protocol::live_chat::ChatUserIn;

    fn message(kind: &str) -> ChatMessageIn {
        ChatMessageIn {
            id: "m1".into(),
            platform: "Twitch".into(),
            channel: None,
            user: ChatUserIn {
                id: "u1".into(),
                name: "alice".into(),
                badges: Vec::new(),
            },
            kind: kind.into(),
            text: "hello".into(),
            amount: None,
            currency: None,
            target_id: None,
        }
    }

    #[test]
    fn a_good_message_is_normalised() {
        let mut paid = message("superchat");
        paid.amount = Some(4.99);
        paid.currency = Some("USD".into());
        let events = events_from(vec![paid], 10, 7).unwrap_or_default();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].platform, "twitch", "platform names are lowercase");
        assert_eq!(events[0].kind, ChatKind::Superchat);
        assert_eq!(
            events[0].amount,
            Some(ChatAmount {
                minor_units: 499,
                currency: "USD".into()
            }),
            "major units in, minor units inside"
        );
        let mut yen = message("superchat");
        yen.amount = Some(1000.0);
        yen.currency = Some("JPY".into());
        let events = events_from(vec![yen], 10, 7).unwrap_or_default();
        assert_eq!(
            events[0].amount.as_ref().map(|a| a.minor_units),
            Some(1000),
            "yen have no minor unit"
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(ChatMessageIn, &str)> = vec![
            (
                ChatMessageIn {
                    id: " ".into(),
                    ..message("message")
                },
                "messages[0].id",
            ),
            (
                ChatMessageIn {
                    platform: "no spaces".into(),
                    ..message("message")
                },
                "messages[0].platform",
            ),
            (message("shout"), "messages[0].kind"),
            (message("delete"), "messages[0].targetId"),
            (
                ChatMessageIn {
                    text: "x".repeat(MAX_TEXT_CHARS + 1),
                    ..message("message")
                },
                "messages[0].text",
            ),
            (
                ChatMessageIn {
                    amount: Some(5.0),
                    ..message("superchat")
                },
                "messages[0].currency",
            ),
            (
                ChatMessageIn {
                    amount: Some(f64::NAN),
                    currency: Some("USD".into()),
                    ..message("superchat")
                },
                "messages[0].amount",
            ),
            (
                ChatMessageIn {
                    user: ChatUserIn::default(),
                    ..message("message")
                },
                "messages[0].user.id",
            ),
        ];
        for (input, field) in cases {
            let error = events_from(vec![input], 10, 0)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.starts_with(field), "{error:?} names {field}");
        }
    }

    #[test]
    fn batches_are_bounded_and_moderation_needs_no_user() {
        let error = events_from(Vec::new(), 10, 0).err();
        assert_eq!(error, Some(IntakeError::BatchSize { got: 0, max: 10 }));
        let error = events_from(vec![message("message"); 3], 2, 0).err();
        assert_eq!(error, Some(IntakeError::BatchSize { got: 3, max: 2 }));
        let mut ban = message("ban");
        ban.user = ChatUserIn::default();
        ban.target_id = Some("u9".into());
        let events = events_from(vec![ban], 10, 0).unwrap_or_default();
        assert_eq!(events[0].target_id.as_deref(), Some("u9"));
    }
}

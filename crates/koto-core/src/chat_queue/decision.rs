//! What the queue decided about a message and why, as data: the panel, the `CHAT_DECISION`
//! frames and `/metrics` all read the same [`Reason`] (its `Display` is the sentence shown,
//! its `code` the metric label).

use std::fmt;

use crate::chat::{ChatAmount, ChatKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Handed to the driver to become a turn.
    Picked,
    /// Will never be answered.
    Dropped,
    /// Was picked, and a moderator took it back while (or before) it was answered.
    Retracted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Picked => "picked",
            Outcome::Dropped => "dropped",
            Outcome::Retracted => "retracted",
        }
    }
}

/// One decision about one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub platform: String,
    pub message_id: String,
    pub user_id: String,
    pub outcome: Outcome,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// The best score when the cadence allowed an answer.
    Best {
        kind: ChatKind,
        amount: Option<ChatAmount>,
        waited_ms: i64,
        /// How many near-identical messages it stands for (1: itself only).
        count: u32,
        score: f64,
    },
    /// The streamer pinned it: next answer, whatever the scores.
    Pinned {
        waited_ms: i64,
    },
    /// The streamer asked for it now (past the cadence).
    AnswerNow {
        waited_ms: i64,
    },
    /// Near-identical to `of`, received within the duplicate window; `count` so far.
    Duplicate {
        of: String,
        count: u32,
    },
    /// The same platform message id arrived again (at-least-once delivery).
    Redelivered,
    Empty,
    TooLong {
        chars: usize,
        max: usize,
    },
    Link,
    BlockedWord {
        word: String,
    },
    /// The user already has this many messages waiting.
    UserFlood {
        waiting: usize,
    },
    /// The queue was full and this message scored below every waiting one.
    QueueFull {
        score: f64,
    },
    /// Pushed out of a full queue by a better message.
    Evicted {
        score: f64,
    },
    /// Waited past the queue's wait limit.
    Expired {
        waited_ms: i64,
    },
    /// A moderator deleted the message.
    Deleted,
    /// A moderator banned or timed out the user (also for messages sent after the ban).
    Banned,
    /// The streamer skipped it from the panel.
    Skipped,
    /// Not a kind the co-host answers.
    NotAnswerable {
        kind: ChatKind,
    },
}

impl Reason {
    /// A stable label for metrics and tests.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Best { .. } => "best",
            Reason::Pinned { .. } => "pinned",
            Reason::AnswerNow { .. } => "answer_now",
            Reason::Duplicate { .. } => "duplicate",
            Reason::Redelivered => "redelivered",
            Reason::Empty => "empty",
            Reason::TooLong { .. } => "too_long",
            Reason::Link => "link",
            Reason::BlockedWord { .. } => "blocked_word",
            Reason::UserFlood { .. } => "user_flood",
            Reason::QueueFull { .. } => "queue_full",
            Reason::Evicted { .. } => "evicted",
            Reason::Expired { .. } => "expired",
            Reason::Deleted => "deleted",
            Reason::Banned => "banned",
            Reason::Skipped => "skipped",
            Reason::NotAnswerable { .. } => "not_answerable",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Best {
                kind,
                amount,
                waited_ms,
                count,
                score,
            } => {
                write!(f, "{}", kind_name(*kind))?;
                if let Some(amount) = amount {
                    write!(f, " {}", AmountText(amount))?;
                }
                write!(f, ", waited {}", Seconds(*waited_ms))?;
                if *count > 1 {
                    write!(f, ", ×{count}")?;
                }
                write!(f, ", score {score:.0}")
            }
            Reason::Pinned { waited_ms } => {
                write!(f, "pinned by the streamer, waited {}", Seconds(*waited_ms))
            }
            Reason::AnswerNow { waited_ms } => {
                write!(f, "answer now (streamer), waited {}", Seconds(*waited_ms))
            }
            Reason::Duplicate { of, count } => write!(f, "duplicate ×{count} of {of}"),
            Reason::Redelivered => f.write_str("already received (same message id)"),
            Reason::Empty => f.write_str("no words"),
            Reason::TooLong { chars, max } => write!(f, "too long ({chars} > {max} chars)"),
            Reason::Link => f.write_str("contains a link"),
            Reason::BlockedWord { word } => write!(f, "blocked word \"{word}\""),
            Reason::UserFlood { waiting } => {
                write!(f, "the viewer already has {waiting} messages waiting")
            }
            Reason::QueueFull { score } => {
                write!(
                    f,
                    "queue full (score {score:.0} below every waiting message)"
                )
            }
            Reason::Evicted { score } => {
                write!(f, "pushed out of the full queue (score {score:.0})")
            }
            Reason::Expired { waited_ms } => {
                write!(f, "waited too long ({})", Seconds(*waited_ms))
            }
            Reason::Deleted => f.write_str("deleted by a moderator"),
            Reason::Banned => f.write_str("viewer banned by a moderator"),
            Reason::Skipped => f.write_str("skipped by the streamer"),
            Reason::NotAnswerable { kind } => write!(f, "{} is not answered", kind_name(*kind)),
        }
    }
}

/// The kind as the panel and reasons name it (`chat` for a plain message).
pub fn kind_name(kind: ChatKind) -> &'static str {
    match kind {
        ChatKind::Message => "chat",
        ChatKind::Question => "question",
        ChatKind::Mention => "mention",
        ChatKind::Superchat => "superchat",
        ChatKind::Gift => "gift",
        ChatKind::Sub => "sub",
        ChatKind::Raid => "raid",
        ChatKind::Redemption => "redemption",
        ChatKind::Delete => "delete",
        ChatKind::Ban => "ban",
    }
}

/// Digits after the point for a currency's minor units (ISO 4217; platform units have none).
pub fn minor_digits(currency: &str) -> u32 {
    match currency.to_ascii_uppercase().as_str() {
        "JPY" | "KRW" | "VND" | "CLP" | "ISK" | "BITS" | "COINS" => 0,
        _ => 2,
    }
}

/// `¥30`, `$4.99`, `100 bits`, `12.50 CHF`.
pub fn amount_text(amount: &ChatAmount) -> String {
    AmountText(amount).to_string()
}

struct AmountText<'a>(&'a ChatAmount);

impl fmt::Display for AmountText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let amount = self.0;
        let digits = minor_digits(&amount.currency);
        let scale = 10i64.pow(digits);
        let whole = amount.minor_units / scale;
        let part = (amount.minor_units % scale).abs();
        let number = if digits == 0 || part == 0 {
            whole.to_string()
        } else {
            format!("{whole}.{part:0width$}", width = digits as usize)
        };
        let symbol = match amount.currency.to_ascii_uppercase().as_str() {
            "CNY" | "JPY" => Some("¥"),
            "USD" => Some("$"),
            "EUR" => Some("€"),
            "GBP" => Some("£"),
            "KRW" => Some("₩"),
            _ => None,
        };
        match symbol {
            Some(symbol) => write!(f, "{symbol}{number}"),
            None => write!(f, "{number} {}", amount.currency),
        }
    }
}

/// Whole seconds, rounded (`4 s`).
struct Seconds(i64);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} s", (self.0.max(0) + 500) / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(minor_units: i64, currency: &str) -> Option<ChatAmount> {
        Some(ChatAmount {
            minor_units,
            currency: currency.into(),
        })
    }

    #[test]
    fn reasons_read_as_sentences() {
        let picked = Reason::Best {
            kind: ChatKind::Superchat,
            amount: amount(3000, "CNY"),
            waited_ms: 4_200,
            count: 1,
            score: 231.4,
        };
        assert_eq!(picked.to_string(), "superchat ¥30, waited 4 s, score 231");
        let dup = Reason::Duplicate {
            of: "m1".into(),
            count: 12,
        };
        assert_eq!(dup.to_string(), "duplicate ×12 of m1");
        let bits = Reason::Best {
            kind: ChatKind::Gift,
            amount: amount(100, "bits"),
            waited_ms: 0,
            count: 3,
            score: 10.0,
        };
        assert_eq!(bits.to_string(), "gift 100 bits, waited 0 s, ×3, score 10");
        let usd = Reason::Best {
            kind: ChatKind::Superchat,
            amount: amount(499, "USD"),
            waited_ms: 1_499,
            count: 1,
            score: 1.0,
        };
        assert_eq!(usd.to_string(), "superchat $4.99, waited 1 s, score 1");
    }
}

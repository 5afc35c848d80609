//! The last warnings and errors, kept in memory for "Copy diagnostics": a bug report carries
//! what went wrong without the streamer digging through log files.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// How many are kept (the oldest goes first).
pub const KEPT: usize = 50;
/// A longer message is cut (a provider's error body can be large).
const MAX_MESSAGE_CHARS: usize = 500;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    pub at_ms: u64,
    pub level: &'static str,
    pub target: String,
    /// The message, then the event's other fields as `name=value`.
    pub message: String,
}

#[derive(Default)]
pub struct RecentProblems {
    kept: Mutex<VecDeque<Problem>>,
}

impl RecentProblems {
    pub fn push(&self, problem: Problem) {
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(problem);
    }

    /// Oldest first.
    pub fn snapshot(&self) -> Vec<Problem> {
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        kept.iter().cloned().collect()
    }
}

/// The `tracing` layer that feeds a [`RecentProblems`] with WARN and ERROR events.
pub struct ProblemsLayer(pub &'static RecentProblems);

impl<S: Subscriber> Layer<S> for ProblemsLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut message = fields.message;
        if !fields.rest.is_empty() {
            if !message.is_empty() {
                message.push(' ');
            }
            message.push_str(&fields.rest);
        }
        if message.chars().count() > MAX_MESSAGE_CHARS {
            message = message.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…";
        }
        self.0.push(Problem {
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64),
            level: if level == Level::ERROR {
                "error"
            } else {
                "warn"
            },
            target: event.metadata().target().to_owned(),
            message,
        });
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.separate();
            let _ = write!(self.rest, "{}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.separate();
            let _ = write!(self.rest, "{}={value:?}", field.name());
        }
    }
}

impl Fields {
    fn separate(&mut self) {
        if !self.rest.is_empty() {
            self.rest.push(' ');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn warnings_and_errors_are_kept_with_their_fields_and_bounded() {
        let problems: &'static RecentProblems = Box::leak(Box::default());
        let subscriber = tracing_subscriber::registry().with(ProblemsLayer(problems));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not a problem");
            tracing::warn!(provider = "edge", status = 503, "voice failed");
            for n in 0..KEPT {
                tracing::error!("error {n}");
            }
        });
        let kept = problems.snapshot();
        assert_eq!(kept.len(), KEPT, "bounded");
        assert_eq!(kept[0].message, "error 0", "the warning was the oldest");
        assert_eq!(kept[KEPT - 1].message, format!("error {}", KEPT - 1));
        assert!(kept.iter().all(|problem| problem.level == "error"));

        let problems: &'static RecentProblems = Box::leak(Box::default());
        let subscriber = tracing_subscriber::registry().with(ProblemsLayer(problems));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(provider = "edge", status = 503, "voice failed");
        });
        let kept = problems.snapshot();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].message, "voice failed provider=edge status=503");
        assert_eq!(kept[0].level, "warn");
    }
}

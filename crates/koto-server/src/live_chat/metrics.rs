//! Live chat's Prometheus metrics: messages in, decisions by outcome and reason, the queue's
//! length, how long picks waited. Detached (counted, never exported) without a registry.

use koto_core::chat_queue::Decision;
use koto_core::metrics::{Counter, CounterVec, Gauge, Histogram, Registry};

/// Waits are seconds to minutes, not the engine's milliseconds.
const WAIT_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

#[derive(Debug, Clone)]
pub struct ChatMetrics {
    pub messages: Counter,
    pub moderation: Counter,
    decisions: Option<CounterVec>,
    pub waiting: Gauge,
    pub pick_wait: Histogram,
}

/// Counted, never exported (no registry, or the name could not be registered).
fn detached_wait_histogram() -> Histogram {
    Histogram::new(WAIT_BUCKETS.iter().copied())
}

impl ChatMetrics {
    pub fn new(registry: Option<&Registry>) -> ChatMetrics {
        let warn = |error| tracing::warn!(%error, "chat metric not registered");
        let Some(registry) = registry else {
            return ChatMetrics {
                messages: Counter::default(),
                moderation: Counter::default(),
                decisions: None,
                waiting: Gauge::default(),
                pick_wait: detached_wait_histogram(),
            };
        };
        ChatMetrics {
            messages: registry
                .counter(
                    "koto_chat_messages_total",
                    "Chat messages received (local API and adapters), moderation events apart.",
                )
                .inspect_err(|e| warn(e.clone()))
                .unwrap_or_else(|_| Counter::default()),
            moderation: registry
                .counter(
                    "koto_chat_moderation_total",
                    "Moderation events received (delete, ban).",
                )
                .inspect_err(|e| warn(e.clone()))
                .unwrap_or_else(|_| Counter::default()),
            decisions: registry
                .counter_vec(
                    "koto_chat_decisions_total",
                    "Queue decisions: picked, dropped or retracted, by reason.",
                    &["decision", "reason"],
                )
                .inspect_err(|e| warn(e.clone()))
                .ok(),
            waiting: registry
                .gauge(
                    "koto_chat_queue_waiting",
                    "Chat messages waiting in the queue.",
                )
                .inspect_err(|e| warn(e.clone()))
                .unwrap_or_else(|_| Gauge::default()),
            pick_wait: registry
                .histogram(
                    "koto_chat_pick_wait_seconds",
                    "How long a picked chat message waited in the queue.",
                    WAIT_BUCKETS,
                )
                .inspect_err(|e| warn(e.clone()))
                .unwrap_or_else(|_| detached_wait_histogram()),
        }
    }

    pub fn decided(&self, decision: &Decision) {
        if let Some(decisions) = &self.decisions {
            decisions
                .with(&[decision.outcome.as_str(), decision.reason.code()])
                .inc();
        }
    }
}

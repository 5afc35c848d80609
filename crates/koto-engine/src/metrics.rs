//! The engine's Prometheus metrics: TTFT, first audio, STOP latency and turn outcomes, in the
//! registry the server's `/metrics` encodes. Without a registry they are detached (still counted,
//! never exported).

use koto_core::metrics::{CounterVec, Histogram, LATENCY_SECONDS_BUCKETS, Registry};
use koto_protocol::chat::TurnStats;

#[derive(Debug, Clone)]
pub(crate) struct EngineMetrics {
    ttft: Option<Histogram>,
    first_audio: Option<Histogram>,
    pub stop: Option<Histogram>,
    turns: Option<CounterVec>,
}

impl EngineMetrics {
    pub fn new(registry: Option<&Registry>) -> Self {
        let Some(registry) = registry else {
            return EngineMetrics {
                ttft: None,
                first_audio: None,
                stop: None,
                turns: None,
            };
        };
        let histogram = |name: &str, help: &str| {
            registry
                .histogram(name, help, LATENCY_SECONDS_BUCKETS)
                .map_err(|error| tracing::warn!(%error, name, "metric not registered"))
                .ok()
        };
        EngineMetrics {
            ttft: histogram(
                "koto_engine_ttft_seconds",
                "Request received → first text delta written.",
            ),
            first_audio: histogram(
                "koto_engine_first_audio_seconds",
                "Request received → first audio chunk handed to the relay.",
            ),
            stop: histogram(
                "koto_engine_stop_seconds",
                "STOP asked → STOP_ACK (through the relay).",
            ),
            turns: registry
                .counter_vec(
                    "koto_engine_turns_total",
                    "Turns by how they ended.",
                    &["outcome"],
                )
                .map_err(|error| tracing::warn!(%error, "metric not registered"))
                .ok(),
        }
    }

    pub fn observe_turn(&self, outcome: &str, stats: &TurnStats) {
        if let (Some(histogram), Some(ms)) = (&self.ttft, stats.ttft_ms) {
            histogram.observe(ms / 1000.0);
        }
        if let (Some(histogram), Some(ms)) = (&self.first_audio, stats.first_audio_ms) {
            histogram.observe(ms / 1000.0);
        }
        if let Some(turns) = &self.turns {
            turns.with(&[outcome]).inc();
        }
    }
}

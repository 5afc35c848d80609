//! The metrics whose values other owners keep by themselves — the relay's counters under its
//! one lock, the failover chains' breakers — registered once, at start, in the process's one
//! registry (beside the engine's, the events' and live chat's), and brought up to date when
//! `/metrics` is scraped.
//!
//! A mirrored counter only ever moves up by the difference to its owner's count, under one
//! lock, so two scrapes at once cannot count a change twice and the exported series stays
//! monotonic.

use std::sync::{Mutex, PoisonError};

use koto_core::chain_status::ChainLinkStatus;
use koto_core::metrics::{Counter, CounterVec, Gauge, GaugeVec, MetricsError, Registry};
use koto_engine::Engine;
use koto_relay::RelayMetrics;

#[derive(Debug)]
pub struct ScrapedMetrics {
    relay: RelayFamilies,
    breaker_state: GaugeVec,
    breaker_opened: CounterVec,
    /// Held while mirroring (see the module's note).
    refresh: Mutex<()>,
}

#[derive(Debug)]
struct RelayFamilies {
    chunks_in: Counter,
    chunks_released: Counter,
    dropped_fenced: Counter,
    dropped_bad_seq: Counter,
    frames_malformed: Counter,
    client_frames_dropped: Counter,
    stops: Counter,
    stop_timeouts: Counter,
    pauses: Counter,
    clients_connected: Gauge,
    overlays_connected: Gauge,
}

impl ScrapedMetrics {
    pub fn register(registry: &Registry) -> Result<ScrapedMetrics, MetricsError> {
        let counter = |name: &str, help: &str| registry.counter(name, help);
        let relay = RelayFamilies {
            chunks_in: counter(
                "koto_relay_chunks_in_total",
                "SPEECH_CHUNKs accepted from producers.",
            )?,
            chunks_released: counter(
                "koto_relay_chunks_released_total",
                "SPEECH_CHUNKs released to clients.",
            )?,
            dropped_fenced: counter(
                "koto_relay_dropped_fenced_total",
                "Chunks dropped by a STOP fence.",
            )?,
            dropped_bad_seq: counter(
                "koto_relay_dropped_bad_seq_total",
                "Chunks refused for a seq gap or duplicate.",
            )?,
            frames_malformed: counter(
                "koto_relay_frames_malformed_total",
                "Ingest frames that could not be parsed.",
            )?,
            client_frames_dropped: counter(
                "koto_relay_client_frames_dropped_total",
                "Frames dropped for slow clients.",
            )?,
            stops: counter("koto_relay_stops_total", "STOPs handled.")?,
            stop_timeouts: counter(
                "koto_relay_stop_timeouts_total",
                "STOPs not acknowledged in time.",
            )?,
            pauses: counter(
                "koto_relay_pauses_total",
                "Playback pauses asked for (voice barge-in).",
            )?,
            clients_connected: registry
                .gauge("koto_relay_clients_connected", "Live clients connected.")?,
            overlays_connected: registry.gauge(
                "koto_relay_overlays_connected",
                "Live clients that are OBS overlays.",
            )?,
        };
        Ok(ScrapedMetrics {
            relay,
            breaker_state: registry.gauge_vec(
                "koto_provider_breaker_state",
                "A chain provider's circuit breaker: 0 closed, 1 half-open, 2 open.",
                &["kind", "provider"],
            )?,
            breaker_opened: registry.counter_vec(
                "koto_provider_breaker_opened_total",
                "Times a chain provider's breaker opened.",
                &["kind", "provider"],
            )?,
            refresh: Mutex::new(()),
        })
    }

    /// Reads the relay's counters and the chains' breakers into their registered families.
    pub fn refresh(&self, engine: &Engine) {
        // The guarded section only reads owners' snapshots and moves atomics: a panic in it
        // leaves nothing half-done that the next scrape would not redo.
        let _mirroring = self.refresh.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(relay) = engine.relay() {
            self.mirror_relay(&relay.metrics());
        }
        let llm = engine.llm().chain().unwrap_or_default();
        let tts = engine
            .voice()
            .and_then(|voice| voice.chain())
            .unwrap_or_default();
        self.mirror_breakers(&llm, &tts);
    }

    fn mirror_relay(&self, metrics: &RelayMetrics) {
        let families = &self.relay;
        for (counter, count) in [
            (&families.chunks_in, metrics.chunks_in),
            (&families.chunks_released, metrics.chunks_released),
            (&families.dropped_fenced, metrics.dropped_fenced),
            (&families.dropped_bad_seq, metrics.dropped_bad_seq),
            (&families.frames_malformed, metrics.frames_malformed),
            (
                &families.client_frames_dropped,
                metrics.client_frames_dropped,
            ),
            (&families.stops, metrics.stops),
            (&families.stop_timeouts, metrics.stop_timeouts),
            (&families.pauses, metrics.pauses),
        ] {
            mirror(counter, count);
        }
        families
            .clients_connected
            .set(metrics.clients_connected as f64);
        families
            .overlays_connected
            .set(metrics.overlays_connected as f64);
    }

    fn mirror_breakers(&self, llm: &[ChainLinkStatus], tts: &[ChainLinkStatus]) {
        for (kind, links) in [("llm", llm), ("tts", tts)] {
            for link in links {
                let state = match link.state {
                    "open" => 2.0,
                    "half_open" => 1.0,
                    _ => 0.0,
                };
                self.breaker_state.with(&[kind, &link.label]).set(state);
                mirror(
                    &self.breaker_opened.with(&[kind, &link.label]),
                    link.opened_count,
                );
            }
        }
    }
}

/// Moves `counter` up to its owner's `count` (which only grows).
fn mirror(counter: &Counter, count: u64) {
    counter.inc_by(count.saturating_sub(counter.get()));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the unlabelled series `name` in an exposition.
    fn value(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn relay_counters_are_mirrored_up_to_the_owners_count_once() {
        let registry = Registry::new();
        let scraped = ScrapedMetrics::register(&registry).expect("constant names register");
        let mut snapshot = RelayMetrics {
            stops: 3,
            clients_connected: 2,
            ..RelayMetrics::default()
        };
        scraped.mirror_relay(&snapshot);
        scraped.mirror_relay(&snapshot);
        let text = registry.encode();
        assert_eq!(
            value(&text, "koto_relay_stops_total"),
            Some(3.0),
            "a second scrape of the same count adds nothing: {text}"
        );
        assert_eq!(value(&text, "koto_relay_clients_connected"), Some(2.0));
        snapshot.stops = 5;
        snapshot.clients_connected = 0;
        scraped.mirror_relay(&snapshot);
        let text = registry.encode();
        assert_eq!(value(&text, "koto_relay_stops_total"), Some(5.0));
        assert_eq!(value(&text, "koto_relay_clients_connected"), Some(0.0));
    }

    #[test]
    fn one_registry_holds_every_family_once() {
        let registry = Registry::new();
        let _ = ScrapedMetrics::register(&registry).expect("constant names register");
        registry
            .counter("koto_engine_turns_total", "Turns.")
            .expect("another owner's family beside them");
        let text = registry.encode();
        assert_eq!(
            text.matches("# TYPE koto_relay_stops_total counter")
                .count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("# TYPE koto_engine_turns_total counter"),
            "{text}"
        );
        assert!(
            ScrapedMetrics::register(&registry).is_ok(),
            "a second registration of the same shapes shares them"
        );
    }

    #[test]
    fn breakers_map_states_and_mirror_their_opened_counts() {
        let registry = Registry::new();
        let scraped = ScrapedMetrics::register(&registry).expect("constant names register");
        let link = |label: &str, state: &'static str, opened_count: u64| ChainLinkStatus {
            label: label.to_owned(),
            provider: "mock",
            state,
            failures: 0,
            opened_count,
            last_error: None,
            current: false,
        };
        scraped.mirror_breakers(&[link("llm0", "open", 2)], &[link("tts0", "half_open", 1)]);
        scraped.mirror_breakers(&[link("llm0", "open", 2)], &[link("tts0", "closed", 1)]);
        let text = registry.encode();
        for expected in [
            r#"koto_provider_breaker_state{kind="llm",provider="llm0"} 2"#,
            r#"koto_provider_breaker_state{kind="tts",provider="tts0"} 0"#,
            r#"koto_provider_breaker_opened_total{kind="llm",provider="llm0"} 2"#,
            r#"koto_provider_breaker_opened_total{kind="tts",provider="tts0"} 1"#,
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
    }
}

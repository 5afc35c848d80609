//! The process's one metrics registry: a thin typed facade over `prometheus-client`, which owns
//! the metric types, their storage and the Prometheus text encoding. It does no IO and samples
//! nothing by itself: owners update their handles, `/metrics` calls `encode`.
//!
//! What the facade adds is what its owners share: families registered by name with string label
//! names (`with(&["redis"])` picks a series), one registration shared by two owners asking for
//! the same shape (a different shape is `Conflict`), names checked before the library sees them,
//! and names written exactly as exported (`…_total` for counters: the library writes that suffix
//! itself, so the facade hands it the stem). Output is the Prometheus text format 0.0.4
//! (`prometheus_text`, not OpenMetrics: no `# EOF`, counters' HELP/TYPE carry `_total`), so
//! several registries' texts concatenate into one valid scrape. Families appear in registration
//! order; series within a family in the library's (hash) order.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::family::{Family, MetricConstructor};

/// A monotonically increasing count (`inc`, `inc_by`, `get`). `Counter::default()` belongs to
/// no registry: counted, never exported.
pub type Counter = prometheus_client::metrics::counter::Counter<u64, AtomicU64>;

/// A value that goes up and down (`set`, `inc`, `dec`, `inc_by`, `get`), an `f64`.
pub type Gauge = prometheus_client::metrics::gauge::Gauge<f64, AtomicU64>;

/// Observations counted into fixed buckets (upper bounds, `le`); `Histogram::new(bounds)` alone
/// belongs to no registry.
pub type Histogram = prometheus_client::metrics::histogram::Histogram;

/// Latency buckets in seconds, 0.5 ms … 10 s: wide enough for a commit→XADD hop (sub-ms) and a
/// time-to-first-audio (hundreds of ms) alike.
pub const LATENCY_SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The content type `/metrics` answers with: the library's, for the text format `encode` writes.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Why a metric could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// Names must match `[a-zA-Z_:][a-zA-Z0-9_:]*` (counters end in `_total`), label names
    /// `[a-zA-Z_][a-zA-Z0-9_]*` (not `__…`, and not `le` on a histogram).
    #[error("invalid metric or label name {0:?}")]
    InvalidName(String),
    /// The name is already registered with another type, label set or bucket layout.
    #[error("metric {0:?} is already registered with a different shape")]
    Conflict(String),
    /// Histogram buckets must be finite, strictly increasing and not empty.
    #[error("invalid histogram buckets for {0:?}")]
    InvalidBuckets(String),
}

/// A series' labels as the library keys them: `(name, value)` pairs in the family's order.
type Labels = Vec<(String, String)>;

/// Makes each new series of a histogram family with the family's buckets.
#[derive(Clone, Debug)]
struct Buckets(Arc<[f64]>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// A set of metric families that `encode` renders together. Cheap to clone (an `Arc`).
///
/// Registering a name that already exists with the same type, labels (and buckets) returns the
/// existing family, so two owners may share a metric; a different shape is `Conflict`.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    library: prometheus_client::registry::Registry,
    /// What each name was registered as, to share or refuse a second registration (the library
    /// would encode a duplicate family instead).
    families: BTreeMap<String, Registered>,
}

#[derive(Clone)]
struct Registered {
    labels: Arc<[String]>,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Counter(Family<Labels, Counter>),
    Gauge(Family<Labels, Gauge>),
    /// The layout is kept beside the family: its constructor is private to the library.
    Histogram(Family<Labels, Histogram, Buckets>, Arc<[f64]>),
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("families", &lock(&self.inner).families.len())
            .finish()
    }
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    pub fn counter(&self, name: &str, help: &str) -> Result<Counter, MetricsError> {
        Ok(self.counter_vec(name, help, &[])?.with(&[]))
    }

    /// `name` is the exported name and ends in `_total`.
    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<CounterVec, MetricsError> {
        // The library appends `_total` to a counter's name when it encodes (and refuses a name
        // that already has it), so it is handed the stem and the output keeps `name`.
        let stem = name
            .strip_suffix("_total")
            .filter(|stem| !stem.is_empty())
            .ok_or_else(|| MetricsError::InvalidName(name.to_owned()))?;
        let registered =
            self.register(
                name,
                stem,
                help,
                labels,
                || Kind::Counter(Family::default()),
            )?;
        match registered.kind {
            Kind::Counter(family) => Ok(CounterVec {
                family,
                names: registered.labels,
            }),
            _ => Err(MetricsError::Conflict(name.to_owned())),
        }
    }

    pub fn gauge(&self, name: &str, help: &str) -> Result<Gauge, MetricsError> {
        Ok(self.gauge_vec(name, help, &[])?.with(&[]))
    }

    pub fn gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<GaugeVec, MetricsError> {
        let registered =
            self.register(name, name, help, labels, || Kind::Gauge(Family::default()))?;
        match registered.kind {
            Kind::Gauge(family) => Ok(GaugeVec {
                family,
                names: registered.labels,
            }),
            _ => Err(MetricsError::Conflict(name.to_owned())),
        }
    }

    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Histogram, MetricsError> {
        Ok(self.histogram_vec(name, help, &[], buckets)?.with(&[]))
    }

    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<HistogramVec, MetricsError> {
        let valid = !buckets.is_empty()
            && buckets.iter().all(|bound| bound.is_finite())
            && buckets.windows(2).all(|pair| pair[0] < pair[1]);
        if !valid {
            return Err(MetricsError::InvalidBuckets(name.to_owned()));
        }
        if labels.contains(&"le") {
            return Err(MetricsError::InvalidName("le".to_owned()));
        }
        let layout: Arc<[f64]> = buckets.into();
        let registered = self.register(name, name, help, labels, || {
            Kind::Histogram(
                Family::new_with_constructor(Buckets(Arc::clone(&layout))),
                Arc::clone(&layout),
            )
        })?;
        match registered.kind {
            Kind::Histogram(family, existing) if *existing == *buckets => Ok(HistogramVec {
                family,
                names: registered.labels,
            }),
            _ => Err(MetricsError::Conflict(name.to_owned())),
        }
    }

    /// Registers `make()` under `library_name` unless `name` is taken; a taken name returns what
    /// it was registered as, for the caller to check the type (labels are checked here).
    fn register(
        &self,
        name: &str,
        library_name: &str,
        help: &str,
        labels: &[&str],
        make: impl FnOnce() -> Kind,
    ) -> Result<Registered, MetricsError> {
        if !valid_metric_name(name) {
            return Err(MetricsError::InvalidName(name.to_owned()));
        }
        if let Some(bad) = labels.iter().find(|label| !valid_label_name(label)) {
            return Err(MetricsError::InvalidName((*bad).to_owned()));
        }
        let mut inner = lock(&self.inner);
        if let Some(existing) = inner.families.get(name) {
            let same_labels = existing
                .labels
                .iter()
                .map(String::as_str)
                .eq(labels.iter().copied());
            if !same_labels {
                return Err(MetricsError::Conflict(name.to_owned()));
            }
            return Ok(existing.clone());
        }
        let registered = Registered {
            labels: labels.iter().map(|label| (*label).to_owned()).collect(),
            kind: make(),
        };
        // The library ends every HELP with a period; ours are written as sentences already.
        let help = help.strip_suffix('.').unwrap_or(help);
        match &registered.kind {
            Kind::Counter(family) => inner.library.register(library_name, help, family.clone()),
            Kind::Gauge(family) => inner.library.register(library_name, help, family.clone()),
            Kind::Histogram(family, _) => {
                inner.library.register(library_name, help, family.clone())
            }
        }
        inner.families.insert(name.to_owned(), registered.clone());
        Ok(registered)
    }

    /// The whole registry in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail, and the library's encoders only fail on the writer.
        let _ = prometheus_text::encode(&mut out, &lock(&self.inner).library);
        out
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a map lookup/insert, a registration or an encode: a panic inside
    // cannot leave the data half-updated, so a poisoned lock carries no information.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A series' label set: missing values become `""`, extra values are ignored (a mismatch is a
/// programming error that must not take a server down).
fn label_set(names: &[String], values: &[&str]) -> Labels {
    names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let value = values.get(index).copied().unwrap_or("");
            (name.clone(), value.to_owned())
        })
        .collect()
}

/// A counter family with labels; `with` picks (or creates) one series.
#[derive(Clone)]
pub struct CounterVec {
    family: Family<Labels, Counter>,
    names: Arc<[String]>,
}

impl CounterVec {
    pub fn with(&self, values: &[&str]) -> Counter {
        self.family
            .get_or_create_owned(&label_set(&self.names, values))
    }
}

impl std::fmt::Debug for CounterVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterVec").finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct GaugeVec {
    family: Family<Labels, Gauge>,
    names: Arc<[String]>,
}

impl GaugeVec {
    pub fn with(&self, values: &[&str]) -> Gauge {
        self.family
            .get_or_create_owned(&label_set(&self.names, values))
    }

    /// Drops every series, e.g. before re-sampling a set of streams that may have shrunk.
    pub fn clear(&self) {
        self.family.clear();
    }
}

impl std::fmt::Debug for GaugeVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GaugeVec").finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct HistogramVec {
    family: Family<Labels, Histogram, Buckets>,
    names: Arc<[String]>,
}

impl HistogramVec {
    pub fn with(&self, values: &[&str]) -> Histogram {
        self.family
            .get_or_create_owned(&label_set(&self.names, values))
    }
}

impl std::fmt::Debug for HistogramVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistogramVec").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    /// A sample's value in `text` (the line that starts with `series` and a space).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.parse().ok())
    }

    #[test]
    fn encodes_every_type_in_the_exposition_format() {
        let registry = Registry::new();
        let turns = registry
            .counter("koto_turns_total", "Turns.")
            .expect("valid counter");
        turns.inc_by(3);
        let backlog = registry
            .gauge("koto_outbox_backlog", "Undelivered outbox rows.")
            .expect("valid gauge");
        backlog.set(7.0);
        let latency = registry
            .histogram(
                "koto_delivery_seconds",
                "Commit to XADD.",
                &[0.001, 0.01, 0.1],
            )
            .expect("valid histogram");
        for value in [0.0005, 0.001, 0.002, 0.05, 3.0] {
            latency.observe(value);
        }

        // Names as registered (the library's `_total` is not doubled, its HELP period not
        // either), families in registration order, buckets cumulative with an inclusive `le`,
        // `_count` equal to the `+Inf` bucket.
        expect![[r##"
            # HELP koto_turns_total Turns.
            # TYPE koto_turns_total counter
            koto_turns_total 3
            # HELP koto_outbox_backlog Undelivered outbox rows.
            # TYPE koto_outbox_backlog gauge
            koto_outbox_backlog 7.0
            # HELP koto_delivery_seconds Commit to XADD.
            # TYPE koto_delivery_seconds histogram
            koto_delivery_seconds_bucket{le="0.001"} 2
            koto_delivery_seconds_bucket{le="0.01"} 3
            koto_delivery_seconds_bucket{le="0.1"} 4
            koto_delivery_seconds_bucket{le="+Inf"} 5
            koto_delivery_seconds_sum 3.0535
            koto_delivery_seconds_count 5
        "##]]
        .assert_eq(&registry.encode());
    }

    #[test]
    fn label_families_keep_their_label_order_and_series() {
        let registry = Registry::new();
        let turns = registry
            .counter_vec("koto_turns_total", "Turns by outcome.", &["outcome"])
            .expect("valid counter");
        turns.with(&["completed"]).inc_by(3);
        turns.with(&["interrupted"]).inc();
        turns.with(&["completed"]).inc();
        let text = registry.encode();
        assert_eq!(
            sample(&text, r#"koto_turns_total{outcome="completed"}"#),
            Some(4.0),
            "`with` finds the same series again: {text}"
        );
        assert_eq!(
            sample(&text, r#"koto_turns_total{outcome="interrupted"}"#),
            Some(1.0),
            "each label value is its own series: {text}"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let registry = Registry::new();
        let errors = registry
            .counter_vec(
                "errors_total",
                "Errors\nby \\kind\\ \"x\".",
                &["kind", "stream"],
            )
            .expect("valid counter");
        errors.with(&["a\"b\\c\nd", "events.ltm"]).inc();
        expect![[r##"
            # HELP errors_total Errors\nby \\kind\\ "x".
            # TYPE errors_total counter
            errors_total{kind="a\"b\\c\nd",stream="events.ltm"} 1
        "##]]
        .assert_eq(&registry.encode());
    }

    #[test]
    fn histogram_vec_labels_come_before_le() {
        let registry = Registry::new();
        let latency = registry
            .histogram_vec("lat_seconds", "Latency.", &["mode"], &[1.0])
            .expect("valid histogram");
        latency.with(&["redis"]).observe(0.5);
        expect![[r##"
            # HELP lat_seconds Latency.
            # TYPE lat_seconds histogram
            lat_seconds_bucket{mode="redis",le="1"} 1
            lat_seconds_bucket{mode="redis",le="+Inf"} 1
            lat_seconds_sum{mode="redis"} 0.5
            lat_seconds_count{mode="redis"} 1
        "##]]
        .assert_eq(&registry.encode());
    }

    #[test]
    fn same_shape_registration_shares_and_other_shapes_conflict() {
        let registry = Registry::new();
        let first = registry
            .counter("shared_total", "x")
            .expect("first registration");
        let second = registry
            .counter("shared_total", "x")
            .expect("same shape shares");
        first.inc();
        assert_eq!(second.get(), 1, "both handles point at the same series");
        assert_eq!(
            registry.encode().matches("# TYPE shared_total").count(),
            1,
            "a shared family is encoded once"
        );
        assert_eq!(
            registry.gauge("shared_total", "x").err(),
            Some(MetricsError::Conflict("shared_total".into())),
            "a name cannot change type"
        );
        assert_eq!(
            registry.counter_vec("shared_total", "x", &["a"]).err(),
            Some(MetricsError::Conflict("shared_total".into())),
            "a name cannot change its labels"
        );
        registry
            .histogram("h_seconds", "x", &[1.0, 2.0])
            .expect("first histogram");
        assert_eq!(
            registry.histogram("h_seconds", "x", &[1.0]).err(),
            Some(MetricsError::Conflict("h_seconds".into())),
            "a histogram cannot change its buckets"
        );
    }

    #[test]
    fn invalid_names_and_buckets_are_refused() {
        let registry = Registry::new();
        for bad in [
            "",
            "1abc_total",
            "a-b_total",
            "a b_total",
            "_total",
            "no_suffix",
        ] {
            assert!(
                matches!(
                    registry.counter(bad, "x"),
                    Err(MetricsError::InvalidName(_))
                ),
                "{bad:?} is not a counter name"
            );
        }
        assert!(
            matches!(
                registry.gauge_vec("ok", "x", &["__reserved"]),
                Err(MetricsError::InvalidName(_))
            ),
            "double-underscore labels are reserved"
        );
        assert!(
            matches!(
                registry.histogram_vec("h", "x", &["le"], &[1.0]),
                Err(MetricsError::InvalidName(_))
            ),
            "le is the bucket label"
        );
        for buckets in [&[][..], &[2.0, 1.0], &[1.0, 1.0], &[f64::NAN]] {
            assert!(
                matches!(
                    registry.histogram("h2", "x", buckets),
                    Err(MetricsError::InvalidBuckets(_))
                ),
                "{buckets:?} is not a valid bucket layout"
            );
        }
    }

    #[test]
    fn gauges_move_both_ways_and_clear_drops_series() {
        let registry = Registry::new();
        let lengths = registry
            .gauge_vec("stream_length", "x", &["stream"])
            .expect("valid gauge");
        let ltm = lengths.with(&["events.ltm"]);
        ltm.inc();
        ltm.inc();
        ltm.dec();
        ltm.inc_by(0.5);
        assert_eq!(ltm.get(), 1.5, "inc, inc, dec, +0.5");
        lengths.clear();
        assert!(
            !registry.encode().contains("events.ltm"),
            "a cleared family has no series until set again"
        );
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let registry = Registry::new();
        let histogram = registry
            .histogram("work_seconds", "x", &[1.0])
            .expect("valid histogram");
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let histogram = histogram.clone();
                scope.spawn(move || {
                    for _ in 0..1000 {
                        histogram.observe(0.5);
                    }
                });
            }
        });
        let text = registry.encode();
        assert_eq!(
            sample(&text, "work_seconds_count"),
            Some(4000.0),
            "clones share one histogram and lose no observation"
        );
        assert_eq!(
            sample(&text, "work_seconds_sum"),
            Some(2000.0),
            "no addition to the sum is lost"
        );
    }

    #[test]
    fn missing_label_values_become_empty() {
        let registry = Registry::new();
        let vec = registry
            .counter_vec("c_total", "x", &["a", "b"])
            .expect("valid counter");
        vec.with(&["only-a"]).inc();
        assert!(
            registry.encode().contains(r#"c_total{a="only-a",b=""} 1"#),
            "a short label list is padded rather than panicking"
        );
    }

    #[test]
    fn two_registries_concatenate_into_one_scrape() {
        // `/metrics` appends a scrape-time registry (relay counters, breakers) to the shared
        // one; the text format has no end marker, so the result is one valid exposition.
        let shared = Registry::new();
        shared.counter("a_total", "A.").expect("valid").inc();
        let sampled = Registry::new();
        sampled.gauge("b", "B.").expect("valid").set(2.0);
        let text = shared.encode() + &sampled.encode();
        assert!(!text.contains("# EOF"), "no OpenMetrics end marker: {text}");
        assert_eq!(sample(&text, "a_total"), Some(1.0), "{text}");
        assert_eq!(sample(&text, "b"), Some(2.0), "{text}");
    }
}

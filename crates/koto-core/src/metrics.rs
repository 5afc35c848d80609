//! Counters, gauges and fixed-bucket histograms on atomics, and their Prometheus text encoding.
//! It does no IO and samples nothing by itself: owners update values, `/metrics` calls `encode`.
//!
//! Registration takes a lock (rare, at start-up); updates are lock-free atomics, except the first
//! use of a new label combination of a `…Vec`, which inserts it under the family's lock. Output
//! follows the Prometheus text exposition format 0.0.4: `# HELP`, `# TYPE`, one sample per line,
//! histograms as cumulative `_bucket{le=…}`, `_sum` and `_count`. Families appear in registration
//! order and series in label order, so the text is deterministic (and testable as a snapshot).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Latency buckets in seconds, 0.5 ms … 10 s: wide enough for a commit→XADD hop (sub-ms) and a
/// time-to-first-audio (hundreds of ms) alike.
pub const LATENCY_SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Why a metric could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// Names must match `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*` (not
    /// `__…`, and not `le` on a histogram).
    #[error("invalid metric or label name {0:?}")]
    InvalidName(String),
    /// The name is already registered with another type, label set or bucket layout.
    #[error("metric {0:?} is already registered with a different shape")]
    Conflict(String),
    /// Histogram buckets must be finite, strictly increasing and not empty.
    #[error("invalid histogram buckets for {0:?}")]
    InvalidBuckets(String),
}

/// A set of metric families that `encode` renders together. Cheap to clone (an `Arc`).
///
/// Registering a name that already exists with the same type, labels (and buckets) returns the
/// existing family, so two owners may share a metric; a different shape is `Conflict`.
#[derive(Clone, Default)]
pub struct Registry {
    families: Arc<Mutex<Vec<Family>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("families", &lock(&self.families).len())
            .finish()
    }
}

#[derive(Clone)]
struct Family {
    name: String,
    help: String,
    labels: Vec<String>,
    kind: FamilyKind,
}

#[derive(Clone)]
enum FamilyKind {
    Counter(Series<AtomicU64>),
    Gauge(Series<AtomicU64>),
    Histogram {
        buckets: Arc<[f64]>,
        series: Series<HistogramCore>,
    },
}

/// The series of one family, keyed by label values. A family without labels has one series
/// under the empty key.
type Series<T> = Arc<Mutex<BTreeMap<Vec<String>, Arc<T>>>>;

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    pub fn counter(&self, name: &str, help: &str) -> Result<Counter, MetricsError> {
        Ok(self.counter_vec(name, help, &[])?.with(&[]))
    }

    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<CounterVec, MetricsError> {
        let family = self.register(name, help, labels, || FamilyKind::Counter(Arc::default()))?;
        match family.kind {
            FamilyKind::Counter(series) => Ok(CounterVec {
                series,
                arity: labels.len(),
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
        let family = self.register(name, help, labels, || FamilyKind::Gauge(Arc::default()))?;
        match family.kind {
            FamilyKind::Gauge(series) => Ok(GaugeVec {
                series,
                arity: labels.len(),
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
        let family = self.register(name, help, labels, || FamilyKind::Histogram {
            buckets: buckets.into(),
            series: Arc::default(),
        })?;
        match family.kind {
            FamilyKind::Histogram {
                buckets: existing,
                series,
            } if *existing == *buckets => Ok(HistogramVec {
                series,
                buckets: existing,
                arity: labels.len(),
            }),
            _ => Err(MetricsError::Conflict(name.to_owned())),
        }
    }

    fn register(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        make: impl FnOnce() -> FamilyKind,
    ) -> Result<Family, MetricsError> {
        if !valid_metric_name(name) {
            return Err(MetricsError::InvalidName(name.to_owned()));
        }
        if let Some(bad) = labels.iter().find(|label| !valid_label_name(label)) {
            return Err(MetricsError::InvalidName((*bad).to_owned()));
        }
        let mut families = lock(&self.families);
        if let Some(existing) = families.iter().find(|family| family.name == name) {
            let new_kind = make();
            let same_type =
                std::mem::discriminant(&existing.kind) == std::mem::discriminant(&new_kind);
            if !same_type || existing.labels != labels {
                return Err(MetricsError::Conflict(name.to_owned()));
            }
            return Ok(existing.clone());
        }
        let family = Family {
            name: name.to_owned(),
            help: help.to_owned(),
            labels: labels.iter().map(|label| (*label).to_owned()).collect(),
            kind: make(),
        };
        families.push(family.clone());
        Ok(family)
    }

    /// The whole registry in the Prometheus text format (`text/plain; version=0.0.4`).
    pub fn encode(&self) -> String {
        // Clone the family list so no family lock is taken while the registry lock is held.
        let families = lock(&self.families).clone();
        let mut out = String::new();
        for family in &families {
            encode_family(&mut out, family);
        }
        out
    }
}

/// The content type `/metrics` answers with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn encode_family(out: &mut String, family: &Family) {
    let type_name = match family.kind {
        FamilyKind::Counter(_) => "counter",
        FamilyKind::Gauge(_) => "gauge",
        FamilyKind::Histogram { .. } => "histogram",
    };
    let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
    let _ = writeln!(out, "# TYPE {} {}", family.name, type_name);
    match &family.kind {
        FamilyKind::Counter(series) => {
            for (values, value) in lock(series).iter() {
                let labels = render_labels(&family.labels, values, None);
                let count = value.load(Ordering::Relaxed);
                let _ = writeln!(out, "{}{labels} {count}", family.name);
            }
        }
        FamilyKind::Gauge(series) => {
            for (values, value) in lock(series).iter() {
                let labels = render_labels(&family.labels, values, None);
                let value = f64::from_bits(value.load(Ordering::Relaxed));
                let _ = writeln!(out, "{}{labels} {}", family.name, format_value(value));
            }
        }
        FamilyKind::Histogram { buckets, series } => {
            for (values, histogram) in lock(series).iter() {
                let mut cumulative = 0_u64;
                for (bound, count) in buckets.iter().zip(histogram.counts.iter()) {
                    cumulative += count.load(Ordering::Relaxed);
                    let labels = render_labels(&family.labels, values, Some(&format_value(*bound)));
                    let _ = writeln!(out, "{}_bucket{labels} {cumulative}", family.name);
                }
                // The overflow slot is the last one; `_count` equals the `+Inf` bucket by
                // construction because both come from the same loads.
                if let Some(overflow) = histogram.counts.get(buckets.len()) {
                    cumulative += overflow.load(Ordering::Relaxed);
                }
                let labels = render_labels(&family.labels, values, Some("+Inf"));
                let _ = writeln!(out, "{}_bucket{labels} {cumulative}", family.name);
                let plain = render_labels(&family.labels, values, None);
                let sum = f64::from_bits(histogram.sum.load(Ordering::Relaxed));
                let _ = writeln!(out, "{}_sum{plain} {}", family.name, format_value(sum));
                let _ = writeln!(out, "{}_count{plain} {cumulative}", family.name);
            }
        }
    }
}

fn render_labels(names: &[String], values: &[String], le: Option<&str>) -> String {
    if names.is_empty() && le.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    let mut first = true;
    for (name, value) in names.iter().zip(values.iter()) {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{name}=\"{}\"", escape_label_value(value));
    }
    if let Some(le) = le {
        if !first {
            out.push(',');
        }
        let _ = write!(out, "le=\"{le}\"");
    }
    out.push('}');
    out
}

/// Label values escape backslash, double quote and line feed.
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escapes backslash and line feed (quotes stay as they are).
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)` is what Prometheus writes; Rust's shortest
/// round-trip `Display` is equivalent for parsing, plus the three special spellings.
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{value}")
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
    // Every critical section is a map lookup/insert or a clone: a panic inside cannot leave the
    // data half-updated, so a poisoned lock carries no information.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Label values as the map key: missing values become `""`, extra values are ignored (a
/// mismatch is a programming error that must not take a server down).
fn key(values: &[&str], arity: usize) -> Vec<String> {
    (0..arity)
        .map(|index| values.get(index).copied().unwrap_or("").to_owned())
        .collect()
}

fn series_entry<T: Default>(series: &Series<T>, values: &[&str], arity: usize) -> Arc<T> {
    let key = key(values, arity);
    let mut map = lock(series);
    Arc::clone(map.entry(key).or_default())
}

/// A monotonically increasing count.
#[derive(Clone, Default)]
pub struct Counter {
    value: Arc<AtomicU64>,
}

impl Counter {
    /// A counter that belongs to no registry (for components started without metrics).
    pub fn detached() -> Counter {
        Counter::default()
    }

    pub fn inc(&self) {
        self.inc_by(1);
    }

    pub fn inc_by(&self, amount: u64) {
        self.value.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Counter").field(&self.get()).finish()
    }
}

/// A value that goes up and down; stored as `f64` bits.
#[derive(Clone, Default)]
pub struct Gauge {
    bits: Arc<AtomicU64>,
}

impl Gauge {
    pub fn detached() -> Gauge {
        Gauge::default()
    }

    pub fn set(&self, value: f64) {
        self.bits.store(value.to_bits(), Ordering::Relaxed);
    }

    pub fn add(&self, delta: f64) {
        add_f64(&self.bits, delta);
    }

    pub fn inc(&self) {
        self.add(1.0);
    }

    pub fn dec(&self) {
        self.add(-1.0);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.bits.load(Ordering::Relaxed))
    }
}

impl std::fmt::Debug for Gauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Gauge").field(&self.get()).finish()
    }
}

fn add_f64(bits: &AtomicU64, delta: f64) {
    // fetch_update retries on contention; it only fails if the closure returns None.
    let _ = bits.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
        Some((f64::from_bits(current) + delta).to_bits())
    });
}

/// Per-bucket (non-cumulative) counts, the overflow slot last, and the sum of observations.
struct HistogramCore {
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
    buckets: Arc<[f64]>,
}

impl HistogramCore {
    fn new(buckets: Arc<[f64]>) -> HistogramCore {
        HistogramCore {
            counts: (0..=buckets.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0.0_f64.to_bits()),
            buckets,
        }
    }
}

/// Observations counted into fixed buckets (upper bounds, `le`).
#[derive(Clone)]
pub struct Histogram {
    core: Arc<HistogramCore>,
}

impl Histogram {
    /// A histogram that belongs to no registry.
    pub fn detached(buckets: &[f64]) -> Histogram {
        Histogram {
            core: Arc::new(HistogramCore::new(buckets.into())),
        }
    }

    pub fn observe(&self, value: f64) {
        // NaN is not ≤ any bound: it lands in the overflow slot and poisons the sum, as in the
        // reference clients; callers should not observe NaN.
        let slot = self
            .core
            .buckets
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.core.buckets.len());
        if let Some(count) = self.core.counts.get(slot) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        add_f64(&self.core.sum, value);
    }

    pub fn count(&self) -> u64 {
        self.core
            .counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.core.sum.load(Ordering::Relaxed))
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .field("sum", &self.sum())
            .finish()
    }
}

/// A counter family with labels; `with` picks (or creates) one series.
#[derive(Clone)]
pub struct CounterVec {
    series: Series<AtomicU64>,
    arity: usize,
}

impl CounterVec {
    pub fn with(&self, values: &[&str]) -> Counter {
        Counter {
            value: series_entry(&self.series, values, self.arity),
        }
    }
}

impl std::fmt::Debug for CounterVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterVec").finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct GaugeVec {
    series: Series<AtomicU64>,
    arity: usize,
}

impl GaugeVec {
    pub fn with(&self, values: &[&str]) -> Gauge {
        Gauge {
            bits: series_entry(&self.series, values, self.arity),
        }
    }

    /// Drops every series, e.g. before re-sampling a set of streams that may have shrunk.
    pub fn clear(&self) {
        lock(&self.series).clear();
    }
}

impl std::fmt::Debug for GaugeVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GaugeVec").finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct HistogramVec {
    series: Series<HistogramCore>,
    buckets: Arc<[f64]>,
    arity: usize,
}

impl HistogramVec {
    pub fn with(&self, values: &[&str]) -> Histogram {
        let key = key(values, self.arity);
        let mut map = lock(&self.series);
        let core = map
            .entry(key)
            .or_insert_with(|| Arc::new(HistogramCore::new(Arc::clone(&self.buckets))));
        Histogram {
            core: Arc::clone(core),
        }
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

    #[test]
    fn encodes_every_type_in_the_exposition_format() {
        let registry = Registry::new();
        let turns = registry
            .counter_vec("koto_turns_total", "Turns by outcome.", &["outcome"])
            .expect("valid counter");
        turns.with(&["completed"]).inc_by(3);
        turns.with(&["interrupted"]).inc();
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

        // Buckets are cumulative, `le` is inclusive, `_count` equals the `+Inf` bucket.
        expect![[r#"
            # HELP koto_turns_total Turns by outcome.
            # TYPE koto_turns_total counter
            koto_turns_total{outcome="completed"} 3
            koto_turns_total{outcome="interrupted"} 1
            # HELP koto_outbox_backlog Undelivered outbox rows.
            # TYPE koto_outbox_backlog gauge
            koto_outbox_backlog 7
            # HELP koto_delivery_seconds Commit to XADD.
            # TYPE koto_delivery_seconds histogram
            koto_delivery_seconds_bucket{le="0.001"} 2
            koto_delivery_seconds_bucket{le="0.01"} 3
            koto_delivery_seconds_bucket{le="0.1"} 4
            koto_delivery_seconds_bucket{le="+Inf"} 5
            koto_delivery_seconds_sum 3.0535
            koto_delivery_seconds_count 5
        "#]]
        .assert_eq(&registry.encode());
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
        expect![[r#"
            # HELP errors_total Errors\nby \\kind\\ "x".
            # TYPE errors_total counter
            errors_total{kind="a\"b\\c\nd",stream="events.ltm"} 1
        "#]]
        .assert_eq(&registry.encode());
    }

    #[test]
    fn histogram_vec_labels_come_before_le() {
        let registry = Registry::new();
        let latency = registry
            .histogram_vec("lat_seconds", "Latency.", &["mode"], &[1.0])
            .expect("valid histogram");
        latency.with(&["redis"]).observe(0.5);
        expect![[r#"
            # HELP lat_seconds Latency.
            # TYPE lat_seconds histogram
            lat_seconds_bucket{mode="redis",le="1"} 1
            lat_seconds_bucket{mode="redis",le="+Inf"} 1
            lat_seconds_sum{mode="redis"} 0.5
            lat_seconds_count{mode="redis"} 1
        "#]]
        .assert_eq(&registry.encode());
    }

    #[test]
    fn special_float_values_use_the_prometheus_spelling() {
        assert_eq!(format_value(f64::INFINITY), "+Inf", "Go spells +Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf", "Go spells -Inf");
        assert_eq!(format_value(f64::NAN), "NaN", "Go spells NaN");
        assert_eq!(format_value(0.25), "0.25", "plain decimals stay plain");
        assert_eq!(
            format_value(1e21),
            "1000000000000000000000",
            "Rust never uses exponents; still parseable"
        );
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
        for bad in ["", "1abc", "a-b", "a b"] {
            assert!(
                matches!(
                    registry.counter(bad, "x"),
                    Err(MetricsError::InvalidName(_))
                ),
                "{bad:?} is not a metric name"
            );
        }
        assert!(
            matches!(
                registry.counter_vec("ok", "x", &["__reserved"]),
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
        ltm.add(0.5);
        assert_eq!(ltm.get(), 1.5, "inc, inc, dec, +0.5");
        lengths.clear();
        assert!(
            !registry.encode().contains("events.ltm"),
            "a cleared family has no series until set again"
        );
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let histogram = Histogram::detached(&[1.0]);
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
        assert_eq!(histogram.count(), 4000, "atomics lose no observation");
        assert_eq!(histogram.sum(), 2000.0, "the CAS loop loses no addition");
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
}

//! The event runtime's metric families (names below are public: dashboards use them). It only
//! holds handles; sampled gauges (backlog, lag, stream lengths) are set by `runtime::refresh`.

use koto_core::metrics::{
    Counter, CounterVec, Gauge, GaugeVec, HistogramVec, LATENCY_SECONDS_BUCKETS, MetricsError,
    Registry,
};

#[derive(Clone, Debug)]
#[cfg_attr(
    not(feature = "redis"),
    allow(
        dead_code,
        reason = "the relay and Redis gauges exist only with the redis feature"
    )
)]
pub(crate) struct EventsMetrics {
    /// `koto_events_mode{mode}`: 1 for the mode this run uses.
    pub mode: GaugeVec,
    /// `koto_outbox_backlog`: rows the relay has not delivered (Redis mode) — in embedded mode
    /// every row is "undelivered", so see `group_lag` there.
    pub outbox_backlog: Gauge,
    pub outbox_oldest_age: Gauge,
    /// Commit → XADD acknowledged (`mode="redis"`) or commit → effect committed
    /// (`mode="embedded"`, and Redis-mode repairs straight from the outbox).
    pub delivery_latency: HistogramVec,
    pub relay_delivered: Counter,
    pub relay_errors: CounterVec,
    pub relay_id_fallbacks: CounterVec,
    pub stream_length: GaugeVec,
    pub group_lag: GaugeVec,
    pub group_pending: GaugeVec,
    pub consumed: CounterVec,
    pub consumer_errors: CounterVec,
    pub dead_lettered: CounterVec,
    pub dead_letters: Gauge,
    pub reclaimed: CounterVec,
    pub repaired: CounterVec,
    pub redis_connected: Gauge,
    pub redis_reconnects: Counter,
    pub retention_pruned: Counter,
}

impl EventsMetrics {
    pub(crate) fn register(registry: &Registry) -> Result<EventsMetrics, MetricsError> {
        Ok(EventsMetrics {
            mode: registry.gauge_vec(
                "koto_events_mode",
                "1 for the event delivery mode this process runs (redis or embedded).",
                &["mode"],
            )?,
            outbox_backlog: registry.gauge(
                "koto_outbox_backlog",
                "Outbox rows not yet delivered to Redis.",
            )?,
            outbox_oldest_age: registry.gauge(
                "koto_outbox_oldest_undelivered_age_seconds",
                "Age of the oldest outbox row not yet delivered to Redis (0 when none).",
            )?,
            delivery_latency: registry.histogram_vec(
                "koto_events_delivery_latency_seconds",
                "Commit of an outbox row to XADD acknowledged (redis) or to the consumer's effect committed (embedded).",
                &["mode"],
                LATENCY_SECONDS_BUCKETS,
            )?,
            relay_delivered: registry.counter(
                "koto_events_relay_delivered_total",
                "Outbox rows the relay delivered to Redis.",
            )?,
            relay_errors: registry.counter_vec(
                "koto_events_relay_errors_total",
                "Relay failures by kind (connection, oom, wrongtype, server, store).",
                &["kind"],
            )?,
            relay_id_fallbacks: registry.counter_vec(
                "koto_events_relay_id_fallbacks_total",
                "Entries sent with an automatic id because the stream's ids had moved past the outbox id.",
                &["stream"],
            )?,
            stream_length: registry.gauge_vec(
                "koto_events_stream_length",
                "XLEN of each event stream.",
                &["stream"],
            )?,
            group_lag: registry.gauge_vec(
                "koto_events_group_lag",
                "Events of the stream the group has not read yet.",
                &["group", "stream"],
            )?,
            group_pending: registry.gauge_vec(
                "koto_events_group_pending",
                "Entries read by the group but not acknowledged.",
                &["group", "stream"],
            )?,
            consumed: registry.counter_vec(
                "koto_events_consumed_total",
                "Events handled by a group, by result (applied, duplicate, ignored).",
                &["group", "result"],
            )?,
            consumer_errors: registry.counter_vec(
                "koto_events_consumer_errors_total",
                "Consumer failures by kind (busy, storage, payload, plugin, entry, redis).",
                &["group", "kind"],
            )?,
            dead_lettered: registry.counter_vec(
                "koto_events_dead_lettered_total",
                "Events a group gave up on and dead-lettered.",
                &["group"],
            )?,
            dead_letters: registry.gauge(
                "koto_events_dead_letters",
                "Dead letters stored in SQLite (mirrored to events.dlq in Redis mode).",
            )?,
            reclaimed: registry.counter_vec(
                "koto_events_reclaimed_total",
                "Pending entries taken over from idle consumers (XAUTOCLAIM).",
                &["group"],
            )?,
            repaired: registry.counter_vec(
                "koto_events_repaired_total",
                "Delivered events Redis no longer had, handled straight from the outbox.",
                &["group"],
            )?,
            redis_connected: registry.gauge(
                "koto_events_redis_connected",
                "1 while the relay holds a working Redis connection.",
            )?,
            redis_reconnects: registry.counter(
                "koto_events_redis_reconnects_total",
                "Redis connections (re)established after a failure.",
            )?,
            retention_pruned: registry.counter(
                "koto_outbox_pruned_total",
                "Outbox rows deleted by retention.",
            )?,
        })
    }
}

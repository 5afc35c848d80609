//! `EventsConfig`: every knob of the event runtime with its default. It reads no environment
//! itself; the server's config layer fills the fields that are configuration keys (named here by
//! their env var). The others are fixed tuning, set only by tests and benches: no setting reads
//! them, so none is documented as one.

use std::time::Duration;

/// Which consumer groups exist: the name a group has in Redis and in SQLite bookkeeping, and the
/// stream it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    /// `events.ltm` → long-term memory (FTS5).
    Ltm,
    /// `events.analytics` → per-session and global aggregates.
    Analytics,
    /// `events.plugins` → the registered in-process plugins.
    Plugins,
}

impl GroupKind {
    pub fn stream(self) -> &'static str {
        match self {
            GroupKind::Ltm => koto_protocol::events::stream::LTM,
            GroupKind::Analytics => koto_protocol::events::stream::ANALYTICS,
            GroupKind::Plugins => koto_protocol::events::stream::PLUGINS,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventsConfig {
    /// `ENABLE_ASYNC_EXT` (default true). Off: no relay to Redis; consumers still drain the
    /// outbox in process (the engine writes no new events then).
    pub async_ext: bool,
    /// `REDIS_URL` (default unset, e.g. `redis://127.0.0.1:6379/0`). Used only with the `redis`
    /// feature and `async_ext`; unreachable at start → embedded mode for this run.
    pub redis_url: Option<String>,
    /// `OUTBOX_BATCH` (default 512): rows per relay pipeline / per embedded read.
    pub outbox_batch: usize,
    /// Safety-net poll (1 s; not a config key): commits wake the relay at once.
    pub outbox_poll: Duration,
    /// `OUTBOX_RETENTION_HOURS` (default 72): delivered, handled rows older than this are pruned.
    pub outbox_retention: Duration,
    /// How often retention runs, and once at start (10 min; not a config key).
    pub outbox_prune_interval: Duration,
    /// `STREAM_MAXLEN` (default 100000): `XADD … MAXLEN ~ N` on every stream, DLQ included.
    pub stream_maxlen: usize,
    /// `LTM_GROUP` (default `ltm-workers`).
    pub ltm_group: String,
    /// `ANALYTICS_GROUP` (default `analytics-workers`).
    pub analytics_group: String,
    /// The plugins' consumer group (`plugin-workers`; not a config key); runs only when plugins
    /// are registered.
    pub plugins_group: String,
    /// `DLQ_AFTER_ATTEMPTS` (default 5): failed attempts before an event is dead-lettered.
    pub dlq_after_attempts: u32,
    /// `RECLAIM_IDLE_MS` (default 30000): pending entries idle this long are taken over
    /// (`XAUTOCLAIM`), e.g. from a worker that died; also the retry delay after a failure.
    pub reclaim_idle: Duration,
    /// A delivered event no worker of a group has handled this long after delivery (60 s; not a
    /// config key), and no longer in Redis, is taken straight from the outbox.
    pub repair_after: Duration,
    /// `XREADGROUP BLOCK` (2 s; not a config key); bounds how late a shutdown or a reclaim tick
    /// is noticed by a worker waiting for entries.
    pub redis_block: Duration,
    /// Connecting to Redis (2 s; not a config key).
    pub redis_connect_timeout: Duration,
    /// `LTM_TOP_K` (default 3): memories recalled into a prompt.
    pub ltm_top_k: usize,
    /// `LTM_INLINE_BUDGET_MS` (default 150): a recall slower than this returns `Timeout`.
    pub ltm_inline_budget: Duration,
    /// `EVENT_WORKERS_IN_PROCESS` (default true): run the consumer groups inside the server.
    /// Off only when standalone `kotodama worker` processes do all the consuming (Redis mode).
    pub in_process_workers: bool,
    /// This process's consumer name in Redis (`koto-<pid>-<random>`; not a config key: unique
    /// per start by design, see [`default_consumer_name`]).
    pub consumer_name: String,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            async_ext: true,
            redis_url: None,
            outbox_batch: 512,
            outbox_poll: Duration::from_millis(1000),
            outbox_retention: Duration::from_secs(72 * 3600),
            outbox_prune_interval: Duration::from_secs(600),
            stream_maxlen: 100_000,
            ltm_group: "ltm-workers".to_owned(),
            analytics_group: "analytics-workers".to_owned(),
            plugins_group: "plugin-workers".to_owned(),
            dlq_after_attempts: 5,
            reclaim_idle: Duration::from_millis(30_000),
            repair_after: Duration::from_millis(60_000),
            redis_block: Duration::from_millis(2_000),
            redis_connect_timeout: Duration::from_millis(2_000),
            ltm_top_k: 3,
            ltm_inline_budget: Duration::from_millis(150),
            in_process_workers: true,
            consumer_name: default_consumer_name(),
        }
    }
}

impl EventsConfig {
    pub(crate) fn group_name(&self, kind: GroupKind) -> &str {
        match kind {
            GroupKind::Ltm => &self.ltm_group,
            GroupKind::Analytics => &self.analytics_group,
            GroupKind::Plugins => &self.plugins_group,
        }
    }

    /// The kind of a configured group name (for `kotodama worker --group …`).
    pub fn group_kind(&self, name: &str) -> Option<GroupKind> {
        [GroupKind::Ltm, GroupKind::Analytics, GroupKind::Plugins]
            .into_iter()
            .find(|kind| self.group_name(*kind) == name)
    }
}

/// Unique per process and per start, so a restarted process never inherits a dead one's
/// pending entries by name (they are reclaimed by idle time instead).
pub fn default_consumer_name() -> String {
    format!("koto-{}-{:08x}", std::process::id(), rand::random::<u32>())
}

//! Event delivery for Kotodama: the transactional outbox relayed to Redis Streams (feature
//! `redis`) or consumed in process, the consumer groups behind it (long-term memory, analytics,
//! plugins), recall and stats for the server, and the runtime's Prometheus metrics. It writes no
//! turn rows (the engine does, with the outbox rows, in one transaction) and serves no HTTP.
//!
//! Architecture invariants:
//! - An outbox row leaves the relay's backlog only after Redis acknowledged its XADD; a commit
//!   only *notifies* the relay, so a chat turn never waits on Redis.
//! - Every effect is applied in one SQLite transaction with the group's "handled" mark for its
//!   outbox id: redeliveries, replays, reclaims and mode switches are absorbed, exactly once.
//! - Nothing is dropped silently: an event is either handled, still in the outbox / pending in
//!   Redis, or a dead letter (SQLite `dead_letters`, and `events.dlq` in Redis mode) with its
//!   error, and every failure is logged and counted.
//!
//! Entry points: [`EventsRuntime`] (server start-up), [`run_standalone_worker`]
//! (`kotodama worker`), [`bench`] (`kotodama bench`).

mod backoff;
pub mod bench;
mod config;
mod consumer;
mod embedded;
mod error;
mod metrics;
mod plugin;
mod recall;
#[cfg(feature = "redis")]
mod redis;
mod retention;
mod runtime;

pub use config::{EventsConfig, GroupKind, default_consumer_name};
pub use error::EventsError;
pub use koto_store::{AnalyticsReport, LatencySummary, SessionAnalytics, TurnAggregate};
pub use plugin::{Plugin, PluginBody, PluginError, PluginEvent, PluginFuture};
pub use recall::{LtmRecall, memory_line};
pub use runtime::{EventsHandle, EventsRuntime, Mode, run_standalone_worker};

/// A private `redis-server` for tests and benchmarks (feature `redis`).
#[cfg(feature = "redis")]
pub mod redis_server {
    pub use crate::redis::server::{RedisServer, redis_server_binary};
}

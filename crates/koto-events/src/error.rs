//! `EventsError`: what starting the runtime, the standalone worker or a benchmark can fail with.
//! Failures while running (Redis down, SQLite busy, bad entries) are never returned: they are
//! logged, counted in metrics and retried or dead-lettered.

use koto_core::metrics::MetricsError;
use koto_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),

    #[error("metrics registration: {0}")]
    Metrics(#[from] MetricsError),

    /// A blocking store call panicked or was cancelled by the runtime shutting down.
    #[error("a storage task did not finish: {0}")]
    Task(String),

    /// The standalone worker and the Redis benchmark need Redis: the `redis` feature and a URL.
    #[error("Redis is required here: {0}")]
    RedisRequired(&'static str),

    /// A configured consumer group name is not one this build knows.
    #[error(
        "unknown consumer group {0:?} (known: the configured LTM, analytics and plugin groups)"
    )]
    UnknownGroup(String),

    #[cfg(feature = "redis")]
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),

    /// `redis-benchmark` or `redis-server` could not be run or its output not understood.
    #[error("external tool: {0}")]
    Tool(String),
}

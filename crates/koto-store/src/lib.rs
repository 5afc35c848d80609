//! SQLite storage: short-term memory (turns), per-session counters, the transactional outbox,
//! consumer-group bookkeeping, long-term memory (FTS5), turn analytics, migrations. Blocking and synchronous by design (callers use `spawn_blocking`); it delivers no
//! events and builds no prompts.
//!
//! Architecture invariant: a turn's reply row and its outbox rows are committed in one
//! transaction, and only turns whose user row is `done` are ever returned as context.

mod analytics;
mod consumer;
mod error;
mod history;
mod memory;
mod outbox;
mod outbox_feed;
mod outbox_signal;
mod prefill;
mod schema;
mod session;
mod store;
#[cfg(test)]
mod test_support;
mod turns;
mod viewer;

pub use analytics::{
    AnalyticsReport, LatencySummary, SessionAnalytics, TurnAggregate, TurnStatsRecord,
};
pub use consumer::{ConsumerPosition, Consumption, DeadLetter};
pub use error::StoreError;
pub use history::{HISTORY_LIMIT_MAX, HistoryTurn, SESSIONS_LIMIT_MAX, SessionSummary, TurnStatus};
pub use memory::{Memory, NewMemory, memory_match_query};
pub use outbox::{NewOutboxEvent, OutboxRow};
pub use outbox_feed::OutboxRetention;
pub use outbox_signal::{OutboxListener, OutboxSubscription};
pub use prefill::{prefill_reply_text, prefill_user_text};
pub use schema::LATEST_SCHEMA_VERSION;
pub use session::SessionState;
pub use store::{BUSY_TIMEOUT, Store, StoreHealth};
pub use turns::{ContextTurn, ContextViewer, FailedTurn, FinishedTurn, NewTurn};
pub use viewer::{ViewerExchange, ViewerRecall, ViewerRef};

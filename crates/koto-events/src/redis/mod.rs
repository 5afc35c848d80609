//! Redis Streams transport (feature `redis`): the relay that XADDs outbox rows, the consumer
//! group workers, and a `redis-server` launcher for tests and benchmarks. Nothing here decides
//! an effect; `consumer` does, from the outbox row an entry points to.
//!
//! Entry ids are `<epoch>-<outbox id>` (`epoch` = the database's creation time in ms, see
//! `Store::stream_epoch_ms`): valid, increasing per stream because outbox ids increase, and
//! identical on every re-send, so Redis rejects a replayed entry ("equal or smaller than the
//! target stream top item") instead of storing it twice.

pub(crate) mod group;
pub(crate) mod relay;
pub mod server;

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, Value};

/// Field names of every entry (CONTRACTS §5).
pub(crate) mod field {
    pub const TYPE: &str = "type";
    pub const PAYLOAD: &str = "payload";
    pub const OUTBOX_ID: &str = "outboxId";
    pub const CORRELATION_ID: &str = "correlationId";
}

/// The explicit entry id of outbox row `outbox_id`.
pub(crate) fn entry_id(epoch_ms: i64, outbox_id: i64) -> String {
    format!("{epoch_ms}-{outbox_id}")
}

/// `(ms, seq)` of an entry id.
pub(crate) fn parse_entry_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The outbox id an entry id encodes, if it is in this database's id space.
pub(crate) fn outbox_id_of(epoch_ms: i64, id: &str) -> Option<i64> {
    let (ms, seq) = parse_entry_id(id)?;
    (i64::try_from(ms).ok()? == epoch_ms)
        .then(|| i64::try_from(seq).ok())
        .flatten()
}

/// A plain connection with explicit timeouts. `response_timeout` must exceed any `BLOCK` sent on
/// it (the crate's default, 500 ms, would fail every longer blocking read).
pub(crate) async fn connect(
    url: &str,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<MultiplexedConnection, RedisError> {
    let client = redis::Client::open(url)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(response_timeout));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// A reply from the server (the connection is fine), as opposed to a broken connection.
pub(crate) fn is_server_reply(error: &RedisError) -> bool {
    matches!(error.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

/// A short label for metrics and logs.
pub(crate) fn error_kind(error: &RedisError) -> &'static str {
    if !is_server_reply(error) {
        return "connection";
    }
    match error.code() {
        Some("OOM") => "oom",
        Some("WRONGTYPE") => "wrongtype",
        Some("NOGROUP") => "nogroup",
        Some("LOADING") => "loading",
        Some("READONLY") => "readonly",
        _ => "server",
    }
}

/// XADD refused an explicit id that is not above the stream's top: the entry was (most likely)
/// already added by an earlier send.
pub(crate) fn is_id_not_increasing(error: &RedisError) -> bool {
    is_server_reply(error) && error.to_string().contains("equal or smaller")
}

/// A field of an entry as text (bulk strings are bytes on the wire).
pub(crate) fn field_text(value: &Value) -> Option<String> {
    redis::from_redis_value_ref::<String>(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_round_trip_only_in_their_own_epoch() {
        let id = entry_id(1_700_000_000_000, 42);
        assert_eq!(
            id, "1700000000000-42",
            "ms part is the epoch, seq part the outbox id"
        );
        assert_eq!(
            outbox_id_of(1_700_000_000_000, &id),
            Some(42),
            "decodes in its epoch"
        );
        assert_eq!(
            outbox_id_of(1_700_000_000_001, &id),
            None,
            "another database's ids are not ours"
        );
        assert_eq!(outbox_id_of(1, "garbage"), None, "garbage is not an id");
        assert!(
            parse_entry_id(&entry_id(5, 2)) > parse_entry_id(&entry_id(5, 1)),
            "ids grow with the outbox id"
        );
    }
}

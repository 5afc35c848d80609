//! Small helpers every part of the engine uses around the store: running a store call off the
//! async workers, the wall clock in milliseconds, the stored name of an input kind. They sit
//! below `engine`, `turn` and `history` so none of those needs another for them.

use koto_core::turn::InputKind;

use crate::EngineError;

/// Runs a store call off the async workers; SQLite calls are short but blocking.
pub(crate) async fn blocking<T, F>(call: F) -> Result<T, EngineError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, koto_store::StoreError> + Send + 'static,
{
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(EngineError::from),
        Err(join_error) => Err(EngineError::NotAvailable(format!(
            "storage task failed: {join_error}"
        ))),
    }
}

/// The name an input kind is stored and published under.
pub(crate) fn kind_name(kind: InputKind) -> &'static str {
    match kind {
        InputKind::Text => "TEXT",
        InputKind::AsrFinal => "ASR_FINAL",
        InputKind::Command => "COMMAND",
    }
}

/// Wall-clock milliseconds since the Unix epoch, as the store keeps times.
pub(crate) fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

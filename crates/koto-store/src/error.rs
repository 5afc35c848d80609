//! `StoreError`: the failures callers branch on. It does not retry anything itself.

use std::path::PathBuf;

use koto_core::{SessionId, TurnNo};
use rusqlite::ffi::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The user row of `(session, turn)` is already stored (whatever its status): turn numbers are
    /// never reused, so the HTTP layer answers `409`.
    #[error("turn {turn} of session {session} already exists")]
    TurnExists { session: SessionId, turn: TurnNo },

    /// `finish_turn`/`fail_turn` on a turn that is not `open`: never begun, already ended, or
    /// marked `abandoned` when the store was reopened.
    #[error("turn {turn} of session {session} is not open")]
    TurnNotOpen { session: SessionId, turn: TurnNo },

    /// SQLite keeps turn numbers as `i64`, and `turn + 1` must fit too.
    #[error("turn number {turn} is too large to store")]
    TurnOutOfRange { turn: TurnNo },

    /// `SQLITE_BUSY`/`SQLITE_LOCKED` still after the busy timeout: another process holds the lock.
    #[error("the database stayed locked past the busy timeout")]
    Busy,

    #[error("the disk holding the database is full")]
    DiskFull,

    /// The file is not a SQLite database or is damaged; the caller may move it aside.
    #[error("the database file is corrupt or not a SQLite database: {0}")]
    Corrupt(#[source] rusqlite::Error),

    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot open the database at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// The schema could not be brought to this build's version (including a database written by
    /// a newer build).
    #[error("schema migration failed: {0}")]
    Migration(#[source] rusqlite_migration::Error),

    #[error("sqlite: {0}")]
    Sqlite(#[source] rusqlite::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
            Some(ErrorCode::DiskFull) => StoreError::DiskFull,
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                StoreError::Corrupt(error)
            }
            _ => StoreError::Sqlite(error),
        }
    }
}

impl From<rusqlite_migration::Error> for StoreError {
    fn from(error: rusqlite_migration::Error) -> Self {
        // A migration that failed on a busy, full or corrupt database is that condition, not a
        // schema problem: let callers see the same variant as anywhere else.
        match error {
            rusqlite_migration::Error::RusqliteError { err, query } => {
                match StoreError::from(err) {
                    StoreError::Sqlite(err) => {
                        StoreError::Migration(rusqlite_migration::Error::RusqliteError {
                            query,
                            err,
                        })
                    }
                    classified => classified,
                }
            }
            other => StoreError::Migration(other),
        }
    }
}

impl StoreError {
    /// An error met while opening `path`: the conditions callers branch on keep their variant,
    /// anything else becomes `Open` with the path.
    pub(crate) fn opening(path: &std::path::Path, error: rusqlite::Error) -> Self {
        match StoreError::from(error) {
            StoreError::Sqlite(source) => StoreError::Open {
                path: path.to_owned(),
                source,
            },
            classified => classified,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn sqlite_codes_map_to_the_variants_callers_branch_on() {
        assert!(
            matches!(
                StoreError::from(failure(rusqlite::ffi::SQLITE_BUSY)),
                StoreError::Busy
            ),
            "SQLITE_BUSY after the timeout is Busy"
        );
        assert!(
            matches!(
                StoreError::from(failure(rusqlite::ffi::SQLITE_FULL)),
                StoreError::DiskFull
            ),
            "SQLITE_FULL is DiskFull"
        );
        assert!(
            matches!(
                StoreError::from(failure(rusqlite::ffi::SQLITE_NOTADB)),
                StoreError::Corrupt(_)
            ),
            "a file that is not a database is Corrupt"
        );
        assert!(
            matches!(
                StoreError::from(failure(rusqlite::ffi::SQLITE_CONSTRAINT)),
                StoreError::Sqlite(_)
            ),
            "anything else stays a plain sqlite error"
        );
    }
}

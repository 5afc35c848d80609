//! `Store`: the connections to one SQLite file (one writer, a few readers) and opening it.
//! It does not know what the rows mean; `turns`, `session` and `outbox` do.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use serde::Serialize;

use crate::error::StoreError;
use crate::outbox_signal::OutboxListeners;
use crate::schema::{LATEST_SCHEMA_VERSION, MIGRATIONS};

/// How long a statement waits for another process's lock before failing with `Busy`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle read connections kept for reuse; more are opened under load and closed afterwards.
const MAX_IDLE_READERS: usize = 4;

/// The SQLite store: short-term memory and the outbox.
///
/// Cheap to clone (an `Arc`). All calls are blocking and short; async callers use
/// `spawn_blocking`. Writes go through one connection behind a mutex (SQLite has one writer
/// anyway, and this way writers queue in-process instead of spinning on `SQLITE_BUSY`); reads use
/// their own connections, which in WAL mode never wait for the writer.
///
/// One `Store` per database file: opening marks every `open` turn `abandoned`, which would be
/// wrong for turns another live `Store` on the same file is still running.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    path: PathBuf,
    /// Idle readers. A reader is taken out for one call and put back, so a slow read never
    /// holds this lock. Declared before `writer` so they close first: the last connection to
    /// close checkpoints the WAL and removes `-wal`, and only the writer can do that.
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Connection>,
    /// Run after commits that inserted outbox rows (see `outbox_signal`).
    outbox_listeners: OutboxListeners,
}

/// What `GET /health` reports about storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreHealth {
    pub path: PathBuf,
    /// `wal` when all is well.
    pub journal_mode: String,
    /// `PRAGMA user_version`: the number of migrations applied.
    pub schema_version: u32,
    /// The number of migrations this build knows.
    pub latest_schema_version: u32,
}

impl Store {
    /// Opens (or creates) the database at `path`, creating parent directories, switching to WAL
    /// and running pending migrations. Turns left `open` by a crash become `abandoned`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, true)
    }

    /// Opens a database that another process (the server) also has open, e.g. for a standalone
    /// event worker: migrations run as in `open`, but `open` turns are left alone, since they
    /// belong to the other process's live turns.
    pub fn open_shared(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, false)
    }

    fn open_with(path: &Path, abandon_open_turns: bool) -> Result<Store, StoreError> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: parent.to_owned(),
                source,
            })?;
        }
        let mut writer =
            Connection::open(path).map_err(|error| StoreError::opening(path, error))?;
        configure_writer(&writer).map_err(|error| StoreError::opening(path, error))?;
        MIGRATIONS.to_latest(&mut writer)?;

        let abandoned = if abandon_open_turns {
            writer
                .execute(
                    "UPDATE turns SET status = 'abandoned' WHERE status = 'open'",
                    [],
                )
                .map_err(StoreError::from)?
        } else {
            0
        };
        if abandoned > 0 {
            tracing::warn!(abandoned, path = %path.display(), "turns left open by an earlier run marked abandoned");
        }

        // One reader up front: a file that opens for writing but not for reading should fail
        // here, not on the first request.
        let first_reader = open_reader(path)?;
        tracing::info!(path = %path.display(), schema_version = LATEST_SCHEMA_VERSION, "store opened");
        Ok(Store {
            inner: Arc::new(StoreInner {
                path: path.to_owned(),
                writer: Mutex::new(writer),
                readers: Mutex::new(vec![first_reader]),
                outbox_listeners: OutboxListeners::default(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn health(&self) -> Result<StoreHealth, StoreError> {
        let (journal_mode, schema_version) = self.read(|conn| {
            let journal_mode: String =
                conn.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
            let schema_version: u32 =
                conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
            Ok((journal_mode, schema_version))
        })?;
        Ok(StoreHealth {
            path: self.inner.path.clone(),
            journal_mode,
            schema_version,
            latest_schema_version: LATEST_SCHEMA_VERSION,
        })
    }

    /// Caps the database file at its current size (or lifts the cap): the next write that needs
    /// a new page fails with `SQLITE_FULL`, exactly as on a full disk. For fault tests; nothing in
    /// the app calls it.
    #[doc(hidden)]
    pub fn fill_disk_for_tests(&self, full: bool) -> Result<(), StoreError> {
        let writer = self.lock_writer();
        let pages: i64 = if full {
            writer.query_row("PRAGMA page_count", [], |row| row.get(0))?
        } else {
            // SQLite's own default maximum.
            4_294_967_294
        };
        writer.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
        Ok(())
    }

    /// Runs `work` in one `BEGIN IMMEDIATE` transaction on the writer and commits it; any error
    /// rolls the whole transaction back (the `Transaction` is dropped uncommitted).
    pub(crate) fn write<T>(
        &self,
        work: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut writer = self.lock_writer();
        // IMMEDIATE takes the write lock up front, so the busy timeout applies to it; a deferred
        // transaction that upgrades later could fail at once with SQLITE_BUSY.
        let transaction = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = work(&transaction)?;
        transaction.commit()?;
        Ok(value)
    }

    /// Runs `work` on an idle read connection (opening one if none is idle). One statement sees
    /// one consistent snapshot.
    pub(crate) fn read<T>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let idle = self.lock_readers().pop();
        let reader = match idle {
            Some(reader) => reader,
            None => open_reader(&self.inner.path)?,
        };
        let result = work(&reader);
        let mut idle = self.lock_readers();
        if idle.len() < MAX_IDLE_READERS {
            idle.push(reader);
        }
        drop(idle);
        result.map_err(StoreError::from)
    }

    pub(crate) fn outbox_listeners(&self) -> &OutboxListeners {
        &self.inner.outbox_listeners
    }

    fn lock_writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the writer drops its `Transaction`, which rolls back: the
        // connection is consistent again, so the poison carries no information.
        self.inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_readers(&self) -> MutexGuard<'_, Vec<Connection>> {
        // The vector only holds idle connections; a panic cannot leave it half-updated.
        self.inner
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // journal_mode answers with the mode it actually set; WAL can be refused (e.g. on some
    // network file systems), and then readers would block the writer: say so loudly.
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(
            mode,
            "SQLite refused WAL mode; reads and writes will block each other"
        );
    }
    // NORMAL in WAL mode: a power loss may drop the last commits but never corrupts the file.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let reader = Connection::open_with_flags(path, flags)
        .map_err(|error| StoreError::opening(path, error))?;
    reader
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(|error| StoreError::opening(path, error))?;
    Ok(reader)
}

/// The store's own wall clock, only for bookkeeping columns of calls that take no timestamp.
pub(crate) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn store_is_clone_send_sync() {
        fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
        // The engine clones the store into spawn_blocking closures on many threads.
        assert_shareable::<Store>();
    }

    #[test]
    fn open_creates_parent_directories_and_uses_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/deeper/koto.sqlite3");
        let store = Store::open(&path).unwrap();
        let health = store.health().unwrap();
        assert_eq!(
            health.journal_mode, "wal",
            "the store must run in WAL mode so readers never block the writer"
        );
        assert_eq!(
            health.schema_version, LATEST_SCHEMA_VERSION,
            "open runs every migration"
        );
        assert_eq!(health.path, path, "health reports the file it opened");
        assert!(
            path.exists(),
            "open creates the file inside the created directories"
        );
    }

    #[test]
    fn writer_pragmas_are_set() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("koto.sqlite3")).unwrap();
        let writer = store.lock_writer();
        let synchronous: i64 = writer
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap();
        let foreign_keys: i64 = writer
            .pragma_query_value(None, "foreign_keys", |row| row.get(0))
            .unwrap();
        let busy_timeout: i64 = writer
            .pragma_query_value(None, "busy_timeout", |row| row.get(0))
            .unwrap();
        assert_eq!(
            synchronous, 1,
            "synchronous=NORMAL is 1: durable enough in WAL, no fsync per commit"
        );
        assert_eq!(
            foreign_keys, 1,
            "foreign keys are enforced for later migrations that add them"
        );
        assert_eq!(
            busy_timeout, 5000,
            "a locked database is waited on for 5 s before Busy"
        );
    }

    #[test]
    fn a_file_that_is_not_a_database_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("koto.sqlite3");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        let error = Store::open(&path).unwrap_err();
        assert!(
            matches!(error, StoreError::Corrupt(_)),
            "garbage must surface as Corrupt, got {error:?}"
        );
    }

    #[test]
    fn readers_are_reused_not_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("koto.sqlite3")).unwrap();
        for _ in 0..10 {
            store.health().unwrap();
        }
        assert_eq!(
            store.lock_readers().len(),
            1,
            "sequential reads reuse the one idle reader"
        );
    }
}

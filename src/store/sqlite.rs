//! The SQLite backend, the embedded default (`sqlite://PATH`).
//!
//! One table holds the history, one row per write, keyed by revision, with an index on
//! `(key, revision)` for reads at a revision. The database runs in WAL mode with
//! `synchronous=FULL`: a commit is durable before it is acknowledged. One writer
//! connection (the shared writer thread in [`super::local`]) groups concurrent writes into
//! one transaction; readers use their own read-only connections and never block it. The
//! WAL is checkpointed automatically and truncated when it grows past a limit, so it stays
//! bounded. An exclusive lock on the database file keeps a second process out.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::local::{Engine, LocalBackend, Opened, Range, Reader, Row};
use super::{Result, Revision, StoreError};

const NAME: &str = "sqlite";
/// Past this size the WAL is checkpointed and truncated, even under a steady stream of
/// readers that would keep SQLite's automatic checkpoints from ever restarting it.
const WAL_LIMIT: u64 = 64 << 20;
/// How long a truncating checkpoint waits for readers.
const TRUNCATE_WAIT: Duration = Duration::from_millis(100);
/// At most one truncation attempt per this interval.
const TRUNCATE_EVERY: Duration = Duration::from_millis(500);
/// How long a connection waits for a lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    revision INTEGER PRIMARY KEY,
    key BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_key ON kv (key, revision);
CREATE INDEX IF NOT EXISTS kv_expiry ON kv (expires_at) WHERE expires_at > 0;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

const ROW_COLUMNS: &str =
    "revision, key, create_revision, prev_revision, deleted, expires_at, value";

/// The SQLite backend.
pub(crate) type SqliteBackend = LocalBackend<SqliteReader>;

/// Opens (creating if needed) the database at `path`.
pub(crate) async fn open(path: &Path) -> Result<SqliteBackend> {
    open_with(path, WAL_LIMIT).await
}

/// Opens the database at `path`, truncating the WAL whenever it passes `wal_limit` bytes.
pub(crate) async fn open_with(path: &Path, wal_limit: u64) -> Result<SqliteBackend> {
    let path = path.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || open_blocking(&path, wal_limit))
        .await
        .map_err(|e| StoreError::backend(NAME, e))??;
    LocalBackend::start(NAME, opened)
}

fn open_error(path: &Path, message: impl std::fmt::Display) -> StoreError {
    StoreError::Open {
        backend: NAME,
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Words for an SQLite error met while opening.
fn describe(err: &rusqlite::Error) -> String {
    match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => {
            "the file is not an SQLite database, or it is corrupt".into()
        }
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => "the database is corrupt".into(),
        Some(rusqlite::ErrorCode::ReadOnly) => "the database is read-only".into(),
        Some(rusqlite::ErrorCode::CannotOpen) => format!("cannot open the file ({err})"),
        Some(rusqlite::ErrorCode::DiskFull) => "the disk is full".into(),
        _ => err.to_string(),
    }
}

fn open_blocking(path: &Path, wal_limit: u64) -> Result<Opened<SqliteEngine, SqliteReader>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| open_error(path, format!("create directory {}: {e}", dir.display())))?;
    }
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| open_error(path, e))?;
    lock.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => {
            open_error(path, "the database is in use by another process")
        }
        std::fs::TryLockError::Error(e) => open_error(path, format!("lock the file: {e}")),
    })?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_error(path, describe(&e)))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| open_error(path, describe(&e)))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(|e| open_error(path, describe(&e)))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(open_error(
            path,
            format!("cannot use WAL mode (got {mode})"),
        ));
    }
    // FULL: a commit is on disk before it is acknowledged. Checkpoints every ~4 MiB of
    // WAL; after one, the WAL file is cut back to 8 MiB so it does not keep its peak size.
    conn.execute_batch(
        "PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=1000; \
         PRAGMA journal_size_limit=8388608;",
    )
    .map_err(|e| open_error(path, describe(&e)))?;
    conn.execute_batch(SCHEMA)
        .map_err(|e| open_error(path, describe(&e)))?;
    let current: Option<Revision> = conn
        .query_row("SELECT MAX(revision) FROM kv", [], |r| r.get(0))
        .map_err(|e| open_error(path, describe(&e)))?;
    let compacted: Option<Revision> = conn
        .query_row("SELECT value FROM meta WHERE name = 'compacted'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| open_error(path, describe(&e)))?;
    let reader = SqliteReader {
        path: path.to_path_buf(),
        pool: Mutex::new(Vec::new()),
    };
    // Open one reader now, so that a problem shows at start and not at the first read.
    let first = reader.connect()?;
    reader.give_back(first);
    Ok(Opened {
        engine: SqliteEngine {
            conn,
            wal: wal_path(path),
            wal_limit,
            last_truncate: None,
            _lock: lock,
        },
        reader,
        current: current.unwrap_or(1).max(1),
        compacted: compacted.unwrap_or(0),
    })
}

/// Reads a row from the columns in [`ROW_COLUMNS`] order, starting at column `at`.
fn row_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Row> {
    let key: Vec<u8> = r.get(at + 1)?;
    let key = String::from_utf8(key).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(at + 1, rusqlite::types::Type::Blob, e.into())
    })?;
    Ok(Row {
        revision: r.get(at)?,
        key,
        create_revision: r.get(at + 2)?,
        prev_revision: r.get(at + 3)?,
        deleted: r.get(at + 4)?,
        expires_at: r.get(at + 5)?,
        value: r.get(at + 6)?,
    })
}

fn db_err(err: rusqlite::Error) -> StoreError {
    StoreError::backend(NAME, describe(&err))
}

/// The writer's connection.
pub struct SqliteEngine {
    conn: Connection,
    wal: PathBuf,
    wal_limit: u64,
    last_truncate: Option<Instant>,
    _lock: File,
}

fn wal_path(db: &Path) -> PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

impl SqliteEngine {
    fn insert_all(&self, rows: &[Row]) -> rusqlite::Result<()> {
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO kv (revision, key, create_revision, prev_revision, deleted, expires_at, value) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for row in rows {
            insert.execute(params![
                row.revision,
                row.key.as_bytes(),
                row.create_revision,
                row.prev_revision,
                row.deleted,
                row.expires_at,
                row.value,
            ])?;
        }
        Ok(())
    }

    fn in_transaction(
        &self,
        f: impl FnOnce(&Self) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        match f(self).and_then(|()| self.conn.execute_batch("COMMIT")) {
            Ok(()) => Ok(()),
            Err(err) => {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                Err(err)
            }
        }
    }
}

impl Engine for SqliteEngine {
    const NAME: &'static str = NAME;

    fn latest(&mut self, key: &str) -> Result<Option<Row>> {
        let sql =
            format!("SELECT {ROW_COLUMNS} FROM kv WHERE key = ?1 ORDER BY revision DESC LIMIT 1");
        let mut stmt = self.conn.prepare_cached(&sql).map_err(db_err)?;
        stmt.query_row([key.as_bytes()], |r| row_at(r, 0))
            .optional()
            .map_err(db_err)
    }

    fn commit(&mut self, rows: &[Row]) -> Result<()> {
        self.in_transaction(|e| e.insert_all(rows)).map_err(db_err)
    }

    fn set_compacted(&mut self, revision: Revision) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meta (name, value) VALUES ('compacted', ?1) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [revision],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    fn compact_chunk(&mut self, from: Revision, to: Revision, target: Revision) -> Result<()> {
        self.in_transaction(|e| {
            e.conn
                .prepare_cached(
                    "DELETE FROM kv WHERE revision >= ?1 AND revision < ?2 AND revision < ?3 AND \
                     (deleted = 1 OR EXISTS (SELECT 1 FROM kv n WHERE n.key = kv.key \
                      AND n.revision > kv.revision AND n.revision <= ?3))",
                )?
                .execute([from, to, target])
                .map(|_| ())
        })
        .map_err(db_err)
    }

    fn first_revision(&mut self) -> Result<Option<Revision>> {
        self.conn
            .query_row("SELECT MIN(revision) FROM kv", [], |r| r.get(0))
            .map_err(db_err)
    }

    fn maintain(&mut self) {
        let due = self
            .last_truncate
            .is_none_or(|at| at.elapsed() >= TRUNCATE_EVERY);
        if !due {
            return;
        }
        let size = std::fs::metadata(&self.wal).map_or(0, |m| m.len());
        if size <= self.wal_limit {
            return;
        }
        self.last_truncate = Some(Instant::now());
        // Wait only briefly for readers to leave the WAL: a long wait would stall writes
        // (k3s users have seen 30 s checkpoint stalls expire leases). If a reader still holds
        // it, the next attempt comes a moment later.
        let _ = self.conn.busy_timeout(TRUNCATE_WAIT);
        let outcome = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        let _ = self.conn.busy_timeout(BUSY_TIMEOUT);
        match outcome {
            Ok(0) => tracing::debug!(bytes = size, "Truncated the SQLite WAL."),
            Ok(_) => tracing::debug!(
                bytes = size,
                "Readers held the SQLite WAL; truncating it later."
            ),
            Err(err) => tracing::warn!(error = %describe(&err), "SQLite WAL checkpoint failed."),
        }
    }
}

/// A pool of read-only connections.
pub struct SqliteReader {
    path: PathBuf,
    pool: Mutex<Vec<Connection>>,
}

impl SqliteReader {
    fn connect(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(&self.path, describe(&e)))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.push(conn);
        }
    }

    /// Runs `f` on a pooled connection.
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let pooled = self.pool.lock().ok().and_then(|mut pool| pool.pop());
        let conn = match pooled {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let out = f(&conn).map_err(db_err);
        self.give_back(conn);
        out
    }
}

/// The upper bound of a range as bound to SQL: keys are UTF-8, which never holds 0xff.
fn end_of(range: &Range) -> Vec<u8> {
    range.end.clone().unwrap_or_else(|| vec![0xff])
}

/// Rows that are the latest of their key at revision ?3.
const LATEST_AT: &str = "NOT EXISTS (SELECT 1 FROM kv n WHERE n.key = kv.key \
                         AND n.revision > kv.revision AND n.revision <= ?3)";

impl Reader for SqliteReader {
    fn get(&self, key: &str, revision: Revision) -> Result<Option<Row>> {
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM kv WHERE key = ?1 AND revision <= ?2 \
             ORDER BY revision DESC LIMIT 1"
        );
        self.with(|c| {
            c.prepare_cached(&sql)?
                .query_row(params![key.as_bytes(), revision], |r| row_at(r, 0))
                .optional()
        })
    }

    fn list(&self, range: &Range, revision: Revision, limit: usize) -> Result<Vec<Row>> {
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM kv WHERE key >= ?1 AND key < ?2 AND revision <= ?3 \
             AND deleted = 0 AND {LATEST_AT} ORDER BY key LIMIT ?4"
        );
        let limit = if limit == 0 { -1 } else { limit as i64 };
        self.with(|c| {
            c.prepare_cached(&sql)?
                .query_map(params![range.start, end_of(range), revision, limit], |r| {
                    row_at(r, 0)
                })?
                .collect()
        })
    }

    fn count(&self, range: &Range, revision: Revision) -> Result<u64> {
        let sql = format!(
            "SELECT COUNT(*) FROM kv WHERE key >= ?1 AND key < ?2 AND revision <= ?3 \
             AND deleted = 0 AND {LATEST_AT}"
        );
        self.with(|c| {
            c.prepare_cached(&sql)?
                .query_row(params![range.start, end_of(range), revision], |r| r.get(0))
        })
    }

    fn history(
        &self,
        range: &Range,
        from: Revision,
        upto: Revision,
        limit: usize,
    ) -> Result<Vec<(Row, Option<Row>)>> {
        let sql = "SELECT k.revision, k.key, k.create_revision, k.prev_revision, k.deleted, \
                   k.expires_at, k.value, p.revision, p.key, p.create_revision, p.prev_revision, \
                   p.deleted, p.expires_at, p.value \
                   FROM kv k LEFT JOIN kv p ON p.revision = k.prev_revision AND k.prev_revision > 0 \
                   WHERE k.revision >= ?1 AND k.revision <= ?2 AND k.key >= ?3 AND k.key < ?4 \
                   ORDER BY k.revision LIMIT ?5";
        self.with(|c| {
            c.prepare_cached(sql)?
                .query_map(
                    params![from, upto, range.start, end_of(range), limit as i64],
                    |r| {
                        let row = row_at(r, 0)?;
                        let prev = match r.get::<_, Option<Revision>>(7)? {
                            Some(_) => Some(row_at(r, 7)?),
                            None => None,
                        };
                        Ok((row, prev))
                    },
                )?
                .collect()
        })
    }

    fn expired(&self, now_ms: i64, upto: Revision) -> Result<Vec<(String, Revision)>> {
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM kv WHERE expires_at > 0 AND expires_at <= ?1 \
             AND revision <= ?2 AND deleted = 0 AND NOT EXISTS (SELECT 1 FROM kv n \
             WHERE n.key = kv.key AND n.revision > kv.revision AND n.revision <= ?2)"
        );
        self.with(|c| {
            c.prepare_cached(&sql)?
                .query_map(params![now_ms, upto], |r| {
                    row_at(r, 0).map(|row| (row.key, row.revision))
                })?
                .collect()
        })
    }

    fn size(&self) -> Result<u64> {
        let mut total = 0;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            total += std::fs::metadata(&p).map_or(0, |m| m.len());
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests;

//! The engine shared by the embedded backends (SQLite and sled).
//!
//! One writer thread owns the database. Writes queue up while it commits; it takes all of
//! them at once, decides each (create-if-absent, guarded update or delete), writes them in
//! one transaction with one fsync (group commit), and only then answers the callers and
//! wakes the watchers. Readers run concurrently on their own handles and never see a
//! revision above the last durable one. Time-to-live expiry is an ordinary guarded delete
//! issued by a sweeper task.

mod watch;
mod writer;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    check_key, prefix_end, Backend, Event, KeyValue, ListRequest, ListResult, Result, Revision,
    StoreError, Watch,
};

pub(crate) use writer::Engine;

/// One row of history: the result of one write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    /// The write's revision.
    pub revision: Revision,
    /// The key.
    pub key: String,
    /// The revision that created the key.
    pub create_revision: Revision,
    /// The revision of the state this write replaced (0 for a create).
    pub prev_revision: Revision,
    /// Whether this write deleted the key.
    pub deleted: bool,
    /// When the key expires, in milliseconds since the epoch; 0 for never.
    pub expires_at: i64,
    /// The new value (empty for a delete).
    pub value: Vec<u8>,
}

impl Row {
    /// The state this row describes; for a delete, the key with no value and no creation.
    pub fn kv(&self) -> KeyValue {
        KeyValue {
            key: self.key.clone(),
            value: self.value.clone(),
            create_revision: if self.deleted {
                0
            } else {
                self.create_revision
            },
            mod_revision: self.revision,
        }
    }

    /// The event this row describes, given the state it replaced.
    pub fn event(&self, prev: Option<&Row>) -> Event {
        Event {
            kind: if self.deleted {
                super::EventKind::Delete
            } else {
                super::EventKind::Put
            },
            kv: self.kv(),
            prev: prev.map(Row::kv),
        }
    }
}

/// A key range `[start, end)`; `end == None` means no upper bound.
#[derive(Clone, Debug)]
pub(crate) struct Range {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl Range {
    /// Keys with `prefix`, from `start_key` if given.
    pub fn prefix(prefix: &str, start_key: Option<&str>) -> Range {
        let start = match start_key {
            Some(s) if s.as_bytes() > prefix.as_bytes() => s.as_bytes().to_vec(),
            _ => prefix.as_bytes().to_vec(),
        };
        Range {
            start,
            end: prefix_end(prefix),
        }
    }

    /// Whether `key` falls in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|end| key < end)
    }
}

/// Concurrent read access to an embedded database. Every call is blocking and reads only
/// committed rows; callers pass revisions no higher than the last durable one.
pub(crate) trait Reader: Send + Sync + 'static {
    /// The key's latest row at or below `revision` (a tombstone included).
    fn get(&self, key: &str, revision: Revision) -> Result<Option<Row>>;
    /// The live (not deleted) latest rows at `revision` in `range`, in key order, at most
    /// `limit` of them (0: all).
    fn list(&self, range: &Range, revision: Revision, limit: usize) -> Result<Vec<Row>>;
    /// How many live keys `range` holds at `revision`.
    fn count(&self, range: &Range, revision: Revision) -> Result<u64>;
    /// Rows with revisions in `[from, upto]` whose key is in `range`, in revision order, at
    /// most `limit`, each with the row it replaced.
    fn history(
        &self,
        range: &Range,
        from: Revision,
        upto: Revision,
        limit: usize,
    ) -> Result<Vec<(Row, Option<Row>)>>;
    /// Keys whose latest row at or below `upto` is live and expired at `now_ms`, with that
    /// row's revision.
    fn expired(&self, now_ms: i64, upto: Revision) -> Result<Vec<(String, Revision)>>;
    /// The size of the database files in bytes.
    fn size(&self) -> Result<u64>;
}

/// What an opened database reports about itself.
pub(crate) struct Opened<E, R> {
    pub engine: E,
    pub reader: R,
    /// The highest revision stored (1 for an empty store).
    pub current: Revision,
    /// The compaction point.
    pub compacted: Revision,
}

/// Revision bounds and change notifications shared by the writer, readers and watchers.
pub(crate) struct Shared {
    /// The last durable revision.
    pub committed: AtomicI64,
    /// The compaction point.
    pub compacted: AtomicI64,
    /// Every committed batch of events, in revision order.
    pub hub: broadcast::Sender<Arc<Vec<Event>>>,
}

impl Shared {
    /// Resolves a requested revision (0: current) against the bounds.
    fn read_revision(&self, requested: Revision) -> Result<Revision> {
        let current = self.committed.load(Ordering::Acquire);
        let compacted = self.compacted.load(Ordering::Acquire);
        if requested == 0 {
            return Ok(current);
        }
        if requested > current {
            return Err(StoreError::FutureRevision { requested, current });
        }
        if requested < compacted {
            return Err(StoreError::Compacted {
                requested,
                compacted,
            });
        }
        Ok(requested)
    }

    /// Checks, after a read at `at`, that no compaction started meanwhile removed rows the
    /// read needed: compaction publishes its target before deleting anything.
    fn still_readable(&self, at: Revision) -> Result<()> {
        let compacted = self.compacted.load(Ordering::Acquire);
        if at < compacted {
            return Err(StoreError::Compacted {
                requested: at,
                compacted,
            });
        }
        Ok(())
    }
}

/// A write as the callers ask for it.
#[derive(Debug)]
pub(crate) enum WriteOp {
    Create {
        key: String,
        value: Vec<u8>,
        expires_at: i64,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
        expires_at: i64,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

/// What the writer thread is asked to do.
pub(crate) enum Request {
    Write(WriteOp, oneshot::Sender<Result<Event>>),
    Compact(Revision, oneshot::Sender<Result<()>>),
    Close(oneshot::Sender<()>),
}

/// How many events a watcher may fall behind the writer before it catches up from disk.
const HUB_CAPACITY: usize = 1024;
/// How many writes may wait for the writer.
const QUEUE_CAPACITY: usize = 4096;
/// How often expired keys are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// An embedded backend: a writer thread, a reader, and a sweeper for expired keys.
pub(crate) struct LocalBackend<R: Reader> {
    name: &'static str,
    reader: Arc<R>,
    shared: Arc<Shared>,
    requests: mpsc::Sender<Request>,
    stop: CancellationToken,
    sweeper: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<R: Reader> LocalBackend<R> {
    /// Starts the writer thread and the sweeper over an opened database.
    pub fn start<E: Engine>(name: &'static str, opened: Opened<E, R>) -> Result<Self> {
        let (hub, _) = broadcast::channel(HUB_CAPACITY);
        let shared = Arc::new(Shared {
            committed: AtomicI64::new(opened.current),
            compacted: AtomicI64::new(opened.compacted),
            hub,
        });
        let (requests, rx) = mpsc::channel(QUEUE_CAPACITY);
        let writer_shared = shared.clone();
        let engine = opened.engine;
        std::thread::Builder::new()
            .name(format!("{name}-writer"))
            .spawn(move || writer::run(engine, rx, writer_shared))
            .map_err(|e| StoreError::backend(name, format!("start the writer thread: {e}")))?;
        let backend = LocalBackend {
            name,
            reader: Arc::new(opened.reader),
            shared,
            requests,
            stop: CancellationToken::new(),
            sweeper: std::sync::Mutex::new(None),
        };
        let sweeper = backend.spawn_sweeper();
        if let Ok(mut slot) = backend.sweeper.lock() {
            *slot = Some(sweeper);
        }
        Ok(backend)
    }

    /// Runs a blocking read on the reader.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&R) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || f(&reader))
            .await
            .map_err(|e| StoreError::backend(self.name, format!("read task failed: {e}")))?
    }

    /// Hands a write to the writer thread and waits until it is durable.
    async fn write(&self, op: WriteOp) -> Result<Event> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Write(op, tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Deletes expired keys once a second until the backend closes.
    fn spawn_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let reader = self.reader.clone();
        let shared = self.shared.clone();
        let requests = self.requests.downgrade();
        let stop = self.stop.clone();
        let name = self.name;
        let span = tracing::debug_span!("sweeper", backend = name);
        let sweep = async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Some(requests) = requests.upgrade() else {
                    return;
                };
                let upto = shared.committed.load(Ordering::Acquire);
                let reader = reader.clone();
                let found =
                    tokio::task::spawn_blocking(move || reader.expired(now_ms(), upto)).await;
                let expired = match found {
                    Ok(Ok(expired)) => expired,
                    Ok(Err(err)) => {
                        tracing::warn!(backend = name, error = %err, "Could not look for expired keys.");
                        continue;
                    }
                    Err(_) => return,
                };
                // Queue every delete first, so they share group commits, then wait.
                let mut replies = Vec::with_capacity(expired.len());
                for (key, revision) in expired {
                    let (tx, rx) = oneshot::channel();
                    let op = WriteOp::Delete {
                        key,
                        expected: Some(revision),
                    };
                    if requests.send(Request::Write(op, tx)).await.is_err() {
                        return;
                    }
                    replies.push(rx);
                }
                for rx in replies {
                    // A conflict means the key was written again meanwhile: it lives on.
                    if let Ok(Err(err @ StoreError::Backend { .. })) = rx.await {
                        tracing::warn!(backend = name, error = %err, "Could not delete an expired key.");
                    }
                }
            }
        };
        tokio::spawn(tracing::Instrument::instrument(sweep, span))
    }
}

impl<R: Reader> Drop for LocalBackend<R> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The expiry time of a write with `ttl`, or 0 for none.
fn expiry(ttl: Option<Duration>) -> i64 {
    ttl.map_or(0, |ttl| {
        now_ms().saturating_add(ttl.as_millis() as i64).max(1)
    })
}

#[async_trait]
impl<R: Reader> Backend for LocalBackend<R> {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn get(&self, key: &str, revision: Revision) -> Result<(Revision, Option<KeyValue>)> {
        let at = self.shared.read_revision(revision)?;
        let key = key.to_string();
        let row = self.read(move |r| r.get(&key, at)).await?;
        self.shared.still_readable(at)?;
        Ok((at, row.filter(|row| !row.deleted).map(|row| row.kv())))
    }

    async fn list(&self, req: &ListRequest) -> Result<ListResult> {
        let at = self.shared.read_revision(req.revision)?;
        let range = Range::prefix(&req.prefix, req.start_key.as_deref());
        let limit = req.limit;
        let fetch = if limit == 0 { 0 } else { limit + 1 };
        let mut rows = self.read(move |r| r.list(&range, at, fetch)).await?;
        self.shared.still_readable(at)?;
        let more = limit != 0 && rows.len() > limit;
        rows.truncate(if more { limit } else { rows.len() });
        Ok(ListResult {
            revision: at,
            kvs: rows.into_iter().map(|row| row.kv()).collect(),
            more,
        })
    }

    async fn count(&self, prefix: &str) -> Result<(Revision, u64)> {
        let at = self.shared.read_revision(0)?;
        let range = Range::prefix(prefix, None);
        let n = self.read(move |r| r.count(&range, at)).await?;
        self.shared.still_readable(at)?;
        Ok((at, n))
    }

    async fn create(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<Revision> {
        check_key(key)?;
        let op = WriteOp::Create {
            key: key.to_string(),
            value,
            expires_at: expiry(ttl),
        };
        Ok(self.write(op).await?.revision())
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue> {
        check_key(key)?;
        let op = WriteOp::Update {
            key: key.to_string(),
            value,
            expected,
            expires_at: expiry(ttl),
        };
        Ok(self.write(op).await?.kv)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        check_key(key)?;
        let op = WriteOp::Delete {
            key: key.to_string(),
            expected,
        };
        let event = self.write(op).await?;
        let prev = event.prev.ok_or_else(|| StoreError::NotFound {
            key: key.to_string(),
        })?;
        Ok((event.kv.mod_revision, prev))
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<Watch> {
        watch::start(
            self.name,
            self.reader.clone(),
            self.shared.clone(),
            self.stop.clone(),
            prefix,
            start_revision,
        )
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Compact(revision, tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.committed.load(Ordering::Acquire))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }

    async fn db_size(&self) -> Result<u64> {
        self.read(|r| r.size()).await
    }

    async fn close(&self) -> Result<()> {
        self.stop.cancel();
        let sweeper = self.sweeper.lock().ok().and_then(|mut slot| slot.take());
        if let Some(sweeper) = sweeper {
            let _ = sweeper.await;
        }
        let (tx, rx) = oneshot::channel();
        if self.requests.send(Request::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
        Ok(())
    }
}

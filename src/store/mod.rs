//! The datastore shim: one [`Backend`] trait with etcd's semantics over keys and bytes.
//!
//! Everything skiff stores goes through here, the way k3s goes through kine. The store
//! knows nothing of Kubernetes: keys such as `/registry/pods/default/web-1` are plain
//! strings and values are opaque bytes. There is a single global revision, increased by
//! one per write, which the API server hands out as `resourceVersion`.
//!
//! Backends: [`sqlite`] (the embedded default), [`sled`] and [`etcd`]. The two embedded
//! ones share the single-writer group-commit engine in [`local`]; the etcd one maps each
//! call onto etcd's own transactions, watches, leases and compaction.

pub mod compactor;
pub mod endpoint;
pub mod etcd;
pub mod etcd_process;
mod local;
mod sled;
mod sqlite;

#[cfg(test)]
pub(crate) mod conformance;
#[cfg(test)]
mod crash_tests;

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use endpoint::{Endpoint, TlsFiles};

/// A store revision. Revisions start at 1 for an empty store; every write adds one.
pub type Revision = i64;

/// The state of one key at one revision.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key, for example `/registry/pods/default/web-1`.
    pub key: String,
    /// The value; empty in the `kv` of a delete event.
    pub value: Vec<u8>,
    /// The revision at which the key was created (last created, if it was deleted before).
    pub create_revision: Revision,
    /// The revision of the write that produced this state.
    pub mod_revision: Revision,
}

impl std::fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values can be large: show their size and a short, readable start.
        let shown = &self.value[..self.value.len().min(32)];
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field(
                "value",
                &format_args!(
                    "{} bytes {:?}",
                    self.value.len(),
                    String::from_utf8_lossy(shown)
                ),
            )
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created (then `kv.create_revision == kv.mod_revision`) or updated.
    Put,
    /// The key was deleted, by a caller or by the expiry of its time to live.
    Delete,
}

/// One change, as a watcher sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The new state; for a delete, the key with an empty value and the delete's revision.
    pub kv: KeyValue,
    /// The state just before this change, if the key existed.
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision of the write that produced this event.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A list of keys under a prefix at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRequest {
    /// Only keys that start with this string are listed.
    pub prefix: String,
    /// Start at this key (inclusive) instead of the prefix itself; used for paging.
    pub start_key: Option<String>,
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
    /// The revision to list at; 0 means the current one.
    pub revision: Revision,
}

impl ListRequest {
    /// Everything under `prefix` at the current revision.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        ListRequest {
            prefix: prefix.into(),
            start_key: None,
            limit: 0,
            revision: 0,
        }
    }
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    /// The revision the list was taken at; pass it back to read further pages.
    pub revision: Revision,
    /// The keys, in key order.
    pub kvs: Vec<KeyValue>,
    /// Whether more keys follow the last one returned.
    pub more: bool,
}

/// Errors of the datastore shim.
#[derive(Debug, thiserror::Error, Clone)]
pub enum StoreError {
    /// A create found the key already present.
    #[error("key {key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// An update or delete named a revision that is no longer the key's latest.
    #[error("conflict on key {key}: expected revision {expected}, current revision {}", current.as_ref().map_or(0, |kv| kv.mod_revision))]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The key's current state, if it still exists.
        current: Option<Box<KeyValue>>,
    },
    /// An update or delete named a key that does not exist.
    #[error("key {key} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// The requested revision has been compacted away. Reads at the compaction point still
    /// work; reads below it, and watches that start at or below it, do not.
    #[error("required revision {requested} has been compacted (oldest available: {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The compaction point.
        compacted: Revision,
    },
    /// The requested revision is newer than the store.
    #[error("required revision {requested} is a future revision (current: {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// A key that the store cannot hold (empty, or with a NUL byte).
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The database could not be opened.
    #[error("open {backend} database at {path}: {message}")]
    Open {
        /// Which backend.
        backend: &'static str,
        /// The file or directory.
        path: String,
        /// The cause, in words.
        message: String,
    },
    /// A read or write failed in the backend; nothing was acknowledged.
    #[error("{backend} datastore: {message}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// The cause, in words.
        message: String,
    },
    /// The etcd cluster could not be reached or answered with an error.
    #[error("etcd at {endpoint}: {message}")]
    Etcd {
        /// The endpoints tried.
        endpoint: String,
        /// The cause, in words.
        message: String,
    },
    /// The store has been closed.
    #[error("the datastore is closed")]
    Closed,
}

impl StoreError {
    pub(crate) fn backend(backend: &'static str, err: impl std::fmt::Display) -> Self {
        StoreError::Backend {
            backend,
            message: err.to_string(),
        }
    }
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stream of changes under a prefix, in revision order, with no gap and no duplicate.
///
/// Each item is the events of one or more consecutive revisions. The stream ends after
/// an error (for example [`StoreError::Compacted`]); dropping it cancels the watch.
pub struct Watch {
    rx: mpsc::Receiver<Result<Vec<Event>>>,
}

impl Watch {
    /// Creates a watch and the sender its producer feeds.
    pub(crate) fn channel(capacity: usize) -> (mpsc::Sender<Result<Vec<Event>>>, Watch) {
        let (tx, rx) = mpsc::channel(capacity);
        (tx, Watch { rx })
    }

    /// The next events, or `None` once the watch has ended.
    pub async fn next(&mut self) -> Option<Result<Vec<Event>>> {
        self.rx.recv().await
    }
}

/// The datastore shim. Every backend gives the same answers for the same calls.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The backend's name, for logs: `sqlite`, `sled` or `etcd`.
    fn name(&self) -> &'static str;

    /// The key's state at `revision` (0: the current revision), and the revision read at.
    async fn get(&self, key: &str, revision: Revision) -> Result<(Revision, Option<KeyValue>)>;

    /// Keys under a prefix at one revision, in key order, one page at a time.
    async fn list(&self, req: &ListRequest) -> Result<ListResult>;

    /// How many keys exist under a prefix now, and the revision counted at.
    async fn count(&self, prefix: &str) -> Result<(Revision, u64)>;

    /// Creates the key if it is absent; returns the write's revision.
    async fn create(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<Revision>;

    /// Replaces the key's value if its latest revision is `expected`; returns the new state.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue>;

    /// Deletes the key, if `expected` is given only when that is its latest revision.
    /// Returns the delete's revision and the value it removed.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)>;

    /// Watches keys under `prefix`, starting with the events at `start_revision`
    /// (0: only changes after the current revision).
    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<Watch>;

    /// Drops history older than `revision`: afterwards each key keeps its state as of
    /// `revision` and later, and reads or watches below it answer [`StoreError::Compacted`].
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The current revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// The revision up to which history has been compacted (0 if never).
    async fn compacted_revision(&self) -> Result<Revision>;

    /// The size of the database in bytes.
    async fn db_size(&self) -> Result<u64>;

    /// Finishes pending writes and releases files or connections.
    async fn close(&self) -> Result<()>;
}

/// Settings of the datastore shared by every backend.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Where and how to store.
    pub endpoint: Endpoint,
    /// Files for TLS to etcd.
    pub tls: TlsFiles,
}

/// Opens the backend an endpoint names.
///
/// For etcd this waits, retrying with backoff, until the cluster answers or `shutdown`
/// is cancelled.
pub async fn open(
    config: &StoreConfig,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<std::sync::Arc<dyn Backend>> {
    Ok(match &config.endpoint {
        Endpoint::Sqlite(path) => std::sync::Arc::new(sqlite::open(path).await?),
        Endpoint::Sled(path) => std::sync::Arc::new(sled::open(path).await?),
        Endpoint::Etcd { endpoints, tls } => {
            let tls = tls.then_some(&config.tls);
            std::sync::Arc::new(etcd::EtcdBackend::connect(endpoints, tls, shutdown).await?)
        }
    })
}

/// The smallest key greater than every key that starts with `prefix`, or `None` if there is
/// none (the prefix is empty or all 0xff).
pub fn prefix_end(prefix: &str) -> Option<Vec<u8>> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Checks that a key can be stored: not empty, no NUL byte.
pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey {
            key: key.to_string(),
            reason: "the key is empty",
        });
    }
    if key.contains('\0') {
        return Err(StoreError::InvalidKey {
            key: key.to_string(),
            reason: "the key contains a NUL byte",
        });
    }
    Ok(())
}

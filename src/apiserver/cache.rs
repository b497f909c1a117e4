//! The watch cache: per kind, every object in memory and the recent events, fed by one
//! datastore watch. It serves lists at resourceVersion "0" and new watches without touching
//! the datastore, and each event is encoded once for all the watchers that take it as is.
//!
//! Objects are kept as their encoded JSON (with their resourceVersion) and their labels,
//! not as parsed trees: a tenth of the memory, and a list is the bytes joined.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::broadcast;

use super::objects::{from_stored, set_resource_version};
use super::resources::Resource;
use super::status::{ApiError, ApiResult};
use crate::k8s::meta::labels;
use crate::store::{Backend, EventKind, ListRequest, Revision, StoreError};

/// How many recent events a cache keeps for watches that resume from a past revision.
const HISTORY: usize = 4096;
/// How many events a watcher may fall behind before it is ended (it then watches again).
const FANOUT: usize = 1024;

/// An object as the cache keeps it.
pub struct CachedObject {
    /// Its JSON, resourceVersion included.
    pub json: Bytes,
    /// Its labels, for label selectors.
    pub labels: BTreeMap<String, String>,
}

impl CachedObject {
    /// Encodes an object.
    pub fn new(obj: &Value) -> Self {
        CachedObject {
            json: Bytes::from(serde_json::to_vec(obj).unwrap_or_default()),
            labels: labels(obj),
        }
    }

    /// The object parsed again (for field selectors and tables).
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

/// One change, decoded once.
pub struct CachedEvent {
    /// The store revision of the change.
    pub revision: Revision,
    /// The storage key.
    pub key: String,
    /// Put or delete.
    pub kind: EventKind,
    /// The object after the change; for a delete, its last state with the delete's revision.
    pub object: Arc<CachedObject>,
    /// The object before the change, if it existed.
    pub prev: Option<Arc<CachedObject>>,
    line: OnceLock<Bytes>,
}

impl CachedEvent {
    /// The event's type for a watcher without selectors.
    pub fn event_type(&self) -> &'static str {
        match (self.kind, &self.prev) {
            (EventKind::Delete, _) => "DELETED",
            (EventKind::Put, None) => "ADDED",
            (EventKind::Put, Some(_)) => "MODIFIED",
        }
    }

    /// The watch line for a watcher without selectors, encoded once and shared.
    pub fn line(&self) -> Bytes {
        self.line
            .get_or_init(|| watch_line(self.event_type(), &self.object.json))
            .clone()
    }
}

/// `{"type":T,"object":…}` and a newline, around an encoded object.
pub fn watch_line(event_type: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(event_type.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

struct Inner {
    /// Every current object by key.
    objects: BTreeMap<String, Arc<CachedObject>>,
    /// The revision the cache is at.
    revision: Revision,
    /// Recent events, oldest first.
    history: VecDeque<Arc<CachedEvent>>,
    /// The cache holds every event after this revision.
    history_start: Revision,
}

/// A point-in-time view of a cache, with the events that follow it.
pub struct Snapshot {
    /// The objects under the prefix asked for.
    pub objects: Vec<Arc<CachedObject>>,
    /// The revision of the snapshot.
    pub revision: Revision,
    /// Events after the snapshot.
    pub events: broadcast::Receiver<Arc<CachedEvent>>,
}

/// Events a cache still held, and a receiver for the ones that follow.
pub type Resume = (Vec<Arc<CachedEvent>>, broadcast::Receiver<Arc<CachedEvent>>);

/// The cache of one kind.
pub struct WatchCache {
    inner: RwLock<Inner>,
    tx: broadcast::Sender<Arc<CachedEvent>>,
}

impl WatchCache {
    /// The objects under `prefix` now, and the events after them.
    pub fn snapshot(&self, prefix: &str) -> Snapshot {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let objects = inner
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        Snapshot {
            objects,
            revision: inner.revision,
            events: self.tx.subscribe(),
        }
    }

    /// The objects under `prefix` now, without following the changes.
    pub fn objects(&self, prefix: &str) -> Vec<Arc<CachedObject>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The object at `key` now, if the cache has it.
    pub fn object(&self, key: &str) -> Option<Arc<CachedObject>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.objects.get(key).cloned()
    }

    /// The events after `revision` that the cache still holds, and the ones that follow;
    /// `None` if `revision` is older than the cache's history.
    pub fn since(&self, revision: Revision) -> Option<Resume> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if revision < inner.history_start {
            return None;
        }
        let past = inner
            .history
            .iter()
            .filter(|e| e.revision > revision)
            .cloned()
            .collect();
        Some((past, self.tx.subscribe()))
    }

    /// The cache's revision.
    pub fn revision(&self) -> Revision {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .revision
    }

    fn apply(&self, event: &crate::store::Event) -> Result<(), ApiError> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let key = event.kv.key.clone();
        let prev = inner.objects.get(&key).cloned();
        let object = match event.kind {
            EventKind::Put => {
                let obj = Arc::new(CachedObject::new(&from_stored(&event.kv)?));
                inner.objects.insert(key.clone(), obj.clone());
                obj
            }
            EventKind::Delete => {
                let mut last = match (&prev, &event.prev) {
                    (Some(p), _) => p.value(),
                    (None, Some(kv)) => from_stored(kv)?,
                    (None, None) => return Ok(()),
                };
                set_resource_version(&mut last, event.revision());
                inner.objects.remove(&key);
                Arc::new(CachedObject::new(&last))
            }
        };
        let cached = Arc::new(CachedEvent {
            revision: event.revision(),
            key,
            kind: event.kind,
            object,
            prev,
            line: OnceLock::new(),
        });
        inner.revision = event.revision();
        inner.history.push_back(cached.clone());
        if inner.history.len() > HISTORY {
            if let Some(old) = inner.history.pop_front() {
                inner.history_start = old.revision;
            }
        }
        // Sent under the lock, so a snapshot never misses nor repeats an event.
        let _ = self.tx.send(cached);
        Ok(())
    }
}

/// The caches of every kind, started on first use.
pub struct Caches {
    store: Arc<dyn Backend>,
    caches: Mutex<HashMap<String, Arc<WatchCache>>>,
}

impl Caches {
    /// No caches yet.
    pub fn new(store: Arc<dyn Backend>) -> Self {
        Caches {
            store,
            caches: Mutex::new(HashMap::new()),
        }
    }

    /// The cache of `res`, started (listed and watched) if it was not running.
    pub async fn get(self: &Arc<Self>, res: &'static Resource) -> ApiResult<Arc<WatchCache>> {
        let prefix = res.key_prefix();
        if let Some(cache) = self
            .caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&prefix)
        {
            return Ok(cache.clone());
        }
        let store_err = |e: StoreError| ApiError::from_store(e, res.group, res.plural, "");
        let list = self
            .store
            .list(&ListRequest::prefix(prefix.clone()))
            .await
            .map_err(store_err)?;
        let mut objects = BTreeMap::new();
        for kv in &list.kvs {
            objects.insert(
                kv.key.clone(),
                Arc::new(CachedObject::new(&from_stored(kv)?)),
            );
        }
        let mut watch = self
            .store
            .watch(&prefix, list.revision + 1)
            .await
            .map_err(store_err)?;
        let (tx, _) = broadcast::channel(FANOUT);
        let cache = Arc::new(WatchCache {
            inner: RwLock::new(Inner {
                objects,
                revision: list.revision,
                history: VecDeque::new(),
                history_start: list.revision,
            }),
            tx,
        });
        {
            let mut caches = self.caches.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(existing) = caches.get(&prefix) {
                return Ok(existing.clone());
            }
            caches.insert(prefix.clone(), cache.clone());
        }
        tracing::debug!(
            resource = res.plural,
            revision = list.revision,
            objects = list.kvs.len(),
            "Watch cache started."
        );
        let (feeding, caches) = (cache.clone(), Arc::downgrade(self));
        tokio::spawn(async move {
            let outcome = loop {
                match watch.next().await {
                    Some(Ok(events)) => {
                        if let Err(e) = events.iter().try_for_each(|e| feeding.apply(e)) {
                            break e.message;
                        }
                    }
                    Some(Err(e)) => break e.to_string(),
                    None => break "the datastore watch ended".to_string(),
                }
            };
            // The cache is dropped; its watchers end and the next request starts a new one.
            tracing::warn!(resource = res.plural, reason = %outcome, "Watch cache stopped; it restarts on the next request.");
            if let Some(caches) = caches.upgrade() {
                let mut map = caches.caches.lock().unwrap_or_else(|e| e.into_inner());
                if map.get(&prefix).is_some_and(|c| Arc::ptr_eq(c, &feeding)) {
                    map.remove(&prefix);
                }
            }
        });
        Ok(cache)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::apiserver::objects::to_stored;
    use crate::apiserver::resources::find;
    use crate::store::conformance::{Harness, Local};

    use serde_json::json;

    fn cm(name: &str) -> Vec<u8> {
        to_stored(
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}}),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cache_serves_snapshots_and_resumes_without_gaps() {
        let harness = Local::sqlite();
        let store = harness.open().await;
        let res = find("", "v1", "configmaps").unwrap();
        let r1 = store
            .create(&res.key(Some("default"), "a"), cm("a"), None)
            .await
            .unwrap();
        let caches = Arc::new(Caches::new(store.clone()));
        let cache = caches.get(res).await.unwrap();
        let mut snap = cache.snapshot("/registry/configmaps/default/");
        assert_eq!((snap.objects.len(), snap.revision), (1, r1));
        let r2 = store
            .create(&res.key(Some("default"), "b"), cm("b"), None)
            .await
            .unwrap();
        let (r3, _) = store
            .delete(&res.key(Some("default"), "a"), None)
            .await
            .unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), snap.events.recv())
            .await
            .unwrap()
            .unwrap();
        let second = tokio::time::timeout(Duration::from_secs(10), snap.events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((first.revision, first.event_type()), (r2, "ADDED"));
        assert_eq!((second.revision, second.event_type()), (r3, "DELETED"));
        assert_eq!(
            second.object.value()["metadata"]["resourceVersion"],
            r3.to_string()
        );
        assert!(first
            .line()
            .starts_with(b"{\"type\":\"ADDED\",\"object\":{"));
        // The same event is encoded once for every watcher.
        assert_eq!(first.line().as_ptr(), first.line().as_ptr());
        let (past, _) = cache.since(r1).expect("held in history");
        assert_eq!(
            past.iter().map(|e| e.revision).collect::<Vec<_>>(),
            [r2, r3]
        );
        assert!(
            cache.since(r1 - 1).is_none(),
            "older than the history: the datastore's job"
        );
        let now = cache.snapshot("/registry/configmaps/");
        assert_eq!(now.objects.len(), 1);
        assert_eq!(now.revision, r3);
    }
}

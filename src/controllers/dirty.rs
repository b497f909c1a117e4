//! A small work queue shared by the network and node controllers: watch events mark keys
//! dirty (a namespace, a node name), and each dirty key is synced once, after the
//! reflectors it reads from have listed everything, with failed keys retried later.
//!
//! It suits controllers whose unit of work is a namespace or a node rather than one
//! object, and that must see deletions (kube-runtime's `Controller` drops a key whose
//! object has left the store).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::{Error, Result};

/// Events arriving this close together are handled in one pass.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// What a watch event asks of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// Sync this key.
    Key(String),
    /// Sync every key (a timer fired, or something all keys depend on changed).
    All,
    /// Reflector number `n` has listed everything (again).
    Synced(usize),
}

/// The marks of one reflected watch of `api`: `key` names the key an object touches.
/// Source `id` reports [`Mark::Synced`] after each complete list; a relist also marks
/// every key, since deletions during a broken watch are not seen one by one.
pub fn marks<K>(
    api: Api<K>,
    writer: Writer<K>,
    id: usize,
    key: impl Fn(&K) -> Option<String> + Send + 'static,
) -> BoxStream<'static, Mark>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    reflector::reflector(writer, watcher::watcher(api, watcher::Config::default()))
        .default_backoff()
        .flat_map(move |event| {
            let marks = match event {
                Ok(Event::Apply(o) | Event::Delete(o) | Event::InitApply(o)) => {
                    key(&o).map(Mark::Key).into_iter().collect()
                }
                Ok(Event::InitDone) => vec![Mark::Synced(id), Mark::All],
                Ok(Event::Init) => Vec::new(),
                Err(err) => {
                    tracing::debug!(error = %err, "A watch failed; it restarts with backoff.");
                    Vec::new()
                }
            };
            futures::stream::iter(marks)
        })
        .boxed()
}

/// How long a failed key waits before it is synced again.
fn retry_delay(error: &Error) -> Duration {
    match error {
        Error::Kube(kube::Error::Api(status)) if status.code == 409 => Duration::from_millis(200),
        _ => Duration::from_secs(2),
    }
}

/// Syncs keys as `marks` dirty them, once all `sources` reflectors have listed;
/// `all_keys` lists the keys [`Mark::All`] stands for. Returns only if the marks end.
pub async fn drive<S, A, F, Fut>(
    mut marks: S,
    sources: usize,
    all_keys: A,
    mut sync: F,
) -> Result<()>
where
    S: Stream<Item = Mark> + Unpin,
    A: Fn() -> Vec<String>,
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut synced = HashSet::new();
    let mut dirty = BTreeSet::new();
    let mut retry: BTreeMap<String, Instant> = BTreeMap::new();
    let apply = |mark: Mark, dirty: &mut BTreeSet<String>, synced: &mut HashSet<usize>| match mark {
        Mark::Key(k) => {
            dirty.insert(k);
        }
        Mark::All => dirty.extend(all_keys()),
        Mark::Synced(n) => {
            synced.insert(n);
        }
    };
    loop {
        let next_retry = retry.values().min().copied();
        tokio::select! {
            mark = marks.next() => match mark {
                Some(mark) => apply(mark, &mut dirty, &mut synced),
                None => return Err(Error::Invalid("the watches ended".into())),
            },
            _ = sleep_until(next_retry) => {}
        }
        // Take whatever else arrives at once.
        let deadline = Instant::now() + DEBOUNCE;
        while let Ok(Some(mark)) = tokio::time::timeout_at(deadline, marks.next()).await {
            apply(mark, &mut dirty, &mut synced);
        }
        if synced.len() < sources {
            continue;
        }
        let now = Instant::now();
        let due: Vec<String> = retry
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            retry.remove(&key);
            dirty.insert(key);
        }
        for key in std::mem::take(&mut dirty) {
            retry.remove(&key);
            if let Err(err) = sync(key.clone()).await {
                tracing::info!(key = %key, error = %err, "Sync failed; retrying.");
                retry.insert(key, Instant::now() + retry_delay(&err));
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => futures::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn keys_wait_for_every_source_then_sync_once_each() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let marks = futures::stream::iter(vec![
            Mark::Key("a".into()),
            Mark::Synced(0),
            Mark::Key("a".into()),
            Mark::Key("b".into()),
            Mark::Synced(1),
        ])
        .chain(futures::stream::pending());
        let log = seen.clone();
        let run = drive(Box::pin(marks), 2, Vec::new, move |k| {
            log.lock().unwrap().push(k);
            async { Ok(()) }
        });
        let _ = tokio::time::timeout(Duration::from_millis(300), run).await;
        assert_eq!(*seen.lock().unwrap(), vec!["a".to_string(), "b".into()]);
    }
}

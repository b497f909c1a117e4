//! Watches over an embedded database.
//!
//! A watcher subscribes to the writer's notifications first, then replays history from
//! disk up to the last durable revision, then follows the notifications, skipping what it
//! already sent. A watcher whose consumer is slow falls behind the notifications; it then
//! catches up from disk again, so writers never wait for it. Only when the history it
//! needs has been compacted away is it ended, with [`StoreError::Compacted`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Range, Reader, Shared};
use crate::store::{Event, Result, Revision, StoreError, Watch};

/// Events read from disk per step of a replay.
const REPLAY_PAGE: usize = 1000;
/// Batches buffered between a watcher and its consumer.
const WATCH_BUFFER: usize = 64;

/// Starts a watch of `prefix` from `start` (0: after the current revision).
pub(super) fn start<R: Reader>(
    backend: &'static str,
    reader: Arc<R>,
    shared: Arc<Shared>,
    closed: CancellationToken,
    prefix: &str,
    start: Revision,
) -> Result<Watch> {
    let hub = shared.hub.subscribe();
    let current = shared.committed.load(Ordering::Acquire);
    let compacted = shared.compacted.load(Ordering::Acquire);
    let next = if start == 0 { current + 1 } else { start };
    if next <= compacted {
        return Err(StoreError::Compacted {
            requested: next,
            compacted,
        });
    }
    let (tx, watch) = Watch::channel(WATCH_BUFFER);
    let watcher = Watcher {
        reader,
        shared,
        range: Range::prefix(prefix, None),
        next,
        tx,
        closed,
    };
    let span = tracing::debug_span!("watch", backend, prefix = %prefix, start = next);
    tokio::spawn(tracing::Instrument::instrument(watcher.run(hub), span));
    Ok(watch)
}

struct Watcher<R> {
    reader: Arc<R>,
    shared: Arc<Shared>,
    range: Range,
    /// The next revision this watcher has to deliver.
    next: Revision,
    tx: mpsc::Sender<Result<Vec<Event>>>,
    /// Cancelled when the store closes.
    closed: CancellationToken,
}

/// Why a watcher stops.
enum Stop {
    /// The consumer dropped the watch, or the store closed.
    Gone,
}

impl<R: Reader> Watcher<R> {
    async fn run(mut self, mut hub: broadcast::Receiver<Arc<Vec<Event>>>) {
        loop {
            if self.catch_up().await.is_err() {
                return;
            }
            match self.follow(&mut hub).await {
                Ok(()) => continue, // fell behind the notifications: back to disk
                Err(Stop::Gone) => return,
            }
        }
    }

    /// Replays from disk everything from `next` to the last durable revision.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        loop {
            let upto = self.shared.committed.load(Ordering::Acquire);
            let compacted = self.shared.compacted.load(Ordering::Acquire);
            if self.next > upto {
                return Ok(());
            }
            if self.next <= compacted {
                let err = StoreError::Compacted {
                    requested: self.next,
                    compacted,
                };
                let _ = self.tx.send(Err(err)).await;
                return Err(Stop::Gone);
            }
            let (reader, range, from) = (self.reader.clone(), self.range.clone(), self.next);
            let page = tokio::task::spawn_blocking(move || {
                reader.history(&range, from, upto, REPLAY_PAGE)
            })
            .await;
            // A compaction that started during the read may have removed rows it needed.
            let compacted = self.shared.compacted.load(Ordering::Acquire);
            let page = match page {
                Ok(Ok(_)) if self.next <= compacted => Ok(Err(StoreError::Compacted {
                    requested: self.next,
                    compacted,
                })),
                other => other,
            };
            let rows = match page {
                Ok(Ok(rows)) => rows,
                Ok(Err(err)) => {
                    let _ = self.tx.send(Err(err)).await;
                    return Err(Stop::Gone);
                }
                Err(_) => return Err(Stop::Gone),
            };
            let full = rows.len() == REPLAY_PAGE;
            let next = match rows.last() {
                Some((row, _)) if full => row.revision + 1,
                _ => upto + 1,
            };
            let events: Vec<Event> = rows
                .iter()
                .map(|(row, prev)| row.event(prev.as_ref()))
                .collect();
            self.next = next;
            self.send(events).await?;
        }
    }

    /// Follows the writer's notifications; returns Ok when it fell behind them.
    async fn follow(&mut self, hub: &mut broadcast::Receiver<Arc<Vec<Event>>>) -> Result<(), Stop> {
        loop {
            let batch = tokio::select! {
                batch = hub.recv() => batch,
                _ = self.tx.closed() => return Err(Stop::Gone),
                _ = self.closed.cancelled() => {
                    let _ = self.tx.send(Err(StoreError::Closed)).await;
                    return Err(Stop::Gone);
                }
            };
            let batch = match batch {
                Ok(batch) => batch,
                Err(broadcast::error::RecvError::Lagged(_)) => return Ok(()),
                Err(broadcast::error::RecvError::Closed) => return Err(Stop::Gone),
            };
            let events: Vec<Event> = batch
                .iter()
                .filter(|e| e.revision() >= self.next && self.range.contains(e.kv.key.as_bytes()))
                .cloned()
                .collect();
            if let Some(last) = batch.last() {
                self.next = self.next.max(last.revision() + 1);
            }
            self.send(events).await?;
        }
    }

    async fn send(&self, events: Vec<Event>) -> Result<(), Stop> {
        if events.is_empty() {
            return Ok(());
        }
        self.tx.send(Ok(events)).await.map_err(|_| Stop::Gone)
    }
}

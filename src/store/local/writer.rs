//! The single writer: group commit of guarded writes, and compaction in small chunks.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Request, Row, Shared, WriteOp};
use crate::store::{Event, Result, Revision, StoreError};

/// At most this many writes share one transaction.
const MAX_BATCH: usize = 1024;
/// Compaction removes history in chunks of this many revisions, one transaction each, so
/// writes are never held up for long.
const COMPACT_CHUNK: Revision = 1000;

/// The writing half of an embedded database, owned by the writer thread.
pub(crate) trait Engine: Send + 'static {
    /// The backend's name, for errors.
    const NAME: &'static str;

    /// The key's latest committed row, a tombstone included.
    fn latest(&mut self, key: &str) -> Result<Option<Row>>;

    /// Writes `rows` in one transaction and makes them durable before returning. On error
    /// nothing of `rows` may be visible, now or after a restart.
    fn commit(&mut self, rows: &[Row]) -> Result<()>;

    /// Records the compaction point durably.
    fn set_compacted(&mut self, revision: Revision) -> Result<()>;

    /// Removes rows with revisions in `[from, to)` that no read at or above `target` can
    /// see: those superseded by a later row at or below `target`, and tombstones below it.
    fn compact_chunk(&mut self, from: Revision, to: Revision, target: Revision) -> Result<()>;

    /// The lowest revision stored, if any.
    fn first_revision(&mut self) -> Result<Option<Revision>>;

    /// Upkeep after each batch and whenever the writer falls idle (a WAL checkpoint, say).
    fn maintain(&mut self) {}
}

/// A compaction in progress.
struct Compaction {
    next: Revision,
    target: Revision,
    reply: oneshot::Sender<Result<()>>,
}

/// The writer thread's loop: runs until every sender is gone or it is asked to close.
pub(crate) fn run<E: Engine>(mut engine: E, mut rx: mpsc::Receiver<Request>, shared: Arc<Shared>) {
    let mut compaction: Option<Compaction> = None;
    loop {
        let first = if compaction.is_some() {
            match rx.try_recv() {
                Ok(req) => Some(req),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.try_recv() {
                Ok(req) => Some(req),
                Err(mpsc::error::TryRecvError::Empty) => {
                    engine.maintain();
                    match rx.blocking_recv() {
                        Some(req) => Some(req),
                        None => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        };
        if let Some(first) = first {
            let mut writes = Vec::new();
            let mut close = None;
            let mut pending = Some(first);
            while let Some(req) = pending.take() {
                match req {
                    Request::Write(op, reply) => writes.push((op, reply)),
                    Request::Compact(target, reply) => {
                        start_compaction(&mut engine, &shared, &mut compaction, target, reply)
                    }
                    Request::Close(reply) => close = Some(reply),
                }
                if writes.len() < MAX_BATCH && close.is_none() {
                    pending = rx.try_recv().ok();
                }
            }
            if !writes.is_empty() {
                commit_batch(&mut engine, &shared, writes);
                engine.maintain();
            }
            if let Some(reply) = close {
                drop(engine);
                let _ = reply.send(());
                return;
            }
        }
        if let Some(c) = compaction.as_mut() {
            if let Some(outcome) = compact_step(&mut engine, c) {
                let done = compaction.take().expect("compaction is in progress");
                let _ = done.reply.send(outcome);
            }
        }
    }
}

/// Decides every write of a batch, commits them together, then answers and notifies.
fn commit_batch<E: Engine>(
    engine: &mut E,
    shared: &Shared,
    writes: Vec<(WriteOp, oneshot::Sender<Result<Event>>)>,
) {
    let base = shared.committed.load(Ordering::Acquire);
    let mut rows: Vec<Row> = Vec::with_capacity(writes.len());
    // The latest row of each key written in this batch, by index into `rows`.
    let mut written: HashMap<String, usize> = HashMap::new();
    let mut outcomes = Vec::with_capacity(writes.len());
    for (op, reply) in writes {
        let key = op_key(&op).to_string();
        let latest = match written.get(&key) {
            Some(&i) => Ok(Some(rows[i].clone())),
            None => engine.latest(&key),
        };
        let revision = base + rows.len() as Revision + 1;
        let decided = latest.and_then(|latest| decide(op, latest, revision));
        match decided {
            Ok((row, event)) => {
                written.insert(key, rows.len());
                rows.push(row);
                outcomes.push((reply, Ok(event)));
            }
            Err(err) => outcomes.push((reply, Err(err))),
        }
    }
    if rows.is_empty() {
        for (reply, outcome) in outcomes {
            let _ = reply.send(outcome);
        }
        return;
    }
    match engine.commit(&rows) {
        Ok(()) => {
            let last = base + rows.len() as Revision;
            shared.committed.store(last, Ordering::Release);
            let events: Vec<Event> = outcomes
                .iter()
                .filter_map(|(_, outcome)| outcome.as_ref().ok().cloned())
                .collect();
            // No receiver is not an error: nobody is watching.
            let _ = shared.hub.send(Arc::new(events));
            for (reply, outcome) in outcomes {
                let _ = reply.send(outcome);
            }
        }
        Err(err) => {
            tracing::warn!(backend = E::NAME, writes = rows.len(), error = %err, "A write batch failed; nothing of it was stored.");
            for (reply, outcome) in outcomes {
                let _ = reply.send(outcome.and(Err(err.clone())));
            }
        }
    }
}

fn op_key(op: &WriteOp) -> &str {
    match op {
        WriteOp::Create { key, .. } | WriteOp::Update { key, .. } | WriteOp::Delete { key, .. } => {
            key
        }
    }
}

/// Decides one write against the key's latest row: the row to append and its event.
fn decide(op: WriteOp, latest: Option<Row>, revision: Revision) -> Result<(Row, Event)> {
    let live = latest.filter(|row| !row.deleted);
    let check = |key: &str, expected: Option<Revision>| -> Result<Row> {
        let Some(live) = live.clone() else {
            return Err(StoreError::NotFound {
                key: key.to_string(),
            });
        };
        match expected {
            Some(expected) if expected != live.revision => Err(StoreError::Conflict {
                key: key.to_string(),
                expected,
                current: Some(Box::new(live.kv())),
            }),
            _ => Ok(live),
        }
    };
    let (row, prev) = match op {
        WriteOp::Create {
            key,
            value,
            expires_at,
        } => {
            if live.is_some() {
                return Err(StoreError::AlreadyExists { key });
            }
            let row = Row {
                revision,
                key,
                create_revision: revision,
                prev_revision: 0,
                deleted: false,
                expires_at,
                value,
            };
            (row, None)
        }
        WriteOp::Update {
            key,
            value,
            expected,
            expires_at,
        } => {
            let prev = check(&key, Some(expected))?;
            let row = Row {
                revision,
                key,
                create_revision: prev.create_revision,
                prev_revision: prev.revision,
                deleted: false,
                expires_at,
                value,
            };
            (row, Some(prev))
        }
        WriteOp::Delete { key, expected } => {
            let prev = check(&key, expected)?;
            let row = Row {
                revision,
                key,
                create_revision: prev.create_revision,
                prev_revision: prev.revision,
                deleted: true,
                expires_at: 0,
                value: Vec::new(),
            };
            (row, Some(prev))
        }
    };
    let event = row.event(prev.as_ref());
    Ok((row, event))
}

/// Validates a compaction request and records its target; the rows go chunk by chunk.
fn start_compaction<E: Engine>(
    engine: &mut E,
    shared: &Shared,
    current: &mut Option<Compaction>,
    target: Revision,
    reply: oneshot::Sender<Result<()>>,
) {
    let committed = shared.committed.load(Ordering::Acquire);
    let compacted = shared.compacted.load(Ordering::Acquire);
    if target > committed {
        let _ = reply.send(Err(StoreError::FutureRevision {
            requested: target,
            current: committed,
        }));
        return;
    }
    if target <= compacted {
        let _ = reply.send(Err(StoreError::Compacted {
            requested: target,
            compacted,
        }));
        return;
    }
    if let Err(err) = engine.set_compacted(target) {
        let _ = reply.send(Err(err));
        return;
    }
    shared.compacted.store(target, Ordering::Release);
    let first = match engine.first_revision() {
        Ok(first) => first.unwrap_or(target),
        Err(err) => {
            let _ = reply.send(Err(err));
            return;
        }
    };
    // A compaction still running is superseded: its rows are covered by the new target.
    if let Some(old) = current.take() {
        let _ = old.reply.send(Ok(()));
    }
    *current = Some(Compaction {
        next: first,
        target,
        reply,
    });
}

/// Removes one chunk of history; returns the outcome once the compaction is finished.
///
/// A failed chunk ends the compaction: reads below the target already answer Compacted,
/// and the rows left behind are removed by the next compaction, which starts from the
/// lowest revision stored.
fn compact_step<E: Engine>(engine: &mut E, c: &mut Compaction) -> Option<Result<()>> {
    let to = (c.next + COMPACT_CHUNK).min(c.target);
    if c.next < to {
        if let Err(err) = engine.compact_chunk(c.next, to, c.target) {
            tracing::warn!(backend = E::NAME, error = %err, "Compaction failed; the next one will finish it.");
            return Some(Err(err));
        }
    }
    c.next = to;
    (c.next >= c.target).then_some(Ok(()))
}

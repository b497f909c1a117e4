//! Automatic compaction, so the datastore stays bounded under steady churn.
//!
//! Like kube-apiserver's compactor, every interval it compacts up to the revision it saw
//! one interval before, so watchers always have at least one interval of history to resume
//! from; it also always keeps the last `min_retain` revisions, as kine does.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Backend, Result, Revision, StoreError};

/// Settings of automatic compaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactorConfig {
    /// How often to compact; zero turns automatic compaction off.
    pub interval: Duration,
    /// How many of the latest revisions are always kept.
    pub min_retain: Revision,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        CompactorConfig {
            interval: Duration::from_secs(300),
            min_retain: 1000,
        }
    }
}

/// The revision to compact to, given the current revision, the revision seen one interval
/// ago, and the current compaction point; `None` if there is nothing to do.
pub fn target(
    current: Revision,
    seen_before: Revision,
    compacted: Revision,
    min_retain: Revision,
) -> Option<Revision> {
    let target = seen_before.min(current - min_retain);
    (target > compacted).then_some(target)
}

/// Compacts the store on a timer.
pub struct Compactor {
    store: Arc<dyn Backend>,
    config: CompactorConfig,
}

impl Compactor {
    /// A compactor for `store`.
    pub fn new(store: Arc<dyn Backend>, config: CompactorConfig) -> Self {
        Compactor { store, config }
    }

    /// Runs until `shutdown` is cancelled. Failures are logged and retried at the next tick.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        if self.config.interval.is_zero() {
            tracing::info!("Automatic compaction is off.");
            return Ok(());
        }
        let mut seen_before = self.store.current_revision().await?;
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            match self.step(seen_before).await {
                Ok(current) => seen_before = current,
                Err(err) => {
                    tracing::warn!(error = %err, "Compaction failed; trying again at the next interval.")
                }
            }
        }
    }

    /// Compacts once; returns the revision seen now.
    async fn step(&self, seen_before: Revision) -> Result<Revision> {
        let current = self.store.current_revision().await?;
        let compacted = self.store.compacted_revision().await?;
        if let Some(to) = target(current, seen_before, compacted, self.config.min_retain) {
            let started = std::time::Instant::now();
            match self.store.compact(to).await {
                // Someone else (another server on the same etcd) compacted further.
                Ok(()) | Err(StoreError::Compacted { .. }) => {}
                Err(err) => return Err(err),
            }
            tracing::info!(revision = to, took = ?started.elapsed(), "Compacted the datastore.");
        }
        Ok(current)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{target, Compactor, CompactorConfig};
    use crate::store::conformance::{bounded, Harness, Local};
    use crate::store::{ListRequest, StoreError};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_compactor_bounds_history_and_keeps_the_latest_state() {
        bounded(async {
            let harness = Local::sqlite();
            let s = harness.open().await;
            let mut rev = s.create("/registry/churn", vec![0], None).await.unwrap();
            let config = CompactorConfig {
                interval: Duration::from_millis(100),
                min_retain: 50,
            };
            let shutdown = tokio_util::sync::CancellationToken::new();
            let task = tokio::spawn(Compactor::new(s.clone(), config).run(shutdown.clone()));
            for i in 0..500u32 {
                rev = s
                    .update("/registry/churn", i.to_be_bytes().to_vec(), rev, None)
                    .await
                    .unwrap()
                    .mod_revision;
                if i % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(350)).await;
            shutdown.cancel();
            task.await.unwrap().unwrap();
            let compacted = s.compacted_revision().await.unwrap();
            assert!(
                compacted > 1 && compacted <= rev - 50,
                "compacted to {compacted} of {rev}"
            );
            assert!(matches!(
                s.get("/registry/churn", 2).await,
                Err(StoreError::Compacted { .. })
            ));
            let list = s.list(&ListRequest::prefix("/registry/")).await.unwrap();
            assert_eq!(list.kvs[0].value, 499u32.to_be_bytes().to_vec());
        })
        .await;
    }

    #[test]
    fn compaction_keeps_one_interval_and_the_minimum() {
        // Seen 5000 one interval ago, now at 9000: compact to 5000.
        assert_eq!(target(9000, 5000, 0, 1000), Some(5000));
        // Only 500 revisions since: keep the last 1000.
        assert_eq!(target(5500, 5000, 0, 1000), Some(4500));
        // Nothing new since the last compaction.
        assert_eq!(target(5500, 5000, 4500, 1000), None);
        // A young store keeps everything.
        assert_eq!(target(900, 800, 0, 1000), None);
    }
}

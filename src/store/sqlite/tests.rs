//! SQLite-only behaviour: the WAL stays bounded while readers never stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{open_with, wal_path};
use crate::store::conformance::bounded;
use crate::store::{Backend, ListRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_stays_bounded_under_constant_reads() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let limit = 4 << 20;
        let store: Arc<dyn Backend> = Arc::new(open_with(&path, limit).await.unwrap());
        // Readers that always overlap: one of them is inside a read at any moment.
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (store, stop) = (store.clone(), stop.clone());
            readers.spawn(async move {
                let mut lists = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let req = ListRequest {
                        limit: 100,
                        ..ListRequest::prefix("/registry/wal/")
                    };
                    store.list(&req).await.unwrap();
                    lists += 1;
                }
                lists
            });
        }
        // 24 MiB of 4 KiB values: six times the limit.
        let mut largest = 0;
        for i in 0..6000 {
            store
                .create(&format!("/registry/wal/{i:05}"), vec![b'w'; 4096], None)
                .await
                .unwrap();
            largest = largest.max(std::fs::metadata(wal_path(&path)).map_or(0, |m| m.len()));
        }
        stop.store(true, Ordering::Relaxed);
        let mut lists = 0;
        while let Some(n) = readers.join_next().await {
            lists += n.unwrap();
        }
        assert!(lists > 10, "the readers ran ({lists} lists)");
        // One batch may pass the limit before the writer truncates the WAL.
        assert!(
            largest < 2 * limit,
            "the WAL grew to {largest} bytes (limit {limit})"
        );
        assert_eq!(store.count("/registry/wal/").await.unwrap().1, 6000);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_is_truncated_after_a_long_reader_leaves() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let limit = 1 << 20;
        let store: Arc<dyn Backend> = Arc::new(open_with(&path, limit).await.unwrap());
        store
            .create("/registry/x/first", vec![1], None)
            .await
            .unwrap();
        // A reader that keeps one snapshot open, so no checkpoint can restart the WAL.
        let reader = rusqlite::Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let n: i64 = reader
            .query_row("SELECT COUNT(*) FROM kv", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        for i in 0..1000 {
            store
                .create(&format!("/registry/x/{i:04}"), vec![b'x'; 4096], None)
                .await
                .unwrap();
        }
        let held = std::fs::metadata(wal_path(&path)).unwrap().len();
        assert!(
            held > 2 * limit,
            "the held reader let the WAL grow ({held} bytes)"
        );
        reader.execute_batch("COMMIT").unwrap();
        drop(reader);
        // Writes go on; the writer truncates the WAL once the reader is gone.
        let mut i = 0;
        let size = loop {
            store
                .create(&format!("/registry/x/after-{i:04}"), vec![b'y'; 64], None)
                .await
                .unwrap();
            let size = std::fs::metadata(wal_path(&path)).unwrap().len();
            if size <= limit || i == 2000 {
                break size;
            }
            i += 1;
            if i % 50 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        };
        assert!(size <= limit, "the WAL is still {size} bytes");
    })
    .await;
}

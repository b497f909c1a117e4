//! The datastore on a disk that fills up: writes fail with a clear error, nothing that was
//! acknowledged is lost, and writing resumes when space returns.

use std::time::Duration;

use skiff::store::{self, Endpoint, StoreConfig, StoreError, TlsFiles};
use tokio_util::sync::CancellationToken;

mod support;
use support::Tmpfs;

async fn open(endpoint: &Endpoint) -> std::sync::Arc<dyn store::Backend> {
    let config = StoreConfig {
        endpoint: endpoint.clone(),
        tls: TlsFiles::default(),
    };
    store::open(&config, &CancellationToken::new())
        .await
        .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_loses_nothing_and_recovers() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let dir = tempfile::tempdir().unwrap();
        let _fs = Tmpfs::mount(dir.path(), "4m");
        // Room to give back later.
        let filler = dir.path().join("filler");
        std::fs::write(&filler, vec![0u8; 1 << 20]).unwrap();
        let endpoint = Endpoint::Sqlite(dir.path().join("state.db"));
        let s = open(&endpoint).await;
        let mut acked = Vec::new();
        let mut failure = None;
        for i in 0..5000 {
            let key = format!("/registry/full/{i:05}");
            match s.create(&key, vec![b'f'; 2048], None).await {
                Ok(rev) => acked.push((key, rev)),
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
        }
        let failure = failure.expect("the disk filled up");
        assert!(
            matches!(&failure, StoreError::Backend { message, .. } if message.contains("disk is full")),
            "{failure}"
        );
        assert!(acked.len() > 100, "some writes went through first");
        // Space returns: writes resume.
        std::fs::remove_file(&filler).unwrap();
        let mut resumed = None;
        for _ in 0..50 {
            match s.create("/registry/full/after", vec![b'a'; 64], None).await {
                Ok(rev) => {
                    resumed = Some(rev);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let resumed = resumed.expect("writes resume once space returns");
        assert_eq!(resumed, acked.last().unwrap().1 + 1, "no revision was lost or skipped");
        s.close().await.unwrap();
        drop(s);
        let s = open(&endpoint).await;
        for (key, rev) in &acked {
            let kv = s.get(key, 0).await.unwrap().1.expect("acknowledged write kept");
            assert_eq!(kv.mod_revision, *rev);
        }
        s.close().await.unwrap();
    })
    .await
    .expect("in time");
}

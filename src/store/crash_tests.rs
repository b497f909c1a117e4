//! Crash safety: a writer is killed with SIGKILL at random moments, many times; every write
//! it had acknowledged must be there afterwards, and the revisions must have no hole.
//!
//! For the embedded backends the writer is a child process (this test binary, running the
//! ignored `crash_child` test). For etcd the process that holds the data is etcd itself, so
//! etcd is the one killed, under writes from this process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::conformance::{bounded, check_after_crash, open_endpoint, Etcd, Harness};
use super::{Endpoint, Revision};

const CHILD_ENV: &str = "SKIFF_CRASH_ENDPOINT";
const RUN_ENV: &str = "SKIFF_CRASH_RUN";
const WRITERS: usize = 16;
const KILLS: usize = 8;

/// The child: writes as fast as it can and prints each acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the crash tests run it as a child process"]
async fn crash_child() {
    let endpoint = std::env::var(CHILD_ENV).expect("SKIFF_CRASH_ENDPOINT names the store");
    let run = std::env::var(RUN_ENV).expect("SKIFF_CRASH_RUN names the run");
    let store = open_endpoint(&Endpoint::parse(&endpoint).expect("a valid endpoint")).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for t in 0..WRITERS {
        let (store, tx, run) = (store.clone(), tx.clone(), run.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let key = format!("/crash/{run}-{t:02}-{i:06}");
                let rev = store
                    .create(&key, vec![b'x'; 512], None)
                    .await
                    .expect("write");
                if tx.send(format!("ACK {key} {rev}")).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    while let Some(line) = rx.recv().await {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .expect("stdout");
    }
}

fn parse_ack(line: &str) -> Option<(String, Revision)> {
    let rest = line.strip_prefix("ACK ")?;
    let (key, rev) = rest.rsplit_once(' ')?;
    Some((key.to_string(), rev.parse().ok()?))
}

/// Runs the child on `endpoint`, kills it after a random number of acknowledged writes,
/// and returns every write it acknowledged.
async fn run_and_kill(endpoint: &str, run: usize) -> Vec<(String, Revision)> {
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = tokio::process::Command::new(exe)
        .args([
            "--exact",
            "store::crash_tests::crash_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, endpoint)
        .env(RUN_ENV, run.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let kill_after = rand::rng().random_range(1..1500);
    let mut acked = Vec::new();
    while acked.len() < kill_after {
        match lines.next_line().await.expect("read the child") {
            Some(line) => acked.extend(parse_ack(&line)),
            None => panic!("the child ended before it was killed"),
        }
    }
    let pause = rand::rng().random_range(0..20);
    tokio::time::sleep(Duration::from_millis(pause)).await;
    child.start_kill().expect("SIGKILL the child");
    // What the child printed before it died was acknowledged too.
    while let Some(line) = lines.next_line().await.expect("read the child") {
        acked.extend(parse_ack(&line));
    }
    child.wait().await.expect("reap the child");
    acked
}

async fn crash_local(endpoint: Endpoint, text: String) {
    let mut acked = Vec::new();
    for run in 0..KILLS {
        acked.extend(run_and_kill(&text, run).await);
        let store = open_endpoint(&endpoint).await;
        check_after_crash(&store, &acked, 2).await;
        store.close().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let text = format!("sqlite://{}", path.display());
    bounded(crash_local(Endpoint::Sqlite(path), text)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sled");
    let text = format!("sled://{}", path.display());
    bounded(crash_local(Endpoint::Sled(path), text)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_acknowledged_writes_survive_sigkill() {
    bounded(async {
        let etcd = Etcd::start().await;
        let acked = Arc::new(Mutex::new(Vec::new()));
        for run in 0..KILLS {
            let store = etcd.open().await;
            let mut writers = tokio::task::JoinSet::new();
            for t in 0..WRITERS {
                let (store, acked) = (store.clone(), acked.clone());
                writers.spawn(async move {
                    for i in 0.. {
                        let key = format!("/crash/{run}-{t:02}-{i:06}");
                        match store.create(&key, vec![b'x'; 512], None).await {
                            Ok(rev) => acked.lock().unwrap().push((key, rev)),
                            Err(_) => return,
                        }
                    }
                });
            }
            let pause = rand::rng().random_range(50..500);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            etcd.process.lock().await.kill();
            while writers.join_next().await.is_some() {}
            etcd.process
                .lock()
                .await
                .restart()
                .await
                .expect("restart etcd");
            let store = etcd.open().await;
            let acked = acked.lock().unwrap().clone();
            assert!(!acked.is_empty());
            check_after_crash(&store, &acked, 2).await;
        }
    })
    .await;
}

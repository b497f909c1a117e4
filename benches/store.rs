//! The datastore benchmark: the same workloads on SQLite, sled and a single-member etcd on
//! the same machine, side by side in one run, printed as a table with ratios to etcd.
//!
//! Run with `scripts/bench.sh store` (add `--quick` for a short smoke run).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff::store::etcd_process::EtcdProcess;
use skiff::store::{self, Backend, Endpoint, ListRequest, StoreConfig, TlsFiles};
use tokio::sync::Mutex;

/// Sizes of the workloads.
struct Sizes {
    sequential: usize,
    concurrent_per_client: usize,
    list_keys: usize,
    watch_writes: usize,
    bytes_updates: usize,
    churn_updates: usize,
}

const FULL: Sizes = Sizes {
    sequential: 2000,
    concurrent_per_client: 300,
    list_keys: 10_000,
    watch_writes: 300,
    bytes_updates: 2000,
    churn_updates: 100_000,
};

const QUICK: Sizes = Sizes {
    sequential: 200,
    concurrent_per_client: 30,
    list_keys: 1000,
    watch_writes: 50,
    bytes_updates: 200,
    churn_updates: 5000,
};

const CLIENTS: usize = 32;
const WATCHERS: usize = 100;
const CHURN_KEYS: usize = 1000;
const VALUE: usize = 1024;

/// One backend's results; `None` where a figure could not be taken.
#[derive(Default)]
struct Results {
    seq_writes_per_s: f64,
    seq_p50_ms: f64,
    seq_p99_ms: f64,
    conc_writes_per_s: f64,
    conc_p50_ms: f64,
    conc_p99_ms: f64,
    list_ms: f64,
    watch_p99_ms: f64,
    bytes_per_update_1: f64,
    bytes_per_update_32: f64,
    churn_db_bytes: f64,
    churn_writes_per_s: f64,
}

/// Where to count bytes written: this process (embedded backends) or etcd's.
#[derive(Clone, Copy)]
enum IoOf {
    SelfProcess,
    Pid(u32),
}

fn write_bytes(of: IoOf) -> u64 {
    let path = match of {
        IoOf::SelfProcess => "/proc/self/io".to_string(),
        IoOf::Pid(pid) => format!("/proc/{pid}/io"),
    };
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn value() -> Vec<u8> {
    vec![b'v'; VALUE]
}

async fn sequential(s: &Arc<dyn Backend>, n: usize, r: &mut Results) {
    let mut lat = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        s.create(&format!("/registry/seq/{i:08}"), value(), None)
            .await
            .expect("create");
        lat.push(t.elapsed());
    }
    r.seq_writes_per_s = n as f64 / started.elapsed().as_secs_f64();
    lat.sort();
    r.seq_p50_ms = common::percentile(&lat, 0.5);
    r.seq_p99_ms = common::percentile(&lat, 0.99);
}

async fn concurrent(s: &Arc<dyn Backend>, per_client: usize, prefix: &str) -> (f64, Vec<Duration>) {
    let (s, prefix) = (s.clone(), prefix.to_string());
    common::concurrent(CLIENTS, per_client, move |c, i| {
        let (s, key) = (s.clone(), format!("{prefix}{c:02}-{i:08}"));
        async move {
            s.create(&key, value(), None).await.expect("create");
        }
    })
    .await
}

async fn list(s: &Arc<dyn Backend>, n: usize, r: &mut Results) {
    concurrent(s, n / CLIENTS + 1, "/registry/list/").await;
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let got = s
            .list(&ListRequest::prefix("/registry/list/"))
            .await
            .expect("list");
        times.push(t.elapsed());
        assert!(got.kvs.len() >= n);
    }
    times.sort();
    r.list_ms = common::percentile(&times, 0.5);
}

async fn watch_latency(s: &Arc<dyn Backend>, writes: usize, r: &mut Results) {
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let start = s.current_revision().await.expect("revision") + 1;
    let mut watchers = tokio::task::JoinSet::new();
    for _ in 0..WATCHERS {
        let mut w = s.watch("/registry/watch/", 0).await.expect("watch");
        watchers.spawn(async move {
            let mut got = Vec::with_capacity(writes);
            while got.len() < writes {
                match w.next().await {
                    Some(Ok(events)) => {
                        let now = Instant::now();
                        got.extend(events.iter().map(|e| (e.revision(), now)));
                    }
                    other => panic!("watch ended: {:?}", other.map(|r| r.err())),
                }
            }
            got
        });
    }
    for i in 0..writes {
        let t = Instant::now();
        sent.lock().await.push(t);
        s.create(&format!("/registry/watch/{i:08}"), value(), None)
            .await
            .expect("create");
    }
    let sent = sent.lock().await.clone();
    let mut lat = Vec::new();
    while let Some(got) = watchers.join_next().await {
        for (rev, at) in got.expect("watcher") {
            let i = (rev - start) as usize;
            lat.push(at.saturating_duration_since(sent[i]));
        }
    }
    lat.sort();
    r.watch_p99_ms = common::percentile(&lat, 0.99);
}

/// Bytes written per 1 KB update, with `clients` updating their own keys.
async fn bytes_per_update(
    s: &Arc<dyn Backend>,
    io: IoOf,
    updates: usize,
    clients: usize,
    tag: &str,
) -> f64 {
    let mut revs = Vec::new();
    for c in 0..clients {
        let key = format!("/registry/bytes/{tag}/{c:02}");
        revs.push((
            key.clone(),
            s.create(&key, value(), None).await.expect("create"),
        ));
    }
    let before = write_bytes(io);
    let mut tasks = tokio::task::JoinSet::new();
    for (key, mut rev) in revs {
        let s = s.clone();
        let n = updates / clients;
        tasks.spawn(async move {
            for _ in 0..n {
                rev = s
                    .update(&key, value(), rev, None)
                    .await
                    .expect("update")
                    .mod_revision;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let after = write_bytes(io);
    (after.saturating_sub(before)) as f64 / (updates / clients * clients) as f64
}

/// 100,000 updates to 1,000 keys with compaction every 5,000 writes keeping 1,000
/// revisions; returns the database size and the update rate.
async fn churn(s: &Arc<dyn Backend>, updates: usize, r: &mut Results) {
    let mut keys = Vec::new();
    for k in 0..CHURN_KEYS {
        let key = format!("/registry/churn/{k:05}");
        keys.push((
            key.clone(),
            s.create(&key, value(), None).await.expect("create"),
        ));
    }
    let per_client = CHURN_KEYS / CLIENTS + 1;
    let rounds = updates / CHURN_KEYS;
    let started = Instant::now();
    let mut done = 0;
    for _ in 0..rounds {
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in keys.chunks(per_client) {
            let (s, chunk) = (s.clone(), chunk.to_vec());
            tasks.spawn(async move {
                let mut out = Vec::with_capacity(chunk.len());
                for (key, rev) in chunk {
                    let kv = s.update(&key, value(), rev, None).await.expect("update");
                    out.push((key, kv.mod_revision));
                }
                out
            });
        }
        let mut next = Vec::new();
        while let Some(out) = tasks.join_next().await {
            next.push(out.expect("churn task"));
        }
        done += CHURN_KEYS;
        let mut flat: Vec<(String, i64)> = next.into_iter().flatten().collect();
        flat.sort();
        keys = flat;
        if done % 5000 == 0 {
            let current = s.current_revision().await.expect("revision");
            s.compact(current - 1000).await.expect("compact");
        }
    }
    r.churn_writes_per_s = done as f64 / started.elapsed().as_secs_f64();
    // Let the last compaction settle, then measure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.churn_db_bytes = s.db_size().await.expect("size") as f64;
}

async fn run_backend(s: Arc<dyn Backend>, io: IoOf, sizes: &Sizes) -> Results {
    let mut r = Results::default();
    eprintln!("bench: {}: sequential writes, 1 client", s.name());
    sequential(&s, sizes.sequential, &mut r).await;
    eprintln!("bench: {}: writes, {CLIENTS} clients", s.name());
    let (rate, lat) = concurrent(&s, sizes.concurrent_per_client, "/registry/conc/").await;
    r.conc_writes_per_s = rate;
    r.conc_p50_ms = common::percentile(&lat, 0.5);
    r.conc_p99_ms = common::percentile(&lat, 0.99);
    eprintln!("bench: {}: list {} keys", s.name(), sizes.list_keys);
    list(&s, sizes.list_keys, &mut r).await;
    eprintln!("bench: {}: watch latency, {WATCHERS} watchers", s.name());
    watch_latency(&s, sizes.watch_writes, &mut r).await;
    eprintln!("bench: {}: bytes written per update", s.name());
    r.bytes_per_update_1 = bytes_per_update(&s, io, sizes.bytes_updates, 1, "one").await;
    r.bytes_per_update_32 =
        bytes_per_update(&s, io, sizes.bytes_updates * 4, CLIENTS, "many").await;
    eprintln!(
        "bench: {}: {} updates to {CHURN_KEYS} keys with compaction",
        s.name(),
        sizes.churn_updates
    );
    churn(&s, sizes.churn_updates, &mut r).await;
    s.close().await.expect("close");
    r
}

async fn open(endpoint: Endpoint) -> Arc<dyn Backend> {
    let config = StoreConfig {
        endpoint,
        tls: TlsFiles::default(),
    };
    store::open(&config, &tokio_util::sync::CancellationToken::new())
        .await
        .expect("open the store")
}

fn bench_dir() -> PathBuf {
    // On the real disk, not a tmpfs: bytes written are counted by the block layer.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-data");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

fn row(name: &str, unit: &str, vals: [f64; 3], higher_is_better: bool) {
    let ratio = |v: f64| {
        if vals[2] == 0.0 {
            "-".to_string()
        } else {
            format!("{:.2}×", v / vals[2])
        }
    };
    let fmt = |v: f64| {
        if v >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    };
    let better = if higher_is_better { "higher" } else { "lower" };
    println!(
        "| {name} ({unit}, {better} is better) | {} | {} | {} | {} | {} |",
        fmt(vals[0]),
        fmt(vals[1]),
        fmt(vals[2]),
        ratio(vals[0]),
        ratio(vals[1])
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes = if quick { &QUICK } else { &FULL };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = bench_dir();
    let results = runtime.block_on(async {
        let sqlite = open(Endpoint::Sqlite(dir.join("sqlite").join("state.db"))).await;
        let sqlite = run_backend(sqlite, IoOf::SelfProcess, sizes).await;
        let sled = open(Endpoint::Sled(dir.join("sled"))).await;
        let sled = run_backend(sled, IoOf::SelfProcess, sizes).await;
        let etcd_dir = dir.join("etcd");
        std::fs::create_dir_all(&etcd_dir).expect("etcd dir");
        let etcd = EtcdProcess::start(&etcd_dir).await.expect("start etcd");
        let pid = etcd.pid().expect("etcd runs");
        let store = open(Endpoint::Etcd {
            endpoints: vec![etcd.endpoint()],
            tls: false,
        })
        .await;
        let etcd_results = run_backend(store, IoOf::Pid(pid), sizes).await;
        drop(etcd);
        [sqlite, sled, etcd_results]
    });
    let _ = std::fs::remove_dir_all(&dir);
    let v = |f: fn(&Results) -> f64| [f(&results[0]), f(&results[1]), f(&results[2])];
    println!(
        "machine: {}{}",
        common::machine(),
        if quick { " (quick run)" } else { "" }
    );
    println!();
    println!("| workload | SQLite | sled | etcd | SQLite/etcd | sled/etcd |");
    println!("| --- | --- | --- | --- | --- | --- |");
    row(
        "sequential writes, 1 client",
        "writes/s",
        v(|r| r.seq_writes_per_s),
        true,
    );
    row(
        "write latency p50, 1 client",
        "ms",
        v(|r| r.seq_p50_ms),
        false,
    );
    row(
        "write latency p99, 1 client",
        "ms",
        v(|r| r.seq_p99_ms),
        false,
    );
    row(
        &format!("writes, {CLIENTS} clients"),
        "writes/s",
        v(|r| r.conc_writes_per_s),
        true,
    );
    row(
        &format!("write latency p50, {CLIENTS} clients"),
        "ms",
        v(|r| r.conc_p50_ms),
        false,
    );
    row(
        &format!("write latency p99, {CLIENTS} clients"),
        "ms",
        v(|r| r.conc_p99_ms),
        false,
    );
    row(
        &format!("list {} keys", sizes.list_keys),
        "ms",
        v(|r| r.list_ms),
        false,
    );
    row(
        &format!("watch delivery p99, {WATCHERS} watchers"),
        "ms",
        v(|r| r.watch_p99_ms),
        false,
    );
    row(
        "bytes written per 1 KB update, 1 client",
        "bytes",
        v(|r| r.bytes_per_update_1),
        false,
    );
    row(
        &format!("bytes written per 1 KB update, {CLIENTS} clients"),
        "bytes",
        v(|r| r.bytes_per_update_32),
        false,
    );
    row(
        &format!(
            "db size after {} updates to {CHURN_KEYS} keys, compacted",
            sizes.churn_updates
        ),
        "bytes",
        v(|r| r.churn_db_bytes),
        false,
    );
    row(
        &format!("update rate during that churn, {CLIENTS} clients"),
        "writes/s",
        v(|r| r.churn_writes_per_s),
        true,
    );
}

//! The API server benchmark: a real `skiff server` (release build) driven over HTTPS by
//! kube-rs, with the datastore's own speed in the same run as the peer.
//!
//! Run with `scripts/bench.sh api` (add `--quick` for a short smoke run).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use skiff::store::{self, Endpoint, StoreConfig, TlsFiles};

const CLIENTS: usize = 32;
const WATCHERS: usize = 100;

struct Sizes {
    sequential: usize,
    per_client: usize,
    pods: usize,
    watch_events: usize,
}

const FULL: Sizes = Sizes {
    sequential: 1000,
    per_client: 200,
    pods: 10_000,
    watch_events: 200,
};
const QUICK: Sizes = Sizes {
    sequential: 100,
    per_client: 20,
    pods: 1000,
    watch_events: 20,
};

fn configmap(name: String) -> ConfigMap {
    serde_json::from_value(
        serde_json::json!({"metadata": {"name": name}, "data": {"k": "v".repeat(200)}}),
    )
    .expect("a configmap")
}

fn pod(name: String) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}]}
    }))
    .expect("a pod")
}

/// Creates `per_client` objects from each of `clients` tasks; returns the rate and latencies.
async fn creates<K, F>(
    api: &Api<K>,
    clients: usize,
    per_client: usize,
    prefix: &str,
    make: F,
) -> (f64, Vec<Duration>)
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: Fn(String) -> K + Send + Sync + 'static,
{
    let (api, make, prefix) = (api.clone(), Arc::new(make), prefix.to_string());
    common::concurrent(clients, per_client, move |c, i| {
        let (api, obj) = (api.clone(), make(format!("{prefix}-{c:02}-{i:05}")));
        async move {
            api.create(&PostParams::default(), &obj)
                .await
                .expect("create");
        }
    })
    .await
}

async fn list_ms(client: &kube::Client, query: &str) -> f64 {
    let mut times = Vec::new();
    for _ in 0..5 {
        let req = http::Request::get(format!("/api/v1/pods{query}"))
            .body(Vec::new())
            .expect("a request");
        let t = Instant::now();
        let body = client.request_text(req).await.expect("list");
        times.push(t.elapsed());
        assert!(body.len() > 1000);
    }
    times.sort();
    common::percentile(&times, 0.5)
}

async fn watch_p99(client: &kube::Client, events: usize) -> f64 {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-public");
    let mut watchers = tokio::task::JoinSet::new();
    for _ in 0..WATCHERS {
        let stream = api
            .watch(&WatchParams::default().timeout(120), "0")
            .await
            .expect("watch");
        watchers.spawn(async move {
            let mut stream = stream.boxed();
            let mut got = Vec::new();
            while got.len() < events {
                match stream.try_next().await.expect("a watch event") {
                    Some(WatchEvent::Added(cm)) => {
                        got.push((cm.metadata.name.unwrap_or_default(), Instant::now()))
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            got
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut sent = std::collections::HashMap::new();
    for i in 0..events {
        let name = format!("w-{i:05}");
        sent.insert(name.clone(), Instant::now());
        api.create(&PostParams::default(), &configmap(name))
            .await
            .expect("create");
    }
    let mut lat = Vec::new();
    while let Some(got) = watchers.join_next().await {
        for (name, at) in got.expect("a watcher") {
            lat.push(at.saturating_duration_since(sent[&name]));
        }
    }
    lat.sort();
    common::percentile(&lat, 0.99)
}

async fn store_sequential(dir: &Path, n: usize) -> f64 {
    let config = StoreConfig {
        endpoint: Endpoint::Sqlite(dir.join("peer.db")),
        tls: TlsFiles::default(),
    };
    let s = store::open(&config, &tokio_util::sync::CancellationToken::new())
        .await
        .expect("open");
    let started = Instant::now();
    for i in 0..n {
        s.create(
            &format!("/registry/configmaps/default/p-{i:05}"),
            vec![b'v'; 400],
            None,
        )
        .await
        .expect("create");
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    s.close().await.expect("close");
    rate
}

fn bench_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-api");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes = if quick { &QUICK } else { &FULL };
    let dir = bench_dir();
    let server = common::start_server(
        &dir.join("server"),
        &["--disable-scheduler", "--disable-controller-manager"],
    );
    let pid = server.child.id();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rows = runtime.block_on(async {
        std::thread::sleep(Duration::from_secs(1));
        let idle = common::rss_mb(pid);
        let kubeconfig =
            Kubeconfig::read_from(dir.join("server").join("kubeconfig.yaml")).expect("kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("config");
        let client = kube::Client::try_from(config).expect("client");
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        eprintln!("bench: creates, 1 client");
        let (seq_rate, seq) = creates(&cms, 1, sizes.sequential, "seq", configmap).await;
        eprintln!("bench: creates, {CLIENTS} clients");
        let (conc_rate, conc) = creates(&cms, CLIENTS, sizes.per_client, "conc", configmap).await;
        eprintln!("bench: storing {} pods", sizes.pods);
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        creates(&pods, CLIENTS, sizes.pods / CLIENTS + 1, "pod", pod).await;
        let stored = common::rss_mb(pid);
        eprintln!("bench: listing pods");
        let list_any = list_ms(&client, "?resourceVersion=0").await;
        let cached = common::rss_mb(pid);
        let list_consistent = list_ms(&client, "").await;
        let loaded = common::rss_mb(pid);
        eprintln!("bench: watch latency, {WATCHERS} watchers");
        let watch = watch_p99(&client, sizes.watch_events).await;
        eprintln!("bench: the datastore alone, for comparison");
        let peer = store_sequential(&dir, sizes.sequential).await;
        let n = sizes.pods;
        let rows: Vec<(String, String)> = vec![
            (
                "creates/s, 1 client (HTTPS, kube-rs)".into(),
                format!("{seq_rate:.0}"),
            ),
            (
                "create latency p50 / p99, 1 client (ms)".into(),
                format!(
                    "{:.2} / {:.2}",
                    common::percentile(&seq, 0.5),
                    common::percentile(&seq, 0.99)
                ),
            ),
            (
                format!("creates/s, {CLIENTS} clients"),
                format!("{conc_rate:.0}"),
            ),
            (
                format!("create latency p50 / p99, {CLIENTS} clients (ms)"),
                format!(
                    "{:.2} / {:.2}",
                    common::percentile(&conc, 0.5),
                    common::percentile(&conc, 0.99)
                ),
            ),
            (
                "peer: datastore creates/s in process, 1 client (SQLite)".into(),
                format!("{peer:.0}"),
            ),
            (
                "API / datastore create rate, 1 client".into(),
                format!("{:.2}×", seq_rate / peer),
            ),
            (
                format!("list {n} pods, resourceVersion=0 (ms)"),
                format!("{list_any:.1}"),
            ),
            (
                format!("list {n} pods, consistent (ms)"),
                format!("{list_consistent:.1}"),
            ),
            (
                format!("watch event latency p99, {WATCHERS} watchers (ms)"),
                format!("{watch:.2}"),
            ),
            ("server RSS, idle (MB)".into(), format!("{idle:.1}")),
            (
                format!("server RSS with {n} pods stored (MB)"),
                format!("{stored:.1}"),
            ),
            (
                "… after listing them from the watch cache (MB)".into(),
                format!("{cached:.1}"),
            ),
            (
                "… after consistent lists of them too (MB)".into(),
                format!("{loaded:.1}"),
            ),
        ];
        rows
    });
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "machine: {}{}",
        common::machine(),
        if quick { " (quick run)" } else { "" }
    );
    println!();
    println!("| workload | skiff |");
    println!("| --- | --- |");
    for (name, value) in rows {
        println!("| {name} | {value} |");
    }
}

//! The scheduler benchmark, the scheduler_perf way: a real `skiff server` (release
//! build) with N Node objects, 10,000 pods created by 32 clients over HTTPS, measured from
//! the first create to the last bind seen by a watch. The peer, in the same run, is the
//! same creates against a server without the scheduler: how fast pods can arrive at all.
//!
//! Run with `scripts/bench.sh scheduler` (add `--quick` for a short smoke run).

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, Event};

const CLIENTS: usize = 32;

fn pod(name: String) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "app", "image": "busybox",
                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    }))
    .expect("a pod")
}

/// Creates `n` objects from 32 clients; returns the seconds it took.
async fn create_all<K, F>(api: &Api<K>, n: usize, make: F) -> f64
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    K: Send + Sync + 'static,
    F: Fn(String) -> K + Send + Sync + 'static,
{
    let (api, make) = (api.clone(), Arc::new(make));
    let per_client = n.div_ceil(CLIENTS);
    let started = Instant::now();
    common::concurrent(CLIENTS, per_client, move |c, i| {
        let (api, make) = (api.clone(), make.clone());
        async move {
            let index = c * per_client + i;
            if index < n {
                let obj = make(format!("x-{index:06}"));
                api.create(&PostParams::default(), &obj)
                    .await
                    .expect("create");
            }
        }
    })
    .await;
    started.elapsed().as_secs_f64()
}

struct Run {
    nodes: usize,
    pods: usize,
    bind_rate: f64,
    create_rate: f64,
    rss_mb: f64,
}

/// One run: `nodes` nodes, `pods` pods, with or without the scheduler.
async fn run(dir: &Path, nodes: usize, pods: usize) -> Run {
    // The peer: how fast the same pods can be created with no scheduler at all.
    let peer_dir = dir.join(format!("peer-{nodes}"));
    let create_rate = {
        let _server = common::start_server(
            &peer_dir,
            &["--disable-scheduler", "--disable-controller-manager"],
        );
        let client = common::client(&peer_dir).await;
        let secs = create_all(&Api::<Pod>::namespaced(client, "default"), pods, pod).await;
        pods as f64 / secs
    };
    let run_dir = dir.join(format!("run-{nodes}"));
    let server = common::start_server(&run_dir, &["--disable-controller-manager"]);
    let client = common::client(&run_dir).await;
    create_all(&Api::<Node>::all(client.clone()), nodes, common::node).await;
    // Count binds as the watch sees them.
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let watch = tokio::spawn(async move {
        let mut bound = HashSet::new();
        let mut stream = watcher::watcher(pods_api, watcher::Config::default()).boxed();
        let mut done_tx = Some(done_tx);
        while let Some(event) = stream.next().await {
            if let Ok(Event::Apply(p) | Event::InitApply(p)) = event {
                if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                    bound.insert(p.metadata.name.unwrap_or_default());
                }
            }
            if bound.len() == pods {
                if let Some(tx) = done_tx.take() {
                    let _ = tx.send(Instant::now());
                }
                return;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let created = create_all(&Api::<Pod>::namespaced(client, "default"), pods, pod).await;
    eprintln!("bench: every pod created after {created:.2} s");
    let finished = tokio::time::timeout(Duration::from_secs(900), done_rx)
        .await
        .expect("every pod bound within 15 minutes")
        .expect("the watch reports");
    watch.abort();
    eprintln!(
        "bench: every pod bound after {:.2} s",
        finished.duration_since(started).as_secs_f64()
    );
    let rss_mb = common::rss_mb(server.child.id());
    Run {
        nodes,
        pods,
        bind_rate: pods as f64 / finished.duration_since(started).as_secs_f64(),
        create_rate,
        rss_mb,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let shapes: &[(usize, usize)] = if quick {
        &[(100, 1000)]
    } else {
        &[(1000, 10_000), (5000, 10_000)]
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-scheduler");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut runs = Vec::new();
    for &(nodes, pods) in shapes {
        eprintln!("bench: {nodes} nodes, {pods} pods");
        runs.push(runtime.block_on(run(&dir, nodes, pods)));
    }
    println!("machine: {}\n", common::machine());
    println!("| nodes | pods | pods bound/s (first create to last bind) | peer: pods created/s, no scheduler | ratio | server RSS after (MB) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in runs {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2}× | {:.1} |",
            r.nodes,
            r.pods,
            r.bind_rate,
            r.create_rate,
            r.bind_rate / r.create_rate,
            r.rss_mb
        );
    }
    if quick {
        println!("\n(quick run)");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

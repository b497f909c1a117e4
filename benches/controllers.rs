//! The controller benchmark of issue 6: a real `skiff server` (release build, scheduler
//! and controllers running) with 100 Node objects; a Deployment of 1,000 replicas is
//! created, and the time is taken until every pod exists and is bound, then (after the
//! benchmark plays the kubelet and marks every pod Running and Ready) until the
//! Deployment reports them available, which is when `kubectl rollout status` returns;
//! that is checked with the real kubectl at the end. Then the server is left idle, and
//! the writes it makes in that time are counted from the store revision: an idle cluster
//! with no kubelets should write nothing.
//!
//! Run with `scripts/bench.sh controllers` (add `--quick` for 10 nodes, 100 replicas).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const CLIENTS: usize = 32;

fn deployment(replicas: usize) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "app", "image": "busybox",
                                  "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}
    }))
    .expect("a deployment")
}

/// Polls `check` every 100 ms until it holds; returns when it did.
async fn until<F, Fut>(what: &str, mut check: F) -> Instant
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        if check().await {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 10 minutes");
}

/// The store revision now, read from a list's resourceVersion.
async fn revision(client: &kube::Client) -> u64 {
    let list = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list namespaces");
    list.metadata
        .resource_version
        .and_then(|rv| rv.parse().ok())
        .expect("a numeric resourceVersion")
}

struct Run {
    nodes: usize,
    replicas: usize,
    bound_secs: f64,
    available_secs: f64,
    rollout_status_secs: f64,
    idle_writes: u64,
    idle_secs: u64,
    rss_mb: f64,
}

async fn run(dir: &Path, nodes: usize, replicas: usize, idle_secs: u64) -> Run {
    // No kubelets renew leases here: a long grace period keeps the fake nodes Ready.
    let server = common::start_server(dir, &["--node-monitor-grace-period", "1h"]);
    let client = common::client(dir).await;
    let node_api = Api::<Node>::all(client.clone());
    common::concurrent(CLIENTS, nodes.div_ceil(CLIENTS), move |c, i| {
        let api = node_api.clone();
        async move {
            let index = c * nodes.div_ceil(CLIENTS) + i;
            if index < nodes {
                api.create(
                    &PostParams::default(),
                    &common::node(format!("node-{index:04}")),
                )
                .await
                .expect("create a node");
            }
        }
    })
    .await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    deploys
        .create(&PostParams::default(), &deployment(replicas))
        .await
        .expect("create the deployment");
    let bound = until("every pod bound", || async {
        let list = pods.list(&ListParams::default()).await.expect("list pods");
        list.items
            .iter()
            .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
            .count()
            == replicas
    })
    .await;
    // Play the kubelet: every pod Running and Ready.
    let names: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    let marked = Instant::now();
    let per_client = names.len().div_ceil(CLIENTS);
    let (api, names) = (pods.clone(), std::sync::Arc::new(names));
    common::concurrent(CLIENTS, per_client, move |c, i| {
        let (api, names) = (api.clone(), names.clone());
        async move {
            if let Some(name) = names.get(c * per_client + i) {
                let status = json!({"status": {"phase": "Running", "podIP": "10.42.0.2",
                    "conditions": [{"type": "Ready", "status": "True"},
                                   {"type": "ContainersReady", "status": "True"}]}});
                api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                    .expect("mark a pod ready");
            }
        }
    })
    .await;
    let available = until("the deployment reports every replica available", || async {
        let d = deploys.get("web").await.expect("get the deployment");
        d.status.and_then(|s| s.available_replicas) == Some(replicas as i32)
    })
    .await;
    let kubeconfig = dir.join("kubeconfig.yaml");
    let t = Instant::now();
    let status = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["rollout", "status", "deployment/web", "--timeout=60s"])
        .output()
        .expect("run kubectl");
    assert!(
        status.status.success(),
        "kubectl rollout status: {status:?}"
    );
    let rollout_status_secs = t.elapsed().as_secs_f64();
    // Idle: let the last status writes settle, then count the writes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = revision(&client).await;
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let after = revision(&client).await;
    Run {
        nodes,
        replicas,
        bound_secs: bound.duration_since(started).as_secs_f64(),
        available_secs: available.duration_since(marked).as_secs_f64(),
        rollout_status_secs,
        idle_writes: after - before,
        idle_secs,
        rss_mb: common::rss_mb(server.child.id()),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (nodes, replicas, idle) = if quick {
        (10, 100, 10)
    } else {
        (100, 1000, 60)
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-controllers");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    eprintln!("bench: {nodes} nodes, a deployment of {replicas} replicas");
    let r = runtime.block_on(run(&dir, nodes, replicas, idle));
    println!("machine: {}\n", common::machine());
    println!("| nodes | replicas | created and bound (s) | ready to available (s) | kubectl rollout status (s) | writes while idle | server RSS (MB) |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {} | {} | {:.2} | {:.2} | {:.2} | {} in {} s | {:.1} |",
        r.nodes,
        r.replicas,
        r.bound_secs,
        r.available_secs,
        r.rollout_status_secs,
        r.idle_writes,
        r.idle_secs,
        r.rss_mb
    );
    if quick {
        println!("\n(quick run)");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

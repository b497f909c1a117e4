//! Controllers working together inside a real `skiff server`, as a user sees them: a
//! Deployment deleted with kubectl takes its ReplicaSets and pods with it (deployment,
//! replicaset and garbage collector), and the pods of a node that stops renewing its
//! Lease come back on another node (node lifecycle, replicaset and scheduler). Node
//! objects and Leases stand in for kubelets; support::kubelet plays their pod part.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

mod support;
use support::kubectl::ok;
use support::kubelet::{app_pods, node_of, start_kubelet};
use support::objects::{eventually, node};
use support::Cluster;

const LIMIT: Duration = Duration::from_secs(120);

fn deployment(replicas: i32, pod_spec: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec}}
    }))
    .unwrap()
}

async fn replicasets(client: &kube::Client) -> Vec<ReplicaSet> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default()).await.unwrap().items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_deployment_removes_its_replicasets_and_pods() {
    tokio::time::timeout(LIMIT, async {
        let c = Cluster::start();
        let client = c.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        nodes
            .create(&PostParams::default(), &node("n1", "8", json!({})))
            .await
            .unwrap();
        let _kubelet = start_kubelet(client.clone(), "web");
        ok(
            &c,
            33,
            &[
                "create",
                "deployment",
                "web",
                "--image=busybox",
                "--replicas=3",
            ],
        );
        ok(
            &c,
            33,
            &["rollout", "status", "deployment/web", "--timeout=60s"],
        );
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        assert_eq!(app_pods(&pods, "web").await.len(), 3);
        assert_eq!(replicasets(&client).await.len(), 1);

        ok(&c, 33, &["delete", "deployment", "web"]);
        eventually("the replicaset and its pods are gone", || async {
            let left = pods.list(&ListParams::default()).await.unwrap().items;
            replicasets(&client).await.is_empty() && left.is_empty()
        })
        .await;
    })
    .await
    .expect("the test finished in time");
}

/// Renews the Lease of `name` every 300 ms until aborted.
fn keep_renewing(client: kube::Client, name: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
        loop {
            let patch = json!({"spec": {"renewTime": MicroTime(Timestamp::now())}});
            let _ = leases
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_node_that_stops_renewing_its_lease_come_back_on_another_node() {
    tokio::time::timeout(LIMIT, async {
        let c = Cluster::start_with(|_| vec!["--node-monitor-grace-period".into(), "2s".into()]);
        let client = c.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        for name in ["n1", "n2"] {
            nodes
                .create(&PostParams::default(), &node(name, "8", json!({})))
                .await
                .unwrap();
            let lease: Lease = serde_json::from_value(json!({"metadata": {"name": name},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                         "renewTime": MicroTime(Timestamp::now())}}))
            .unwrap();
            leases.create(&PostParams::default(), &lease).await.unwrap();
        }
        let n1 = AbortOnDrop(keep_renewing(client.clone(), "n1"));
        let _n2 = AbortOnDrop(keep_renewing(client.clone(), "n2"));
        let _kubelet = start_kubelet(client.clone(), "web");
        // Upstream's admission gives 300 s; the test shortens the toleration to 2 s.
        let spec = json!({
            "containers": [{"name": "app", "image": "busybox"}],
            "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 2}]});
        let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
        deploys
            .create(&PostParams::default(), &deployment(6, spec))
            .await
            .unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        eventually("six pods run, some of them on n1", || async {
            let live = app_pods(&pods, "web").await;
            live.len() == 6 && live.iter().any(|p| node_of(p) == Some("n1"))
        })
        .await;

        // n1's kubelet goes silent.
        n1.0.abort();
        eventually("every pod runs on n2", || async {
            let live = app_pods(&pods, "web").await;
            live.len() == 6 && live.iter().all(|p| node_of(p) == Some("n2"))
        })
        .await;
        let n1 = nodes.get("n1").await.unwrap();
        let taints = n1.spec.and_then(|s| s.taints).unwrap_or_default();
        assert!(
            taints
                .iter()
                .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute"),
            "{taints:?}"
        );
    })
    .await
    .expect("the test finished in time");
}

/// Aborts a task when dropped, so a failing test leaves nothing running.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

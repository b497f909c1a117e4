//! A stand-in for the kubelet in tests of the workload controllers: it marks bound pods
//! running and ready, finishes graceful deletions at once, and records the most pods up
//! and the fewest ready at every step it sees, to check a rollout's budget.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use super::objects::{node, set_pod_running};

/// Whether the pod has not terminated and is not being deleted.
pub fn active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    p.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// Whether the pod's Ready condition is True.
pub fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The node the pod is bound to.
pub fn node_of(p: &Pod) -> Option<&str> {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

/// What the fake kubelet saw of the pods it looks after.
#[derive(Debug, Default)]
pub struct Seen {
    /// Whether to record the two figures below.
    watching: bool,
    /// The most pods not being deleted at once.
    max_active: usize,
    /// The fewest ready pods not being deleted at once.
    min_ready: usize,
}

/// Plays the kubelet for the pods labelled `app=<app>` until dropped.
pub struct Kubelet {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts playing the kubelet for the pods labelled `app=<app>` in `default`.
pub fn start_kubelet(client: kube::Client, app: &str) -> Kubelet {
    start_kubelet_for_image(client, app, None)
}

/// As [`start_kubelet`], but only pods whose first container runs `image` (when given)
/// ever become ready: the others stay pending, as if their image could not be pulled.
pub fn start_kubelet_for_image(client: kube::Client, app: &str, image: Option<&str>) -> Kubelet {
    let image = image.map(str::to_string);
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (selector, record) = (format!("app={app}"), seen.clone());
    let task = tokio::spawn(async move {
        let mut ip = 0u32;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await else {
                continue;
            };
            let live: Vec<&Pod> = list.items.iter().filter(|p| active(p)).collect();
            {
                let mut s = record.lock().unwrap();
                if s.watching {
                    let ready = live.iter().filter(|p| ready(p)).count();
                    s.max_active = s.max_active.max(live.len());
                    s.min_ready = s.min_ready.min(ready);
                }
            }
            for p in &list.items {
                let name = p.name_any();
                if p.metadata.deletion_timestamp.is_some() {
                    let _ = pods
                        .delete(&name, &DeleteParams::default().grace_period(0))
                        .await;
                } else if node_of(p).is_some() && !ready(p) && runs(p, image.as_deref()) {
                    ip += 1;
                    let (pods, ip) = (pods.clone(), format!("10.42.{}.{}", ip / 250, ip % 250 + 2));
                    // Its own task: a pod deleted meanwhile only ends that task.
                    let _ =
                        tokio::spawn(async move { set_pod_running(&pods, &name, &ip, true).await })
                            .await;
                }
            }
        }
    });
    Kubelet { seen, task }
}

impl Kubelet {
    /// Starts recording the budget figures, from `ready` ready pods.
    pub fn watch(&self, ready: usize) {
        let mut s = self.seen.lock().unwrap();
        *s = Seen {
            watching: true,
            max_active: 0,
            min_ready: ready,
        };
    }

    /// Stops recording; the figures seen.
    pub fn stop(&self) -> (usize, usize) {
        let mut s = self.seen.lock().unwrap();
        s.watching = false;
        (s.max_active, s.min_ready)
    }
}

fn runs(p: &Pod, image: Option<&str>) -> bool {
    let first = p
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.as_deref());
    image.is_none_or(|i| first == Some(i))
}

/// Two nodes, n1 and n2, with 8 cores each.
pub async fn nodes(client: &kube::Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    for n in ["n1", "n2"] {
        nodes
            .create(&PostParams::default(), &node(n, "8", json!({})))
            .await
            .unwrap();
    }
}

/// The active pods labelled `app=<app>`.
pub async fn app_pods(pods: &Api<Pod>, app: &str) -> Vec<Pod> {
    let list = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap();
    list.items.into_iter().filter(active).collect()
}

/// The messages of the events with `reason` in `default`.
pub async fn events_with(client: &kube::Client, reason: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.message)
        .collect()
}

//! The pod garbage collector, as kube-controller-manager's `pod-garbage-collector`: every
//! 20 s it force-deletes pods bound to nodes that no longer exist (after a node has been
//! missing for the quarantine, and a fresh read confirms it), terminated pods beyond
//! `--terminated-pod-gc-threshold` (evicted, then oldest first), terminating pods on
//! NotReady nodes tainted `node.kubernetes.io/out-of-service`, and terminating pods never
//! scheduled. A pod not yet finished is marked Failed before it goes, as upstream.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

use super::{Context, Error, Result};

/// The out-of-service taint.
pub const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// The controller's settings.
#[derive(Clone, Debug)]
pub struct PodGc {
    /// How often it looks (upstream: 20 s).
    pub period: Duration,
    /// How long a node must be missing before its pods go (upstream: 40 s).
    pub quarantine: Duration,
    /// Terminated pods kept at most; 0 keeps them all (upstream: 12500).
    pub terminated_threshold: usize,
}

impl Default for PodGc {
    fn default() -> Self {
        PodGc {
            period: Duration::from_secs(20),
            quarantine: Duration::from_secs(40),
            terminated_threshold: 12500,
        }
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

/// Finished: neither Pending, Running nor Unknown.
pub fn is_terminated(pod: &Pod) -> bool {
    !matches!(phase(pod), "Pending" | "Running" | "Unknown")
}

fn is_evicted(pod: &Pod) -> bool {
    phase(pod) == "Failed"
        && pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

/// The terminated pods to delete so that at most `threshold` remain: evicted ones first,
/// then the oldest, names breaking ties.
pub fn terminated_to_delete(pods: &[Arc<Pod>], threshold: usize) -> Vec<Arc<Pod>> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut done: Vec<Arc<Pod>> = pods.iter().filter(|p| is_terminated(p)).cloned().collect();
    let excess = done.len().saturating_sub(threshold);
    if excess == 0 {
        return Vec::new();
    }
    done.sort_by(|a, b| {
        is_evicted(b)
            .cmp(&is_evicted(a))
            .then_with(|| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    done.truncate(excess);
    done
}

fn node_ready(node: &Node) -> bool {
    node.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Terminating pods on NotReady nodes with the out-of-service taint.
pub fn terminating_out_of_service(pods: &[Arc<Pod>], nodes: &HashMap<String, Arc<Node>>) -> Vec<Arc<Pod>> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .filter(|p| {
            nodes.get(node_name(p)).is_some_and(|n| {
                let tainted = n
                    .spec
                    .iter()
                    .flat_map(|s| s.taints.iter().flatten())
                    .any(|t| t.key == OUT_OF_SERVICE);
                !node_ready(n) && tainted
            })
        })
        .cloned()
        .collect()
}

/// Terminating pods never bound to a node.
pub fn unscheduled_terminating(pods: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && node_name(p).is_empty())
        .cloned()
        .collect()
}

/// Notes nodes pods are bound to that do not exist (first seen missing at `now`), and
/// returns those missing for at least `quarantine`, taken out of the quarantine to be
/// checked once more through the API.
pub fn quarantine_step(
    pods: &[Arc<Pod>],
    nodes: &HashSet<String>,
    quarantined: &mut HashMap<String, Instant>,
    now: Instant,
    quarantine: Duration,
) -> Vec<String> {
    for pod in pods {
        let node = node_name(pod);
        if !node.is_empty() && !nodes.contains(node) {
            quarantined.entry(node.to_string()).or_insert(now);
        }
    }
    let mut due: Vec<String> = quarantined
        .iter()
        .filter(|(_, since)| now.duration_since(**since) >= quarantine)
        .map(|(n, _)| n.clone())
        .collect();
    due.sort();
    for n in &due {
        quarantined.remove(n);
    }
    due.retain(|n| !nodes.contains(n));
    due
}

/// The condition a pod whose node is gone gets.
pub fn node_gone_condition() -> PodCondition {
    PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByPodGC".into()),
        message: Some("PodGC: node no longer exists".into()),
        ..PodCondition::default()
    }
}

impl PodGc {
    /// Runs until the server stops.
    pub async fn run(self, ctx: Arc<Context>) -> Result<()> {
        let pods = watch_into_store(Api::<Pod>::all(ctx.client.clone()));
        let nodes = watch_into_store(Api::<Node>::all(ctx.client.clone()));
        let (pods, nodes) = (pods.await?, nodes.await?);
        let mut quarantined = HashMap::new();
        let mut tick = tokio::time::interval(self.period);
        loop {
            tick.tick().await;
            self.gc(&ctx, &pods.state(), &nodes.state(), &mut quarantined).await;
        }
    }

    async fn gc(
        &self,
        ctx: &Context,
        pods: &[Arc<Pod>],
        nodes: &[Arc<Node>],
        quarantined: &mut HashMap<String, Instant>,
    ) {
        let by_name: HashMap<String, Arc<Node>> = nodes
            .iter()
            .filter_map(|n| Some((n.metadata.name.clone()?, n.clone())))
            .collect();
        let mut doomed: Vec<(Arc<Pod>, Option<PodCondition>)> = Vec::new();
        let finished = terminated_to_delete(pods, self.terminated_threshold);
        if !finished.is_empty() {
            tracing::info!(pods = finished.len(), "Garbage collecting pods.");
        }
        doomed.extend(finished.into_iter().map(|p| (p, None)));
        doomed.extend(terminating_out_of_service(pods, &by_name).into_iter().map(|p| (p, None)));
        let names: HashSet<String> = by_name.keys().cloned().collect();
        let due = quarantine_step(pods, &names, quarantined, Instant::now(), self.quarantine);
        let nodes_api: Api<Node> = Api::all(ctx.client.clone());
        for node in due {
            match nodes_api.get_opt(&node).await {
                Ok(None) => {
                    let orphans = pods.iter().filter(|p| node_name(p) == node).cloned();
                    doomed.extend(orphans.map(|p| (p, Some(node_gone_condition()))));
                }
                Ok(Some(_)) => {}
                Err(err) => tracing::warn!(node = %node, error = %err, "Error while getting node."),
            }
        }
        doomed.extend(unscheduled_terminating(pods).into_iter().map(|p| (p, None)));
        let mut seen = HashSet::new();
        for (pod, condition) in doomed {
            if !seen.insert(pod.metadata.uid.clone()) {
                continue;
            }
            if let Err(err) = mark_failed_and_delete(ctx, &pod, condition).await {
                tracing::warn!(pod = ?pod.metadata.name, error = %err, "PodGC could not delete a pod.");
            }
        }
    }
}

/// A reflector of `api`, ready once its first list is in.
async fn watch_into_store<K>(api: Api<K>) -> Result<Store<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher::watcher(api, watcher::Config::default()))
        .default_backoff()
        .for_each(|_| async {});
    tokio::spawn(stream);
    store
        .wait_until_ready()
        .await
        .map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(store)
}

/// Marks a pod that has not finished Failed (with `condition`), then deletes it at once.
async fn mark_failed_and_delete(ctx: &Context, pod: &Pod, condition: Option<PodCondition>) -> Result<()> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    tracing::info!(pod = %format!("{ns}/{name}"), "PodGC is force deleting Pod.");
    if !matches!(phase(pod), "Succeeded" | "Failed") {
        let mut conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        if let Some(mut c) = condition {
            c.last_transition_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
            conditions.retain(|old| old.type_ != c.type_);
            conditions.push(c);
        }
        let patch = json!({"status": {"phase": "Failed", "conditions": conditions}});
        match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

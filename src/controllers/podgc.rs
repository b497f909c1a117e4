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
            .then_with(|| {
                a.metadata
                    .creation_timestamp
                    .cmp(&b.metadata.creation_timestamp)
            })
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
pub fn terminating_out_of_service(
    pods: &[Arc<Pod>],
    nodes: &HashMap<String, Arc<Node>>,
) -> Vec<Arc<Pod>> {
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

/// Runs the pod GC with upstream's period, quarantine and threshold.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    PodGc::default().run(ctx).await
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
            self.gc(&ctx, &pods.state(), &nodes.state(), &mut quarantined)
                .await;
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
        doomed.extend(
            terminating_out_of_service(pods, &by_name)
                .into_iter()
                .map(|p| (p, None)),
        );
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
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
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
async fn mark_failed_and_delete(
    ctx: &Context,
    pod: &Pod,
    condition: Option<PodCondition>,
) -> Result<()> {
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
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, phase: &str, created: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": name, "creationTimestamp": created},
                "spec": {"nodeName": node, "containers": []},
                "status": {"phase": phase}}))
            .unwrap(),
        )
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn terminated_pods_beyond_the_threshold_go_evicted_then_oldest_first() {
        let mut evicted = (*pod("evicted", "n1", "Failed", "2026-01-03T00:00:00Z")).clone();
        evicted.status.as_mut().unwrap().reason = Some("Evicted".into());
        let pods = vec![
            pod("new", "n1", "Succeeded", "2026-01-02T00:00:00Z"),
            pod("old", "n1", "Failed", "2026-01-01T00:00:00Z"),
            pod("running", "n1", "Running", "2025-01-01T00:00:00Z"),
            Arc::new(evicted),
        ];
        assert_eq!(
            names(&terminated_to_delete(&pods, 1)),
            vec!["evicted", "old"]
        );
        assert!(terminated_to_delete(&pods, 3).is_empty());
        assert!(terminated_to_delete(&pods, 0).is_empty(), "0 turns it off");
    }

    #[test]
    fn a_missing_node_is_quarantined_before_its_pods_go() {
        let pods = vec![
            pod("a", "gone", "Running", "2026-01-01T00:00:00Z"),
            pod("b", "n1", "Running", "2026-01-01T00:00:00Z"),
        ];
        let nodes = HashSet::from(["n1".to_string()]);
        let mut q = HashMap::new();
        let t0 = Instant::now();
        let quarantine = Duration::from_secs(40);
        assert!(quarantine_step(&pods, &nodes, &mut q, t0, quarantine).is_empty());
        assert!(quarantine_step(
            &pods,
            &nodes,
            &mut q,
            t0 + Duration::from_secs(20),
            quarantine
        )
        .is_empty());
        assert_eq!(
            quarantine_step(&pods, &nodes, &mut q, t0 + quarantine, quarantine),
            vec!["gone"]
        );
        // A node that comes back within the quarantine is not reported.
        let back = HashSet::from(["n1".to_string(), "gone".to_string()]);
        let later = t0 + Duration::from_secs(100);
        quarantine_step(&pods, &nodes, &mut q, later, quarantine);
        assert!(quarantine_step(&pods, &back, &mut q, later + quarantine, quarantine).is_empty());
    }

    #[test]
    fn terminating_pods_go_from_out_of_service_nodes_and_when_never_scheduled() {
        let mut going = (*pod("a", "n1", "Running", "2026-01-01T00:00:00Z")).clone();
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        let mut unscheduled = going.clone();
        unscheduled.metadata.name = Some("u".into());
        unscheduled.spec.as_mut().unwrap().node_name = None;
        let pods = vec![Arc::new(going), Arc::new(unscheduled)];
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"},
            "spec": {"taints": [{"key": OUT_OF_SERVICE, "effect": "NoExecute"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]}}))
        .unwrap();
        let mut nodes = HashMap::from([("n1".to_string(), Arc::new(node.clone()))]);
        assert_eq!(names(&terminating_out_of_service(&pods, &nodes)), vec!["a"]);
        let mut ready = node;
        ready.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "True".into();
        nodes.insert("n1".into(), Arc::new(ready));
        assert!(terminating_out_of_service(&pods, &nodes).is_empty());
        assert_eq!(names(&unscheduled_terminating(&pods)), vec!["u"]);
    }
}

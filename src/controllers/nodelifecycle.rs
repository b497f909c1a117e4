//! Node lifecycle, as upstream's `pkg/controller/nodelifecycle` and the taint-eviction
//! controller: a node not heard from for the grace period (its Lease in
//! `kube-node-lease` not renewed and its status not posted) gets its conditions set to
//! Unknown; nodes get the `NoExecute` taints `node.kubernetes.io/unreachable` (Ready
//! Unknown) or `node.kubernetes.io/not-ready` (Ready False) and the matching `NoSchedule`
//! condition taints, removed when the node is well again; pods that do not tolerate a
//! `NoExecute` taint are deleted once their tolerationSeconds have passed; pods on an
//! unreachable node are marked not ready.
//!
//! What a node and its pods need is decided by pure functions ([`stale_conditions`],
//! [`desired_taints`], [`toleration_time`]); the task keeps the times it observed (as
//! upstream, a node's age is judged by when this controller saw a heartbeat change, not
//! by the node's clock) and writes only differences.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::ResourceExt;
use serde_json::json;
use tokio::time::Instant;

use super::dirty::{self, Mark};
use super::{Context, Result};
use crate::scheduler::filters::taint_toleration::tolerates;

/// The taint of a node whose Ready condition is Unknown.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint of a node whose Ready condition is False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The conditions set to Unknown with Ready (upstream's `remainingNodeConditionTypes`).
const OTHER_CONDITIONS: [&str; 3] = ["MemoryPressure", "DiskPressure", "PIDPressure"];
/// `NoSchedule` taints for conditions (upstream's `nodeConditionToTaintKeyStatusMap`).
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", NOT_READY),
    ("Ready", "Unknown", UNREACHABLE),
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
];

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The node's Ready status ("True", "False", "Unknown"), if it has the condition.
pub fn ready_status(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

/// The conditions of a node not heard from for the grace period: Ready and the pressure
/// conditions Unknown (added if missing), as upstream's `tryUpdateNodeHealth`; `None`
/// when they already are.
pub fn stale_conditions(node: &Node, now: &Time) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for type_ in std::iter::once("Ready").chain(OTHER_CONDITIONS) {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(now.clone());
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(now.clone()),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

fn same_taint(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect && a.value == b.value
}

fn managed(taint: &Taint) -> bool {
    let key = taint.key.as_str();
    (taint.effect == "NoExecute" && (key == UNREACHABLE || key == NOT_READY))
        || (taint.effect == "NoSchedule"
            && (CONDITION_TAINTS.iter().any(|(_, _, k)| *k == key)
                || key == "node.kubernetes.io/unschedulable"))
}

/// The node's taints as this controller wants them: the others kept as they are, the
/// `NoExecute` Ready taint and the `NoSchedule` condition taints (and
/// `node.kubernetes.io/unschedulable` for a cordoned node) as its status says. `None`
/// when nothing changes; taints kept keep their timeAdded.
pub fn desired_taints(node: &Node, now: &Time) -> Option<Vec<Taint>> {
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let taint = |key: &str, effect: &str, time: bool| Taint {
        key: key.into(),
        effect: effect.into(),
        value: None,
        time_added: time.then(|| now.clone()),
    };
    let mut wanted = Vec::new();
    match ready_status(node) {
        Some("False") => wanted.push(taint(NOT_READY, "NoExecute", true)),
        Some("Unknown") => wanted.push(taint(UNREACHABLE, "NoExecute", true)),
        _ => {}
    }
    for (type_, status, key) in CONDITION_TAINTS {
        if condition(node, type_).is_some_and(|c| c.status == status) {
            wanted.push(taint(key, "NoSchedule", false));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.push(taint(
            "node.kubernetes.io/unschedulable",
            "NoSchedule",
            false,
        ));
    }
    let kept: Vec<&Taint> = current.iter().filter(|t| managed(t)).collect();
    let same =
        kept.len() == wanted.len() && wanted.iter().all(|w| kept.iter().any(|k| same_taint(k, w)));
    if same {
        return None;
    }
    let mut taints: Vec<Taint> = current.iter().filter(|t| !managed(t)).cloned().collect();
    for w in wanted {
        let old = current.iter().find(|c| same_taint(c, &w));
        taints.push(old.cloned().unwrap_or(w));
    }
    Some(taints)
}

/// How long a pod may stay on a node with these `NoExecute` taints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tolerance {
    /// It tolerates them all for ever (or there are none).
    Forever,
    /// It tolerates them all for this long (the least tolerationSeconds).
    For(Duration),
    /// Some taint is not tolerated: it goes now.
    None,
}

/// Upstream's `GetMatchingTolerations` and `getMinTolerationTime` for the node's
/// `NoExecute` taints.
pub fn toleration_time(taints: &[Taint], tolerations: &[Toleration]) -> Tolerance {
    let mut least: Option<Duration> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Tolerance::None;
        }
        for t in matching {
            if let Some(secs) = t.toleration_seconds {
                let d = Duration::from_secs(secs.max(0) as u64);
                least = Some(least.map_or(d, |l| l.min(d)));
            }
        }
    }
    least.map_or(Tolerance::Forever, Tolerance::For)
}

/// The last heartbeat seen of a node, and when this controller saw it change.
#[derive(Debug, Clone)]
struct Health {
    heartbeat: Option<Time>,
    renew: Option<String>,
    probed: Instant,
}

/// A pod's deletion, scheduled: when its countdown started.
#[derive(Debug, Clone)]
struct Eviction {
    created: Instant,
}

/// The controller's observations between passes.
#[derive(Default)]
struct State {
    health: HashMap<String, Health>,
    evictions: HashMap<String, Eviction>,
}

struct Stores {
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
}

/// Runs the controller until it fails.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let client = ctx.client.clone();
    let (nodes, node_writer) = reflector::store::<Node>();
    let (leases, lease_writer) = reflector::store::<Lease>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let grace = ctx.config.node_monitor_grace_period;
    // Upstream checks every 5 s with a 40 s grace; shorter graces are checked more often.
    let period = (grace / 8).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let ticks = futures::stream::unfold((), move |()| async move {
        tokio::time::sleep(period).await;
        Some((Mark::All, ()))
    });
    let marks = futures::stream::select_all([
        dirty::marks(Api::<Node>::all(client.clone()), node_writer, 0, |_| None),
        dirty::marks(
            Api::namespaced(client.clone(), LEASE_NAMESPACE),
            lease_writer,
            1,
            |_| None,
        ),
        dirty::marks(Api::<Pod>::all(client.clone()), pod_writer, 2, |_| None),
        ticks.boxed(),
    ]);
    let stores = Arc::new(Stores {
        nodes,
        leases,
        pods,
    });
    let state = Arc::new(tokio::sync::Mutex::new(State::default()));
    // Every mark means one pass over all nodes: the key is a constant.
    dirty::drive(
        marks.boxed(),
        3,
        || vec![String::new()],
        |_| {
            let (ctx, stores, state) = (ctx.clone(), stores.clone(), state.clone());
            async move { pass(&ctx, &stores, &mut *state.lock().await, grace).await }
        },
    )
    .await
}

/// One look at every node and the pods on them.
async fn pass(ctx: &Context, stores: &Stores, state: &mut State, grace: Duration) -> Result<()> {
    let now = Instant::now();
    let now_time = Time(Timestamp::now());
    let node_api: Api<Node> = Api::all(ctx.client.clone());
    let mut first_error = None;
    let mut effective: BTreeMap<String, Node> = BTreeMap::new();
    let nodes = stores.nodes.state();
    state
        .health
        .retain(|name, _| nodes.iter().any(|n| &n.name_any() == name));
    for node in &nodes {
        let name = node.name_any();
        let mut node = node.as_ref().clone();
        let lease = stores
            .leases
            .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE));
        let heartbeat = condition(&node, "Ready").and_then(|c| c.last_heartbeat_time.clone());
        let renew = lease.as_ref().and_then(|l| {
            l.spec
                .as_ref()?
                .renew_time
                .as_ref()
                .map(|t| t.0.to_string())
        });
        let health = state.health.entry(name.clone()).or_insert(Health {
            heartbeat: heartbeat.clone(),
            renew: renew.clone(),
            probed: now,
        });
        if health.heartbeat != heartbeat || health.renew != renew {
            *health = Health {
                heartbeat,
                renew,
                probed: now,
            };
        }
        if now.duration_since(health.probed) > grace {
            if let Some(conditions) = stale_conditions(&node, &now_time) {
                let was_ready = ready_status(&node) == Some("True");
                tracing::info!(node = %name, "Node stopped posting status; marking it Unknown.");
                let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version},
                                   "status": {"conditions": conditions}});
                match node_api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(updated) => node = updated,
                    Err(err) => {
                        first_error = first_error.or(Some(err));
                        continue;
                    }
                }
                if was_ready {
                    ctx.events.record(
                        &node,
                        "Normal",
                        "NodeNotReady",
                        format!("Node {name} status is now: NodeNotReady"),
                    );
                }
            }
        }
        if let Some(taints) = desired_taints(&node, &now_time) {
            tracing::info!(node = %name, ready = ?ready_status(&node), "Updating the node's condition taints.");
            let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version},
                               "spec": {"taints": taints}});
            match node_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(updated) => node = updated,
                Err(err) => first_error = first_error.or(Some(err)),
            }
        }
        effective.insert(name, node);
    }
    if let Err(err) = handle_pods(ctx, stores, state, &effective, now).await {
        first_error = first_error.or(Some(err));
    }
    first_error.map_or(Ok(()), |e| Err(e.into()))
}

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

/// Evicts the pods that do not tolerate their node's `NoExecute` taints any longer,
/// and marks the pods of unreachable nodes not ready.
async fn handle_pods(
    ctx: &Context,
    stores: &Stores,
    state: &mut State,
    nodes: &BTreeMap<String, Node>,
    now: Instant,
) -> Result<(), kube::Error> {
    let mut first_error = None;
    let mut seen = HashSet::new();
    for pod in stores.pods.state() {
        let Some(node) = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .and_then(|n| nodes.get(n))
        else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let key = pod_key(&pod);
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        let at = match toleration_time(&taints, &tolerations) {
            Tolerance::Forever => None,
            Tolerance::None => Some(now),
            Tolerance::For(d) => {
                let created = state.evictions.get(&key).map_or(now, |e| e.created);
                Some(created + d)
            }
        };
        if let Some(at) = at {
            seen.insert(key.clone());
            let created = state.evictions.get(&key).map_or(now, |e| e.created);
            state.evictions.insert(key.clone(), Eviction { created });
            if at <= now {
                if let Err(err) = evict(ctx, &pod).await {
                    first_error = first_error.or(Some(err));
                }
            }
        }
        if ready_status(node) == Some("Unknown") {
            if let Err(err) = mark_not_ready(ctx, &pod).await {
                first_error = first_error.or(Some(err));
            }
        }
    }
    let cancelled: Vec<String> = state
        .evictions
        .keys()
        .filter(|k| !seen.contains(*k))
        .cloned()
        .collect();
    for key in cancelled {
        state.evictions.remove(&key);
        if let Some((ns, name)) = key.split_once('/') {
            let pod = stores.pods.get(&ObjectRef::new(name).within(ns));
            // A pod deleted (by this controller or anyone) is no cancelled eviction.
            if let Some(pod) = pod.filter(|p| p.metadata.deletion_timestamp.is_none()) {
                ctx.events.record(
                    pod.as_ref(),
                    "Normal",
                    "TaintManagerEviction",
                    format!("Cancelling deletion of Pod {key}"),
                );
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Deletes a pod for a taint it no longer tolerates, with the DisruptionTarget condition
/// and the event upstream writes.
async fn evict(ctx: &Context, pod: &Pod) -> Result<(), kube::Error> {
    let key = pod_key(pod);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    tracing::info!(pod = %key, "Deleting a pod that does not tolerate its node's taints.");
    ctx.events.record(
        pod,
        "Normal",
        "TaintManagerEviction",
        format!("Marking for deletion Pod {key}"),
    );
    let mut conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if !conditions.iter().any(|c| c.type_ == "DisruptionTarget") {
        conditions.push(k8s_openapi::api::core::v1::PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("DeletionByTaintManager".into()),
            message: Some("Taint manager: deleting due to NoExecute taint".into()),
            last_transition_time: Some(Time(Timestamp::now())),
            ..Default::default()
        });
        let patch = json!({"status": {"conditions": conditions}});
        // The deletion matters; a pod that changed meanwhile goes without the condition.
        match api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(err) => return Err(err),
        }
    }
    match api.delete(&pod.name_any(), &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(err) => Err(err),
    }
}

/// Upstream's `MarkPodsNotReady`: a pod of an unreachable node is not Ready.
async fn mark_not_ready(ctx: &Context, pod: &Pod) -> Result<(), kube::Error> {
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if !conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
    {
        return Ok(());
    }
    let conditions: Vec<_> = conditions
        .into_iter()
        .map(|mut c| {
            if c.type_ == "Ready" {
                c.status = "False".into();
                c.last_transition_time = Some(Time(Timestamp::now()));
            }
            c
        })
        .collect();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"resourceVersion": pod.metadata.resource_version},
                       "status": {"conditions": conditions}});
    match api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {
            ctx.events
                .record(pod, "Warning", "NodeNotReady", "Node is not ready".into());
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
#[path = "nodelifecycle/tests.rs"]
mod tests;

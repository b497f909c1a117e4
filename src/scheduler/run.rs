//! The scheduler as a task of `skiff server`. It sees the cluster only through the
//! Kubernetes API (kube-rs over the in-process transport): it watches Nodes and Pods,
//! keeps a [`Snapshot`], and for each pending pod decides, binds through `pods/binding`
//! and records an Event, or marks the pod unschedulable and waits for a change.
//!
//! Its own bindings count in the snapshot before the watch confirms them (assumed pods,
//! as upstream), so two pods never go into the same last slot; a failed binding is
//! undone there and retried with backoff.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::queue::{Key, Queue};
use super::{
    is_schedulable_candidate, pod_priority, schedule_sampled, Decision, FitError, NodeSampling,
    Snapshot,
};
use crate::k8s::events::EventSink;
use crate::k8s::meta::now_rfc3339;

/// Bindings in flight at once.
const MAX_BINDINGS: usize = 64;

/// The scheduler task.
pub struct Scheduler {
    client: kube::Client,
}

/// What a binding task reports.
enum Outcome {
    Bound {
        key: Key,
        node: String,
        pod: Arc<Pod>,
    },
    Failed {
        key: Key,
        gone: bool,
        error: String,
    },
}

fn key_of(pod: &Pod) -> Key {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// What the scheduler knows between events.
struct State {
    snapshot: Snapshot,
    queue: Queue,
    /// Pending pods by key, as last seen.
    pending: HashMap<Key, Arc<Pod>>,
    /// Bound pods by key, so a relist can tell which went.
    bound: HashMap<Key, String>,
    /// Bound pods whose node the snapshot does not have yet, by node.
    waiting_for_node: HashMap<String, Vec<Arc<Pod>>>,
    /// Pods being bound.
    in_flight: HashSet<Key>,
    /// The last unschedulable message of each pod, so a repeat writes nothing.
    last_failure: HashMap<Key, String>,
    /// Keys seen during a relist, until it is done.
    relist_pods: Option<HashSet<Key>>,
    relist_nodes: Option<HashSet<String>>,
    /// Where the last cycle stopped looking, on large clusters.
    sampling: NodeSampling,
}

impl State {
    fn new() -> Self {
        State {
            snapshot: Snapshot::new(Vec::<Node>::new(), Vec::<Pod>::new()),
            queue: Queue::default(),
            pending: HashMap::new(),
            bound: HashMap::new(),
            waiting_for_node: HashMap::new(),
            in_flight: HashSet::new(),
            last_failure: HashMap::new(),
            relist_pods: None,
            relist_nodes: None,
            sampling: NodeSampling::adaptive(),
        }
    }

    fn pod_seen(&mut self, pod: Pod, now: Instant) {
        let key = key_of(&pod);
        tracing::trace!(pod = %key, node = ?node_of(&pod), "Pod seen.");
        if let Some(seen) = self.relist_pods.as_mut() {
            seen.insert(key.clone());
        }
        if let Some(node) = node_of(&pod).map(str::to_string) {
            self.queue.remove(&key);
            self.pending.remove(&key);
            self.last_failure.remove(&key);
            self.bound.insert(key, node.clone());
            let pod = Arc::new(pod);
            if !self.snapshot.add_pod(pod.clone()) && self.snapshot.node(&node).is_none() {
                self.waiting_for_node.entry(node).or_default().push(pod);
            }
        } else if is_schedulable_candidate(&pod) {
            self.queue.add(&key, pod_priority(&pod), now);
            self.pending.insert(key, Arc::new(pod));
        } else {
            self.pod_gone(&key, now);
        }
    }

    fn pod_gone(&mut self, key: &str, now: Instant) {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        self.queue.remove(key);
        self.pending.remove(key);
        self.last_failure.remove(key);
        if self.bound.remove(key).is_some() && self.snapshot.remove_pod(ns, name) {
            // Room was freed: pods that fit nowhere may fit now.
            self.queue.cluster_changed(now);
        }
    }

    fn node_seen(&mut self, node: Node, now: Instant) {
        let name = node.metadata.name.clone().unwrap_or_default();
        tracing::trace!(node = %name, "Node seen.");
        if let Some(seen) = self.relist_nodes.as_mut() {
            seen.insert(name.clone());
        }
        self.snapshot.set_node(node);
        for pod in self.waiting_for_node.remove(&name).unwrap_or_default() {
            self.snapshot.add_pod(pod);
        }
        self.queue.cluster_changed(now);
    }

    fn node_gone(&mut self, name: &str) {
        self.snapshot.remove_node(name);
        self.waiting_for_node.remove(name);
    }

    fn pods_relisted(&mut self, now: Instant) {
        let Some(seen) = self.relist_pods.take() else {
            return;
        };
        let gone: Vec<Key> = self
            .pending
            .keys()
            .chain(self.bound.keys())
            .filter(|k| !seen.contains(*k) && !self.in_flight.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.pod_gone(&key, now);
        }
    }

    fn nodes_relisted(&mut self) {
        let Some(seen) = self.relist_nodes.take() else {
            return;
        };
        let gone: Vec<String> = self
            .snapshot
            .nodes()
            .iter()
            .filter_map(|n| n.node.metadata.name.clone())
            .filter(|n| !seen.contains(n))
            .collect();
        for name in gone {
            self.node_gone(&name);
        }
    }
}

impl Scheduler {
    /// A scheduler that reaches the cluster through `client`.
    pub fn new(client: kube::Client) -> Self {
        Scheduler { client }
    }

    /// Schedules until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let client = self.client;
        let mut nodes =
            watcher::watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
                .default_backoff()
                .boxed();
        let mut pods =
            watcher::watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
                .default_backoff()
                .boxed();
        let (tx, mut outcomes) = mpsc::unbounded_channel();
        let events = EventSink::start(client.clone(), super::DEFAULT_SCHEDULER, shutdown.clone());
        let binds = Arc::new(Semaphore::new(MAX_BINDINGS));
        let mut state = State::new();
        let mut rng = SmallRng::from_os_rng();
        tracing::info!("Scheduler started.");
        loop {
            let now = Instant::now();
            let ready = state.queue.has_ready(now);
            let wake = state
                .queue
                .next_ready()
                .unwrap_or(now + Duration::from_secs(3600));
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                Some(event) = nodes.next() => match event {
                    Ok(Event::Init) => state.relist_nodes = Some(HashSet::new()),
                    Ok(Event::InitApply(node) | Event::Apply(node)) => state.node_seen(node, now),
                    Ok(Event::InitDone) => state.nodes_relisted(),
                    Ok(Event::Delete(node)) => state.node_gone(node.metadata.name.as_deref().unwrap_or_default()),
                    Err(err) => tracing::warn!(error = %err, "Watching nodes failed; retrying."),
                },
                Some(event) = pods.next() => match event {
                    Ok(Event::Init) => state.relist_pods = Some(HashSet::new()),
                    Ok(Event::InitApply(pod) | Event::Apply(pod)) => state.pod_seen(pod, now),
                    Ok(Event::InitDone) => state.pods_relisted(now),
                    Ok(Event::Delete(pod)) => state.pod_gone(&key_of(&pod), now),
                    Err(err) => tracing::warn!(error = %err, "Watching pods failed; retrying."),
                },
                Some(outcome) = outcomes.recv() => settle(&mut state, outcome, &events, now),
                _ = tokio::time::sleep_until(wake.into()), if !ready => {}
                _ = std::future::ready(()), if ready => {
                    schedule_one(&mut state, &client, &tx, &binds, &events, &mut rng, now).await;
                }
            }
        }
    }
}

/// Takes the next pod from the queue and decides for it.
async fn schedule_one(
    state: &mut State,
    client: &kube::Client,
    tx: &mpsc::UnboundedSender<Outcome>,
    binds: &Arc<Semaphore>,
    events: &EventSink,
    rng: &mut SmallRng,
    now: Instant,
) {
    let Some(key) = state.queue.pop(now) else {
        return;
    };
    let Some(pod) = state.pending.get(&key).cloned() else {
        state.queue.remove(&key);
        return;
    };
    let decision = schedule_sampled(
        &pod,
        &state.snapshot,
        rng,
        pod_priority,
        &mut state.sampling,
    );
    match decision {
        Decision::Bind { node } => {
            state.snapshot.assume(&pod, &node);
            state.in_flight.insert(key.clone());
            // Waits for a slot, so a burst does not open thousands of requests at once.
            let Ok(permit) = binds.clone().acquire_owned().await else {
                return;
            };
            let (client, tx) = (client.clone(), tx.clone());
            let span = tracing::debug_span!("bind", pod = %key, node = %node);
            tokio::spawn(
                async move {
                    let outcome = bind(client, pod, key, node).await;
                    drop(permit);
                    let _ = tx.send(outcome);
                }
                .instrument(span),
            );
        }
        Decision::Unschedulable(fit) => unschedulable(state, client, events, &key, &pod, fit, now),
    }
}

/// Posts the binding.
async fn bind(client: kube::Client, pod: Arc<Pod>, key: Key, node: String) -> Outcome {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let api: Api<Pod> = Api::namespaced(client, ns);
    match api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => Outcome::Bound { key, node, pod },
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            Outcome::Failed {
                key,
                gone: true,
                error: status.message.clone(),
            }
        }
        Err(err) => Outcome::Failed {
            key,
            gone: false,
            error: err.to_string(),
        },
    }
}

/// Handles a binding's result.
fn settle(state: &mut State, outcome: Outcome, events: &EventSink, now: Instant) {
    match outcome {
        Outcome::Bound { key, node, pod } => {
            state.in_flight.remove(&key);
            state.queue.remove(&key);
            state.pending.remove(&key);
            state.bound.insert(key.clone(), node.clone());
            tracing::debug!(pod = %key, node = %node, "Pod bound.");
            events.record(
                pod.as_ref(),
                "Normal",
                "Scheduled",
                format!("Successfully assigned {key} to {node}"),
            );
        }
        Outcome::Failed { key, gone, error } => {
            state.in_flight.remove(&key);
            let (ns, name) = key.split_once('/').unwrap_or(("", &key));
            state.snapshot.forget(ns, name);
            if gone {
                // Deleted, or bound by someone else: the watch tells the rest.
                state.queue.remove(&key);
                state.pending.remove(&key);
            } else {
                tracing::warn!(pod = %key, error = %error, "Binding failed; retrying after a backoff.");
                state.queue.retry(&key, now);
            }
        }
    }
}

/// A pod that fits nowhere: PodScheduled=False with the reasons and a FailedScheduling
/// event (only when the reasons change), preemption of lower-priority pods when that
/// makes room, and a wait for a change in the cluster.
fn unschedulable(
    state: &mut State,
    client: &kube::Client,
    events: &EventSink,
    key: &str,
    pod: &Arc<Pod>,
    fit: FitError,
    now: Instant,
) {
    state.queue.unschedulable(key, now);
    let message = fit.to_string();
    if let Some(room) = &fit.preemption {
        tracing::info!(pod = %key, node = %room.node, victims = room.victims.len(), "Preempting pods to make room.");
        tokio::spawn(preempt(
            client.clone(),
            pod.clone(),
            room.node.clone(),
            room.victims.clone(),
        ));
    }
    if state.last_failure.get(key) == Some(&message) {
        return;
    }
    state.last_failure.insert(key.to_string(), message.clone());
    tracing::debug!(pod = %key, reason = %message, "Pod is unschedulable.");
    events.record(pod.as_ref(), "Warning", "FailedScheduling", message.clone());
    let (client, pod) = (client.clone(), pod.clone());
    tokio::spawn(async move {
        let status = json!({"status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message, "lastProbeTime": null, "lastTransitionTime": now_rfc3339(),
        }]}});
        let api: Api<Pod> = Api::namespaced(
            client,
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        if let Err(err) = api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&status))
            .await
        {
            tracing::debug!(pod = %name, error = %err, "Could not record the unschedulable condition.");
        }
    });
}

/// Nominates `node` for `pod` and deletes the victims gracefully.
async fn preempt(
    client: kube::Client,
    pod: Arc<Pod>,
    node: String,
    victims: Vec<(String, String)>,
) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let nominate = json!({"status": {"nominatedNodeName": node}});
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    if let Err(err) = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&nominate))
        .await
    {
        tracing::debug!(pod = %name, error = %err, "Could not nominate the node.");
    }
    for (victim_ns, victim) in victims {
        let api: Api<Pod> = Api::namespaced(client.clone(), &victim_ns);
        match api.delete(&victim, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(victim = %format!("{victim_ns}/{victim}"), preemptor = %format!("{ns}/{name}"), node = %node, "Preempted a pod.")
            }
            Err(err) => tracing::debug!(victim = %victim, error = %err, "Could not preempt a pod."),
        }
    }
}

//! The garbage collector: objects whose owners are gone are deleted, owners deleted in the
//! foreground wait for their blocking dependents, owners deleted with the Orphan policy
//! leave their dependents without the reference first. As upstream, it watches every kind
//! discovery lists as listable, watchable and deletable (Events excepted), keeps a graph of
//! owner references by uid ([`graph`]), and works each affected object through a queue;
//! what to do about one object is decided in [`decide`] without the API.
//!
//! The API server sets the `foregroundDeletion` and `orphan` finalizers on a DELETE with
//! that propagation policy and removes the object once the collector takes them off.
//! Ownership is by uid: a reference whose uid is not the live owner's dangles. An owner
//! missing from the graph is looked up through the API before its dependents go, so a
//! dependent seen before its new owner is never collected by mistake.

mod decide;
mod graph;
mod queue;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::core::ApiResource;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use self::decide::{Op, OwnerState};
use self::graph::{group_of, Graph, Identity, Node};
use self::queue::Queue;
use super::resources::{discover, Served};
use super::{Context, Error, Result};

/// Objects worked on at once (upstream: `--concurrent-gc-syncs`, 20).
const WORKERS: usize = 8;
/// How often discovery is read again for new kinds (upstream: 30 s).
const REDISCOVERY: Duration = Duration::from_secs(30);

/// What the watches, the workers and the loop share.
#[derive(Default)]
struct Shared {
    graph: Mutex<Graph>,
    queue: Queue,
    /// The kinds served, by group and kind.
    kinds: Mutex<HashMap<(String, String), Served>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn enqueue(&self, uids: Vec<String>) {
        for uid in uids {
            self.queue.add(uid);
        }
    }
}

/// Runs the garbage collector until the server stops.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let shared = Arc::new(Shared::default());
    let (synced_tx, mut synced_rx) = mpsc::unbounded_channel::<()>();
    let mut watches: JoinSet<()> = JoinSet::new();
    let mut watched: HashSet<(String, String)> = HashSet::new();
    let mut unsynced = 0usize;
    let mut workers: JoinSet<()> = JoinSet::new();
    let mut rediscover = tokio::time::interval(REDISCOVERY);
    loop {
        tokio::select! {
            _ = rediscover.tick() => {
                let served = match discover(&ctx.client).await {
                    Ok(served) => served,
                    Err(err) => {
                        tracing::warn!(error = %err, "Discovery failed; the garbage collector tries again later.");
                        continue;
                    }
                };
                for s in served {
                    let key = (s.resource.group.clone(), s.resource.kind.clone());
                    lock(&shared.kinds).insert(key, s.clone());
                    let collectable = s.supports(&["list", "watch", "delete"]) && s.resource.plural != "events";
                    let id = (s.resource.group.clone(), s.resource.plural.clone());
                    if collectable && watched.insert(id) {
                        unsynced += 1;
                        watches.spawn(watch(shared.clone(), ctx.client.clone(), s, synced_tx.clone()));
                    }
                }
            }
            Some(()) = synced_rx.recv() => {
                unsynced = unsynced.saturating_sub(1);
                if unsynced == 0 && workers.is_empty() {
                    tracing::info!(kinds = watched.len(), "Garbage collector: all resource monitors have synced.");
                    for _ in 0..WORKERS {
                        workers.spawn(work(shared.clone(), ctx.client.clone()));
                    }
                }
            }
            Some(done) = watches.join_next() => {
                return Err(Error::Invalid(format!("a garbage collector watch ended: {done:?}")));
            }
            Some(done) = workers.join_next() => {
                return Err(Error::Invalid(format!("a garbage collector worker ended: {done:?}")));
            }
        }
    }
}

/// What the graph keeps of an object of `served`.
fn node_of(served: &Served, obj: &DynamicObject) -> Option<Node> {
    let meta = &obj.metadata;
    Some(Node {
        identity: Identity {
            api_version: served.resource.api_version.clone(),
            kind: served.resource.kind.clone(),
            plural: served.resource.plural.clone(),
            namespace: meta.namespace.clone().filter(|_| served.namespaced),
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
        },
        resource_version: meta.resource_version.clone().unwrap_or_default(),
        owners: meta.owner_references.clone().unwrap_or_default(),
        deleting: meta.deletion_timestamp.is_some(),
        finalizers: meta.finalizers.clone().unwrap_or_default(),
    })
}

/// Watches one kind into the graph; reports once when its first list is in.
async fn watch(
    shared: Arc<Shared>,
    client: kube::Client,
    served: Served,
    synced: mpsc::UnboundedSender<()>,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &served.resource);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut relist: Option<HashSet<String>> = None;
    let mut reported = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => relist = Some(HashSet::new()),
            Ok(Event::InitApply(obj) | Event::Apply(obj)) => {
                let Some(node) = node_of(&served, &obj) else {
                    continue;
                };
                if let Some(seen) = relist.as_mut() {
                    seen.insert(node.identity.uid.clone());
                }
                let work = lock(&shared.graph).observe(node);
                shared.enqueue(work);
            }
            Ok(Event::Delete(obj)) => {
                if let Some(uid) = obj.metadata.uid.as_deref() {
                    let work = lock(&shared.graph).forget(uid);
                    shared.enqueue(work);
                }
            }
            Ok(Event::InitDone) => {
                let seen = relist.take().unwrap_or_default();
                let mut graph = lock(&shared.graph);
                let gone = graph.uids_of(&served.resource.api_version, &served.resource.plural);
                let mut work = Vec::new();
                for uid in gone.iter().filter(|u| !seen.contains(*u)) {
                    work.extend(graph.forget(uid));
                }
                drop(graph);
                shared.enqueue(work);
                if !reported {
                    reported = synced.send(()).is_ok();
                }
            }
            Err(err) => {
                tracing::debug!(resource = %served.group_resource(), error = %err, "A garbage collector watch failed; it resumes.");
            }
        }
    }
}

/// One worker: takes uids off the queue until the server stops.
async fn work(shared: Arc<Shared>, client: kube::Client) {
    loop {
        let uid = shared.queue.next().await;
        let outcome = process(&shared, &client, &uid).await;
        shared.queue.done(&uid);
        if let Err(err) = outcome {
            let delay = match &err {
                Error::Kube(kube::Error::Api(s)) if s.code == 409 => Duration::from_millis(200),
                _ => Duration::from_secs(5),
            };
            tracing::debug!(uid = %uid, error = %err, "Garbage collection of an object failed; retrying.");
            shared.queue.add_after(uid, delay);
        }
    }
}

/// What to do about one object, before any owner is looked up.
enum Plan {
    Ops(Vec<Op>),
    /// Classify its owners, then decide (has dependents, one of them waits for its own).
    Attempt(Box<Node>, bool, bool),
}

async fn process(shared: &Shared, client: &kube::Client, uid: &str) -> Result<()> {
    let plan = {
        let graph = lock(&shared.graph);
        let Some(node) = graph.get(uid) else {
            return Ok(());
        };
        let deps = graph.dependents_of(uid);
        if node.orphaning() {
            Plan::Ops(decide::orphan(node, &deps))
        } else if node.deleting_dependents() {
            Plan::Ops(decide::deleting_dependents(node, &deps))
        } else if node.deleting || node.owners.is_empty() {
            return Ok(());
        } else {
            let cycle = deps.iter().any(|d| d.deleting_dependents());
            Plan::Attempt(Box::new(node.clone()), !deps.is_empty(), cycle)
        }
    };
    let ops = match plan {
        Plan::Ops(ops) => ops,
        Plan::Attempt(node, has_dependents, cycle) => {
            let Some(states) = owner_states(shared, client, &node).await? else {
                return Ok(());
            };
            decide::attempt_to_delete(&node, &states, has_dependents, cycle)
        }
    };
    for op in ops {
        execute(client, op).await?;
    }
    Ok(())
}

/// What is known of each owner of `item`, from the graph or else from the API; none if
/// the item cannot be collected on these references (an unknown kind, or a cluster-scoped
/// object naming a namespaced owner, which upstream leaves alone too).
async fn owner_states(
    shared: &Shared,
    client: &kube::Client,
    item: &Node,
) -> Result<Option<Vec<OwnerState>>> {
    let mut states = Vec::with_capacity(item.owners.len());
    for r in &item.owners {
        let group = group_of(&r.api_version).to_string();
        let served = lock(&shared.kinds).get(&(group, r.kind.clone())).cloned();
        let Some(served) = served else {
            tracing::debug!(object = %item.identity.key(), owner_kind = %r.kind, "An owner reference names a kind not served.");
            return Ok(None);
        };
        if served.namespaced && item.identity.namespace.is_none() {
            tracing::info!(object = %item.identity.key(), owner_kind = %r.kind, "A cluster-scoped object refers to a namespaced owner; left alone.");
            return Ok(None);
        }
        let namespace = item
            .identity
            .namespace
            .clone()
            .filter(|_| served.namespaced);
        if let Some(state) = known_state(&lock(&shared.graph), r, namespace.as_deref()) {
            states.push(state);
            continue;
        }
        states.push(live_state(client, &served.resource, r, namespace.as_deref()).await?);
    }
    Ok(Some(states))
}

/// The owner's state if the graph holds an object with the reference's uid, kind, name and
/// namespace.
fn known_state(graph: &Graph, r: &OwnerReference, namespace: Option<&str>) -> Option<OwnerState> {
    let owner = graph.get(&r.uid)?;
    let id = &owner.identity;
    let matches = id.kind == r.kind
        && id.group() == group_of(&r.api_version)
        && id.name == r.name
        && id.namespace.as_deref() == namespace;
    matches.then(|| state_of(owner.deleting_dependents()))
}

fn state_of(deleting_dependents: bool) -> OwnerState {
    if deleting_dependents {
        OwnerState::DeletingDependents
    } else {
        OwnerState::Present
    }
}

/// The owner's state as the API has it now.
async fn live_state(
    client: &kube::Client,
    resource: &ApiResource,
    r: &OwnerReference,
    namespace: Option<&str>,
) -> Result<OwnerState> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    let Some(owner) = api.get_opt(&r.name).await? else {
        return Ok(OwnerState::Absent);
    };
    let meta = &owner.metadata;
    if meta.uid.as_deref() != Some(r.uid.as_str()) {
        return Ok(OwnerState::Absent);
    }
    let foreground = meta
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == graph::FOREGROUND);
    Ok(state_of(meta.deletion_timestamp.is_some() && foreground))
}

fn api_for(client: &kube::Client, target: &Identity) -> Api<DynamicObject> {
    let (group, version) = match target.api_version.rsplit_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), target.api_version.clone()),
    };
    let resource = ApiResource {
        group,
        version,
        api_version: target.api_version.clone(),
        kind: target.kind.clone(),
        plural: target.plural.clone(),
    };
    match &target.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// Whether an API error means the object is gone (or was replaced by another of that name).
fn gone(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

async fn execute(client: &kube::Client, op: Op) -> Result<()> {
    match op {
        Op::Delete {
            target,
            propagation,
        } => {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(target.uid.clone()),
                    resource_version: None,
                }),
                propagation_policy: Some(propagation.clone()),
                ..DeleteParams::default()
            };
            match api_for(client, &target).delete(&target.name, &params).await {
                Ok(_) => {
                    tracing::info!(object = %target.key(), policy = ?propagation, "Deleted an object whose owners are gone.");
                    Ok(())
                }
                // Gone, or replaced by a new object of that name (the uid precondition).
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
                Err(err) => Err(err.into()),
            }
        }
        Op::SetOwners {
            target,
            resource_version,
            owners,
        } => {
            let owners = if owners.is_empty() {
                json!(null)
            } else {
                json!(owners)
            };
            let patch = json!({"metadata": {"resourceVersion": resource_version, "ownerReferences": owners}});
            patch_meta(client, &target, &patch).await?;
            tracing::info!(object = %target.key(), "Updated the owner references of an object.");
            Ok(())
        }
        Op::SetFinalizers {
            target,
            resource_version,
            finalizers,
        } => {
            let finalizers = if finalizers.is_empty() {
                json!(null)
            } else {
                json!(finalizers)
            };
            let patch = json!({"metadata": {"resourceVersion": resource_version, "finalizers": finalizers}});
            patch_meta(client, &target, &patch).await?;
            tracing::info!(object = %target.key(), "Removed a garbage collector finalizer.");
            Ok(())
        }
    }
}

async fn patch_meta(
    client: &kube::Client,
    target: &Identity,
    patch: &serde_json::Value,
) -> Result<()> {
    let api = api_for(client, target);
    match api
        .patch(&target.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(err) if gone(&err) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

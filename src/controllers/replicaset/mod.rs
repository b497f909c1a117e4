//! The ReplicaSet controller: keeps `spec.replicas` active pods for every ReplicaSet,
//! claiming pods by selector and controller reference, creating from the template in
//! slow-start batches and deleting the least valuable pods first, and reports the counts
//! in the status, as kube-controller-manager's `replicaset` controller.
//!
//! As upstream, it waits until the pods it created or deleted show in its cache (its
//! "expectations") before counting again, so a slow watch never makes it create twice.

mod plan;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::ResourceExt;
use tracing::Instrument;

use super::claim::{self, Claim};
use super::{retry_after, Context, Error, Result};
use crate::k8s::labels::LabelSelector;
pub use plan::PodFacts;
use plan::{Failure, BURST_REPLICAS};

/// How long an expectation is waited for at most (upstream's `ExpectationsTimeout`).
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

/// Pods created and deleted by the last sync of one ReplicaSet, not yet seen in the cache.
struct Expectation {
    created: Vec<String>,
    deleted: Vec<(String, String)>,
    at: Instant,
}

/// The controller's state shared by its reconciles.
struct State {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    replicasets: Store<ReplicaSet>,
    expectations: Mutex<HashMap<String, Expectation>>,
}

/// Runs the ReplicaSet controller until the stream of reconciles ends.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let client = ctx.client.clone();
    let (pods, writer) = reflector::store();
    let pod_events = reflector::reflector(
        writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    let controller = Controller::new(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let replicasets = controller.store();
    let owners = replicasets.clone();
    let controller =
        controller.watches_stream(pod_events, move |pod| replicasets_of(&owners, &pod));
    let state = Arc::new(State {
        ctx,
        pods,
        replicasets,
        expectations: Mutex::new(HashMap::new()),
    });
    tracing::info!("ReplicaSet controller started.");
    controller
        .run(reconcile, |_, err, _| retry_after(err), state)
        .for_each(|outcome| async move {
            if let Err(err) = outcome {
                tracing::debug!(error = %err, "A ReplicaSet sync failed; it is retried.");
            }
        })
        .await;
    Ok(())
}

/// The ReplicaSets a pod event concerns: its controller, or, for an orphan, every
/// ReplicaSet of its namespace that selects it (upstream's `getPodReplicaSets`).
fn replicasets_of(store: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(owner) = claim::controller_of(&pod.metadata) {
        return if owner.kind == "ReplicaSet" && owner.api_version.starts_with("apps/") {
            vec![ObjectRef::new(&owner.name).within(&ns)]
        } else {
            Vec::new()
        };
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let labels = pod.labels();
    store
        .state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()))
        .filter(|rs| selector_of(rs).is_ok_and(|s| !s.is_empty() && s.matches(labels)))
        .map(|rs| ObjectRef::from_obj(rs.as_ref()))
        .collect()
}

fn selector_of(rs: &ReplicaSet) -> Result<LabelSelector> {
    let value = serde_json::to_value(rs.spec.as_ref().map(|s| &s.selector))
        .map_err(|e| Error::Invalid(e.to_string()))?;
    LabelSelector::from_object(&value).map_err(|e| Error::Invalid(e.to_string()))
}

fn key_of(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

fn now_nanos() -> i128 {
    k8s_openapi::jiff::Timestamp::now().as_nanosecond()
}

impl State {
    /// Whether the cache shows what the last sync of `key` did.
    fn expectations_met(&self, key: &str, ns: &str) -> bool {
        let mut all = self.expectations.lock().unwrap_or_else(|e| e.into_inner());
        let Some(exp) = all.get(key) else {
            return true;
        };
        let met = exp.at.elapsed() > EXPECTATIONS_TIMEOUT
            || (exp
                .created
                .iter()
                .all(|name| self.pods.get(&ObjectRef::new(name).within(ns)).is_some())
                && exp.deleted.iter().all(|(name, uid)| {
                    self.pods
                        .get(&ObjectRef::new(name).within(ns))
                        .is_none_or(|p| {
                            p.metadata.uid.as_deref() != Some(uid.as_str())
                                || p.metadata.deletion_timestamp.is_some()
                        })
                }));
        if met {
            all.remove(key);
        }
        met
    }

    fn expect(&self, key: String, created: Vec<String>, deleted: Vec<(String, String)>) {
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        let mut all = self.expectations.lock().unwrap_or_else(|e| e.into_inner());
        all.insert(
            key,
            Expectation {
                created,
                deleted,
                at: Instant::now(),
            },
        );
    }
}

/// One sync of a ReplicaSet, in a span naming it.
async fn reconcile(rs: Arc<ReplicaSet>, state: Arc<State>) -> Result<Action> {
    let span = tracing::debug_span!("replicaset", rs = %key_of(&rs.metadata));
    sync(rs, state).instrument(span).await
}

/// Upstream's `syncReplicaSet`.
async fn sync(rs: Arc<ReplicaSet>, state: Arc<State>) -> Result<Action> {
    // An empty cache at start would look like a ReplicaSet without pods.
    let ready = futures::future::join(
        state.pods.wait_until_ready(),
        state.replicasets.wait_until_ready(),
    )
    .await;
    if ready.0.is_err() || ready.1.is_err() {
        return Err(Error::Invalid("the controller's caches are gone".into()));
    }
    let key = key_of(&rs.metadata);
    let ns = rs.namespace().unwrap_or_default();
    let selector = selector_of(&rs)?;
    let needs_sync = state.expectations_met(&key, &ns);
    let pods: Vec<Arc<Pod>> = state
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| PodFacts::of(p).active)
        .collect();
    let owned = claim_pods(&state, &rs, &selector, pods).await?;
    let facts: Vec<PodFacts> = owned.iter().map(|p| PodFacts::of(p)).collect();
    let failure = if needs_sync && rs.metadata.deletion_timestamp.is_none() {
        manage_replicas(&state, &rs, &facts).await
    } else {
        None
    };
    let spec = rs.spec.clone().unwrap_or_default();
    let template_labels: serde_json::Value = serde_json::to_value(
        spec.template
            .as_ref()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default(),
    )
    .unwrap_or_default();
    let template =
        LabelSelector::from_object(&serde_json::json!({ "matchLabels": template_labels }))
            .unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let failed = failure.is_some();
    let refs: Vec<&PodFacts> = facts.iter().collect();
    let next = plan::status(
        rs.status.as_ref(),
        rs.metadata.generation,
        &refs,
        &template,
        min_ready,
        failure,
        now_nanos(),
        now_time(),
    );
    if plan::status_differs(rs.status.as_ref(), &next) {
        let mut updated = (*rs).clone();
        updated.status = Some(next.clone());
        let api: Api<ReplicaSet> = Api::namespaced(state.ctx.client.clone(), &ns);
        api.replace_status(&rs.name_any(), &PostParams::default(), &updated)
            .await?;
    }
    let desired = spec.replicas.unwrap_or(1);
    if !failed
        && min_ready > 0
        && next.ready_replicas.unwrap_or(0) == desired
        && next.available_replicas.unwrap_or(0) != desired
    {
        return Ok(Action::requeue(Duration::from_secs(min_ready as u64)));
    }
    if failed {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    Ok(Action::await_change())
}

/// Seconds-precise now, as the API stores times.
pub fn now_time() -> k8s_openapi::jiff::Timestamp {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now)
}

/// The active pods the ReplicaSet owns after adopting and releasing (upstream's
/// `claimPods`). Adoption first rereads the ReplicaSet, so one being deleted adopts
/// nothing.
async fn claim_pods(
    state: &State,
    rs: &ReplicaSet,
    selector: &LabelSelector,
    pods: Vec<Arc<Pod>>,
) -> Result<Vec<Arc<Pod>>> {
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let ns = rs.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(state.ctx.client.clone(), &ns);
    let mut owned = Vec::new();
    let mut checked = false;
    for pod in pods {
        let selected = !selector.is_empty() && selector.matches(pod.labels());
        match claim::decide(&uid, deleting, &pod.metadata, selected) {
            Claim::Owned => owned.push(pod),
            Claim::Ignore => {}
            Claim::Adopt => {
                if !checked {
                    can_adopt(state, rs).await?;
                    checked = true;
                }
                match claim::adopt(&api, pod.as_ref(), &claim::controller_ref(rs)).await {
                    Ok(p) => {
                        tracing::debug!(pod = %p.name_any(), "Pod adopted.");
                        owned.push(Arc::new(p));
                    }
                    Err(e) if claim::is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Claim::Release => match claim::release(&api, pod.as_ref(), &uid).await {
                Ok(_) => tracing::debug!(pod = %pod.name_any(), "Pod released."),
                Err(e) if claim::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            },
        }
    }
    Ok(owned)
}

/// Upstream's `RecheckDeletionTimestamp`: a fresh read that the owner still stands.
async fn can_adopt(state: &State, rs: &ReplicaSet) -> Result<()> {
    let api: Api<ReplicaSet> = Api::namespaced(
        state.ctx.client.clone(),
        &rs.namespace().unwrap_or_default(),
    );
    let fresh = api.get(&rs.name_any()).await?;
    if fresh.metadata.uid != rs.metadata.uid {
        return Err(Error::Invalid(format!(
            "original ReplicaSet {} is gone: got uid {:?}, wanted {:?}",
            key_of(&rs.metadata),
            fresh.metadata.uid,
            rs.metadata.uid
        )));
    }
    if let Some(at) = &fresh.metadata.deletion_timestamp {
        return Err(Error::Invalid(format!(
            "ReplicaSet {} has just been deleted at {}",
            key_of(&rs.metadata),
            at.0
        )));
    }
    Ok(())
}

/// Creates or deletes pods toward `spec.replicas` (upstream's `manageReplicas`); the
/// failure, if one happened, for the status.
async fn manage_replicas(state: &State, rs: &ReplicaSet, pods: &[PodFacts]) -> Option<Failure> {
    let desired = rs
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as usize;
    let key = key_of(&rs.metadata);
    if pods.len() < desired {
        let want = (desired - pods.len()).min(BURST_REPLICAS);
        let (created, failure) = create_pods(state, rs, want).await;
        state.expect(key, created, Vec::new());
        failure
    } else if pods.len() > desired {
        let diff = (pods.len() - desired).min(BURST_REPLICAS);
        let related = related_pods(state, rs);
        let refs: Vec<&PodFacts> = pods.iter().collect();
        let related_refs: Vec<&PodFacts> = related.iter().collect();
        let victims = plan::pods_to_delete(&refs, &related_refs, diff, now_nanos());
        let deleted = victims
            .iter()
            .map(|p| (p.name.clone(), p.uid.clone()))
            .collect::<Vec<_>>();
        let failure = delete_pods(state, rs, &deleted).await;
        state.expect(key, Vec::new(), deleted);
        failure
    } else {
        None
    }
}

/// Creates `count` pods in slow-start batches; the names created and the first failure.
async fn create_pods(
    state: &State,
    rs: &ReplicaSet,
    count: usize,
) -> (Vec<String>, Option<Failure>) {
    let ns = rs.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(state.ctx.client.clone(), &ns);
    let pod = pod_from_template(rs);
    let params = PostParams::default();
    let mut created = Vec::new();
    for batch in plan::slow_start_batches(count) {
        let results =
            futures::future::join_all((0..batch).map(|_| api.create(&params, &pod))).await;
        let mut failure = None;
        for result in results {
            match result {
                Ok(p) => {
                    let name = p.name_any();
                    state.ctx.events.record(
                        rs,
                        "Normal",
                        "SuccessfulCreate",
                        format!("Created pod: {name}"),
                    );
                    created.push(name);
                }
                Err(e) => {
                    let message = claim::message(&e);
                    tracing::debug!(error = %message, "Creating a pod failed.");
                    state.ctx.events.record(
                        rs,
                        "Warning",
                        "FailedCreate",
                        format!("Error creating: {message}"),
                    );
                    failure.get_or_insert(Failure {
                        reason: "FailedCreate",
                        message,
                    });
                }
            }
        }
        if failure.is_some() {
            return (created, failure);
        }
    }
    (created, None)
}

/// Deletes the pods named, at once; the first failure other than "already gone".
async fn delete_pods(state: &State, rs: &ReplicaSet, pods: &[(String, String)]) -> Option<Failure> {
    let ns = rs.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(state.ctx.client.clone(), &ns);
    let results = futures::future::join_all(pods.iter().map(|(name, uid)| {
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let api = api.clone();
        async move { (name, api.delete(name, &params).await) }
    }))
    .await;
    let mut failure = None;
    for (name, result) in results {
        match result {
            Ok(_) => state.ctx.events.record(
                rs,
                "Normal",
                "SuccessfulDelete",
                format!("Deleted pod: {name}"),
            ),
            Err(e) if claim::is_not_found(&e) => {}
            Err(e) => {
                let message = claim::message(&e);
                state.ctx.events.record(
                    rs,
                    "Warning",
                    "FailedDelete",
                    format!("Error deleting: {message}"),
                );
                failure.get_or_insert(Failure {
                    reason: "FailedDelete",
                    message,
                });
            }
        }
    }
    failure
}

/// The pods of every ReplicaSet with the same controller as `rs` (upstream's
/// `getIndirectlyRelatedPods`), or of `rs` alone when it has no controller.
fn related_pods(state: &State, rs: &ReplicaSet) -> Vec<PodFacts> {
    let ns = rs.namespace().unwrap_or_default();
    let siblings: Vec<String> = match claim::controller_of(&rs.metadata) {
        Some(owner) => state
            .replicasets
            .state()
            .iter()
            .filter(|r| r.namespace().as_deref() == Some(ns.as_str()))
            .filter(|r| claim::controller_of(&r.metadata).is_some_and(|o| o.uid == owner.uid))
            .filter_map(|r| r.metadata.uid.clone())
            .collect(),
        None => rs.metadata.uid.clone().into_iter().collect(),
    };
    state
        .pods
        .state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| claim::controller_of(&p.metadata).is_some_and(|o| siblings.contains(&o.uid)))
        .map(|p| PodFacts::of(p))
        .collect()
}

/// The pod the template describes (upstream's `GetPodFromTemplate`), named
/// `<replicaset>-` plus a random suffix and controlled by the ReplicaSet.
fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let name = rs.name_any();
    let prefix = format!("{name}-");
    let prefix = if crate::k8s::meta::dns1123_subdomain_error(&format!("{prefix}a")).is_none() {
        prefix
    } else {
        name
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![claim::controller_ref(rs)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

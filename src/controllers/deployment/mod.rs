//! The Deployment controller: rolls a Deployment's pod template out through
//! ReplicaSets named `<deployment>-<pod-template-hash>`, by RollingUpdate (within
//! maxSurge and maxUnavailable) or Recreate, scales them in proportion when the
//! Deployment is scaled mid-rollout, keeps revisionHistoryLimit old ReplicaSets, honours
//! `spec.paused`, and reports the status with the Available and Progressing conditions,
//! as kube-controller-manager's `deployment` controller.
//!
//! `kubectl rollout undo` needs nothing here: kubectl copies the old ReplicaSet's
//! template back into the Deployment, which then finds that ReplicaSet as its new one and
//! gives it the next revision.

mod plan;
mod sync;
#[cfg(test)]
mod tests;
mod util;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::ResourceExt;
use tracing::Instrument;

use super::claim::{self, Claim};
use super::{retry_after, Context, Error, Result};
use crate::k8s::labels::LabelSelector;
use sync::Sync;

/// The controller's state shared by its reconciles.
struct State {
    ctx: Arc<Context>,
    replicasets: Store<ReplicaSet>,
    pods: Store<Pod>,
}

/// Runs the Deployment controller until the stream of reconciles ends.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let client = ctx.client.clone();
    let (replicasets, rs_writer) = reflector::store();
    let rs_events = reflector::reflector(
        rs_writer,
        watcher(
            Api::<ReplicaSet>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let (pods, pod_writer) = reflector::store();
    let pod_events = reflector::reflector(
        pod_writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    let controller = Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    );
    let deployments = controller.store();
    let (for_rs, for_pods, rs_for_pods) = (deployments.clone(), deployments, replicasets.clone());
    let controller = controller
        .watches_stream(rs_events, move |rs| deployments_of_rs(&for_rs, &rs))
        .watches_stream(pod_events, move |pod| {
            recreating_deployment_of_pod(&for_pods, &rs_for_pods, &pod)
        });
    let state = Arc::new(State {
        ctx,
        replicasets,
        pods,
    });
    tracing::info!("Deployment controller started.");
    controller
        .run(reconcile, |_, err, _| retry_after(err), state)
        .for_each(|outcome| async move {
            if let Err(err) = outcome {
                tracing::debug!(error = %err, "A Deployment sync failed; it is retried.");
            }
        })
        .await;
    Ok(())
}

fn selector_of(d: &Deployment) -> Result<LabelSelector> {
    let value = serde_json::to_value(d.spec.as_ref().map(|s| &s.selector))
        .map_err(|e| Error::Invalid(e.to_string()))?;
    LabelSelector::from_object(&value).map_err(|e| Error::Invalid(e.to_string()))
}

/// The Deployments a ReplicaSet event concerns: its controller, or for an orphan every
/// Deployment of its namespace that selects it.
fn deployments_of_rs(store: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace().unwrap_or_default();
    if let Some(owner) = claim::controller_of(&rs.metadata) {
        return if owner.kind == "Deployment" && owner.api_version.starts_with("apps/") {
            vec![ObjectRef::new(&owner.name).within(&ns)]
        } else {
            Vec::new()
        };
    }
    store
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
        .filter(|d| selector_of(d).is_ok_and(|s| !s.is_empty() && s.matches(rs.labels())))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// The Recreate Deployment whose old pods a pod event may have been the last of.
fn recreating_deployment_of_pod(
    deployments: &Store<Deployment>,
    replicasets: &Store<ReplicaSet>,
    pod: &Pod,
) -> Option<ObjectRef<Deployment>> {
    let ns = pod.namespace().unwrap_or_default();
    let owner = claim::controller_of(&pod.metadata).filter(|o| o.kind == "ReplicaSet")?;
    let rs = replicasets.get(&ObjectRef::new(&owner.name).within(&ns))?;
    let d_owner = claim::controller_of(&rs.metadata).filter(|o| o.kind == "Deployment")?;
    let d_ref = ObjectRef::new(&d_owner.name).within(&ns);
    let d = deployments.get(&d_ref)?;
    (util::strategy(&d) == "Recreate").then_some(d_ref)
}

/// One sync of a Deployment, in a span naming it.
async fn reconcile(d: Arc<Deployment>, state: Arc<State>) -> Result<Action> {
    let span = tracing::debug_span!("deployment", deployment = %format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any()));
    sync_deployment(d, state).instrument(span).await
}

/// Upstream's `syncDeployment`.
async fn sync_deployment(d: Arc<Deployment>, state: Arc<State>) -> Result<Action> {
    // An empty cache at start would look like a Deployment without ReplicaSets.
    let ready = futures::future::join(
        state.replicasets.wait_until_ready(),
        state.pods.wait_until_ready(),
    )
    .await;
    if ready.0.is_err() || ready.1.is_err() {
        return Err(Error::Invalid("the controller's caches are gone".into()));
    }
    let selector = selector_of(&d)?;
    let mut s = Sync {
        d: (*d).clone(),
        rss: Vec::new(),
        client: state.ctx.client.clone(),
        events: &state.ctx.events,
    };
    if selector.is_empty() {
        state.ctx.events.record(
            &*d,
            "Warning",
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.".into(),
        );
        let mut status = d.status.clone().unwrap_or_default();
        if status.observed_generation < d.metadata.generation {
            status.observed_generation = d.metadata.generation;
            s.write_status(status).await?;
        }
        return Ok(Action::await_change());
    }
    s.rss = claim_replicasets(&state, &d, &selector).await?;
    if d.metadata.deletion_timestamp.is_some() {
        s.new_rs(false).await?;
        s.sync_status().await?;
        return Ok(Action::await_change());
    }
    check_paused_conditions(&mut s).await?;
    let paused = d.spec.as_ref().and_then(|sp| sp.paused).unwrap_or(false);
    if paused || is_scaling_event(&mut s).await? {
        return scale_sync(&mut s, paused).await;
    }
    let requeue = if util::strategy(&d) == "Recreate" {
        rollout_recreate(&mut s, &state).await?
    } else {
        rollout_rolling(&mut s).await?
    };
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Upstream's `getReplicaSetsForDeployment`: the namespace's ReplicaSets the Deployment
/// owns after adopting orphans it selects and releasing those it no longer selects.
async fn claim_replicasets(
    state: &State,
    d: &Deployment,
    selector: &LabelSelector,
) -> Result<Vec<ReplicaSet>> {
    let ns = d.namespace().unwrap_or_default();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let deleting = d.metadata.deletion_timestamp.is_some();
    let api: Api<ReplicaSet> = Api::namespaced(state.ctx.client.clone(), &ns);
    let mut owned = Vec::new();
    let mut checked = false;
    for rs in state.replicasets.state() {
        if rs.namespace().as_deref() != Some(ns.as_str()) {
            continue;
        }
        match claim::decide(&uid, deleting, &rs.metadata, selector.matches(rs.labels())) {
            Claim::Owned => owned.push((*rs).clone()),
            Claim::Ignore => {}
            Claim::Adopt => {
                if !checked {
                    let fresh = Api::<Deployment>::namespaced(state.ctx.client.clone(), &ns)
                        .get(&d.name_any())
                        .await?;
                    if fresh.metadata.uid != d.metadata.uid
                        || fresh.metadata.deletion_timestamp.is_some()
                    {
                        return Err(Error::Invalid(format!(
                            "deployment {ns}/{} is being deleted",
                            d.name_any()
                        )));
                    }
                    checked = true;
                }
                match claim::adopt(&api, rs.as_ref(), &claim::controller_ref(d)).await {
                    Ok(adopted) => owned.push(adopted),
                    Err(e) if claim::is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Claim::Release => match claim::release(&api, rs.as_ref(), &uid).await {
                Ok(_) => {}
                Err(e) if claim::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            },
        }
    }
    Ok(owned)
}

/// Upstream's `checkPausedConditions`: Progressing Unknown when paused or resumed.
async fn check_paused_conditions(s: &mut Sync<'_>) -> Result<()> {
    if plan::progress_deadline(&s.d).is_none() {
        return Ok(());
    }
    let mut status = s.d.status.clone().unwrap_or_default();
    let cond = util::condition(&status, "Progressing");
    if cond.is_some_and(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded")) {
        return Ok(());
    }
    let paused_cond = cond.is_some_and(|c| c.reason.as_deref() == Some("DeploymentPaused"));
    let paused = s.d.spec.as_ref().and_then(|sp| sp.paused).unwrap_or(false);
    let now = crate::controllers::replicaset::now_time();
    let cond = if paused && !paused_cond {
        util::new_condition(
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".into(),
            now,
        )
    } else if !paused && paused_cond {
        util::new_condition(
            "Progressing",
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed".into(),
            now,
        )
    } else {
        return Ok(());
    };
    util::set_condition(&mut status, cond);
    s.write_status(status).await
}

/// Upstream's `isScalingEvent`: an active ReplicaSet was sized for other replicas.
async fn is_scaling_event(s: &mut Sync<'_>) -> Result<bool> {
    s.new_rs(false).await?;
    let want = util::desired(&s.d);
    Ok(s.rss
        .iter()
        .filter(|rs| util::rs_replicas(rs) > 0)
        .any(|rs| util::desired_annotation(rs).is_some_and(|d| d != want)))
}

/// Upstream's `sync`: scale (in proportion), clean up when paused, and the status.
async fn scale_sync(s: &mut Sync<'_>, paused: bool) -> Result<Action> {
    s.new_rs(false).await?;
    let sizes = {
        let (new, old) = s.split();
        plan::proportional(&s.d, new, &old)
    };
    s.scale_all(sizes).await?;
    if paused {
        s.cleanup().await?;
    }
    s.sync_status().await?;
    Ok(Action::await_change())
}

/// Upstream's `rolloutRolling`.
async fn rollout_rolling(s: &mut Sync<'_>) -> Result<Option<Duration>> {
    let new = s.new_rs(true).await?;
    if let Some(i) = new {
        let step = {
            let (_, old) = s.split();
            plan::rolling_step(&s.d, &s.rss[i], &old).map_err(Error::Invalid)?
        };
        if s.scale_all(step).await? {
            return s.sync_rollout_status().await;
        }
    }
    let status = s.d.status.clone().unwrap_or_default();
    if plan::complete(&s.d, &status) {
        s.cleanup().await?;
    }
    s.sync_rollout_status().await
}

/// Upstream's `rolloutRecreate`: old ReplicaSets to zero, then, once none of their pods
/// runs, the new one to the replicas.
async fn rollout_recreate(s: &mut Sync<'_>, state: &State) -> Result<Option<Duration>> {
    s.new_rs(false).await?;
    let downs: Vec<plan::Scale> = {
        let (_, old) = s.split();
        old.iter()
            .filter(|rs| util::rs_replicas(rs) > 0)
            .map(|rs| (rs.name_any(), 0))
            .collect()
    };
    if s.scale_all(downs).await? {
        return s.sync_rollout_status().await;
    }
    if old_pods_running(s, state) {
        return s.sync_rollout_status().await;
    }
    let new = match s.new_index() {
        Some(i) => i,
        None => match s.new_rs(true).await? {
            Some(i) => i,
            None => return s.sync_rollout_status().await,
        },
    };
    let name = s.rss[new].name_any();
    s.scale(&name, util::desired(&s.d)).await?;
    let status = s.d.status.clone().unwrap_or_default();
    if plan::complete(&s.d, &status) {
        s.cleanup().await?;
    }
    s.sync_rollout_status().await
}

/// Upstream's `oldPodsRunning`: an old ReplicaSet still has pods, or a pod of one has
/// not terminated.
fn old_pods_running(s: &Sync<'_>, state: &State) -> bool {
    let (new, old) = s.split();
    if old.iter().map(|rs| util::rs_actual(rs)).sum::<i32>() > 0 {
        return true;
    }
    let old_uids: Vec<&str> = old
        .iter()
        .filter_map(|rs| rs.metadata.uid.as_deref())
        .collect();
    let new_uid = new.and_then(|rs| rs.metadata.uid.as_deref());
    let ns = s.d.namespace().unwrap_or_default();
    state.pods.state().iter().any(|p| {
        p.namespace().as_deref() == Some(ns.as_str())
            && claim::controller_of(&p.metadata).is_some_and(|o| {
                Some(o.uid.as_str()) != new_uid && old_uids.contains(&o.uid.as_str())
            })
            && !matches!(
                p.status.as_ref().and_then(|st| st.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
    })
}

//! The DaemonSet controller, as kube-controller-manager's `daemonset-controller`: one pod
//! per eligible node (node selector, required node affinity, taints against the pod's
//! tolerations and the daemon tolerations), created with required node affinity
//! `metadata.name In [node]` for the default scheduler to bind, as upstream since 1.12;
//! pods on nodes no longer eligible deleted; ControllerRevisions `<ds>-<hash>`; rolling
//! updates within maxUnavailable and maxSurge, or OnDelete; the status counters.
//!
//! The decisions are in [`plan`] and [`revision`]; this file reads and writes.

pub mod plan;
pub mod revision;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::json;

use super::{retry_after, Context, Error, Result};
use plan::World;
use revision::RevisionStep;

/// Runs the controller until the server stops.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let sets: Api<DaemonSet> = Api::all(ctx.client.clone());
    let controller = Controller::new(sets, watcher::Config::default());
    let store = controller.store();
    controller
        .owns(
            Api::<Pod>::all(ctx.client.clone()),
            watcher::Config::default(),
        )
        // Any node change may change where every set should run.
        .watches(
            Api::<Node>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |_| {
                store
                    .state()
                    .iter()
                    .map(|ds| ObjectRef::from_obj(&**ds))
                    .collect::<Vec<_>>()
            },
        )
        .run(reconcile, |_, err, _| retry_after(err), ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let name = ds.metadata.name.clone().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let revs_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let nodes = Api::<Node>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| revision::controlled_by(p.metadata.owner_references.as_ref(), &ds))
        .collect();
    let revisions: Vec<ControllerRevision> = revs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| revision::controlled_by(r.metadata.owner_references.as_ref(), &ds))
        .collect();

    let hash = revision::compute_hash(&ds);
    match revision::revision_step(&ds, &hash, &revisions) {
        RevisionStep::Current => {}
        RevisionStep::Create(rev) => {
            revs_api.create(&PostParams::default(), &*rev).await?;
        }
        RevisionStep::Renumber(rev, number) => {
            let patch = json!({"revision": number});
            revs_api
                .patch(&rev, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        RevisionStep::Collision => {
            let count = ds
                .status
                .as_ref()
                .and_then(|s| s.collision_count)
                .unwrap_or(0);
            let patch = json!({"status": {"collisionCount": count + 1}});
            Api::<DaemonSet>::namespaced(ctx.client.clone(), &ns)
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            return Err(Error::Invalid(format!(
                "hash collision for daemon set {ns}/{name}; retrying with a new collision count"
            )));
        }
    }

    let world = World {
        ds: &ds,
        hash: &hash,
        nodes: &nodes,
        pods: &pods,
        now: now(),
    };
    let todo = plan::plan(&world);
    apply(&ctx, &ds, &hash, &todo, &pods_api).await?;
    for old in revision::revisions_to_prune(&ds, &hash, &revisions, &pods) {
        match revs_api.delete(&old, &DeleteParams::default()).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    update_status(&ctx, &world).await?;
    if plan::awaits_availability(&world) {
        let wait = ds
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        return Ok(Action::requeue(Duration::from_secs(wait.max(1) as u64)));
    }
    Ok(Action::await_change())
}

/// Creates and deletes what the plan says, recording upstream's events.
async fn apply(
    ctx: &Context,
    ds: &DaemonSet,
    hash: &str,
    todo: &plan::Plan,
    pods: &Api<Pod>,
) -> Result<()> {
    for (pod, node) in &todo.failed {
        let message = format!(
            "Found failed daemon pod {}/{pod} on node {node}, will try to kill it",
            ds.metadata.namespace.as_deref().unwrap_or_default()
        );
        ctx.events.record(ds, "Warning", "FailedDaemonPod", message);
    }
    for node in &todo.create {
        let pod = revision::new_pod(ds, hash, node);
        match pods.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                let pod = created.metadata.name.unwrap_or_default();
                tracing::info!(daemonset = ?ds.metadata.name, %pod, %node, "Daemon pod created.");
                let message = format!("Created pod: {pod}");
                ctx.events.record(ds, "Normal", "SuccessfulCreate", message);
            }
            // The namespace is being deleted: nothing more may be created in it.
            Err(kube::Error::Api(s)) if s.code == 403 => return Ok(()),
            Err(e) => {
                let message = format!("Error creating: {e}");
                ctx.events.record(ds, "Warning", "FailedCreate", message);
                return Err(e.into());
            }
        }
    }
    for pod in &todo.delete {
        match pods.delete(pod, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(daemonset = ?ds.metadata.name, %pod, "Daemon pod deleted.");
                let message = format!("Deleted pod: {pod}");
                ctx.events.record(ds, "Normal", "SuccessfulDelete", message);
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                let message = format!("Error deleting: {e}");
                ctx.events.record(ds, "Warning", "FailedDelete", message);
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Writes the status when it differs from what the set reports.
async fn update_status(ctx: &Context, world: &World<'_>) -> Result<()> {
    let status = plan::status(world);
    if world.ds.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let ns = world.ds.metadata.namespace.as_deref().unwrap_or_default();
    let name = world.ds.metadata.name.as_deref().unwrap_or_default();
    let mut next = world.ds.clone();
    next.status = Some(status);
    let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), ns);
    match api
        .replace_status(name, &PostParams::default(), &next)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

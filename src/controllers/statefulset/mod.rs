//! The StatefulSet controller, as kube-controller-manager's `statefulset-controller`:
//! pods `<sts>-<ordinal>` with stable identity labels, hostname and subdomain, claims
//! `<template>-<sts>-<ordinal>` from volumeClaimTemplates, OrderedReady and Parallel
//! pod management, RollingUpdate with partition (highest ordinal first) and OnDelete,
//! ControllerRevisions `<sts>-<hash>`, and the status counters.
//!
//! The decisions are in [`plan`]; this file reads and writes.

pub mod plan;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use super::daemonset::plan::{is_available, is_ready, REVISION_HASH_LABEL};
use super::daemonset::revision::{template_hash, template_patch};
use super::{retry_after, Context, Result};
use plan::Op;

/// Runs the controller until the server stops.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let sets: Api<StatefulSet> = Api::all(ctx.client.clone());
    Controller::new(sets, watcher::Config::default())
        .owns(
            Api::<Pod>::all(ctx.client.clone()),
            watcher::Config::default(),
        )
        .run(reconcile, |_, err, _| retry_after(err), ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn owned<K: kube::Resource>(items: Vec<K>, sts: &StatefulSet) -> Vec<K> {
    items
        .into_iter()
        .filter(|o| {
            let refs = o.meta().owner_references.as_ref();
            refs.into_iter()
                .flatten()
                .any(|r| r.controller == Some(true) && Some(&r.uid) == sts.metadata.uid.as_ref())
        })
        .collect()
}

async fn reconcile(sts: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action> {
    if sts.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = sts.metadata.namespace.clone().unwrap_or_default();
    let name = sts.metadata.name.clone().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let revs_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = owned(pods_api.list(&ListParams::default()).await?.items, &sts);
    let revisions = owned(revs_api.list(&ListParams::default()).await?.items, &sts);

    let template = sts.spec.as_ref().map(|s| &s.template);
    let collisions = sts.status.as_ref().and_then(|s| s.collision_count);
    let update = template_hash(template, collisions);
    let current = sts
        .status
        .as_ref()
        .and_then(|s| s.current_revision.as_deref())
        .and_then(|r| r.strip_prefix(&format!("{name}-")))
        .map_or_else(|| update.clone(), str::to_string);
    ensure_revision(&sts, &update, &revisions, &revs_api).await?;

    for op in plan::plan(&sts, &update, &pods) {
        apply(&ctx, &sts, &update, op, &pods_api).await?;
    }
    prune_revisions(&sts, [&current, &update], &revisions, &revs_api).await?;

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let status = plan::status(&sts, &current, &update, &pods, now);
    if sts.status.as_ref() != Some(&status) {
        let mut next = (*sts).clone();
        next.status = Some(status);
        let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
        match api
            .replace_status(&name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    // A pod Ready but not yet available is counted once minReadySeconds have passed.
    let min_ready = sts
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let waiting = pods
        .iter()
        .any(|p| is_ready(p) && !is_available(p, i64::from(min_ready), now));
    if waiting {
        return Ok(Action::requeue(
            Duration::from_secs(min_ready.max(1) as u64),
        ));
    }
    Ok(Action::await_change())
}

/// Creates the revision of the current template if there is none.
async fn ensure_revision(
    sts: &StatefulSet,
    hash: &str,
    revisions: &[ControllerRevision],
    api: &Api<ControllerRevision>,
) -> Result<()> {
    let name = format!(
        "{}-{hash}",
        sts.metadata.name.as_deref().unwrap_or_default()
    );
    if revisions
        .iter()
        .any(|r| r.metadata.name.as_deref() == Some(&name))
    {
        return Ok(());
    }
    let mut labels = sts
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    let revision = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: sts.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![plan::controller_ref(sts)]),
            ..ObjectMeta::default()
        },
        data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
            template_patch(sts.spec.as_ref().map(|s| &s.template)),
        )),
        revision: revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1,
    };
    match api.create(&PostParams::default(), &revision).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the oldest revisions beyond `revisionHistoryLimit` (default 10), keeping the
/// current and update revisions.
async fn prune_revisions(
    sts: &StatefulSet,
    keep: [&String; 2],
    revisions: &[ControllerRevision],
    api: &Api<ControllerRevision>,
) -> Result<()> {
    let limit = sts
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let mut old: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| {
            let hash = r
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_HASH_LABEL));
            !hash.is_some_and(|h| keep.contains(&h))
        })
        .collect();
    old.sort_by_key(|r| r.revision);
    let excess = old.len().saturating_sub(limit);
    for r in old.into_iter().take(excess) {
        let name = r.metadata.name.as_deref().unwrap_or_default();
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn apply(
    ctx: &Context,
    sts: &StatefulSet,
    hash: &str,
    op: Op,
    pods: &Api<Pod>,
) -> Result<()> {
    let set = sts.metadata.name.as_deref().unwrap_or_default();
    let ns = sts.metadata.namespace.as_deref().unwrap_or_default();
    match op {
        Op::Create(ordinal) => {
            let pod = plan::new_pod(sts, hash, ordinal);
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
            for claim in plan::claims(sts, ordinal) {
                let claim_name = claim.metadata.name.clone().unwrap_or_default();
                if claims.get_opt(&claim_name).await?.is_some() {
                    continue;
                }
                claims.create(&PostParams::default(), &claim).await?;
                let message = format!(
                    "create Claim {claim_name} Pod {pod_name} in StatefulSet {set} success"
                );
                ctx.events
                    .record(sts, "Normal", "SuccessfulCreate", message);
            }
            match pods.create(&PostParams::default(), &pod).await {
                Ok(_) => {
                    tracing::info!(statefulset = %set, pod = %pod_name, "Stateful pod created.");
                    let message = format!("create Pod {pod_name} in StatefulSet {set} successful");
                    ctx.events
                        .record(sts, "Normal", "SuccessfulCreate", message);
                }
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
                Err(e) => {
                    let message =
                        format!("create Pod {pod_name} in StatefulSet {set} failed error: {e}");
                    ctx.events.record(sts, "Warning", "FailedCreate", message);
                    return Err(e.into());
                }
            }
        }
        Op::Delete(pod_name) => match pods.delete(&pod_name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(statefulset = %set, pod = %pod_name, "Stateful pod deleted.");
                let message = format!("delete Pod {pod_name} in StatefulSet {set} successful");
                ctx.events
                    .record(sts, "Normal", "SuccessfulDelete", message);
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        },
    }
    Ok(())
}

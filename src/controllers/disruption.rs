//! PodDisruptionBudget status, as upstream's `pkg/controller/disruption`: how many of the
//! selected pods are healthy (`currentHealthy`), how many must stay so
//! (`desiredHealthy`, from minAvailable or maxUnavailable), how many pods are expected
//! (`expectedPods`), and so how many may be disrupted now (`disruptionsAllowed`), with
//! the `DisruptionAllowed` condition. The API server's eviction reads it.
//!
//! For a percentage, and for maxUnavailable, the expected count is the sum of the scales
//! of the pods' controllers (a ReplicaSet's Deployment when it has one), read through
//! the scale subresource. `disruptedPods` entries the eviction left are dropped once
//! their pod is going or after two minutes. The numbers are a pure function
//! ([`compute`]); the task writes the status only when it differs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::ResourceExt;

use super::dirty::{self, Mark};
use super::endpoints::pod_ready;
use super::{Context, Error, Result};
use crate::k8s::labels::LabelSelector;

/// How long a pod named in `disruptedPods` counts as going (upstream's `DeletionTimeout`).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);
/// The condition type.
pub const CONDITION: &str = "DisruptionAllowed";

/// The pods a budget selects: an absent or empty selector selects none, as upstream.
pub fn selected<'a>(pdb: &PodDisruptionBudget, pods: &[&'a Pod]) -> Vec<&'a Pod> {
    let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Vec::new();
    };
    let selector = serde_json::to_value(sel)
        .ok()
        .and_then(|v| LabelSelector::from_object(&v).ok());
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return Vec::new();
    };
    pods.iter()
        .copied()
        .filter(|p| selector.matches(&p.labels().clone()))
        .collect()
}

/// Whether the expected count comes from the controllers' scales.
pub fn needs_scale(pdb: &PodDisruptionBudget) -> bool {
    let spec = pdb.spec.as_ref();
    spec.and_then(|s| s.max_unavailable.as_ref()).is_some()
        || matches!(
            spec.and_then(|s| s.min_available.as_ref()),
            Some(IntOrString::String(_))
        )
}

/// Upstream's `GetScaledValueFromIntOrPercent` rounding up.
pub fn scaled(value: &IntOrString, total: i32) -> Result<i32> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "invalid value for IntOrString: invalid value {s:?}"
                    ))
                })?;
            Ok(((percent * i64::from(total) + 99) / 100) as i32)
        }
    }
}

/// `(expectedPods, desiredHealthy)` for `count` selected pods and, where the budget needs
/// it, `scale`: the sum of their controllers' replicas.
pub fn expectations(pdb: &PodDisruptionBudget, count: i32, scale: i32) -> Result<(i32, i32)> {
    let spec = pdb.spec.clone().unwrap_or_default();
    if let Some(max) = &spec.max_unavailable {
        let max = scaled(max, scale)?;
        return Ok((scale, (scale - max).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((count, *n)),
        Some(min @ IntOrString::String(_)) => Ok((scale, scaled(min, scale)?)),
        None => Ok((count, 0)),
    }
}

fn set_condition(
    status: &mut PodDisruptionBudgetStatus,
    reason: &str,
    ok: bool,
    message: String,
    now: &Time,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let value = if ok { "True" } else { "False" };
    let generation = status.observed_generation;
    match conditions.iter_mut().find(|c| c.type_ == CONDITION) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = now.clone();
            }
            c.status = value.into();
            c.reason = reason.into();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: CONDITION.into(),
            status: value.into(),
            reason: reason.into(),
            message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

/// The status of `pdb` with its selected `pods`, expecting `expected` pods of which
/// `desired` must stay healthy, at `now`: upstream's `countHealthyPods`,
/// `buildDisruptedPodMap` and `updatePdbStatus`.
pub fn compute(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    expected: i32,
    desired: i32,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let old = pdb.status.clone().unwrap_or_default();
    let timeout = k8s_openapi::jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default();
    let mut disrupted = BTreeMap::new();
    for pod in pods {
        let Some(at) = old
            .disrupted_pods
            .as_ref()
            .and_then(|d| d.get(&pod.name_any()))
        else {
            continue;
        };
        let expired = at.0.checked_add(timeout).is_ok_and(|end| end < now);
        if pod.metadata.deletion_timestamp.is_none() && !expired {
            disrupted.insert(pod.name_any(), at.clone());
        }
    }
    let healthy = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(&p.name_any()))
        .filter(|p| pod_ready(p))
        .count() as i32;
    let mut allowed = healthy - desired;
    if expected <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let mut status = PodDisruptionBudgetStatus {
        conditions: old.conditions.clone(),
        current_healthy: healthy,
        desired_healthy: desired,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        disruptions_allowed: allowed,
        expected_pods: expected,
        observed_generation: pdb.metadata.generation,
    };
    let reason = if allowed > 0 {
        "SufficientPods"
    } else {
        "InsufficientPods"
    };
    set_condition(&mut status, reason, allowed > 0, String::new(), &Time(now));
    status
}

/// The status after a failed sync: nothing may be disrupted (upstream's `failSafe`).
pub fn fail_safe(
    pdb: &PodDisruptionBudget,
    message: String,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    status.observed_generation = pdb.metadata.generation;
    set_condition(&mut status, "SyncFailed", false, message, &Time(now));
    status
}

/// The status to write, if it differs from the current one.
pub fn plan(
    pdb: &PodDisruptionBudget,
    status: PodDisruptionBudgetStatus,
) -> Option<PodDisruptionBudgetStatus> {
    let current = pdb.status.clone().unwrap_or_default();
    let empty_as_none = |s: &PodDisruptionBudgetStatus| {
        let mut s = s.clone();
        if s.disrupted_pods.as_ref().is_some_and(BTreeMap::is_empty) {
            s.disrupted_pods = None;
        }
        s
    };
    (empty_as_none(&current) != empty_as_none(&status)).then_some(status)
}

/// Runs the controller until it fails.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let client = ctx.client.clone();
    let (pdbs, pdb_writer) = reflector::store::<PodDisruptionBudget>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    // disruptedPods entries expire with time alone.
    let ticks = futures::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_secs(15)).await;
        Some((Mark::All, ()))
    });
    let marks = futures::stream::select_all([
        dirty::marks(
            Api::all(client.clone()),
            pdb_writer,
            0,
            |p: &PodDisruptionBudget| p.namespace(),
        ),
        dirty::marks(Api::<Pod>::all(client.clone()), pod_writer, 1, |p| {
            p.namespace()
        }),
        ticks.boxed(),
    ]);
    let all = {
        let pdbs = pdbs.clone();
        move || {
            let set: BTreeSet<String> = pdbs.state().iter().filter_map(|p| p.namespace()).collect();
            set.into_iter().collect()
        }
    };
    dirty::drive(marks.boxed(), 2, all, |ns| {
        let (ctx, pdbs, pods) = (ctx.clone(), pdbs.clone(), pods.clone());
        async move { sync_namespace(&ctx, &ns, &pdbs, &pods).await }
    })
    .await
}

async fn sync_namespace(
    ctx: &Context,
    ns: &str,
    pdbs: &Store<PodDisruptionBudget>,
    pods: &Store<Pod>,
) -> Result<()> {
    let ns_pods = pods.state_filter(|p| p.metadata.namespace.as_deref() == Some(ns));
    let ns_pods: Vec<&Pod> = ns_pods.iter().map(|p| p.as_ref()).collect();
    let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), ns);
    let mut first_error = None;
    for pdb in pdbs.state_filter(|p| p.metadata.namespace.as_deref() == Some(ns)) {
        let chosen = selected(&pdb, &ns_pods);
        let now = Timestamp::now();
        let status = match expected_scale(ctx, ns, &pdb, &chosen).await {
            Ok(scale) => match expectations(&pdb, chosen.len() as i32, scale) {
                Ok((expected, desired)) => compute(&pdb, &chosen, expected, desired, now),
                Err(err) => fail_safe(&pdb, err.to_string(), now),
            },
            Err(err) => {
                tracing::info!(pdb = %pdb.name_any(), namespace = ns, error = %err, "Cannot count the pods a budget expects.");
                fail_safe(&pdb, err.to_string(), now)
            }
        };
        if let Some(status) = plan(&pdb, status) {
            let mut updated = pdb.as_ref().clone();
            updated.status = Some(status);
            if let Err(err) = api
                .replace_status(&pdb.name_any(), &PostParams::default(), &updated)
                .await
            {
                first_error = first_error.or(Some(err));
            }
        }
    }
    first_error.map_or(Ok(()), |e| Err(e.into()))
}

fn controller_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// The summed replicas of the selected pods' controllers, if the budget needs it; pods
/// without a controller are reported with an `UnmanagedPods` event, as upstream.
async fn expected_scale(
    ctx: &Context,
    ns: &str,
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
) -> Result<i32> {
    if !needs_scale(pdb) {
        return Ok(0);
    }
    let mut seen = BTreeSet::new();
    let mut total = 0;
    let mut unmanaged = false;
    for pod in pods {
        let Some(owner) = controller_of(&pod.metadata) else {
            unmanaged = true;
            continue;
        };
        let (kind, name, uid) = scale_target(ctx, ns, owner).await?;
        if seen.insert(uid) {
            total += scale_of(ctx, ns, &kind, &name).await?;
        }
    }
    if unmanaged {
        let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
        ctx.events.record(pdb, "Warning", "UnmanagedPods", format!(
            "Pods selected by this PodDisruptionBudget (selector: {selector:?}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."));
    }
    Ok(total)
}

/// The object whose scale counts for a pod's controller: a ReplicaSet's Deployment
/// when it has one, else the controller itself.
async fn scale_target(
    ctx: &Context,
    ns: &str,
    owner: &OwnerReference,
) -> Result<(String, String, String)> {
    if owner.kind == "ReplicaSet" {
        let rs = Api::<ReplicaSet>::namespaced(ctx.client.clone(), ns)
            .get(&owner.name)
            .await?;
        if let Some(dep) = controller_of(&rs.metadata).filter(|o| o.kind == "Deployment") {
            return Ok((dep.kind.clone(), dep.name.clone(), dep.uid.clone()));
        }
    }
    Ok((owner.kind.clone(), owner.name.clone(), owner.uid.clone()))
}

async fn scale_of(ctx: &Context, ns: &str, kind: &str, name: &str) -> Result<i32> {
    let client = ctx.client.clone();
    let scale = match kind {
        "Deployment" => {
            Api::<Deployment>::namespaced(client, ns)
                .get_scale(name)
                .await?
        }
        "ReplicaSet" => {
            Api::<ReplicaSet>::namespaced(client, ns)
                .get_scale(name)
                .await?
        }
        "StatefulSet" => {
            Api::<StatefulSet>::namespaced(client, ns)
                .get_scale(name)
                .await?
        }
        "ReplicationController" => {
            Api::<ReplicationController>::namespaced(client, ns)
                .get_scale(name)
                .await?
        }
        other => {
            return Err(Error::Invalid(format!(
                "pods controlled by a {other} have no scale this controller reads"
            )))
        }
    };
    Ok(scale.spec.and_then(|s| s.replicas).unwrap_or(0))
}

#[cfg(test)]
#[path = "disruption/tests.rs"]
mod tests;

//! The StatefulSet controller's decisions, pure: the pod and claims of each ordinal,
//! and the next step of `updateStatefulSet` (create missing ordinals, replace failed
//! pods, delete condemned ones highest first, roll updates highest ordinal first down
//! to the partition), for OrderedReady and Parallel pod management.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::controllers::daemonset::plan::REVISION_HASH_LABEL;
use crate::controllers::daemonset::plan::{is_available, is_ready};

/// The label with the pod's name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

fn name(sts: &StatefulSet) -> &str {
    sts.metadata.name.as_deref().unwrap_or_default()
}

/// The ordinal of a pod named `<sts>-<ordinal>`.
pub fn ordinal(sts: &StatefulSet, pod: &Pod) -> Option<i32> {
    let rest = pod.metadata.name.as_deref()?.strip_prefix(name(sts))?;
    rest.strip_prefix('-')?.parse().ok()
}

/// The owner reference of the pods and revisions.
pub fn controller_ref(sts: &StatefulSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: name(sts).into(),
        uid: sts.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The claims of an ordinal: `<template>-<sts>-<ordinal>` for each volumeClaimTemplate,
/// labelled with the set's selector labels.
pub fn claims(sts: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let spec = sts.spec.as_ref();
    let selector = spec.and_then(|s| s.selector.match_labels.clone());
    let templates = spec.and_then(|s| s.volume_claim_templates.clone());
    templates
        .unwrap_or_default()
        .into_iter()
        .map(|mut claim| {
            let template = claim.metadata.name.clone().unwrap_or_default();
            let labels = claim.metadata.labels.get_or_insert_with(BTreeMap::new);
            labels.extend(selector.clone().unwrap_or_default());
            claim.metadata.name = Some(format!("{template}-{}-{ordinal}", name(sts)));
            claim.metadata.namespace = sts.metadata.namespace.clone();
            claim.status = None;
            claim
        })
        .collect()
}

/// The pod of an ordinal from the set's template: the stable name, the identity labels,
/// hostname and subdomain, and a volume for each claim.
pub fn new_pod(sts: &StatefulSet, hash: &str, ordinal: i32) -> Pod {
    let spec = sts.spec.clone().unwrap_or_default();
    let pod_name = format!("{}-{ordinal}", name(sts));
    let mut meta = spec.template.metadata.unwrap_or_default();
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    let meta = ObjectMeta {
        name: Some(pod_name.clone()),
        generate_name: None,
        namespace: sts.metadata.namespace.clone(),
        owner_references: Some(vec![controller_ref(sts)]),
        ..meta
    };
    let mut pod_spec = spec.template.spec.unwrap_or_default();
    pod_spec.hostname = Some(pod_name);
    if !spec.service_name.as_deref().unwrap_or_default().is_empty() {
        pod_spec.subdomain = spec.service_name.clone();
    }
    let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
    for claim in spec.volume_claim_templates.iter().flatten() {
        let volume = claim.metadata.name.clone().unwrap_or_default();
        volumes.retain(|v| v.name != volume);
        volumes.push(Volume {
            name: volume.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: format!("{volume}-{}-{ordinal}", name(sts)),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    if volumes.is_empty() {
        pod_spec.volumes = None;
    }
    Pod {
        metadata: meta,
        spec: Some(pod_spec),
        status: None,
    }
}

/// One step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create the pod (and its claims) of this ordinal.
    Create(i32),
    /// Delete this pod, by name.
    Delete(String),
}

fn running_and_ready(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    phase == Some("Running") && is_ready(pod)
}

fn failed(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn revision(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH_LABEL)
        .map(String::as_str)
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// The next operations, as upstream's `updateStatefulSet`: with OrderedReady one at a
/// time, each waiting for the ordinals below to be Running and Ready; with Parallel all
/// at once. `update` is the hash of the current template.
pub fn plan(sts: &StatefulSet, update: &str, pods: &[Pod]) -> Vec<Op> {
    let spec = sts.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let start = spec
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0);
    let parallel = spec.and_then(|s| s.pod_management_policy.as_deref()) == Some("Parallel");
    let mut by_ordinal: BTreeMap<i32, &Pod> = BTreeMap::new();
    for pod in pods {
        if let Some(o) = ordinal(sts, pod) {
            by_ordinal.insert(o, pod);
        }
    }
    let wanted = start..start + replicas;
    let mut ops = Vec::new();
    for o in wanted.clone() {
        match by_ordinal.get(&o) {
            None => ops.push(Op::Create(o)),
            Some(p) if failed(p) && !terminating(p) => ops.push(Op::Delete(pod_name(p))),
            Some(p) if running_and_ready(p) && !terminating(p) => continue,
            // Created, starting or terminating: OrderedReady waits for it.
            Some(_) => {}
        }
        if !parallel {
            return ops;
        }
    }
    // Condemned pods, highest ordinal first; OrderedReady only once the rest are ready,
    // and one at a time.
    let condemned: Vec<&Pod> = by_ordinal
        .iter()
        .rev()
        .filter(|(o, _)| !wanted.contains(o))
        .map(|(_, p)| *p)
        .collect();
    for pod in &condemned {
        if terminating(pod) {
            if parallel {
                continue;
            }
            return ops;
        }
        ops.push(Op::Delete(pod_name(pod)));
        if !parallel {
            return ops;
        }
    }
    if !ops.is_empty() || !condemned.is_empty() {
        return ops;
    }
    rolling_update(sts, update, &by_ordinal, wanted)
}

/// RollingUpdate: once every pod is Running and Ready, the highest ordinal at or above
/// the partition still on another revision is deleted, to be recreated from the new one.
fn rolling_update(
    sts: &StatefulSet,
    update: &str,
    by_ordinal: &BTreeMap<i32, &Pod>,
    wanted: std::ops::Range<i32>,
) -> Vec<Op> {
    let strategy = sts.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    if strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
        return Vec::new();
    }
    let partition = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let all_ready = wanted.clone().all(|o| {
        by_ordinal
            .get(&o)
            .is_some_and(|p| running_and_ready(p) && !terminating(p))
    });
    if !all_ready {
        return Vec::new();
    }
    wanted
        .rev()
        .filter(|o| *o >= partition)
        .filter_map(|o| by_ordinal.get(&o))
        .find(|p| revision(p) != Some(update))
        .map(|p| vec![Op::Delete(pod_name(p))])
        .unwrap_or_default()
}

/// The status: counts of the live pods, and the current revision, which becomes the
/// update revision once every replica is on it.
pub fn status(
    sts: &StatefulSet,
    current: &str,
    update: &str,
    pods: &[Pod],
    now: i64,
) -> StatefulSetStatus {
    let spec = sts.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let min_ready = spec.and_then(|s| s.min_ready_seconds).map_or(0, i64::from);
    let mut st = StatefulSetStatus {
        observed_generation: sts.metadata.generation,
        collision_count: sts.status.as_ref().and_then(|s| s.collision_count),
        conditions: sts.status.as_ref().and_then(|s| s.conditions.clone()),
        ..StatefulSetStatus::default()
    };
    let (mut ready, mut available, mut current_n, mut updated) = (0, 0, 0, 0);
    for pod in pods
        .iter()
        .filter(|p| !terminating(p) && ordinal(sts, p).is_some())
    {
        st.replicas += 1;
        if running_and_ready(pod) {
            ready += 1;
            available += i32::from(is_available(pod, min_ready, now));
        }
        current_n += i32::from(revision(pod) == Some(current));
        updated += i32::from(revision(pod) == Some(update));
    }
    let done = updated == replicas && st.replicas == replicas && ready == replicas;
    let current = if done { update } else { current };
    if done {
        current_n = updated;
    }
    st.ready_replicas = Some(ready).filter(|n| *n > 0);
    st.available_replicas = Some(available).filter(|n| *n > 0);
    st.current_replicas = Some(current_n).filter(|n| *n > 0);
    st.updated_replicas = Some(updated).filter(|n| *n > 0);
    st.current_revision = Some(format!("{}-{current}", name(sts)));
    st.update_revision = Some(format!("{}-{update}", name(sts)));
    st
}

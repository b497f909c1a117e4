//! A DaemonSet's revisions and pods, pure: the template hash, the ControllerRevision
//! `<ds>-<hash>` that records a template, which old revisions to prune, and the pod made
//! for a node (upstream's `controller_history` and `util.CreatePodTemplate`).

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::json;

use super::plan::{with_daemon_tolerations, REVISION_HASH_LABEL, TEMPLATE_GENERATION_LABEL};

/// The hash of the set's template and collision count.
pub fn compute_hash(ds: &DaemonSet) -> String {
    let template = ds.spec.as_ref().map(|s| &s.template);
    template_hash(template, ds.status.as_ref().and_then(|s| s.collision_count))
}

/// The hash of a template and collision count, as upstream's `ComputeHash`: FNV-1a
/// (32 bits) of the template, the collision count appended, written in decimal and
/// spelled with the safe alphabet of `rand.SafeEncodeString`. Shared by the
/// controllers that keep ControllerRevisions.
pub fn template_hash(template: Option<&PodTemplateSpec>, collision_count: Option<i32>) -> String {
    match template {
        Some(t) => crate::controllers::template::compute_hash(t, collision_count),
        None => {
            crate::controllers::template::compute_hash(&PodTemplateSpec::default(), collision_count)
        }
    }
}

/// What a revision records of a template: a strategic merge patch that replaces it
/// (upstream's `getPatch`, the same for DaemonSets and StatefulSets).
pub fn template_patch(template: Option<&PodTemplateSpec>) -> serde_json::Value {
    let mut template = serde_json::to_value(template).unwrap_or_default();
    if let Some(t) = template.as_object_mut() {
        t.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// The owner reference of everything the set makes.
pub fn controller_ref(ds: &DaemonSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "DaemonSet".into(),
        name: ds.metadata.name.clone().unwrap_or_default(),
        uid: ds.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `ds` is the controller of an object with these owner references.
pub fn controlled_by(refs: Option<&Vec<OwnerReference>>, ds: &DaemonSet) -> bool {
    refs.into_iter()
        .flatten()
        .any(|r| r.controller == Some(true) && Some(&r.uid) == ds.metadata.uid.as_ref())
}

/// What a revision of the set records.
pub fn revision_data(ds: &DaemonSet) -> serde_json::Value {
    template_patch(ds.spec.as_ref().map(|s| &s.template))
}

/// The revision for the set's current template, numbered `revision`.
pub fn new_revision(ds: &DaemonSet, hash: &str, revision: i64) -> ControllerRevision {
    let mut labels = template_labels(ds);
    labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    let name = ds.metadata.name.as_deref().unwrap_or_default();
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{hash}")),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![controller_ref(ds)]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(revision_data(ds))),
        revision,
    }
}

fn template_labels(ds: &DaemonSet) -> BTreeMap<String, String> {
    ds.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

/// What to do about the revisions.
#[derive(Debug, PartialEq)]
pub enum RevisionStep {
    /// The current one exists and is the newest: nothing.
    Current,
    /// Create this.
    Create(Box<ControllerRevision>),
    /// The current one exists but an older template came back: renumber it.
    Renumber(String, i64),
    /// A revision of that name holds another template: count a collision.
    Collision,
}

/// The step that makes a revision for the current template the newest.
pub fn revision_step(ds: &DaemonSet, hash: &str, revisions: &[ControllerRevision]) -> RevisionStep {
    let max = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    let name = format!("{}-{hash}", ds.metadata.name.as_deref().unwrap_or_default());
    match revisions
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(&name))
    {
        None => RevisionStep::Create(Box::new(new_revision(ds, hash, max + 1))),
        Some(r) if r.data.as_ref().map(|d| &d.0) != Some(&revision_data(ds)) => {
            RevisionStep::Collision
        }
        Some(r) if r.revision < max => RevisionStep::Renumber(name, max + 1),
        Some(_) => RevisionStep::Current,
    }
}

/// Old revisions beyond `revisionHistoryLimit` (default 10) that no live pod uses, oldest
/// first (upstream's `cleanupHistory`).
pub fn revisions_to_prune(
    ds: &DaemonSet,
    hash: &str,
    revisions: &[ControllerRevision],
    pods: &[Pod],
) -> Vec<String> {
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let in_use: HashSet<&str> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.labels.as_ref()?.get(REVISION_HASH_LABEL))
        .map(String::as_str)
        .chain([hash])
        .collect();
    let mut old: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| {
            let h = r
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_HASH_LABEL));
            !h.is_some_and(|h| in_use.contains(h.as_str()))
        })
        .collect();
    if old.len() <= limit {
        return Vec::new();
    }
    old.sort_by_key(|r| r.revision);
    let excess = old.len() - limit;
    old.into_iter()
        .take(excess)
        .filter_map(|r| r.metadata.name.clone())
        .collect()
}

/// The daemon pod for `node`: the template with the revision labels, the daemon
/// tolerations, and required node affinity replaced by `metadata.name In [node]` for
/// the scheduler to bind (upstream's `ReplaceDaemonSetPodNodeNameNodeAffinity`).
pub fn new_pod(ds: &DaemonSet, hash: &str, node: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut meta = template.metadata.unwrap_or_default();
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    if let Some(g) = ds.metadata.generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    let name = ds.metadata.name.as_deref().unwrap_or_default();
    meta.name = None;
    meta.generate_name = Some(format!("{name}-"));
    meta.namespace = ds.metadata.namespace.clone();
    meta.owner_references = Some(vec![controller_ref(ds)]);
    let mut spec = with_daemon_tolerations(&template.spec.unwrap_or_default());
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
        ..NodeSelectorTerm::default()
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
    Pod {
        metadata: meta,
        spec: Some(spec),
        status: None,
    }
}

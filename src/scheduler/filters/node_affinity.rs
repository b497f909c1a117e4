//! NodeAffinity: the pod's `nodeSelector` and required node affinity must both match
//! the node. Also the node selector term matching shared with scoring and topology
//! spread.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec};

use super::{CycleState, Reason};
use crate::scheduler::snapshot::{NodeInfo, Snapshot};

/// Upstream's reason.
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// Whether `pod`'s `nodeSelector` and required node affinity both match `node`.
pub fn matches_required(pod: &Pod, node: &NodeInfo) -> bool {
    pod.spec
        .as_ref()
        .is_none_or(|spec| spec_matches_required(spec, &node.name, node.labels()))
}

/// Whether a pod spec's `nodeSelector` and required node affinity both match the node
/// named `node_name` with `labels` (also the DaemonSet controller's placement test).
pub fn spec_matches_required(
    spec: &PodSpec,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    if let Some(selector) = spec.node_selector.as_ref() {
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        None => true,
        Some(selector) => selector
            .node_selector_terms
            .iter()
            .any(|term| term_matches(term, node_name, labels)),
    }
}

/// Whether one node selector term matches: all its expressions and fields hold; an
/// empty term matches nothing, as upstream.
pub fn term_matches(
    term: &NodeSelectorTerm,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            let value = (r.key == "metadata.name").then_some(node_name);
            r.key == "metadata.name" && requirement_matches(r, value)
        })
}

/// One requirement against the value of its key (`None` when the key is absent).
fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(Ok(have)), [want]) = (value.map(str::parse::<i64>), values) else {
                return false;
            };
            let Ok(want) = want.parse::<i64>() else {
                return false;
            };
            if r.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

/// Rejects a node the pod's node selector or required node affinity excludes.
pub fn filter(cycle: &CycleState, node: &NodeInfo, _: &Snapshot) -> Result<(), Reason> {
    if matches_required(&cycle.pod.pod, node) {
        Ok(())
    } else {
        Err(Reason::unresolvable(REASON))
    }
}

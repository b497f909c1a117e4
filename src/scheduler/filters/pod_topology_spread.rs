//! PodTopologySpread (filter): for each `DoNotSchedule` constraint, placing the pod in
//! the node's domain must keep the skew (matching pods there, plus the pod if it
//! matches, minus the emptiest domain) within `maxSkew`. Also the constraint parsing
//! shared with the score.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;

use super::node_affinity::matches_required;
use super::taint_toleration::first_untolerated;
use super::{CycleState, Reason};
use crate::k8s::labels::{LabelSelector, Requirement};
use crate::scheduler::podinfo::PodInfo;
use crate::scheduler::snapshot::{NodeInfo, Snapshot};

/// Upstream's reason when the skew would grow too large.
pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
/// Upstream's reason when the node lacks a constraint's topology label.
pub const MISSING_LABEL_REASON: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// A parsed topology spread constraint.
#[derive(Clone, Debug)]
pub struct Constraint {
    /// `maxSkew`.
    pub max_skew: i64,
    /// `topologyKey`.
    pub topology_key: String,
    /// The selector with `matchLabelKeys` merged in; `None` selects nothing.
    pub selector: Option<LabelSelector>,
    /// `minDomains` (1 when unset).
    pub min_domains: i64,
    /// `nodeAffinityPolicy: Honor` (the default).
    pub honor_node_affinity: bool,
    /// `nodeTaintsPolicy: Honor` (default Ignore).
    pub honor_taints: bool,
}

impl Constraint {
    /// Whether `existing` counts for this constraint of `pod` (same namespace, selected,
    /// not being deleted).
    pub fn counts(&self, pod: &PodInfo, existing: &PodInfo) -> bool {
        existing.namespace == pod.namespace
            && !existing.is_terminating()
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(existing.labels()))
    }

    /// Whether the node takes part in this constraint's domains for `pod`.
    pub fn node_eligible(&self, pod: &PodInfo, node: &NodeInfo) -> bool {
        (!self.honor_node_affinity || matches_required(&pod.pod, node))
            && (!self.honor_taints
                || first_untolerated(
                    pod.tolerations(),
                    node.taints(),
                    &["NoSchedule", "NoExecute"],
                )
                .is_none())
    }
}

/// The pod's constraints whose `whenUnsatisfiable` is `when`.
pub fn constraints(pod: &PodInfo, when: &str) -> Vec<Constraint> {
    let spec = pod.pod.spec.as_ref();
    let all: &[TopologySpreadConstraint] = spec
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or(&[]);
    all.iter()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| Constraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            selector: selector(c, pod),
            min_domains: i64::from(c.min_domains.unwrap_or(1)),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        })
        .collect()
}

fn selector(c: &TopologySpreadConstraint, pod: &PodInfo) -> Option<LabelSelector> {
    let value = serde_json::to_value(c.label_selector.as_ref()?).ok()?;
    let mut selector = LabelSelector::from_object(&value).ok()?;
    for key in c.match_label_keys.iter().flatten() {
        if let Some(v) = pod.labels().get(key) {
            selector
                .0
                .push(Requirement::In(key.clone(), vec![v.clone()]));
        }
    }
    Some(selector)
}

/// Whether the node has every constraint's topology label.
pub fn has_all_keys(constraints: &[Constraint], node: &NodeInfo) -> bool {
    let labels = node.labels();
    constraints
        .iter()
        .all(|c| labels.contains_key(&c.topology_key))
}

/// The PreFilter state: matching pods per domain, per `DoNotSchedule` constraint.
#[derive(Clone, Debug, Default)]
pub struct SpreadCounts {
    /// The constraints.
    pub constraints: Vec<Constraint>,
    /// Per constraint, matching pods per topology value (every eligible domain present).
    pub counts: Vec<HashMap<String, i64>>,
    /// Per constraint, the global minimum the skew is measured from (upstream's
    /// critical paths), kept current so the filter reads it in O(1).
    pub mins: Vec<i64>,
}

impl SpreadCounts {
    /// Counts matching pods over every eligible node of the snapshot.
    pub fn new(pod: &PodInfo, snapshot: &Snapshot) -> SpreadCounts {
        let constraints = constraints(pod, "DoNotSchedule");
        let mut counts = vec![HashMap::new(); constraints.len()];
        if constraints.is_empty() {
            return SpreadCounts::default();
        }
        for node in snapshot.nodes() {
            if !has_all_keys(&constraints, node) {
                continue;
            }
            for (c, per_value) in constraints.iter().zip(counts.iter_mut()) {
                if !c.node_eligible(pod, node) {
                    continue;
                }
                let n = node.pods.iter().filter(|p| c.counts(pod, p)).count() as i64;
                let value = node
                    .labels()
                    .get(&c.topology_key)
                    .cloned()
                    .unwrap_or_default();
                *per_value.entry(value).or_insert(0) += n;
            }
        }
        let mut state = SpreadCounts {
            constraints,
            counts,
            mins: Vec::new(),
        };
        state.refresh_mins();
        state
    }

    /// Adds (`delta` 1) or removes (-1) `existing` on `node`.
    pub fn update(&mut self, pod: &PodInfo, existing: &PodInfo, node: &NodeInfo, delta: i64) {
        if !has_all_keys(&self.constraints, node) {
            return;
        }
        for (c, per_value) in self.constraints.iter().zip(self.counts.iter_mut()) {
            if c.node_eligible(pod, node) && c.counts(pod, existing) {
                if let Some(v) = node.labels().get(&c.topology_key) {
                    *per_value.entry(v.clone()).or_insert(0) += delta;
                }
            }
        }
        self.refresh_mins();
    }

    fn refresh_mins(&mut self) {
        self.mins = (0..self.constraints.len())
            .map(|i| self.min_count(i))
            .collect();
    }

    /// The smallest count over the domains of constraint `i`, or 0 when there are fewer
    /// domains than `minDomains`.
    fn min_count(&self, i: usize) -> i64 {
        let per_value = &self.counts[i];
        if (per_value.len() as i64) < self.constraints[i].min_domains {
            return 0;
        }
        per_value.values().copied().min().unwrap_or(0)
    }
}

/// Rejects a node whose domain would be too crowded for a `DoNotSchedule` constraint.
pub fn filter(cycle: &CycleState, node: &NodeInfo, _: &Snapshot) -> Result<(), Reason> {
    let spread = &cycle.spread;
    let labels = node.labels();
    for (i, c) in spread.constraints.iter().enumerate() {
        let Some(value) = labels.get(&c.topology_key) else {
            return Err(Reason::unresolvable(MISSING_LABEL_REASON));
        };
        let self_match = i64::from(
            c.selector
                .as_ref()
                .is_some_and(|s| s.matches(cycle.pod.labels())),
        );
        let here = spread.counts[i].get(value).copied().unwrap_or(0);
        if here + self_match - spread.mins[i] > c.max_skew {
            return Err(Reason::unschedulable(REASON));
        }
    }
    Ok(())
}

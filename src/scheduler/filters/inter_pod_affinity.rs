//! InterPodAffinity: the pod's required affinity must find matching pods in the node's
//! topology domain, its required anti-affinity must find none there, and no pod already
//! in that domain may have a required anti-affinity term against it.

use std::collections::HashMap;

use super::{CycleState, Reason};
use crate::scheduler::podinfo::{AffinityTerm, PodInfo};
use crate::scheduler::snapshot::{NodeInfo, Snapshot};

/// Upstream's reason when required affinity finds no pods.
pub const AFFINITY_REASON: &str = "node(s) didn't match pod affinity rules";
/// Upstream's reason when the pod's required anti-affinity finds pods.
pub const ANTI_AFFINITY_REASON: &str = "node(s) didn't match pod anti-affinity rules";
/// Upstream's reason when an existing pod's anti-affinity rejects the pod.
pub const EXISTING_ANTI_AFFINITY_REASON: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Counts per topology key, then per value, looked up without allocating.
#[derive(Clone, Debug, Default)]
pub struct TopologyCounts(HashMap<String, HashMap<String, i64>>);

impl TopologyCounts {
    fn add(&mut self, key: &str, node: &NodeInfo, delta: i64) {
        let Some(value) = node.labels().get(key) else {
            return;
        };
        let values = self.0.entry(key.to_string()).or_default();
        let count = values.entry(value.clone()).or_default();
        *count += delta;
        if *count == 0 {
            values.remove(value);
            if values.is_empty() {
                self.0.remove(key);
            }
        }
    }

    /// The count for `key=value`.
    pub fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|v| v.get(value))
            .copied()
            .unwrap_or(0)
    }

    /// Whether every count is zero.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any `key=value` counted is among the node's labels.
    fn any_on(&self, node: &NodeInfo) -> bool {
        let labels = node.labels();
        self.0.iter().any(|(key, values)| {
            labels
                .get(key)
                .is_some_and(|v| values.get(v).is_some_and(|&c| c > 0))
        })
    }
}

/// The PreFilter state of the plugin.
#[derive(Clone, Debug, Default)]
pub struct AffinityCounts {
    /// Domains holding pods that match all of the pod's required affinity terms.
    pub affinity: TopologyCounts,
    /// Domains holding pods that match one of the pod's required anti-affinity terms.
    pub anti_affinity: TopologyCounts,
    /// Domains of existing pods whose required anti-affinity matches the pod.
    pub existing_anti_affinity: TopologyCounts,
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo) -> bool {
    terms.iter().all(|t| t.matches(pod))
}

impl AffinityCounts {
    /// Counts over the snapshot; only nodes holding pods with anti-affinity are visited
    /// unless the pod itself has required terms.
    pub fn new(pod: &PodInfo, snapshot: &Snapshot) -> AffinityCounts {
        let mut counts = AffinityCounts::default();
        let own_terms = !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
        for node in snapshot.nodes() {
            if !own_terms && node.pods_with_required_anti_affinity == 0 {
                continue;
            }
            for existing in &node.pods {
                counts.update(pod, existing, node, 1);
            }
        }
        counts
    }

    /// Adds (`delta` 1) or removes (-1) the contribution of `existing` on `node`.
    pub fn update(&mut self, pod: &PodInfo, existing: &PodInfo, node: &NodeInfo, delta: i64) {
        for term in &existing.required_anti_affinity {
            if term.matches(pod) {
                self.existing_anti_affinity
                    .add(&term.topology_key, node, delta);
            }
        }
        if !pod.required_affinity.is_empty() && matches_all(&pod.required_affinity, existing) {
            for term in &pod.required_affinity {
                self.affinity.add(&term.topology_key, node, delta);
            }
        }
        for term in &pod.required_anti_affinity {
            if term.matches(existing) {
                self.anti_affinity.add(&term.topology_key, node, delta);
            }
        }
    }
}

fn satisfies_affinity(cycle: &CycleState, node: &NodeInfo) -> bool {
    let labels = node.labels();
    let mut pods_exist = true;
    for term in &cycle.pod.required_affinity {
        let Some(value) = labels.get(&term.topology_key) else {
            return false;
        };
        if cycle.affinity.affinity.get(&term.topology_key, value) <= 0 {
            pods_exist = false;
        }
    }
    // The first pod of a group with affinity to itself may go anywhere that has the
    // topology labels, if no other pod matches, as upstream allows.
    pods_exist
        || (cycle.affinity.affinity.is_empty()
            && matches_all(&cycle.pod.required_affinity, &cycle.pod))
}

fn satisfies_anti_affinity(cycle: &CycleState, node: &NodeInfo) -> bool {
    let labels = node.labels();
    cycle.pod.required_anti_affinity.iter().all(|term| {
        labels
            .get(&term.topology_key)
            .is_none_or(|v| cycle.affinity.anti_affinity.get(&term.topology_key, v) <= 0)
    })
}

/// Rejects a node that breaks the pod's required (anti-)affinity or an existing pod's
/// required anti-affinity.
pub fn filter(cycle: &CycleState, node: &NodeInfo, _: &Snapshot) -> Result<(), Reason> {
    if !satisfies_affinity(cycle, node) {
        return Err(Reason::unresolvable(AFFINITY_REASON));
    }
    if !satisfies_anti_affinity(cycle, node) {
        return Err(Reason::unschedulable(ANTI_AFFINITY_REASON));
    }
    if cycle.affinity.existing_anti_affinity.any_on(node) {
        return Err(Reason::unschedulable(EXISTING_ANTI_AFFINITY_REASON));
    }
    Ok(())
}

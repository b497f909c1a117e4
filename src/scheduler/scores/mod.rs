//! Score plugins, one file each. Each gives every feasible node 0..=100 after upstream's
//! normalization; [`total`] weighs them as kube-scheduler's default profile does.

use super::cycle::CycleState;
use super::snapshot::{NodeInfo, Snapshot};

pub mod balanced_allocation;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod least_allocated;
pub mod node_affinity;
pub mod pod_topology_spread;
pub mod taint_toleration;

#[cfg(test)]
mod tests;

/// The best score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// The signature every score plugin has: normalized scores, one per feasible node.
pub type Score = fn(&CycleState, &[&NodeInfo], &Snapshot) -> Vec<i64>;

/// The default profile's score plugins and their weights.
pub const DEFAULT_SCORES: [(Score, i64); 7] = [
    (taint_toleration::scores, 3),
    (node_affinity::scores, 2),
    (pod_topology_spread::scores, 2),
    (inter_pod_affinity::scores, 2),
    (least_allocated::scores, 1),
    (balanced_allocation::scores, 1),
    (image_locality::scores, 1),
];

/// The weighted sum of every plugin's score, per feasible node.
pub fn total(cycle: &CycleState, feasible: &[&NodeInfo], snapshot: &Snapshot) -> Vec<i64> {
    let mut sum = vec![0; feasible.len()];
    for (plugin, weight) in DEFAULT_SCORES {
        for (s, score) in sum.iter_mut().zip(plugin(cycle, feasible, snapshot)) {
            *s += score * weight;
        }
    }
    sum
}

/// Upstream's `DefaultNormalizeScore`: scales to 0..=100 by the highest score, and
/// with `reverse` turns high counts into low scores.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let scaled = MAX_NODE_SCORE * *s / max;
        *s = if reverse {
            MAX_NODE_SCORE - scaled
        } else {
            scaled
        };
    }
}

//! NodeResourcesBalancedAllocation: prefers nodes whose cpu and memory would be used in
//! equal shares, `(1 - |cpu share - memory share| / 2) * 100`, counting actual
//! requests (no defaults), as upstream.

use super::MAX_NODE_SCORE;
use crate::scheduler::cycle::CycleState;
use crate::scheduler::snapshot::{NodeInfo, Snapshot};

/// Scores every feasible node (no normalization upstream).
pub fn scores(cycle: &CycleState, feasible: &[&NodeInfo], _: &Snapshot) -> Vec<i64> {
    let pod = &cycle.pod.requests.requests;
    feasible
        .iter()
        .map(|n| {
            let shares = [
                share(
                    n.requested.milli_cpu + pod.milli_cpu,
                    n.allocatable.milli_cpu,
                ),
                share(n.requested.memory + pod.memory, n.allocatable.memory),
            ];
            let present: Vec<f64> = shares.into_iter().flatten().collect();
            let std = match present.as_slice() {
                [a, b] => ((a - b) / 2.0).abs(),
                _ => 0.0,
            };
            ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
        })
        .collect()
}

/// The used share of a resource, capped at 1; `None` when the node has none of it.
fn share(requested: i64, allocatable: i64) -> Option<f64> {
    (allocatable != 0).then(|| (requested as f64 / allocatable as f64).min(1.0))
}

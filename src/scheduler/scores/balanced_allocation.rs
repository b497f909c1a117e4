//! NodeResourcesBalancedAllocation: prefers nodes whose cpu and memory would be used in
//! equal shares, `(1 - |cpu share - memory share| / 2) * 100`, counting actual
//! requests (no defaults), as upstream. Pods requesting neither are not scored (all
//! 0), as upstream since 1.33, so best-effort pods do not pile onto one node.

use super::MAX_NODE_SCORE;
use crate::scheduler::cycle::CycleState;
use crate::scheduler::snapshot::{NodeInfo, Snapshot};

/// Scores every feasible node (no normalization upstream).
pub fn scores(cycle: &CycleState, feasible: &[&NodeInfo], _: &Snapshot) -> Vec<i64> {
    let pod = &cycle.pod.requests.requests;
    if pod.milli_cpu == 0 && pod.memory == 0 {
        return vec![0; feasible.len()];
    }
    feasible
        .iter()
        .map(|n| {
            let cpu = share(
                n.requested.milli_cpu + pod.milli_cpu,
                n.allocatable.milli_cpu,
            );
            let memory = share(n.requested.memory + pod.memory, n.allocatable.memory);
            let std = match (cpu, memory) {
                (Some(a), Some(b)) => ((a - b) / 2.0).abs(),
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

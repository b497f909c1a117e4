//! NodeResourcesFit scoring with the LeastAllocated strategy: prefers nodes with the
//! most cpu and memory left (weight 1 each), counting requests with the 100m / 200Mi
//! defaults for containers that name none.

use super::MAX_NODE_SCORE;
use crate::scheduler::cycle::CycleState;
use crate::scheduler::snapshot::{NodeInfo, Snapshot};

/// The share of `capacity` left after `requested`, 0..=100.
pub fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// Scores every feasible node (no normalization upstream).
pub fn scores(cycle: &CycleState, feasible: &[&NodeInfo], _: &Snapshot) -> Vec<i64> {
    let pod = &cycle.pod.requests;
    feasible
        .iter()
        .map(|n| {
            let cpu = least_requested(
                n.non_zero_milli_cpu + pod.non_zero_milli_cpu,
                n.allocatable.milli_cpu,
            );
            let memory = least_requested(
                n.non_zero_memory + pod.non_zero_memory,
                n.allocatable.memory,
            );
            (cpu + memory) / 2
        })
        .collect()
}

//! TaintToleration scoring: the fewer `PreferNoSchedule` taints a node has that the pod
//! does not tolerate, the better; normalized in reverse.

use super::default_normalize;
use crate::scheduler::cycle::CycleState;
use crate::scheduler::filters::taint_toleration::tolerates;
use crate::scheduler::snapshot::{NodeInfo, Snapshot};

/// Scores every feasible node.
pub fn scores(cycle: &CycleState, feasible: &[&NodeInfo], _: &Snapshot) -> Vec<i64> {
    let tolerations: Vec<_> = cycle
        .pod
        .tolerations()
        .iter()
        .filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        })
        .collect();
    let mut out: Vec<i64> = feasible
        .iter()
        .map(|n| {
            n.taints()
                .iter()
                .filter(|taint| taint.effect == "PreferNoSchedule")
                .filter(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
                .count() as i64
        })
        .collect();
    default_normalize(&mut out, true);
    out
}

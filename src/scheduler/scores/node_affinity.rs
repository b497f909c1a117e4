//! NodeAffinity scoring: the sum of the weights of the pod's preferred node affinity
//! terms the node matches, scaled so the best node gets 100.

use super::default_normalize;
use crate::scheduler::cycle::CycleState;
use crate::scheduler::filters::node_affinity::term_matches;
use crate::scheduler::snapshot::{NodeInfo, Snapshot};

/// Scores every feasible node.
pub fn scores(cycle: &CycleState, feasible: &[&NodeInfo], _: &Snapshot) -> Vec<i64> {
    let preferred = cycle
        .pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or(&[]);
    let mut out: Vec<i64> = feasible
        .iter()
        .map(|n| {
            preferred
                .iter()
                .filter(|t| t.weight != 0 && term_matches(&t.preference, &n.name, n.labels()))
                .map(|t| i64::from(t.weight))
                .sum()
        })
        .collect();
    default_normalize(&mut out, false);
    out
}

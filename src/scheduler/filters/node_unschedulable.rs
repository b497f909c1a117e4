//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods that
//! tolerate the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use super::taint_toleration::tolerates_parts;
use super::{CycleState, Reason};
use crate::scheduler::snapshot::{NodeInfo, Snapshot};

/// Upstream's reason.
pub const REASON: &str = "node(s) were unschedulable";

/// Rejects a cordoned node unless the pod tolerates the unschedulable taint.
pub fn filter(cycle: &CycleState, node: &NodeInfo, _: &Snapshot) -> Result<(), Reason> {
    let cordoned = node
        .node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if !cordoned {
        return Ok(());
    }
    let tolerated = cycle
        .pod
        .tolerations()
        .iter()
        .any(|t| tolerates_parts(t, "node.kubernetes.io/unschedulable", "", "NoSchedule"));
    if tolerated {
        return Ok(());
    }
    Err(Reason::unresolvable(REASON))
}

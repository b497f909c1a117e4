//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods that
//! tolerate the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use super::taint_toleration::tolerates;
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
    let taint = Taint {
        key: "node.kubernetes.io/unschedulable".to_string(),
        effect: "NoSchedule".to_string(),
        ..Taint::default()
    };
    if cycle.pod.tolerations().iter().any(|t| tolerates(t, &taint)) {
        return Ok(());
    }
    Err(Reason::unresolvable(REASON))
}

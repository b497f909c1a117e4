//! NodeName: a pod that names its node (`spec.nodeName`) fits only there.

use super::{CycleState, Reason};
use crate::scheduler::snapshot::{NodeInfo, Snapshot};

/// Upstream's reason.
pub const REASON: &str = "node(s) didn't match the requested node name";

/// Rejects every node but the one the pod names, if it names one.
pub fn filter(cycle: &CycleState, node: &NodeInfo, _: &Snapshot) -> Result<(), Reason> {
    let wanted = cycle
        .pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref());
    match wanted {
        Some(name) if !name.is_empty() && name != node.name => Err(Reason::unresolvable(REASON)),
        _ => Ok(()),
    }
}

//! NodePorts: the host ports a pod's containers bind must be free on the node.

use super::{CycleState, Reason};
use crate::scheduler::snapshot::{NodeInfo, Snapshot};

/// Upstream's reason.
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// Rejects a node where another pod already binds one of the pod's host ports.
pub fn filter(cycle: &CycleState, node: &NodeInfo, _: &Snapshot) -> Result<(), Reason> {
    let clash = cycle
        .pod
        .host_ports
        .iter()
        .any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
    if clash {
        Err(Reason::unschedulable(REASON))
    } else {
        Ok(())
    }
}

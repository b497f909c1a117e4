//! Filter plugins, one file each, run in the default profile's order; each answers
//! whether the pod may go on a node, and if not, why in upstream's words.

use std::borrow::Cow;
use std::fmt;

use super::cycle::CycleState;
use super::snapshot::{NodeInfo, Snapshot};

pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;

#[cfg(test)]
mod tests;

/// How final a rejection is, as upstream's status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Removing pods from the node could make room (`Unschedulable`).
    Unschedulable,
    /// Preemption cannot help on this node (`UnschedulableAndUnresolvable`).
    Unresolvable,
}

/// Why a node was rejected: one or more of upstream's reason strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    /// Whether preemption could help.
    pub code: Code,
    /// The reasons, each counted on its own in the unschedulable message.
    pub messages: Vec<Cow<'static, str>>,
}

impl Reason {
    /// A rejection preemption may resolve.
    pub fn unschedulable(message: impl Into<Cow<'static, str>>) -> Reason {
        Reason {
            code: Code::Unschedulable,
            messages: vec![message.into()],
        }
    }

    /// A rejection preemption cannot resolve.
    pub fn unresolvable(message: impl Into<Cow<'static, str>>) -> Reason {
        Reason {
            code: Code::Unresolvable,
            messages: vec![message.into()],
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.messages.join(", "))
    }
}

/// The signature every filter plugin has.
pub type Filter = fn(&CycleState, &NodeInfo, &Snapshot) -> Result<(), Reason>;

/// The filters of kube-scheduler's default profile, in its order.
pub const DEFAULT_FILTERS: [Filter; 8] = [
    node_unschedulable::filter,
    node_name::filter,
    taint_toleration::filter,
    node_affinity::filter,
    node_ports::filter,
    node_resources_fit::filter,
    pod_topology_spread::filter,
    inter_pod_affinity::filter,
];

/// Runs every filter on one node, stopping at the first rejection (as upstream).
pub fn run_all(cycle: &CycleState, node: &NodeInfo, snapshot: &Snapshot) -> Result<(), Reason> {
    DEFAULT_FILTERS
        .iter()
        .try_for_each(|filter| filter(cycle, node, snapshot))
}

//! What the garbage collector does about one object, decided without the API: upstream's
//! `attemptToDeleteItem` (classify the owner references as solid, dangling, or waiting
//! for their dependents' deletion), `processDeletingDependentsItem` and
//! `orphanDependents`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::PropagationPolicy;

use super::graph::{Identity, Node, FOREGROUND, ORPHAN};

/// What is known of the owner one reference names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// No object of that kind and name has the reference's uid: the reference dangles.
    Absent,
    /// The owner exists.
    Present,
    /// The owner exists and is deleted in the foreground, waiting for its dependents.
    DeletingDependents,
}

/// One write to the API.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Delete the object (with its uid as a precondition).
    Delete {
        /// Which object.
        target: Identity,
        /// How its own dependents go.
        propagation: PropagationPolicy,
    },
    /// Replace its owner references, if it is still at `resource_version`.
    SetOwners {
        /// Which object.
        target: Identity,
        /// The version the change was computed from.
        resource_version: String,
        /// The owner references it keeps.
        owners: Vec<OwnerReference>,
    },
    /// Replace its finalizers (one removed), if it is still at `resource_version`.
    SetFinalizers {
        /// Which object.
        target: Identity,
        /// The version the change was computed from.
        resource_version: String,
        /// The finalizers it keeps.
        finalizers: Vec<String>,
    },
}

/// The policy an object without owners is deleted with: the one its own finalizers ask
/// for, else Background.
fn own_policy(item: &Node) -> PropagationPolicy {
    if item.has_finalizer(ORPHAN) {
        PropagationPolicy::Orphan
    } else if item.has_finalizer(FOREGROUND) {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    }
}

/// Decides about an object that has owners, given what is known of each (in the order of
/// its references), whether it has dependents, and whether one of those is itself waiting
/// for its dependents (a cycle through blocking references).
pub fn attempt_to_delete(
    item: &Node,
    owners: &[OwnerState],
    has_dependents: bool,
    dependent_deleting_dependents: bool,
) -> Vec<Op> {
    if item.deleting || item.owners.is_empty() {
        // Already going; one waiting for its dependents is handled on its own account.
        return Vec::new();
    }
    let state = |i: usize| owners.get(i).copied().unwrap_or(OwnerState::Present);
    let count = |s: OwnerState| (0..item.owners.len()).filter(|i| state(*i) == s).count();
    let (solid, dangling, waiting) = (
        count(OwnerState::Present),
        count(OwnerState::Absent),
        count(OwnerState::DeletingDependents),
    );
    if solid > 0 {
        if dangling == 0 && waiting == 0 {
            return Vec::new();
        }
        // It stays, for its live owners; the references to the others go.
        let kept = (0..item.owners.len())
            .filter(|i| state(*i) == OwnerState::Present)
            .map(|i| item.owners[i].clone())
            .collect();
        return vec![Op::SetOwners {
            target: item.identity.clone(),
            resource_version: item.resource_version.clone(),
            owners: kept,
        }];
    }
    if waiting > 0 && has_dependents {
        let mut ops = Vec::new();
        if dependent_deleting_dependents {
            // A cycle: stop blocking the owner, or neither would ever go.
            let owners = item
                .owners
                .iter()
                .cloned()
                .map(|mut r| {
                    if r.block_owner_deletion == Some(true) {
                        r.block_owner_deletion = Some(false);
                    }
                    r
                })
                .collect();
            ops.push(Op::SetOwners {
                target: item.identity.clone(),
                resource_version: item.resource_version.clone(),
                owners,
            });
        }
        ops.push(Op::Delete {
            target: item.identity.clone(),
            propagation: PropagationPolicy::Foreground,
        });
        return ops;
    }
    vec![Op::Delete {
        target: item.identity.clone(),
        propagation: own_policy(item),
    }]
}

/// An owner deleted in the foreground loses its `foregroundDeletion` finalizer once no
/// dependent blocks it any more.
pub fn deleting_dependents(owner: &Node, dependents: &[&Node]) -> Vec<Op> {
    if !owner.deleting_dependents() {
        return Vec::new();
    }
    if dependents.iter().any(|d| d.blocks(&owner.identity.uid)) {
        return Vec::new();
    }
    vec![without_finalizer(owner, FOREGROUND)]
}

/// An owner deleted with the Orphan policy: every dependent loses its reference to it,
/// then the owner loses its `orphan` finalizer.
pub fn orphan(owner: &Node, dependents: &[&Node]) -> Vec<Op> {
    if !owner.orphaning() {
        return Vec::new();
    }
    let uid = &owner.identity.uid;
    let mut ops: Vec<Op> = dependents
        .iter()
        .filter(|d| d.owners.iter().any(|r| &r.uid == uid))
        .map(|d| Op::SetOwners {
            target: d.identity.clone(),
            resource_version: d.resource_version.clone(),
            owners: d.owners.iter().filter(|r| &r.uid != uid).cloned().collect(),
        })
        .collect();
    ops.push(without_finalizer(owner, ORPHAN));
    ops
}

fn without_finalizer(node: &Node, finalizer: &str) -> Op {
    Op::SetFinalizers {
        target: node.identity.clone(),
        resource_version: node.resource_version.clone(),
        finalizers: node
            .finalizers
            .iter()
            .filter(|f| *f != finalizer)
            .cloned()
            .collect(),
    }
}

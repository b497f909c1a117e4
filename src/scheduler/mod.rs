//! The scheduler's decisions, pure: which node a pod goes to, or why none fits, and
//! which pods to preempt, made as kube-scheduler's default profile makes them and
//! explained in its words. No API access and no async here; the runtime feeds a
//! [`Snapshot`] from its reflectors, records its bindings with [`Snapshot::assume`],
//! and applies the [`Decision`].
//!
//! Where this knowingly differs from kube-scheduler:
//! - Volumes are not considered (no VolumeBinding, VolumeRestrictions, VolumeZone,
//!   NodeVolumeLimits), nor dynamic resources, pod-level resources or in-place resize.
//! - Pod (anti-)affinity `namespaceSelector`: an empty one (`{}`) selects every
//!   namespace; a non-empty one selects none (namespace labels are not in the snapshot),
//!   so only the listed `namespaces` count. `matchLabelKeys`/`mismatchLabelKeys` of
//!   affinity terms are not merged here (upstream's API server merges them into the
//!   selector on create).
//! - PodTopologySpread has no system default constraints (they need the owning
//!   Services and ReplicaSets); pods without constraints are not spread by it.
//! - Pods nominated to a node by an earlier preemption are not counted there, and the
//!   "terminating pod on the nominated node" eligibility rule is not applied.
//! - Preemption ignores PodDisruptionBudgets and dry-runs every node rather than a
//!   sample from a random offset (see [`preemption`]).
//! - Node sampling is opt-in ([`schedule_sampled`]); [`schedule`] examines every node.
//! - Invalid selectors select nothing (upstream fails the cycle with an error).
//! - No nodes gives upstream's `no nodes available to schedule pods` as a [`FitError`]
//!   with zero nodes, without attempting preemption, as upstream.

use k8s_openapi::api::core::v1::Pod;

pub mod cycle;
pub mod decide;
pub mod filters;
pub mod podinfo;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod run;
pub mod scores;
pub mod snapshot;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use decide::{schedule, schedule_sampled, schedule_with, Decision, FitError, NodeSampling};
pub use preemption::{preempt, Preemption};
pub use snapshot::{NodeInfo, Snapshot};

/// The scheduler name pods get when they name none.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// Whether this scheduler should place `pod`: not yet bound, meant for the default
/// scheduler, not being deleted, not finished, and with no scheduling gates left.
pub fn is_schedulable_candidate(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let unbound = spec.node_name.as_deref().is_none_or(str::is_empty);
    let ours = matches!(
        spec.scheduler_name.as_deref(),
        None | Some("") | Some(DEFAULT_SCHEDULER)
    );
    let gated = spec
        .scheduling_gates
        .as_ref()
        .is_some_and(|g| !g.is_empty());
    unbound
        && ours
        && !gated
        && pod.metadata.deletion_timestamp.is_none()
        && !snapshot::is_terminal(pod)
}

/// A pod's priority: `spec.priority` (set by admission from its PriorityClass), 0 when
/// unset.
pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

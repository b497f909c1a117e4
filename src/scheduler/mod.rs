//! The scheduler's decisions, pure: which node a pod goes to, or why none fits, and
//! which pods to preempt, made as kube-scheduler's default profile makes them and
//! explained in its words. No API access and no async here; the runtime feeds a
//! [`Snapshot`] from its reflectors and applies the [`Decision`].

use k8s_openapi::api::core::v1::Pod;

pub mod cycle;
pub mod decide;
pub mod filters;
pub mod podinfo;
pub mod preemption;
pub mod resources;
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

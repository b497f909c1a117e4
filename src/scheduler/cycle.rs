//! The state of one scheduling cycle (upstream's `CycleState` after PreFilter): the
//! incoming pod's derived data and the cluster-wide counts the inter-pod affinity and
//! topology spread filters need, computed once per pod rather than once per node.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::filters::inter_pod_affinity::AffinityCounts;
use super::filters::pod_topology_spread::SpreadCounts;
use super::podinfo::PodInfo;
use super::snapshot::{NodeInfo, Snapshot};

/// Everything the filters know about the pod being scheduled.
#[derive(Clone, Debug)]
pub struct CycleState {
    /// The pod, with its requests and parsed terms.
    pub pod: Arc<PodInfo>,
    /// Pod (anti-)affinity counts by topology domain.
    pub affinity: AffinityCounts,
    /// Matching pods by topology domain for `DoNotSchedule` spread constraints.
    pub spread: SpreadCounts,
}

impl CycleState {
    /// Prepares the cycle for `pod` over `snapshot` (one copy of the pod).
    pub fn new(pod: &Pod, snapshot: &Snapshot) -> CycleState {
        CycleState::for_pod(Arc::new(PodInfo::new(Arc::new(pod.clone()))), snapshot)
    }

    /// Prepares the cycle for an already derived pod.
    pub fn for_pod(pod: Arc<PodInfo>, snapshot: &Snapshot) -> CycleState {
        CycleState {
            affinity: AffinityCounts::new(&pod, snapshot),
            spread: SpreadCounts::new(&pod, snapshot),
            pod,
        }
    }

    /// Updates the counts as if `existing` were removed from `node` (preemption's
    /// what-if, upstream's `RemovePod` extensions).
    pub fn remove_pod(&mut self, existing: &PodInfo, node: &NodeInfo) {
        self.affinity.update(&self.pod, existing, node, -1);
        self.spread.update(&self.pod, existing, node, -1);
    }

    /// Updates the counts as if `existing` were added to `node` (upstream's `AddPod`).
    pub fn add_pod(&mut self, existing: &PodInfo, node: &NodeInfo) {
        self.affinity.update(&self.pod, existing, node, 1);
        self.spread.update(&self.pod, existing, node, 1);
    }
}

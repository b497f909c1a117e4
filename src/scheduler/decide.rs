//! One scheduling cycle: filter the nodes (all of them, or upstream's sample), score
//! the feasible ones, pick the best (ties at random, as upstream's reservoir
//! sampling), or explain in upstream's words why no node fits, attempting preemption
//! as the default profile's PostFilter does.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Pod;
use rand::Rng;

use super::cycle::CycleState;
use super::preemption::{self, Preemption};
use super::snapshot::{NodeInfo, Snapshot};
use super::{filters, pod_priority, scores};

/// What to do with a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Bind the pod to this node.
    Bind {
        /// The chosen node.
        node: String,
    },
    /// No node fits; the error says why (its `Display` is the event and condition
    /// message) and whether preemption found room.
    Unschedulable(FitError),
}

/// Why a pod fits on no node, as upstream's `framework.FitError`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FitError {
    /// How many nodes were considered.
    pub num_all_nodes: usize,
    /// How many nodes gave each reason.
    pub reasons: BTreeMap<String, usize>,
    /// What preemption said when it found nothing (`preemption: …`); `None` when it
    /// found room or was not attempted.
    pub post_filter_message: Option<String>,
    /// Room preemption found: the runtime deletes the victims and nominates the node;
    /// the pod is retried once they are gone.
    pub preemption: Option<Preemption>,
}

impl FitError {
    /// Counts one node's rejection.
    pub fn add(&mut self, reason: &filters::Reason) {
        for message in &reason.messages {
            match self.reasons.get_mut(message.as_ref()) {
                Some(count) => *count += 1,
                None => {
                    self.reasons.insert(message.to_string(), 1);
                }
            }
        }
    }

    /// The reasons as upstream lists them: `"<count> <reason>"`, sorted as strings.
    fn histogram(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        lines.sort();
        lines
    }
}

impl fmt::Display for FitError {
    /// `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) …. preemption: …`, with
    /// upstream's separators since 1.30 (earlier releases doubled the final period
    /// after the preemption part); `no nodes available to schedule pods` when there
    /// are no nodes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.num_all_nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        let lines = self.histogram();
        if !lines.is_empty() {
            write!(f, " {}.", lines.join(", "))?;
        }
        if let Some(post) = self.post_filter_message.as_deref() {
            write!(f, " {post}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FitError {}

/// Decides where `pod` goes, with priorities from `spec.priority`.
pub fn schedule(pod: &Pod, snapshot: &Snapshot, rng: &mut impl Rng) -> Decision {
    schedule_with(pod, snapshot, rng, pod_priority)
}

/// Decides where `pod` goes, with priorities given by `priority_of` (for preemption),
/// looking at every node.
pub fn schedule_with(
    pod: &Pod,
    snapshot: &Snapshot,
    rng: &mut impl Rng,
    priority_of: impl Fn(&Pod) -> i32,
) -> Decision {
    schedule_sampled(pod, snapshot, rng, priority_of, &mut NodeSampling::all())
}

/// Decides where `pod` goes, stopping the search once `sampling` says enough feasible
/// nodes were found, as kube-scheduler does on large clusters; the runtime keeps one
/// `NodeSampling` across cycles so each starts where the last stopped.
pub fn schedule_sampled(
    pod: &Pod,
    snapshot: &Snapshot,
    rng: &mut impl Rng,
    priority_of: impl Fn(&Pod) -> i32,
    sampling: &mut NodeSampling,
) -> Decision {
    if snapshot.nodes().is_empty() {
        return Decision::Unschedulable(FitError::default());
    }
    let cycle = CycleState::new(pod, snapshot);
    let mut fit_error = FitError {
        num_all_nodes: snapshot.nodes().len(),
        ..FitError::default()
    };
    let feasible = find_feasible(&cycle, snapshot, sampling, &mut fit_error);
    match feasible.len() {
        0 => {
            match preemption::evaluate(&cycle, snapshot, &priority_of) {
                Ok(found) => fit_error.preemption = Some(found),
                Err(message) => fit_error.post_filter_message = Some(message),
            }
            Decision::Unschedulable(fit_error)
        }
        1 => Decision::Bind {
            node: feasible[0].name.clone(),
        },
        _ => {
            let totals = scores::total(&cycle, &feasible, snapshot);
            let best = select_host(&totals, rng);
            Decision::Bind {
                node: feasible[best].name.clone(),
            }
        }
    }
}

/// Runs the filters from `sampling.next_start` round the nodes until enough feasible
/// nodes are found, counting every rejection into `fit_error`.
fn find_feasible<'a>(
    cycle: &CycleState,
    snapshot: &'a Snapshot,
    sampling: &mut NodeSampling,
    fit_error: &mut FitError,
) -> Vec<&'a NodeInfo> {
    let nodes = snapshot.nodes();
    let wanted = sampling.feasible_to_find(nodes.len());
    let start = sampling.next_start % nodes.len();
    let mut feasible = Vec::new();
    let mut processed = 0;
    for i in 0..nodes.len() {
        let node = &nodes[(start + i) % nodes.len()];
        processed += 1;
        match filters::run_all(cycle, node, snapshot) {
            Ok(()) => feasible.push(node),
            Err(reason) => fit_error.add(&reason),
        }
        if feasible.len() >= wanted {
            break;
        }
    }
    sampling.next_start = (start + processed) % nodes.len();
    feasible
}

/// How many nodes a cycle examines, as upstream's `percentageOfNodesToScore`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeSampling {
    /// Percentage of nodes whose feasibility suffices: 0 for upstream's adaptive
    /// default (50% minus 1% per 125 nodes, at least 5%), 100 for every node. Clusters
    /// under 100 nodes are always searched in full.
    pub percentage: u32,
    /// Where the next cycle starts (upstream's `nextStartNodeIndex`).
    pub next_start: usize,
}

impl NodeSampling {
    /// Look at every node.
    pub fn all() -> NodeSampling {
        NodeSampling {
            percentage: 100,
            next_start: 0,
        }
    }

    /// Upstream's default: adaptive.
    pub fn adaptive() -> NodeSampling {
        NodeSampling::default()
    }

    /// How many feasible nodes end the search among `num_nodes` (upstream's
    /// `numFeasibleNodesToFind`).
    pub fn feasible_to_find(&self, num_nodes: usize) -> usize {
        const MIN_NODES: usize = 100;
        const MIN_PERCENTAGE: usize = 5;
        if num_nodes < MIN_NODES || self.percentage >= 100 {
            return num_nodes;
        }
        let mut percentage = self.percentage as usize;
        if percentage == 0 {
            percentage = 50usize.saturating_sub(num_nodes / 125).max(MIN_PERCENTAGE);
        }
        (num_nodes * percentage / 100).max(MIN_NODES)
    }
}

/// The index of a best score, ties broken uniformly at random by reservoir sampling.
pub fn select_host(totals: &[i64], rng: &mut impl Rng) -> usize {
    let mut best = 0;
    let mut ties = 1;
    for (i, &score) in totals.iter().enumerate().skip(1) {
        if score > totals[best] {
            best = i;
            ties = 1;
        } else if score == totals[best] {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    best
}

//! DefaultPreemption: when no node fits, find the node where deleting the fewest and
//! least important lower-priority pods makes room, as upstream's `SelectVictimsOnNode`
//! and `pickOneNodeForPreemption`.
//!
//! Simplified: PodDisruptionBudgets are not consulted (no victim counts as violating
//! one); every node is dry-run, where upstream stops after a sample of candidates
//! (at least 10% or 100 nodes) from a random offset; nominated pods are not counted.

use std::cmp::Reverse;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::cycle::CycleState;
use super::decide::FitError;
use super::filters::{self, Code, Reason};
use super::podinfo::PodInfo;
use super::snapshot::{NodeInfo, Snapshot};

/// Upstream's status for nodes where removing pods cannot help.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Upstream's status for nodes without lower-priority pods.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// Upstream's message for pods with `preemptionPolicy: Never`.
pub const NEVER: &str = "not eligible due to preemptionPolicy=Never.";

/// Room found by preemption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preemption {
    /// The node to nominate.
    pub node: String,
    /// The pods to delete there, as (namespace, name), most important first.
    pub victims: Vec<(String, String)>,
}

/// A node where preemption works, and its victims with their priorities.
struct Candidate<'a> {
    node: &'a NodeInfo,
    victims: Vec<(Arc<PodInfo>, i32)>,
}

/// Where `pod` could go by preempting lower-priority pods, if anywhere.
pub fn preempt(
    pod: &Pod,
    snapshot: &Snapshot,
    priority_of: impl Fn(&Pod) -> i32,
) -> Option<Preemption> {
    let cycle = CycleState::new(pod, snapshot);
    evaluate(&cycle, snapshot, &priority_of).ok()
}

/// Preemption for the cycle's pod, or the PostFilter message upstream reports
/// (`preemption: 0/3 nodes are available: …`) when it finds nothing.
pub fn evaluate(
    cycle: &CycleState,
    snapshot: &Snapshot,
    priority_of: &dyn Fn(&Pod) -> i32,
) -> Result<Preemption, String> {
    let policy = cycle
        .pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref());
    if policy == Some("Never") {
        return Err(format!("preemption: {NEVER}"));
    }
    let priority = priority_of(&cycle.pod.pod);
    let mut statuses = FitError {
        num_all_nodes: snapshot.nodes().len(),
        ..FitError::default()
    };
    let mut candidates = Vec::new();
    for node in snapshot.nodes() {
        let outcome = match filters::run_all(cycle, node, snapshot) {
            Err(reason) if reason.code == Code::Unschedulable => {
                select_victims(cycle, node, snapshot, priority, priority_of)
            }
            _ => Err(Reason::unresolvable(NOT_HELPFUL)),
        };
        match outcome {
            Ok(candidate) => candidates.push(candidate),
            Err(reason) => statuses.add(&reason),
        }
    }
    match pick_one(candidates) {
        Some(c) => Ok(Preemption {
            node: c.node.name.clone(),
            victims: c
                .victims
                .iter()
                .map(|(p, _)| (p.namespace.clone(), p.name.clone()))
                .collect(),
        }),
        None => Err(format!("preemption: {statuses}")),
    }
}

/// The victims needed on `node`: remove every lower-priority pod, check the pod fits,
/// then give back as many as possible, most important first.
fn select_victims<'a>(
    cycle: &CycleState,
    node: &'a NodeInfo,
    snapshot: &Snapshot,
    priority: i32,
    priority_of: &dyn Fn(&Pod) -> i32,
) -> Result<Candidate<'a>, Reason> {
    let mut potential: Vec<(Arc<PodInfo>, i32)> = node
        .pods
        .iter()
        .map(|p| (p.clone(), priority_of(&p.pod)))
        .filter(|(_, p)| *p < priority)
        .collect();
    if potential.is_empty() {
        return Err(Reason::unresolvable(NO_VICTIMS));
    }
    let mut trial = node.clone();
    let mut state = cycle.clone();
    for (p, _) in &potential {
        trial.remove_pod(&p.namespace, &p.name);
        state.remove_pod(p, node);
    }
    filters::run_all(&state, &trial, snapshot)?;
    potential.sort_by_key(|(p, prio)| (Reverse(*prio), start_key(p)));
    let mut victims = Vec::new();
    for (p, prio) in potential {
        trial.add_pod(p.clone());
        state.add_pod(&p, node);
        if filters::run_all(&state, &trial, snapshot).is_err() {
            trial.remove_pod(&p.namespace, &p.name);
            state.remove_pod(&p, node);
            victims.push((p, prio));
        }
    }
    Ok(Candidate { node, victims })
}

/// Orders start times with a missing one (upstream: "now") last.
fn start_key(p: &PodInfo) -> (bool, Option<Time>) {
    let start = p.pod.status.as_ref().and_then(|s| s.start_time.clone());
    (start.is_none(), start)
}

/// Upstream's `pickOneNodeForPreemption`, without PDBs: a node needing no victims;
/// else the lowest highest-priority victim, the lowest sum of priorities, the fewest
/// victims, the latest start among the highest-priority victims, then the first.
fn pick_one(mut candidates: Vec<Candidate<'_>>) -> Option<Candidate<'_>> {
    if let Some(i) = candidates.iter().position(|c| c.victims.is_empty()) {
        return Some(candidates.swap_remove(i));
    }
    keep_min(&mut candidates, |c| {
        i64::from(c.victims.iter().map(|(_, p)| *p).max().unwrap_or(i32::MIN))
    });
    keep_min(&mut candidates, |c| {
        c.victims
            .iter()
            .map(|(_, p)| i64::from(*p) + i64::from(i32::MAX) + 1)
            .sum()
    });
    keep_min(&mut candidates, |c| c.victims.len() as i64);
    let earliest_of_highest = |c: &Candidate<'_>| {
        let highest = c.victims.iter().map(|(_, p)| *p).max();
        c.victims
            .iter()
            .filter(|(_, p)| Some(*p) == highest)
            .map(|(p, _)| start_key(p))
            .min()
    };
    let latest = candidates.iter().map(earliest_of_highest).max()?;
    let i = candidates
        .iter()
        .position(|c| earliest_of_highest(c) == latest)?;
    Some(candidates.swap_remove(i))
}

/// Keeps only the candidates with the smallest `key`, in order.
fn keep_min(candidates: &mut Vec<Candidate<'_>>, key: impl Fn(&Candidate<'_>) -> i64) {
    if let Some(min) = candidates.iter().map(&key).min() {
        candidates.retain(|c| key(c) == min);
    }
}

//! The ReplicaSet controller's decisions, pure: which pods count, which to delete first
//! (upstream's `ActivePodsWithRanks`), how creations are batched, and the status.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::apps::v1::{ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::k8s::labels::LabelSelector;

/// Pods created or deleted per sync at most (upstream's `burstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// What the controller needs to know of one pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodFacts {
    /// The pod's name.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// The node it is bound to, or "".
    pub node: String,
    /// `status.phase`.
    pub phase: String,
    /// Whether its Ready condition is True.
    pub ready: bool,
    /// When it last became ready (nanoseconds since the epoch).
    pub ready_since: Option<i128>,
    /// The most restarts of any of its containers.
    pub restarts: i32,
    /// When it was created (nanoseconds since the epoch).
    pub created: Option<i128>,
    /// `controller.kubernetes.io/pod-deletion-cost`.
    pub deletion_cost: i32,
    /// Whether it has not terminated and is not being deleted (upstream's `IsPodActive`).
    pub active: bool,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

fn nanos(t: &Time) -> i128 {
    t.0.as_nanosecond()
}

impl PodFacts {
    /// The facts of `pod`.
    pub fn of(pod: &Pod) -> Self {
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.clone()).unwrap_or_default();
        let ready_condition = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
        let ready = ready_condition.is_some_and(|c| c.status == "True");
        PodFacts {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            node: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
            active: phase != "Succeeded"
                && phase != "Failed"
                && pod.metadata.deletion_timestamp.is_none(),
            phase,
            ready,
            ready_since: ready_condition
                .filter(|_| ready)
                .and_then(|c| c.last_transition_time.as_ref())
                .map(nanos),
            restarts: status
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten()
                .map(|c| c.restart_count)
                .max()
                .unwrap_or(0),
            created: pod.metadata.creation_timestamp.as_ref().map(nanos),
            deletion_cost: pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
        }
    }

    /// Upstream's `IsPodAvailable`: ready for longer than `min_ready_seconds` at `now`.
    pub fn available(&self, min_ready_seconds: i32, now: i128) -> bool {
        if !self.ready {
            return false;
        }
        min_ready_seconds == 0
            || self
                .ready_since
                .is_some_and(|t| t + i128::from(min_ready_seconds) * 1_000_000_000 < now)
    }
}

fn phase_ordinal(phase: &str) -> u8 {
    match phase {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

/// Upstream's `logarithmicRankDiff`: times compared by the binary logarithm of their age,
/// so that pods of about the same age count as equal and the choice among them is random
/// (by uid) rather than always the newest.
fn log_rank_diff(a: i128, b: i128, now: i128) -> i64 {
    let rank = |t: i128| {
        let age = now - t;
        if age > 0 {
            (age as f64).log2() as i64
        } else {
            -1
        }
    };
    rank(a) - rank(b)
}

/// Upstream's "after or zero": a missing time sorts first, then the later time.
/// Whether time `x` (of `a`) ranks as more recent than `y` (of `b`): on a log scale of
/// their age, the uid breaking a tie; an unknown time counts as the epoch.
fn more_recent(x: Option<i128>, y: Option<i128>, a: &PodFacts, b: &PodFacts, now: i128) -> bool {
    match (x, y) {
        (Some(x), Some(y)) => match log_rank_diff(x, y, now) {
            0 => a.uid < b.uid,
            diff => diff < 0,
        },
        (x, y) => after_or_zero(x, y),
    }
}

fn after_or_zero(a: Option<i128>, b: Option<i128>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => a.is_none(),
        (Some(a), Some(b)) => a > b,
    }
}

/// Whether `a` is less valuable than `b` (deleted first): upstream's
/// `ActivePodsWithRanks.Less` with LogarithmicScaleDown on.
fn less(a: &PodFacts, ra: usize, b: &PodFacts, rb: usize, now: i128) -> bool {
    // 1. Unassigned < assigned.
    if a.node != b.node && (a.node.is_empty() || b.node.is_empty()) {
        return a.node.is_empty();
    }
    // 2. Pending < Unknown < Running.
    let (pa, pb) = (phase_ordinal(&a.phase), phase_ordinal(&b.phase));
    if pa != pb {
        return pa < pb;
    }
    // 3. Not ready < ready.
    if a.ready != b.ready {
        return !a.ready;
    }
    // 4. Lower deletion cost < higher.
    if a.deletion_cost != b.deletion_cost {
        return a.deletion_cost < b.deletion_cost;
    }
    // 5. Doubled up < not doubled up.
    if ra != rb {
        return ra > rb;
    }
    // 6. Ready for a shorter time < longer.
    if a.ready && b.ready && a.ready_since != b.ready_since {
        return more_recent(a.ready_since, b.ready_since, a, b, now);
    }
    // 7. More restarts < fewer.
    if a.restarts != b.restarts {
        return a.restarts > b.restarts;
    }
    // 8. Newer < older.
    if a.created != b.created {
        return more_recent(a.created, b.created, a, b, now);
    }
    false
}

/// The `diff` pods of `pods` to delete first. Each pod is ranked by how many active
/// pods of `related` (this ReplicaSet's and its siblings', those with the same
/// controller) share its node, so doubled-up nodes are relieved first.
pub fn pods_to_delete<'a>(
    pods: &[&'a PodFacts],
    related: &[&PodFacts],
    diff: usize,
    now: i128,
) -> Vec<&'a PodFacts> {
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in related.iter().filter(|p| p.active) {
        *on_node.entry(p.node.as_str()).or_default() += 1;
    }
    let mut ranked: Vec<(&PodFacts, usize)> = pods
        .iter()
        .map(|p| (*p, on_node.get(p.node.as_str()).copied().unwrap_or(0)))
        .collect();
    if diff < ranked.len() {
        ranked.sort_by(|(a, ra), (b, rb)| {
            if less(a, *ra, b, *rb, now) {
                Ordering::Less
            } else if less(b, *rb, a, *ra, now) {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        });
    }
    ranked.into_iter().take(diff).map(|(p, _)| p).collect()
}

/// The sizes of upstream's slow-start batches for `count` creations: 1, 2, 4, … so that
/// a create that fails for every pod (a quota, a webhook) fails once, not `count` times.
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let (mut remaining, mut size) = (count, 1.min(count));
    while size > 0 {
        batches.push(size);
        remaining -= size;
        size = (2 * size).min(remaining);
    }
    batches
}

/// A failed create or delete, for the ReplicaFailure condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: &'static str,
    /// The API's message.
    pub message: String,
}

/// Upstream's `calculateStatus`, with the observed generation set: counts of the
/// ReplicaSet's active pods, and the ReplicaFailure condition set on a failure (kept as
/// it was if already there) and removed once a sync succeeds.
#[allow(clippy::too_many_arguments)]
pub fn status(
    current: Option<&ReplicaSetStatus>,
    generation: Option<i64>,
    pods: &[&PodFacts],
    template: &LabelSelector,
    min_ready_seconds: i32,
    failure: Option<Failure>,
    now: i128,
    now_time: Timestamp,
) -> ReplicaSetStatus {
    let mut next = current.cloned().unwrap_or_default();
    let fully_labeled = pods.iter().filter(|p| template.matches(&p.labels)).count();
    let ready = pods.iter().filter(|p| p.ready).count();
    let available = pods
        .iter()
        .filter(|p| p.available(min_ready_seconds, now))
        .count();
    let conditions = next.conditions.get_or_insert_with(Vec::new);
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match failure {
        Some(f) if !has_failure => conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some(f.reason.into()),
            message: Some(f.message),
            last_transition_time: Some(Time(now_time)),
        }),
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    if conditions.is_empty() {
        next.conditions = None;
    }
    next.replicas = pods.len() as i32;
    next.fully_labeled_replicas = Some(fully_labeled as i32);
    next.ready_replicas = Some(ready as i32);
    next.available_replicas = Some(available as i32);
    next.observed_generation = generation;
    next
}

/// Whether two statuses differ in what the API stores (zeros are left out on the wire).
pub fn status_differs(a: Option<&ReplicaSetStatus>, b: &ReplicaSetStatus) -> bool {
    let norm = |s: &ReplicaSetStatus| {
        let mut s = s.clone();
        for f in [
            &mut s.fully_labeled_replicas,
            &mut s.ready_replicas,
            &mut s.available_replicas,
            &mut s.terminating_replicas,
        ] {
            if *f == Some(0) {
                *f = None;
            }
        }
        if s.conditions.as_ref().is_some_and(Vec::is_empty) {
            s.conditions = None;
        }
        s
    };
    a.map(norm) != Some(norm(b))
}

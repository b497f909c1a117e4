//! The Job controller's decision, a pure function of the Job, its pods, the backoff
//! record and the time (upstream's `syncJob`, `manageJob` and
//! `trackJobStatusAndRemoveFinalizers`). The executor in `mod.rs` carries it out.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub use super::backoff::Backoff;
use super::indexes::Intervals;
use super::pods;
use super::track::track;

/// At most this many pods are created or deleted in one sync, as upstream.
const MAX_PODS_PER_SYNC: usize = 500;

/// A Job event, recorded once the status saying it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEvent {
    /// Warning rather than Normal.
    pub warning: bool,
    /// Upstream's reason.
    pub reason: &'static str,
    /// Upstream's message.
    pub message: String,
}

/// A pod to delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deletion {
    /// The pod's name.
    pub name: String,
    /// Strip the tracking finalizer first, so that the pod is not counted as failed.
    pub strip_finalizer: bool,
}

/// What one sync does, in order: delete, create, write `flush` (new uncounted pods and
/// interim conditions), strip finalizers, write `status`, record `events`.
#[derive(Debug, Default)]
pub struct Plan {
    /// Pods to delete.
    pub delete: Vec<Deletion>,
    /// Pods to create: their completion index, or None for a NonIndexed Job.
    pub create: Vec<Option<i32>>,
    /// The status to write before any finalizer is removed, if it changed.
    pub flush: Option<JobStatus>,
    /// Pods whose tracking finalizer goes.
    pub strip_finalizers: Vec<String>,
    /// The status once the finalizers are gone.
    pub status: JobStatus,
    /// The backoff record to keep once `flush` is written.
    pub backoff: Backoff,
    /// Sync again after this long (backoff, activeDeadlineSeconds).
    pub requeue: Option<Duration>,
    /// Events about the Job.
    pub events: Vec<JobEvent>,
}

/// What a sync starts from.
pub struct Input<'a> {
    /// The Job as read.
    pub job: &'a Job,
    /// Its pods (controlled by it).
    pub pods: &'a [Pod],
    /// The backoff record kept since the last sync.
    pub backoff: Backoff,
    /// The time, to the second.
    pub now: Timestamp,
}

/// The condition of `type_`, if any.
pub fn condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

fn condition_true(status: &JobStatus, type_: &str) -> bool {
    condition(status, type_).is_some_and(|c| c.status == "True")
}

/// Whether the Job is Complete or Failed.
pub fn is_finished(status: &JobStatus) -> bool {
    condition_true(status, "Complete") || condition_true(status, "Failed")
}

pub(super) fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: (!reason.is_empty()).then(|| reason.into()),
        message: (!message.is_empty()).then(|| message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream's `ensureJobConditionStatus`: sets or adds a condition; a False one is
/// never added. Returns whether anything changed.
pub(super) fn ensure_condition(status: &mut JobStatus, cond: JobCondition) -> bool {
    if let Some(old) = status
        .conditions
        .iter_mut()
        .flatten()
        .find(|c| c.type_ == cond.type_)
    {
        if old.status != cond.status || old.reason != cond.reason || old.message != cond.message {
            *old = cond;
            return true;
        }
        return false;
    }
    if cond.status != "False" {
        status.conditions.get_or_insert_with(Vec::new).push(cond);
        return true;
    }
    false
}

/// The spec's numbers, defaulted as the API server does.
pub(super) struct Spec<'a> {
    pub spec: &'a JobSpec,
    pub parallelism: i32,
    pub completions: Option<i32>,
    pub backoff_limit: i32,
    pub indexed: bool,
    pub suspended: bool,
    pub only_replace_failed: bool,
}

impl<'a> Spec<'a> {
    fn of(spec: &'a JobSpec) -> Self {
        Spec {
            spec,
            parallelism: spec.parallelism.unwrap_or(1).max(0),
            completions: spec.completions,
            backoff_limit: spec.backoff_limit.unwrap_or(6),
            indexed: spec.completion_mode.as_deref() == Some("Indexed")
                && spec.completions.is_some(),
            suspended: spec.suspend == Some(true),
            only_replace_failed: spec.pod_replacement_policy.as_deref() == Some("Failed"),
        }
    }

    pub fn counts_failure(&self, pod: &Pod) -> bool {
        self.spec
            .pod_failure_policy
            .as_ref()
            .is_none_or(|p| pods::match_failure_policy(p, pod).counts)
    }

    pub fn valid_index(&self, pod: &Pod) -> bool {
        !self.indexed
            || pods::completion_index(pod).is_some_and(|ix| ix < self.completions.unwrap_or(0))
    }
}

/// Finished pods not yet in uncountedTerminatedPods, and how many are there already.
struct NewlyFinished<'a> {
    succeeded: Vec<&'a Pod>,
    failed: Vec<&'a Pod>,
    uncounted_succeeded: i32,
    uncounted_failed: i32,
}

fn newly_finished<'a>(spec: &Spec, status: &JobStatus, all: &'a [Pod]) -> NewlyFinished<'a> {
    let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let set = |l: Option<Vec<String>>| l.unwrap_or_default().into_iter().collect::<BTreeSet<_>>();
    let (ok, bad) = (set(uncounted.succeeded), set(uncounted.failed));
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    let tracked = |p: &&Pod| pods::has_finalizer(p) && spec.valid_index(p);
    NewlyFinished {
        succeeded: all
            .iter()
            .filter(tracked)
            .filter(|p| pods::phase(p) == "Succeeded" && !ok.contains(&uid(p)))
            .collect(),
        failed: all
            .iter()
            .filter(tracked)
            .filter(|p| pods::is_failed(p, spec.only_replace_failed) && !bad.contains(&uid(p)))
            .collect(),
        uncounted_succeeded: ok.len() as i32,
        uncounted_failed: bad.len() as i32,
    }
}

/// Active, ready and terminating pods, as the status reports them.
#[derive(Clone, Copy)]
struct Counts {
    active: i32,
    ready: i32,
    terminating: i32,
}

/// The sync of one Job that is not finished yet.
pub fn sync(input: &Input) -> Plan {
    let (job, now) = (input.job, input.now);
    let default_spec = JobSpec::default();
    let spec = Spec::of(job.spec.as_ref().unwrap_or(&default_spec));
    let mut status = job.status.clone().unwrap_or_default();
    let active_pods: Vec<&Pod> = input.pods.iter().filter(|p| pods::is_active(p)).collect();
    let mut counts = Counts {
        active: active_pods.len() as i32,
        ready: active_pods.iter().filter(|p| pods::is_ready(p)).count() as i32,
        terminating: input
            .pods
            .iter()
            .filter(|p| pods::is_terminating(p))
            .count() as i32,
    };
    let new = newly_finished(&spec, &status, input.pods);
    let mut succeeded =
        status.succeeded.unwrap_or(0) + new.succeeded.len() as i32 + new.uncounted_succeeded;
    let failed = status.failed.unwrap_or(0)
        + new.failed.iter().filter(|p| spec.counts_failure(p)).count() as i32
        + new.uncounted_failed;
    if status.start_time.is_none() && !spec.suspended {
        status.start_time = Some(Time(now));
    }
    let mut plan = Plan {
        backoff: input.backoff.updated(&new.succeeded, &new.failed, now),
        ..Plan::default()
    };
    let mut finished = finished_condition(&spec, &status, input.pods, failed, now, &mut plan);
    let (prev_indexes, done_indexes) = succeeded_indexes(&spec, &status, input.pods);
    if spec.indexed {
        succeeded = done_indexes.total();
    }
    if finished.is_some() {
        counts = remove_all(&active_pods, counts, &mut plan);
    } else {
        let manage_input = (input.pods, active_pods.as_slice(), succeeded, &done_indexes);
        counts = run_pods(&spec, job, manage_input, counts, now, &mut plan);
        let complete = match spec.completions {
            None => succeeded > 0 && counts.active == 0,
            Some(c) => succeeded >= c && counts.active == 0,
        };
        if complete {
            finished = Some(new_condition(
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            ));
        } else if job.metadata.deletion_timestamp.is_none() {
            suspend_condition(&spec, &mut status, now, &mut plan);
        }
    }
    status.active = Some(counts.active);
    status.ready = Some(counts.ready);
    status.terminating = Some(counts.terminating);
    let terminating = counts.terminating;
    track(
        &spec,
        job,
        input.pods,
        status,
        &prev_indexes,
        finished,
        terminating,
        now,
        plan,
    )
}

/// Upstream's `calculateSucceededIndexes`: the indexes in the status, and those with
/// the successes not counted yet.
fn succeeded_indexes(spec: &Spec, status: &JobStatus, all: &[Pod]) -> (Intervals, Intervals) {
    let prev = Intervals::parse(
        status.completed_indexes.as_deref().unwrap_or_default(),
        spec.completions.unwrap_or(0),
    );
    let new = all
        .iter()
        .filter(|p| pods::phase(p) == "Succeeded" && pods::has_finalizer(p) && spec.valid_index(p))
        .filter_map(pods::completion_index);
    let done = prev.with(new);
    (prev, done)
}

/// A failed or succeeded Job: every active pod goes, keeping its finalizer so that it
/// is counted.
fn remove_all(active_pods: &[&Pod], counts: Counts, plan: &mut Plan) -> Counts {
    plan.delete = active_pods
        .iter()
        .map(|p| Deletion {
            name: p.metadata.name.clone().unwrap_or_default(),
            strip_finalizer: false,
        })
        .collect();
    Counts {
        active: 0,
        ready: 0,
        terminating: counts.terminating + counts.active,
    }
}

/// Creates or deletes pods unless the Job is being deleted; the counts after.
fn run_pods(
    spec: &Spec,
    job: &Job,
    (all, active_pods, succeeded, done): (&[Pod], &[&Pod], i32, &Intervals),
    counts: Counts,
    now: Timestamp,
    plan: &mut Plan,
) -> Counts {
    if job.metadata.deletion_timestamp.is_some() {
        return counts;
    }
    let (removed, removed_ready) = manage(
        spec,
        all,
        active_pods,
        succeeded,
        done,
        counts.terminating,
        now,
        plan,
    );
    Counts {
        active: counts.active - removed + plan.create.len() as i32,
        ready: counts.ready - removed_ready,
        terminating: counts.terminating + removed,
    }
}

/// The condition the Job is heading for, if any: success already met, a failure
/// already decided, a FailJob rule, the backoff limit or the deadline.
fn finished_condition(
    spec: &Spec,
    status: &JobStatus,
    all: &[Pod],
    failed: i32,
    now: Timestamp,
    plan: &mut Plan,
) -> Option<JobCondition> {
    if let Some(met) = condition(status, "SuccessCriteriaMet").filter(|c| c.status == "True") {
        return Some(met.clone());
    }
    if let Some(target) = condition(status, "FailureTarget").filter(|c| c.status == "True") {
        let mut failed = target.clone();
        failed.type_ = "Failed".into();
        return Some(failed);
    }
    if let Some(policy) = &spec.spec.pod_failure_policy {
        let message = all
            .iter()
            .filter(|p| pods::is_failed(p, spec.only_replace_failed))
            .find_map(|p| pods::match_failure_policy(policy, p).fail_job);
        if let Some(message) = message {
            return Some(new_condition(
                "FailureTarget",
                "True",
                "PodFailurePolicy",
                &message,
                now,
            ));
        }
    }
    if failed > spec.backoff_limit || past_backoff_limit_on_failure(spec, all) {
        return Some(new_condition(
            "FailureTarget",
            "True",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
            now,
        ));
    }
    let deadline = spec
        .spec
        .active_deadline_seconds
        .filter(|_| !spec.suspended);
    if let (Some(limit), Some(start)) = (deadline, status.start_time.as_ref()) {
        let elapsed = now.duration_since(start.0).as_secs();
        if elapsed >= limit {
            return Some(new_condition(
                "FailureTarget",
                "True",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
                now,
            ));
        }
        plan.requeue = Some(Duration::from_secs((limit - elapsed) as u64));
    }
    None
}

/// For restartPolicy OnFailure: the restarts of running pods reach the backoff limit.
fn past_backoff_limit_on_failure(spec: &Spec, all: &[Pod]) -> bool {
    let on_failure = spec
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    if !on_failure {
        return false;
    }
    let restarts: i32 = all
        .iter()
        .filter(|p| matches!(pods::phase(p), "Running" | "Pending"))
        .flat_map(|p| {
            p.status.iter().flat_map(|s| {
                s.container_statuses
                    .iter()
                    .flatten()
                    .chain(s.init_container_statuses.iter().flatten())
            })
        })
        .map(|c| c.restart_count)
        .sum();
    if spec.backoff_limit == 0 {
        restarts > 0
    } else {
        restarts >= spec.backoff_limit
    }
}

/// Upstream's `manageJob`: deletes surplus pods, or creates missing ones once the
/// backoff allows. Returns how many active pods, and how many ready ones, it deleted.
#[allow(clippy::too_many_arguments)]
fn manage(
    spec: &Spec,
    all: &[Pod],
    active_pods: &[&Pod],
    succeeded: i32,
    prev_indexes: &Intervals,
    terminating: i32,
    now: Timestamp,
    plan: &mut Plan,
) -> (i32, i32) {
    let active = active_pods.len() as i32;
    let delete = |pods: Vec<&Pod>, plan: &mut Plan| {
        let ready = pods.iter().filter(|p| pods::is_ready(p)).count() as i32;
        plan.delete = pods
            .iter()
            .take(MAX_PODS_PER_SYNC)
            .map(|p| Deletion {
                name: p.metadata.name.clone().unwrap_or_default(),
                strip_finalizer: true,
            })
            .collect();
        (plan.delete.len() as i32, ready)
    };
    if spec.suspended {
        return delete(active_pods.to_vec(), plan);
    }
    let want = match spec.completions {
        None if succeeded > 0 => active,
        None => spec.parallelism,
        Some(c) => (c - succeeded).clamp(0, spec.parallelism),
    };
    let surplus = for_removal(spec, active_pods, (active - want).max(0) as usize);
    if !surplus.is_empty() {
        return delete(surplus, plan);
    }
    if active < want {
        let wait = plan.backoff.remaining(now);
        if !wait.is_zero() {
            plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait)));
            return (0, 0);
        }
        let mut diff = want - active;
        if spec.only_replace_failed {
            diff -= terminating;
        }
        let diff = diff.clamp(0, MAX_PODS_PER_SYNC as i32) as usize;
        plan.create = if spec.indexed {
            pending_indexes(spec, all, prev_indexes, diff)
                .into_iter()
                .map(Some)
                .collect()
        } else {
            vec![None; diff]
        };
    }
    (0, 0)
}

/// Active pods to remove: for an Indexed Job those with a bad or repeated index
/// first, then the least valuable ones until `at_least` go.
fn for_removal<'a>(spec: &Spec, active_pods: &[&'a Pod], at_least: usize) -> Vec<&'a Pod> {
    let mut remove = Vec::new();
    let mut left: Vec<&Pod> = Vec::new();
    if spec.indexed {
        let mut sorted = active_pods.to_vec();
        sorted.sort_by(|a, b| {
            pods::completion_index(a)
                .cmp(&pods::completion_index(b))
                .then(pods::removal_order(b, a))
        });
        let mut seen = BTreeSet::new();
        for pod in sorted {
            match pods::completion_index(pod) {
                Some(ix) if spec.valid_index(pod) && seen.insert(ix) => left.push(pod),
                _ => remove.push(pod),
            }
        }
    } else {
        left = active_pods.to_vec();
    }
    if remove.len() < at_least {
        left.sort_by(|a, b| pods::removal_order(a, b));
        remove.extend(left.into_iter().take(at_least - remove.len()));
    }
    remove
}

/// The first `count` indexes neither succeeded nor held by a pod still running.
fn pending_indexes(spec: &Spec, all: &[Pod], done: &Intervals, count: usize) -> Vec<i32> {
    let held: BTreeSet<i32> = all
        .iter()
        .filter(|p| pods::is_active(p) || (spec.only_replace_failed && pods::is_terminating(p)))
        .filter_map(pods::completion_index)
        .collect();
    (0..spec.completions.unwrap_or(0))
        .filter(|ix| !done.has(*ix) && !held.contains(ix))
        .take(count)
        .collect()
}

/// The Suspended condition and its events; resuming restarts the clock.
fn suspend_condition(spec: &Spec, status: &mut JobStatus, now: Timestamp, plan: &mut Plan) {
    let (cond, reason, message) = if spec.suspended {
        (
            new_condition("Suspended", "True", "JobSuspended", "Job suspended", now),
            "Suspended",
            "Job suspended",
        )
    } else {
        (
            new_condition("Suspended", "False", "JobResumed", "Job resumed", now),
            "Resumed",
            "Job resumed",
        )
    };
    if !ensure_condition(status, cond) {
        return;
    }
    plan.events.push(JobEvent {
        warning: false,
        reason,
        message: message.into(),
    });
    if !spec.suspended {
        status.start_time = Some(Time(now));
    }
}

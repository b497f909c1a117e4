//! The second half of a sync (upstream's `trackJobStatusAndRemoveFinalizers`):
//! finished pods are recorded in `status.uncountedTerminatedPods` (written first), lose
//! their tracking finalizer, then count as succeeded or failed; the interim
//! SuccessCriteriaMet or FailureTarget condition becomes Complete or Failed once no
//! pod is left uncounted or terminating.

use std::collections::BTreeSet;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;

use super::indexes::Intervals;
use super::plan::{condition, ensure_condition, new_condition, JobEvent, Plan, Spec};
use super::pods;

/// Upstream's `trackJobStatusAndRemoveFinalizers`: finished pods go into
/// uncountedTerminatedPods (written first), lose their finalizer, then count.
#[allow(clippy::too_many_arguments)]
pub(super) fn track(
    spec: &Spec,
    job: &Job,
    all: &[Pod],
    mut status: JobStatus,
    prev_indexes: &Intervals,
    finished: Option<JobCondition>,
    terminating: i32,
    now: Timestamp,
    mut plan: Plan,
) -> Plan {
    let mut uncounted = status.uncounted_terminated_pods.take().unwrap_or_default();
    let mut ok: Vec<String> = uncounted.succeeded.take().unwrap_or_default();
    let mut bad: Vec<String> = uncounted.failed.take().unwrap_or_default();
    let with_finalizer: BTreeSet<String> = all
        .iter()
        .filter(|p| pods::has_finalizer(p))
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    count_stripped(&mut status, &mut ok, &mut bad, &with_finalizer);

    let (strip, new_indexes) = sort_out(
        spec,
        job,
        all,
        prev_indexes,
        finished.as_ref(),
        &mut ok,
        &mut bad,
    );
    plan.strip_finalizers = strip;
    if spec.indexed {
        let done = prev_indexes.with(new_indexes);
        status.succeeded = Some(done.total());
        status.completed_indexes = Some(done.to_string());
    }
    let finished = promote(finished, &mut status, now);
    status.uncounted_terminated_pods = Some(uncounted_of(&ok, &bad));
    normalize(&mut status);
    if Some(&status) != job.status.as_ref() {
        plan.flush = Some(status.clone());
    }

    // Once the finalizers are gone, every uncounted pod counts.
    count_stripped(&mut status, &mut ok, &mut bad, &BTreeSet::new());
    status.uncounted_terminated_pods = Some(uncounted_of(&ok, &bad));
    if let Some(cond) = finished.filter(|_| terminating == 0) {
        conclude(spec, &mut status, cond, &mut plan);
    }
    normalize(&mut status);
    plan.status = status;
    plan
}

fn reason_static(reason: Option<&str>) -> &'static str {
    match reason {
        Some("BackoffLimitExceeded") => "BackoffLimitExceeded",
        Some("DeadlineExceeded") => "DeadlineExceeded",
        Some("PodFailurePolicy") => "PodFailurePolicy",
        _ => "Failed",
    }
}

/// Moves uncounted pods that no longer carry the finalizer into the counters.
fn count_stripped(
    status: &mut JobStatus,
    ok: &mut Vec<String>,
    bad: &mut Vec<String>,
    with_finalizer: &BTreeSet<String>,
) {
    let before = (ok.len(), bad.len());
    ok.retain(|u| with_finalizer.contains(u));
    bad.retain(|u| with_finalizer.contains(u));
    if !ok.len().eq(&before.0) || status.succeeded.is_none() {
        status.succeeded = Some(status.succeeded.unwrap_or(0) + (before.0 - ok.len()) as i32);
    }
    if !bad.len().eq(&before.1) || status.failed.is_none() {
        status.failed = Some(status.failed.unwrap_or(0) + (before.1 - bad.len()) as i32);
    }
}

fn uncounted_of(ok: &[String], bad: &[String]) -> UncountedTerminatedPods {
    UncountedTerminatedPods {
        succeeded: (!ok.is_empty()).then(|| ok.to_vec()),
        failed: (!bad.is_empty()).then(|| bad.to_vec()),
    }
}

/// Counters of zero are left out, as upstream's `omitempty` integers are.
fn normalize(status: &mut JobStatus) {
    for field in [
        &mut status.active,
        &mut status.succeeded,
        &mut status.failed,
    ] {
        if *field == Some(0) {
            *field = None;
        }
    }
    if status.completed_indexes.as_deref() == Some("") {
        status.completed_indexes = None;
    }
}

/// Which finished pods lose their finalizer, recording those not counted yet in `ok`
/// and `bad` (or, for an Indexed Job's successes, as new indexes).
fn sort_out(
    spec: &Spec,
    job: &Job,
    all: &[Pod],
    prev_indexes: &Intervals,
    finished: Option<&JobCondition>,
    ok: &mut Vec<String>,
    bad: &mut Vec<String>,
) -> (Vec<String>, Vec<i32>) {
    let mut new_indexes = Vec::new();
    let mut strip = Vec::new();
    let mut sorted: Vec<&Pod> = all.iter().filter(|p| pods::has_finalizer(p)).collect();
    sorted.sort_by_key(|p| pods::completion_index(p));
    for pod in sorted {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let failed = pods::is_failed(pod, spec.only_replace_failed);
        let removable = job.metadata.deletion_timestamp.is_some()
            || finished.is_some()
            || pods::phase(pod) == "Succeeded"
            || failed;
        if !removable {
            continue;
        }
        strip.push(pod.metadata.name.clone().unwrap_or_default());
        let ending = finished.is_some_and(|c| c.type_ != "SuccessCriteriaMet");
        if pods::phase(pod) == "Succeeded" && !bad.contains(&uid) {
            if spec.indexed {
                if let Some(ix) = pods::completion_index(pod).filter(|_| spec.valid_index(pod)) {
                    if !prev_indexes.has(ix) {
                        new_indexes.push(ix);
                    }
                }
            } else if !ok.contains(&uid) {
                ok.push(uid);
            }
        } else if (failed || ending)
            && !bad.contains(&uid)
            && spec.valid_index(pod)
            && spec.counts_failure(pod)
        {
            bad.push(uid);
        }
    }
    (strip, new_indexes)
}

/// Records the interim condition (SuccessCriteriaMet, FailureTarget) in `status` and
/// returns the final one (Complete, Failed) it leads to.
fn promote(
    finished: Option<JobCondition>,
    status: &mut JobStatus,
    now: Timestamp,
) -> Option<JobCondition> {
    let mut finished = finished;
    if let Some(cond) = finished.as_mut() {
        match cond.type_.as_str() {
            "FailureTarget" => {
                status
                    .conditions
                    .get_or_insert_with(Vec::new)
                    .push(cond.clone());
                *cond = new_condition(
                    "Failed",
                    "True",
                    cond.reason.as_deref().unwrap_or_default(),
                    cond.message.as_deref().unwrap_or_default(),
                    now,
                );
            }
            "SuccessCriteriaMet" => {
                if condition(status, "SuccessCriteriaMet").is_none() {
                    status
                        .conditions
                        .get_or_insert_with(Vec::new)
                        .push(cond.clone());
                }
                *cond = new_condition(
                    "Complete",
                    "True",
                    cond.reason.as_deref().unwrap_or_default(),
                    cond.message.as_deref().unwrap_or_default(),
                    now,
                );
            }
            _ => {}
        }
    }
    finished
}

/// The Job is finished: its final condition, completion time and events.
fn conclude(spec: &Spec, status: &mut JobStatus, cond: JobCondition, plan: &mut Plan) {
    if cond.type_ == "Complete" {
        status.completion_time = cond.last_transition_time.clone();
        if spec
            .completions
            .is_some_and(|c| status.succeeded.unwrap_or(0) > c)
        {
            plan.events.push(JobEvent {
                warning: true,
                reason: "TooManySucceededPods",
                message: "Too many succeeded pods running after completion count reached".into(),
            });
        }
        plan.events.push(JobEvent {
            warning: false,
            reason: "Completed",
            message: "Job completed".into(),
        });
    } else {
        plan.events.push(JobEvent {
            warning: true,
            reason: reason_static(cond.reason.as_deref()),
            message: cond.message.clone().unwrap_or_default(),
        });
    }
    ensure_condition(status, cond);
    plan.requeue = None;
}

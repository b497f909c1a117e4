use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::indexes::Intervals;
use super::plan::{condition, sync, Backoff, Input, Plan};
use super::pods::{pod_from_template, COMPLETION_INDEX, TRACKING_FINALIZER};

const NOW: &str = "2026-01-01T00:10:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn job(spec: Value, status: Value) -> Job {
    let mut spec_full = json!({
        "parallelism": 2, "completions": 5, "backoffLimit": 6, "completionMode": "NonIndexed",
        "suspend": false, "podReplacementPolicy": "TerminatingOrFailed",
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "job-uid"}},
        "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "job-uid",
                                              "batch.kubernetes.io/job-name": "pi", "job-name": "pi", "controller-uid": "job-uid"}},
                     "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}});
    for (k, v) in spec.as_object().unwrap() {
        spec_full[k] = v.clone();
    }
    serde_json::from_value(json!({
        "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid", "resourceVersion": "5"},
        "spec": spec_full, "status": status}))
    .unwrap()
}

/// A pod of the Job: `phase`, and `extra` merged into its status.
fn pod(name: &str, phase: &str, extra: Value) -> Pod {
    let mut status = json!({"phase": phase});
    for (k, v) in extra.as_object().unwrap() {
        status[k] = v.clone();
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "finalizers": [TRACKING_FINALIZER], "creationTimestamp": "2026-01-01T00:00:00Z",
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi", "uid": "job-uid", "controller": true}]},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
        "status": status}))
    .unwrap()
}

fn exited(code: i32) -> Value {
    json!({"containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "finishedAt": "2026-01-01T00:09:55Z"}}}]})
}

fn with_index(mut p: Pod, ix: i32) -> Pod {
    p.metadata.annotations = Some([(COMPLETION_INDEX.to_string(), ix.to_string())].into());
    p
}

fn run(job: &Job, pods: &[Pod]) -> Plan {
    sync(&Input {
        job,
        pods,
        backoff: Backoff::default(),
        now: now(),
    })
}

fn cond<'a>(plan: &'a Plan, type_: &str) -> Option<(&'a str, &'a str, &'a str)> {
    let c = condition(&plan.status, type_)?;
    Some((
        c.status.as_str(),
        c.reason.as_deref().unwrap_or(""),
        c.message.as_deref().unwrap_or(""),
    ))
}

fn started() -> Value {
    json!({"startTime": "2026-01-01T00:00:00Z", "active": 2, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}})
}

#[test]
fn completed_indexes_are_merged_and_written_as_upstream() {
    let ix = Intervals::parse("1,3-5", 10);
    assert_eq!(ix.total(), 4);
    assert_eq!(ix.with([2, 7, 8]).to_string(), "1-5,7,8");
    assert_eq!(Intervals::default().with([0]).to_string(), "0");
    assert_eq!(Intervals::parse("0-9", 5).to_string(), "0-4");
}

#[test]
fn a_new_job_starts_parallelism_pods_and_its_clock() {
    let plan = run(&job(json!({}), json!({})), &[]);
    assert_eq!(plan.create, vec![None, None]);
    let flush = plan.flush.expect("the first status is written");
    assert_eq!(flush.active, Some(2));
    assert_eq!(flush.ready, Some(0));
    assert_eq!(flush.terminating, Some(0));
    assert!(flush.start_time.is_some());
    assert!(flush.uncounted_terminated_pods.is_some());
}

#[test]
fn a_job_with_nothing_new_writes_nothing() {
    let j = job(json!({}), started());
    let pods = [
        pod("a", "Running", json!({})),
        pod("b", "Pending", json!({})),
    ];
    let plan = run(&j, &pods);
    assert!(plan.create.is_empty() && plan.delete.is_empty() && plan.strip_finalizers.is_empty());
    assert!(plan.flush.is_none());
    assert_eq!(
        Some(&plan.status),
        j.status.as_ref(),
        "an idle Job is not written"
    );
}

#[test]
fn a_succeeded_pod_is_recorded_uncounted_then_counted_and_replaced() {
    let j = job(json!({}), started());
    let pods = [
        pod("a", "Succeeded", exited(0)),
        pod("b", "Running", json!({})),
    ];
    let plan = run(&j, &pods);
    let flush = plan.flush.as_ref().unwrap();
    assert_eq!(
        flush.uncounted_terminated_pods.as_ref().unwrap().succeeded,
        Some(vec!["uid-a".to_string()])
    );
    assert_eq!(plan.strip_finalizers, vec!["a".to_string()]);
    assert_eq!(plan.status.succeeded, Some(1));
    assert_eq!(
        plan.status.uncounted_terminated_pods,
        Some(Default::default())
    );
    assert_eq!(plan.create, vec![None], "one more pod keeps two running");
    assert_eq!(plan.status.active, Some(2));
}

#[test]
fn reaching_completions_adds_success_criteria_met_then_complete() {
    let mut status = started();
    status["succeeded"] = json!(4);
    status["active"] = json!(1);
    let j = job(json!({}), status);
    let plan = run(&j, &[pod("e", "Succeeded", exited(0))]);
    let flush = plan.flush.as_ref().unwrap();
    let met = condition(flush, "SuccessCriteriaMet").unwrap();
    assert_eq!(met.reason.as_deref(), Some("CompletionsReached"));
    assert!(
        condition(flush, "Complete").is_none(),
        "Complete waits for the count"
    );
    assert_eq!(
        cond(&plan, "Complete"),
        Some((
            "True",
            "CompletionsReached",
            "Reached expected number of succeeded pods"
        ))
    );
    assert_eq!(plan.status.succeeded, Some(5));
    assert!(plan.status.completion_time.is_some());
    assert!(plan
        .events
        .iter()
        .any(|e| e.reason == "Completed" && e.message == "Job completed"));
}

#[test]
fn failures_beyond_the_backoff_limit_fail_the_job() {
    let mut status = started();
    status["failed"] = json!(1);
    let j = job(json!({"backoffLimit": 1}), status);
    let plan = run(&j, &[pod("b", "Failed", exited(1))]);
    let flush = plan.flush.as_ref().unwrap();
    assert_eq!(
        condition(flush, "FailureTarget").unwrap().reason.as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(
        cond(&plan, "Failed"),
        Some((
            "True",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit"
        ))
    );
    assert_eq!(plan.status.failed, Some(2));
    assert!(plan.create.is_empty());
    assert!(plan
        .events
        .iter()
        .any(|e| e.warning && e.reason == "BackoffLimitExceeded"));
}

#[test]
fn a_failed_pod_is_replaced_after_the_backoff() {
    let j = job(json!({}), started());
    let pods = [
        pod("a", "Failed", exited(1)),
        pod("b", "Running", json!({})),
    ];
    let plan = run(&j, &pods);
    assert!(plan.create.is_empty(), "no replacement during the backoff");
    assert_eq!(plan.backoff.failures, 1);
    // finishedAt 00:09:55, now 00:10:00: 5 s of the 10 s are left.
    assert_eq!(plan.requeue, Some(std::time::Duration::from_secs(5)));
    assert_eq!(plan.status.failed, Some(1));
}

#[test]
fn the_backoff_doubles_from_ten_seconds_to_six_minutes() {
    let at = |failures| {
        Backoff {
            failures,
            last_failure: Some(now()),
        }
        .remaining(now())
        .as_secs()
    };
    assert_eq!(
        [at(0), at(1), at(2), at(3), at(6), at(7), at(20)],
        [0, 10, 20, 40, 320, 360, 360]
    );
}

#[test]
fn an_indexed_job_gives_each_pod_its_index() {
    let j = job(
        json!({"completionMode": "Indexed", "completions": 3, "parallelism": 2}),
        json!({}),
    );
    let plan = run(&j, &[]);
    assert_eq!(plan.create, vec![Some(0), Some(1)]);
    let p = pod_from_template(&j, Some(1));
    assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-1-"));
    assert_eq!(
        p.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX],
        "1"
    );
    assert_eq!(p.metadata.labels.as_ref().unwrap()[COMPLETION_INDEX], "1");
    let spec = p.spec.unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("pi-1"));
    let env = &spec.containers[0].env.as_ref().unwrap()[0];
    assert_eq!(env.name, "JOB_COMPLETION_INDEX");
    let path = &env
        .value_from
        .as_ref()
        .unwrap()
        .field_ref
        .as_ref()
        .unwrap()
        .field_path;
    assert_eq!(
        path,
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    );
    assert_eq!(
        p.metadata.finalizers,
        Some(vec![TRACKING_FINALIZER.to_string()])
    );
    assert_eq!(
        p.metadata.owner_references.unwrap()[0].controller,
        Some(true)
    );
}

#[test]
fn indexed_successes_become_completed_indexes() {
    let j = job(
        json!({"completionMode": "Indexed", "completions": 3, "parallelism": 2}),
        started(),
    );
    let pods = [
        with_index(pod("x", "Succeeded", exited(0)), 1),
        with_index(pod("y", "Running", json!({})), 0),
    ];
    let plan = run(&j, &pods);
    assert_eq!(plan.status.completed_indexes.as_deref(), Some("1"));
    assert_eq!(plan.status.succeeded, Some(1));
    assert_eq!(
        plan.create,
        vec![Some(2)],
        "the first index neither done nor running"
    );
}

#[test]
fn a_fail_job_rule_fails_the_job_with_upstream_words() {
    let policy = json!({"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]});
    let j = job(
        json!({"podFailurePolicy": policy, "podReplacementPolicy": "Failed"}),
        started(),
    );
    let plan = run(
        &j,
        &[
            pod("a", "Failed", exited(42)),
            pod("b", "Running", json!({})),
        ],
    );
    assert_eq!(
        cond(&plan, "FailureTarget"),
        Some(("True", "PodFailurePolicy", "Container c for pod default/a failed with exit code 42 matching FailJob rule at index 1"))
    );
    assert_eq!(plan.delete.len(), 1, "the running pod goes");
    assert!(!plan.delete[0].strip_finalizer, "and is counted as failed");
    assert!(
        cond(&plan, "Failed").is_none(),
        "Failed waits until no pod is terminating"
    );
}

#[test]
fn an_ignored_disruption_does_not_count() {
    let policy = json!({"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]});
    let j = job(
        json!({"podFailurePolicy": policy, "podReplacementPolicy": "Failed"}),
        started(),
    );
    let disrupted = pod(
        "a",
        "Failed",
        json!({"conditions": [{"type": "DisruptionTarget", "status": "True"}]}),
    );
    let plan = run(&j, &[disrupted, pod("b", "Running", json!({}))]);
    assert_eq!(plan.strip_finalizers, vec!["a".to_string()]);
    assert_eq!(
        plan.status.failed, None,
        "an ignored failure is not counted"
    );
    assert_eq!(
        plan.status.uncounted_terminated_pods,
        Some(Default::default())
    );
}

#[test]
fn a_job_past_its_deadline_fails_with_deadline_exceeded() {
    let j = job(json!({"activeDeadlineSeconds": 60}), started());
    let plan = run(
        &j,
        &[
            pod("a", "Running", json!({})),
            pod("b", "Running", json!({})),
        ],
    );
    assert_eq!(
        cond(&plan, "FailureTarget"),
        Some((
            "True",
            "DeadlineExceeded",
            "Job was active longer than specified deadline"
        ))
    );
    assert_eq!(plan.delete.len(), 2);
    assert_eq!(plan.status.active, None);
    assert_eq!(plan.status.terminating, Some(2));

    let young = job(json!({"activeDeadlineSeconds": 3600}), started());
    let plan = run(
        &young,
        &[
            pod("a", "Running", json!({})),
            pod("b", "Running", json!({})),
        ],
    );
    assert_eq!(plan.requeue, Some(std::time::Duration::from_secs(3000)));
}

#[test]
fn a_suspended_job_removes_its_pods_without_counting_them() {
    let j = job(json!({"suspend": true}), started());
    let plan = run(
        &j,
        &[
            pod("a", "Running", json!({})),
            pod("b", "Running", json!({})),
        ],
    );
    assert!(plan.delete.iter().all(|d| d.strip_finalizer));
    assert_eq!(plan.delete.len(), 2);
    assert_eq!(
        cond(&plan, "Suspended"),
        Some(("True", "JobSuspended", "Job suspended"))
    );
    assert!(plan.events.iter().any(|e| e.reason == "Suspended"));
    assert!(plan.create.is_empty());
}

#[test]
fn surplus_pods_go_least_valuable_first() {
    let j = job(json!({"parallelism": 1}), started());
    let mut pending = pod("new", "Pending", json!({}));
    pending.spec.as_mut().unwrap().node_name = None;
    let plan = run(&j, &[pod("old", "Running", json!({})), pending]);
    assert_eq!(plan.delete.len(), 1);
    assert_eq!(plan.delete[0].name, "new");
}

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use serde_json::{json, Value};

use super::plan::{most_recent, sync, SCHEDULED_TIMESTAMP};
use super::schedule::{Schedule, ScheduleError};

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// The next time after `from` for `spec` in `zone`, as RFC 3339 in UTC.
fn next(spec: &str, zone: &str, from: &str) -> Option<String> {
    let schedule = Schedule::parse(spec, zone).unwrap();
    schedule.next(ts(from)).map(|t| t.to_string())
}

#[test]
fn next_follows_robfig_cron_examples() {
    // From robfig/cron's spec_test.go, in the five-field standard form.
    assert_eq!(
        next("0/15 * * * *", "", "2012-07-09T14:45:00Z").unwrap(),
        "2012-07-09T15:00:00Z"
    );
    assert_eq!(
        next("0/15 * * * *", "", "2012-07-09T14:59:00Z").unwrap(),
        "2012-07-09T15:00:00Z"
    );
    assert_eq!(
        next("*/15 * * * *", "", "2012-07-09T23:46:00Z").unwrap(),
        "2012-07-10T00:00:00Z"
    );
    assert_eq!(
        next("20-35/15 * * * *", "", "2012-07-09T23:45:00Z").unwrap(),
        "2012-07-10T00:20:00Z"
    );
    assert_eq!(
        next("0 0 9 Apr-Oct ?", "", "2012-07-09T23:35:00Z").unwrap(),
        "2012-08-09T00:00:00Z"
    );
    assert_eq!(
        next("0 0 */5 Apr,Aug,Oct Mon", "", "2012-07-09T23:35:00Z").unwrap(),
        "2012-08-01T00:00:00Z"
    );
    assert_eq!(
        next("0 0 */5 Oct Mon", "", "2012-07-09T23:35:00Z").unwrap(),
        "2012-10-01T00:00:00Z"
    );
    assert_eq!(
        next("0 0 29 Feb ?", "", "2012-07-09T23:35:00Z").unwrap(),
        "2016-02-29T00:00:00Z"
    );
    assert_eq!(
        next("0 0 * * 1-5", "", "2012-07-13T23:35:00Z").unwrap(),
        "2012-07-16T00:00:00Z",
        "Friday to Monday"
    );
    assert_eq!(
        next("0 0 30 Feb ?", "", "2012-07-09T23:35:00Z"),
        None,
        "never"
    );
}

#[test]
fn descriptors_and_every() {
    assert_eq!(
        next("@hourly", "", "2026-01-01T10:30:00Z").unwrap(),
        "2026-01-01T11:00:00Z"
    );
    assert_eq!(
        next("@daily", "", "2026-01-01T10:30:00Z").unwrap(),
        "2026-01-02T00:00:00Z"
    );
    assert_eq!(
        next("@weekly", "", "2026-01-01T10:30:00Z").unwrap(),
        "2026-01-04T00:00:00Z",
        "Sunday"
    );
    assert_eq!(
        next("@monthly", "", "2026-01-01T10:30:00Z").unwrap(),
        "2026-02-01T00:00:00Z"
    );
    assert_eq!(
        next("@yearly", "", "2026-01-01T10:30:00Z").unwrap(),
        "2027-01-01T00:00:00Z"
    );
    assert_eq!(
        next("@every 1h30m", "", "2026-01-01T10:30:00Z").unwrap(),
        "2026-01-01T12:00:00Z"
    );
    assert_eq!(
        next("@every 90s", "", "2026-01-01T10:30:00Z").unwrap(),
        "2026-01-01T10:31:30Z"
    );
}

#[test]
fn parse_errors_are_robfig_crons() {
    let err = |s: &str| match Schedule::parse(s, "") {
        Err(ScheduleError::Parse(m)) => m,
        other => panic!("{s}: {other:?}"),
    };
    assert_eq!(
        err("* * * *"),
        "expected exactly 5 fields, found 4: [* * * *]"
    );
    assert_eq!(
        err("60 * * * *"),
        "end of range (60) above maximum (59): 60"
    );
    assert_eq!(
        err("5-1 * * * *"),
        "beginning of range (5) beyond end of range (1): 5-1"
    );
    assert_eq!(err("@fortnightly"), "unrecognized descriptor: @fortnightly");
    assert_eq!(err(""), "empty spec string");
    assert!(matches!(
        Schedule::parse("* * * * *", "Mars/Olympus"),
        Err(ScheduleError::Zone { .. })
    ));
}

#[test]
fn time_zones_and_daylight_saving_behave_as_upstream() {
    // 9:00 in Berlin is 8:00 UTC in winter and 7:00 UTC in summer.
    assert_eq!(
        next("0 9 * * *", "Europe/Berlin", "2026-01-10T12:00:00Z").unwrap(),
        "2026-01-11T08:00:00Z"
    );
    assert_eq!(
        next("0 9 * * *", "Europe/Berlin", "2026-07-10T12:00:00Z").unwrap(),
        "2026-07-11T07:00:00Z"
    );
    // New York springs forward on 2026-03-08: 02:30 does not exist that day and is skipped.
    assert_eq!(
        next("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z").unwrap(),
        "2026-03-09T06:30:00Z"
    );
    // Hourly runs across the gap: 01:00 EST then 03:00 EDT.
    assert_eq!(
        next("0 * * * *", "America/New_York", "2026-03-08T06:00:00Z").unwrap(),
        "2026-03-08T07:00:00Z"
    );
    // It falls back on 2026-11-01: 01:30 happens twice, and runs twice.
    assert_eq!(
        next("30 1 * * *", "America/New_York", "2026-10-31T16:00:00Z").unwrap(),
        "2026-11-01T05:30:00Z"
    );
    assert_eq!(
        next("30 1 * * *", "America/New_York", "2026-11-01T05:30:00Z").unwrap(),
        "2026-11-01T06:30:00Z"
    );
    assert_eq!(
        next("30 1 * * *", "America/New_York", "2026-11-01T06:30:00Z").unwrap(),
        "2026-11-02T06:30:00Z"
    );
    // Havana springs forward at midnight on 2026-03-08: that day has no midnight.
    assert_eq!(
        next("0 0 8 * *", "America/Havana", "2026-03-01T12:00:00Z").unwrap(),
        "2026-04-08T04:00:00Z"
    );
    assert_eq!(
        next("0 12 8 * *", "America/Havana", "2026-03-01T12:00:00Z").unwrap(),
        "2026-03-08T16:00:00Z"
    );
    // The TZ= prefix names the zone as well.
    assert_eq!(
        next("TZ=Asia/Tokyo 0 0 * * *", "", "2026-01-01T00:00:00Z").unwrap(),
        "2026-01-01T15:00:00Z"
    );
}

fn cronjob(spec: Value, status: Value) -> CronJob {
    let mut full = json!({"schedule": "*/5 * * * *", "concurrencyPolicy": "Allow", "suspend": false,
        "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
        "jobTemplate": {"metadata": {"labels": {"team": "a"}},
                        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}});
    for (k, v) in spec.as_object().unwrap() {
        full[k] = v.clone();
    }
    serde_json::from_value(json!({
        "metadata": {"name": "tick", "namespace": "default", "uid": "cj-uid", "creationTimestamp": "2026-01-01T10:00:00Z"},
        "spec": full, "status": status}))
    .unwrap()
}

/// A Job of the CronJob, finished as `how` ("Complete", "Failed") or running (None).
fn job(name: &str, how: Option<&str>, start: &str) -> Job {
    let mut status = json!({"startTime": start});
    if let Some(how) = how {
        status["conditions"] = json!([{"type": how, "status": "True"}]);
        status["completionTime"] = json!(start);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "tick", "uid": "cj-uid", "controller": true}]},
        "status": status}))
    .unwrap()
}

fn active(names: &[&str]) -> Value {
    json!({"active": names.iter().map(|n| json!({"kind": "Job", "name": n, "namespace": "default", "uid": format!("uid-{n}")})).collect::<Vec<_>>()})
}

#[test]
fn missed_times_are_counted_and_the_latest_is_chosen() {
    let cj = cronjob(json!({}), json!({}));
    let schedule = Schedule::parse("*/5 * * * *", "").unwrap();
    let (_, recent, missed) =
        most_recent(&cj, ts("2026-01-01T10:16:00Z"), &schedule, true).unwrap();
    assert_eq!(recent, Some(ts("2026-01-01T10:15:00Z")));
    assert_eq!(missed, 3);
    let (_, recent, _) = most_recent(&cj, ts("2026-01-01T10:04:00Z"), &schedule, true).unwrap();
    assert_eq!(recent, None, "nothing due yet");
}

#[test]
fn a_due_time_creates_its_job_named_after_the_minute() {
    let cj = cronjob(json!({"timeZone": "Europe/Berlin"}), json!({}));
    let plan = sync(&cj, &[], ts("2026-01-01T10:05:30Z"));
    let (job, at) = plan.create.expect("a Job is due");
    assert_eq!(at, ts("2026-01-01T10:05:00Z"));
    assert_eq!(job.metadata.name.as_deref(), Some("tick-29454365"));
    assert_eq!(
        job.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP],
        "2026-01-01T11:05:00+01:00"
    );
    assert_eq!(job.metadata.labels.unwrap()["team"], "a");
    let owner = &job.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("CronJob", Some(true))
    );
    // It wakes just after the next time, 10:10.
    let wait = plan.requeue.unwrap();
    assert!(
        wait > std::time::Duration::from_secs(269) && wait < std::time::Duration::from_secs(271),
        "{wait:?}"
    );
}

#[test]
fn a_time_already_scheduled_is_not_scheduled_again() {
    let cj = cronjob(
        json!({}),
        json!({"lastScheduleTime": "2026-01-01T10:05:00Z"}),
    );
    assert!(sync(&cj, &[], ts("2026-01-01T10:06:00Z")).create.is_none());
    let suspended = cronjob(json!({"suspend": true}), json!({}));
    assert!(sync(&suspended, &[], ts("2026-01-01T10:06:00Z"))
        .create
        .is_none());
}

#[test]
fn forbid_waits_for_the_running_job_and_replace_replaces_it() {
    let running = [job("tick-1", None, "2026-01-01T10:00:00Z")];
    let status = active(&["tick-1"]);
    let forbid = cronjob(json!({"concurrencyPolicy": "Forbid"}), status.clone());
    let plan = sync(&forbid, &running, ts("2026-01-01T10:06:00Z"));
    assert!(plan.create.is_none());
    assert!(plan.events.iter().any(|e| e.reason == "JobAlreadyActive"));
    let replace = cronjob(json!({"concurrencyPolicy": "Replace"}), status);
    let plan = sync(&replace, &running, ts("2026-01-01T10:06:00Z"));
    assert_eq!(plan.replace, vec!["tick-1".to_string()]);
    assert!(plan.create.is_some());
}

#[test]
fn finished_jobs_leave_the_active_list_and_the_history_is_trimmed() {
    let cj = cronjob(json!({"successfulJobsHistoryLimit": 1}), active(&["c"]));
    let jobs = [
        job("a", Some("Complete"), "2026-01-01T10:00:00Z"),
        job("b", Some("Complete"), "2026-01-01T10:01:00Z"),
        job("c", Some("Complete"), "2026-01-01T10:02:00Z"),
        job("f", Some("Failed"), "2026-01-01T10:03:00Z"),
    ];
    let plan = sync(&cj, &jobs, ts("2026-01-01T10:04:00Z"));
    assert_eq!(
        plan.cleanup,
        vec!["a".to_string(), "b".to_string()],
        "the oldest successes go"
    );
    assert_eq!(plan.status.active, None);
    assert_eq!(
        plan.status.last_successful_time.map(|t| t.0),
        Some(ts("2026-01-01T10:02:00Z"))
    );
    let seen = plan
        .events
        .iter()
        .find(|e| e.reason == "SawCompletedJob")
        .unwrap();
    assert_eq!(seen.message, "Saw completed job: c, condition: Complete");
}

#[test]
fn too_many_missed_times_are_reported() {
    let cj = cronjob(json!({"schedule": "* * * * *"}), json!({}));
    let plan = sync(&cj, &[], ts("2026-01-01T13:00:30Z"));
    assert!(plan.events.iter().any(|e| e.reason == "TooManyMissedTimes"));
    assert_eq!(
        plan.create.unwrap().1,
        ts("2026-01-01T13:00:00Z"),
        "the latest still runs"
    );
}

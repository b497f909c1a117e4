//! The CronJob controller's decision, a pure function of the CronJob, its Jobs and the
//! time (upstream's `syncCronJob`, `mostRecentScheduleTime` and `cleanupFinishedJobs`).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use super::schedule::{load_zone, Schedule};

/// The annotation with the time a Job was scheduled for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Missed start times beyond which the controller warns rather than list them.
const TOO_MANY_MISSED: i64 = 100;
/// Added to every wake-up so that the scheduled time has passed.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// An event about the CronJob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronEvent {
    /// Warning rather than Normal.
    pub warning: bool,
    /// Upstream's reason.
    pub reason: &'static str,
    /// Upstream's message.
    pub message: String,
}

/// What one sync does, in order: delete `replace` (their references already left
/// out of `status`), create `create`, delete `cleanup`, write `status` if it changed,
/// record `events`, wake again after `requeue`. The executor records the events of
/// the creations and deletions themselves, as they succeed or fail.
#[derive(Debug, Default)]
pub struct Plan {
    /// Active Jobs replaced (concurrencyPolicy Replace).
    pub replace: Vec<String>,
    /// The Job to create, and the time it is for.
    pub create: Option<(Job, Timestamp)>,
    /// Finished Jobs beyond the history limits, oldest first.
    pub cleanup: Vec<String>,
    /// The status after this sync (the created Job's reference is added by the executor).
    pub status: CronJobStatus,
    /// Events.
    pub events: Vec<CronEvent>,
    /// When to sync again.
    pub requeue: Option<Duration>,
}

fn warn(reason: &'static str, message: String) -> CronEvent {
    CronEvent {
        warning: true,
        reason,
        message,
    }
}

fn normal(reason: &'static str, message: String) -> CronEvent {
    CronEvent {
        warning: false,
        reason,
        message,
    }
}

/// The finishing condition (Complete or Failed) of a Job, if it finished.
pub fn finished_as(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

/// Upstream's `mostRecentScheduleTime`: the latest scheduled time not after `now`
/// since the last one (or the creation), and how many were missed.
pub fn most_recent(
    cj: &CronJob,
    now: Timestamp,
    schedule: &Schedule,
    with_deadline: bool,
) -> Result<(Timestamp, Option<Timestamp>, i64), String> {
    let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map_or(created, |t| t.0);
    if let Some(deadline) = cj
        .spec
        .as_ref()
        .and_then(|s| s.starting_deadline_seconds)
        .filter(|_| with_deadline)
    {
        let limit = now - jiff::SignedDuration::from_secs(deadline);
        if limit > earliest {
            earliest = limit;
        }
    }
    let (Some(t1), Some(t2)) = (
        schedule.next(earliest),
        schedule.next(earliest).and_then(|t| schedule.next(t)),
    ) else {
        return Ok((earliest, None, 0));
    };
    if now < t1 {
        return Ok((earliest, None, 0));
    }
    if now < t2 {
        return Ok((earliest, Some(t1), 0));
    }
    let between = t2.duration_since(t1).as_secs();
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let elapsed = now.duration_since(t1).as_secs();
    let missed = elapsed / between + 1;
    let mut recent = None;
    let start = t1 + jiff::SignedDuration::from_secs((missed - 2) * between);
    let mut t = schedule.next(start);
    while let Some(at) = t.filter(|at| *at <= now) {
        recent = Some(at);
        t = schedule.next(at);
    }
    Ok((earliest, recent, missed))
}

/// How long until the next scheduled time (upstream's `nextScheduleTimeDuration`).
pub fn next_wake(cj: &CronJob, now: Timestamp, schedule: &Schedule) -> Option<Duration> {
    let (earliest, recent, _) = most_recent(cj, now, schedule, false).ok()?;
    let next = schedule.next(recent.unwrap_or(earliest))?;
    let wait = Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO);
    Some(wait + NEXT_SCHEDULE_DELTA)
}

/// The Job for `scheduled` (upstream's `getJobFromTemplate2`).
pub fn job_for(cj: &CronJob, scheduled: Timestamp, zone: &jiff::tz::TimeZone) -> Job {
    let name = cj.metadata.name.clone().unwrap_or_default();
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), rfc3339_in(scheduled, zone));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&name, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta
                .labels
                .filter(|l: &BTreeMap<String, String>| !l.is_empty()),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name,
                uid: cj.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(template.spec.unwrap_or_default()),
        status: None,
    }
}

/// `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// Go's RFC 3339 in a zone: `Z` for a zero offset, else `+01:00`.
pub fn rfc3339_in(t: Timestamp, zone: &jiff::tz::TimeZone) -> String {
    let z = t.to_zoned(zone.clone());
    if z.offset().seconds() == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// Go's RFC 1123 with a numeric zone, in UTC.
fn rfc1123z(t: Timestamp) -> String {
    t.to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

/// The sync of one CronJob at `now`, given the Jobs it controls.
pub fn sync(cj: &CronJob, jobs: &[Job], now: Timestamp) -> Plan {
    let mut plan = Plan {
        status: cj.status.clone().unwrap_or_default(),
        ..Plan::default()
    };
    reconcile_jobs(jobs, &mut plan);
    schedule_next(cj, now, &mut plan);
    cleanup(cj, jobs, &mut plan);
    if plan.status.active.as_ref().is_some_and(Vec::is_empty) {
        plan.status.active = None;
    }
    plan
}

fn in_active(status: &CronJobStatus, uid: &str) -> bool {
    status
        .active
        .iter()
        .flatten()
        .any(|r| r.uid.as_deref() == Some(uid))
}

fn drop_active(status: &mut CronJobStatus, uid: &str) {
    if let Some(active) = status.active.as_mut() {
        active.retain(|r| r.uid.as_deref() != Some(uid));
    }
}

/// The Jobs seen: finished ones leave the active list, the last success is noted,
/// references to Jobs that are gone are dropped.
fn reconcile_jobs(jobs: &[Job], plan: &mut Plan) {
    for job in jobs {
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let name = job.metadata.name.clone().unwrap_or_default();
        let found = in_active(&plan.status, &uid);
        let finished = finished_as(job);
        match (found, finished) {
            (false, None) => plan.events.push(warn(
                "UnexpectedJob",
                format!("Saw a job that the controller did not create or forgot: {name}"),
            )),
            (true, Some(how)) => {
                drop_active(&mut plan.status, &uid);
                plan.events.push(normal(
                    "SawCompletedJob",
                    format!("Saw completed job: {name}, condition: {how}"),
                ));
            }
            _ => {}
        }
        if finished == Some("Complete") {
            if let Some(done) = job.status.as_ref().and_then(|s| s.completion_time.clone()) {
                if plan
                    .status
                    .last_successful_time
                    .as_ref()
                    .is_none_or(|t| done.0 > t.0)
                {
                    plan.status.last_successful_time = Some(done);
                }
            }
        }
    }
    let listed: Vec<&str> = jobs
        .iter()
        .filter_map(|j| j.metadata.uid.as_deref())
        .collect();
    let missing: Vec<(String, String)> = plan
        .status
        .active
        .iter()
        .flatten()
        .filter(|r| !listed.contains(&r.uid.as_deref().unwrap_or_default()))
        .map(|r| {
            (
                r.uid.clone().unwrap_or_default(),
                r.name.clone().unwrap_or_default(),
            )
        })
        .collect();
    for (uid, name) in missing {
        plan.events.push(normal(
            "MissingJob",
            format!("Active job went missing: {name}"),
        ));
        drop_active(&mut plan.status, &uid);
    }
}

/// The CronJob's time zone and schedule, unless it is suspended or they are invalid
/// (with the upstream event).
fn schedule_of(
    spec: &k8s_openapi::api::batch::v1::CronJobSpec,
    plan: &mut Plan,
) -> Option<(Schedule, jiff::tz::TimeZone)> {
    let zone_name = spec.time_zone.clone().unwrap_or_default();
    let zone = match load_zone(&zone_name) {
        Ok(zone) => zone,
        Err(err) => {
            plan.events.push(warn(
                "UnknownTimeZone",
                format!("invalid timeZone: {zone_name:?}: {err}"),
            ));
            return None;
        }
    };
    if spec.suspend == Some(true) {
        return None;
    }
    if spec.schedule.contains("TZ") {
        plan.events.push(warn("UnsupportedSchedule", format!("CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details", spec.schedule)));
    }
    let schedule = match Schedule::parse(&spec.schedule, &zone_name) {
        Ok(s) => s,
        Err(err) => {
            plan.events.push(warn(
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {err}", spec.schedule),
            ));
            return None;
        }
    };
    Some((schedule, zone))
}

/// Starts the Job due now, if any, as the schedule, the deadline and the concurrency
/// policy allow.
fn schedule_next(cj: &CronJob, now: Timestamp, plan: &mut Plan) {
    if cj.metadata.deletion_timestamp.is_some() {
        return;
    }
    let Some(spec) = cj.spec.as_ref() else { return };
    let Some((schedule, zone)) = schedule_of(spec, plan) else {
        return;
    };
    let (_, recent, missed) = match most_recent(cj, now, &schedule, true) {
        Ok(found) => found,
        Err(err) => {
            plan.events.push(warn(
                "InvalidSchedule",
                format!("invalid schedule: {} : {err}", spec.schedule),
            ));
            return;
        }
    };
    plan.requeue = next_wake(cj, now, &schedule);
    let Some(scheduled) = recent else { return };
    if missed > TOO_MANY_MISSED {
        plan.events.push(warn("TooManyMissedTimes", "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into()));
    }
    if let Some(deadline) = spec.starting_deadline_seconds {
        if scheduled + jiff::SignedDuration::from_secs(deadline) < now {
            plan.events.push(warn(
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    rfc1123z(scheduled)
                ),
            ));
            return;
        }
    }
    let name = job_name(cj.metadata.name.as_deref().unwrap_or_default(), scheduled);
    let already = plan
        .status
        .active
        .iter()
        .flatten()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
        || plan
            .status
            .last_schedule_time
            .as_ref()
            .is_some_and(|t| t.0 == scheduled);
    if already {
        return;
    }
    let active = plan.status.active.as_ref().is_some_and(|a| !a.is_empty());
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if active => {
            plan.events.push(normal("JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid".into()));
            return;
        }
        Some("Replace") => {
            for r in plan.status.active.take().unwrap_or_default() {
                plan.replace.push(r.name.unwrap_or_default());
            }
        }
        _ => {}
    }
    plan.create = Some((job_for(cj, scheduled, &zone), scheduled));
}

/// Finished Jobs beyond successfulJobsHistoryLimit and failedJobsHistoryLimit go,
/// those that started first first.
fn cleanup(cj: &CronJob, jobs: &[Job], plan: &mut Plan) {
    let Some(spec) = cj.spec.as_ref() else { return };
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Job> = jobs
            .iter()
            .filter(|j| finished_as(j) == Some(kind))
            .collect();
        let extra = done.len().saturating_sub(limit.max(0) as usize);
        if extra == 0 {
            continue;
        }
        done.sort_by(|a, b| {
            let start = |j: &Job| {
                j.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0)
            };
            match (start(a), start(b)) {
                (Some(x), Some(y)) if x != y => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                _ => a.metadata.name.cmp(&b.metadata.name),
            }
        });
        for job in done.into_iter().take(extra) {
            drop_active(
                &mut plan.status,
                job.metadata.uid.as_deref().unwrap_or_default(),
            );
            plan.cleanup
                .push(job.metadata.name.clone().unwrap_or_default());
        }
    }
}

/// A reference to a created Job, for `status.active`.
pub fn reference(job: &Job) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// Marks `job`, created for `scheduled`, as the active one.
pub fn started(status: &mut CronJobStatus, job: &Job, scheduled: Timestamp) {
    status
        .active
        .get_or_insert_with(Vec::new)
        .push(reference(job));
    status.last_schedule_time = Some(Time(scheduled));
}

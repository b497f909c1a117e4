//! The TTL-after-finished controller: a Job with `ttlSecondsAfterFinished` is deleted
//! (propagation Foreground, as upstream, so its pods go first) that long after it finished,
//! the finish time being the last transition of its Complete or Failed condition.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use super::{retry_after, Context, Error, Result};

/// Runs the controller until the server stops.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let jobs: Api<Job> = Api::all(ctx.client.clone());
    Controller::new(jobs, watcher::Config::default())
        .run(reconcile, |_, err, _| retry_after(err), ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

/// What to do about a Job.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Nothing: no TTL, not finished, or already being deleted.
    Ignore,
    /// Its time is up.
    Delete,
    /// Look again after this long.
    RequeueAfter(Duration),
}

/// When the Job finished: the last transition of its Complete or Failed condition.
pub fn finish_time(job: &Job) -> Option<Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

/// Whether the Job has finished.
fn finished(job: &Job) -> bool {
    job.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// Decides about `job` at `now`; an error if it finished at no known time.
pub fn decide(job: &Job, now: Timestamp) -> std::result::Result<Decision, String> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Decision::Ignore);
    };
    if job.metadata.deletion_timestamp.is_some() || !finished(job) {
        return Ok(Decision::Ignore);
    }
    let Some(finished_at) = finish_time(job) else {
        return Err(format!(
            "unable to find the time when the Job {}/{} finished",
            job.metadata.namespace.as_deref().unwrap_or_default(),
            job.metadata.name.as_deref().unwrap_or_default()
        ));
    };
    let expire_at = finished_at + SignedDuration::from_secs(i64::from(ttl));
    let left = expire_at.duration_since(now);
    if left <= SignedDuration::ZERO {
        return Ok(Decision::Delete);
    }
    Ok(Decision::RequeueAfter(
        Duration::try_from(left).unwrap_or(Duration::from_secs(1)),
    ))
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action> {
    match decide(&job, Timestamp::now()).map_err(Error::Invalid)? {
        Decision::Ignore => Ok(Action::await_change()),
        Decision::RequeueAfter(after) => Ok(Action::requeue(after)),
        Decision::Delete => {
            let ns = job.metadata.namespace.clone().unwrap_or_default();
            let name = job.metadata.name.clone().unwrap_or_default();
            let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
            // The cache may be stale: check the Job as it is now, as upstream does.
            let Some(fresh) = api.get_opt(&name).await? else {
                return Ok(Action::await_change());
            };
            if decide(&fresh, Timestamp::now()).map_err(Error::Invalid)? != Decision::Delete {
                return Ok(Action::await_change());
            }
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Foreground),
                preconditions: Some(Preconditions {
                    uid: fresh.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {
                    tracing::info!(job = %format!("{ns}/{name}"), "Cleaning up Job.");
                    Ok(Action::await_change())
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                    Ok(Action::await_change())
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(ttl: Option<i32>, finished_at: Option<&str>) -> Job {
        let mut job = json!({"metadata": {"name": "pi", "namespace": "default"},
                             "spec": {"template": {"spec": {"containers": []}}}});
        if let Some(ttl) = ttl {
            job["spec"]["ttlSecondsAfterFinished"] = json!(ttl);
        }
        if let Some(at) = finished_at {
            job["status"] = json!({"conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Complete", "status": "True", "lastTransitionTime": at}]});
        }
        serde_json::from_value(job).unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_finished_job_goes_when_its_ttl_is_up() {
        let j = job(Some(60), Some("2026-01-01T00:00:10Z"));
        assert_eq!(
            decide(&j, at("2026-01-01T00:00:40Z")).unwrap(),
            Decision::RequeueAfter(Duration::from_secs(30))
        );
        assert_eq!(
            decide(&j, at("2026-01-01T00:01:10Z")).unwrap(),
            Decision::Delete
        );
        let zero = job(Some(0), Some("2026-01-01T00:00:10Z"));
        assert_eq!(
            decide(&zero, at("2026-01-01T00:00:10Z")).unwrap(),
            Decision::Delete
        );
    }

    #[test]
    fn jobs_without_ttl_running_or_deleting_are_left_alone() {
        let now = at("2026-02-01T00:00:00Z");
        assert_eq!(
            decide(&job(None, Some("2026-01-01T00:00:00Z")), now).unwrap(),
            Decision::Ignore
        );
        assert_eq!(decide(&job(Some(1), None), now).unwrap(), Decision::Ignore);
        let mut going = job(Some(1), Some("2026-01-01T00:00:00Z"));
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
        assert_eq!(decide(&going, now).unwrap(), Decision::Ignore);
    }
}

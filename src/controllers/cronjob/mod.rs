//! The CronJob controller: creates a Job for each scheduled time (upstream's
//! `pkg/controller/cronjob`, the v2 controller). Jobs are named
//! `<cronjob>-<scheduled time in minutes since the epoch>` and annotated with
//! `batch.kubernetes.io/cronjob-scheduled-timestamp`; concurrencyPolicy,
//! startingDeadlineSeconds, suspend and the history limits behave as upstream.
//!
//! The decision is [`plan::sync`], pure and given the time; the schedule is
//! [`schedule::Schedule`]. This file reads, carries the plan out, and wakes the
//! CronJob again at its next scheduled time.

pub mod plan;
pub mod schedule;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use super::{retry_after, Context, Error, Result};

/// Runs the CronJob controller until the stream of CronJobs ends.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let cronjobs: Api<CronJob> = Api::all(ctx.client.clone());
    let jobs: Api<Job> = Api::all(ctx.client.clone());
    Controller::new(cronjobs, watcher::Config::default())
        .owns(jobs, watcher::Config::default())
        .run(reconcile, |_, err, _| retry_after(err), ctx)
        .for_each(|outcome| async move {
            if let Err(err) = outcome {
                tracing::debug!(error = %err, "CronJob sync failed; retrying.");
            }
        })
        .await;
    Ok(())
}

fn controlled_by(job: &Job, uid: &str) -> bool {
    job.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

async fn reconcile(cached: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action> {
    let ns = cached.metadata.namespace.clone().unwrap_or_default();
    let name = cached.metadata.name.clone().unwrap_or_default();
    let cronjobs: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(cj) = cronjobs.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let owned: Vec<Job> = jobs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| controlled_by(j, &uid))
        .collect();
    let plan = plan::sync(&cj, &owned, Timestamp::now());
    let mut status = plan.status.clone();
    for job in &plan.replace {
        delete_job(&ctx, &jobs, &cj, job).await?;
    }
    if let Some((job, scheduled)) = &plan.create {
        if let Some(created) = create_job(&ctx, &jobs, &cj, job, &status).await? {
            plan::started(&mut status, &created, *scheduled);
        }
    }
    for job in &plan.cleanup {
        // Upstream carries on with the other Jobs when one cannot be deleted.
        let _ = delete_job(&ctx, &jobs, &cj, job).await;
    }
    if cj.status.as_ref() != Some(&status) {
        let mut next = cj.clone();
        next.status = Some(status);
        cronjobs
            .replace_status(&name, &PostParams::default(), &next)
            .await?;
    }
    for event in &plan.events {
        let kind = if event.warning { "Warning" } else { "Normal" };
        ctx.events
            .record(&cj, kind, event.reason, event.message.clone());
    }
    tracing::debug!(cronjob = %format!("{ns}/{name}"), requeue = ?plan.requeue, "CronJob synced.");
    Ok(plan
        .requeue
        .map_or_else(Action::await_change, Action::requeue))
}

/// Creates the Job; returns the Job to mark active: the new one, or one of the same
/// name this CronJob controls but has not recorded yet.
async fn create_job(
    ctx: &Context,
    jobs: &Api<Job>,
    cj: &CronJob,
    job: &Job,
    status: &k8s_openapi::api::batch::v1::CronJobStatus,
) -> Result<Option<Job>> {
    match jobs.create(&PostParams::default(), job).await {
        Ok(created) => {
            let name = created.metadata.name.clone().unwrap_or_default();
            ctx.events.record(
                cj,
                "Normal",
                "SuccessfulCreate",
                format!("Created job {name}"),
            );
            Ok(Some(created))
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let name = job.metadata.name.clone().unwrap_or_default();
            tracing::info!(job = %name, "Job already exists.");
            let Some(existing) = jobs.get_opt(&name).await? else {
                return Ok(None);
            };
            let uid = cj.metadata.uid.clone().unwrap_or_default();
            let known = status
                .active
                .iter()
                .flatten()
                .any(|r| r.uid == existing.metadata.uid);
            Ok((controlled_by(&existing, &uid) && !known).then_some(existing))
        }
        Err(err) => {
            ctx.events.record(
                cj,
                "Warning",
                "FailedCreate",
                format!("Error creating job: {err}"),
            );
            Err(Error::Kube(err))
        }
    }
}

/// Deletes a Job and, in the background, its pods.
async fn delete_job(ctx: &Context, jobs: &Api<Job>, cj: &CronJob, name: &str) -> Result<()> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match jobs.delete(name, &params).await {
        Ok(_) => {
            ctx.events.record(
                cj,
                "Normal",
                "SuccessfulDelete",
                format!("Deleted job {name}"),
            );
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(err) => {
            ctx.events
                .record(cj, "Warning", "FailedDelete", format!("Deleted job: {err}"));
            Err(Error::Kube(err))
        }
    }
}

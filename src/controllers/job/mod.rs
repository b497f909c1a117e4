//! The Job controller: runs a Job's pods to completion (upstream's
//! `pkg/controller/job`). Pods carry the `batch.kubernetes.io/job-tracking` finalizer
//! until the Job has counted them through `status.uncountedTerminatedPods`; failed pods
//! are replaced after an exponential backoff until backoffLimit; the Job ends with the
//! Complete or Failed condition, preceded by SuccessCriteriaMet or FailureTarget as in
//! Kubernetes 1.33.
//!
//! The decision is [`plan::sync`], pure; this file reads the Job and its pods, carries
//! the plan out and keeps each Job's backoff record.

mod backoff;
mod indexes;
mod plan;
mod pods;
#[cfg(test)]
mod tests;
mod track;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use serde_json::json;

use super::{retry_after, Context, Error, Result};
use plan::{Backoff, Deletion, Input, Plan};
pub use pods::TRACKING_FINALIZER;

/// Pods carrying this label belong to some Job; only those are watched.
const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";

/// The controller's state: the context and each Job's backoff record by uid.
struct State {
    ctx: Arc<Context>,
    backoff: Mutex<HashMap<String, Backoff>>,
}

/// Runs the Job controller until the stream of Jobs ends.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let jobs: Api<Job> = Api::all(ctx.client.clone());
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let pod_config = watcher::Config::default().labels(CONTROLLER_UID);
    let state = Arc::new(State {
        ctx: ctx.clone(),
        backoff: Mutex::new(HashMap::new()),
    });
    let controller = Controller::new(jobs, watcher::Config::default())
        .owns(pods, pod_config.clone())
        .run(reconcile, |_, err, _| retry_after(err), state)
        .for_each(|outcome| async move {
            if let Err(err) = outcome {
                tracing::debug!(error = %err, "Job sync failed; retrying.");
            }
        });
    // Both end with the controller's task: the orphan sweep never ends on its own.
    tokio::select! {
        () = controller => {}
        () = release_orphans(ctx, pod_config) => {}
    }
    Ok(())
}

fn now() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

async fn reconcile(cached: Arc<Job>, state: Arc<State>) -> Result<Action> {
    let ns = cached.metadata.namespace.clone().unwrap_or_default();
    let name = cached.metadata.name.clone().unwrap_or_default();
    let client = state.ctx.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    // The cache may be a write behind: decide on the Job as it is now.
    let Some(job) = jobs.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let uid = job.metadata.uid.clone().unwrap_or_default();
    if plan::is_finished(job.status.as_ref().unwrap_or(&Default::default())) {
        lock(&state.backoff).remove(&uid);
        return Ok(Action::await_change());
    }
    if let Some(mode) = job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) {
        if mode != "NonIndexed" && mode != "Indexed" {
            state.ctx.events.record(
                &job,
                "Warning",
                "UnknownCompletionMode",
                "Skipped Job sync because completion mode is unknown".into(),
            );
            return Ok(Action::await_change());
        }
    }
    let pods = owned_pods(&client, &job).await?;
    let backoff = lock(&state.backoff).get(&uid).copied().unwrap_or_default();
    let plan = plan::sync(&Input {
        job: &job,
        pods: &pods,
        backoff,
        now: now(),
    });
    tracing::debug!(job = %format!("{ns}/{name}"), create = plan.create.len(), delete = plan.delete.len(), "Job synced.");
    execute(&state, &job, &pods, plan).await
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The pods the Job controls, found by its selector.
async fn owned_pods(client: &kube::Client, job: &Job) -> Result<Vec<Pod>> {
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let uid = job.metadata.uid.as_deref();
    let selector = job
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| s.match_labels.as_ref())
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
        })
        .collect())
}

async fn execute(state: &State, job: &Job, all: &[Pod], plan: Plan) -> Result<Action> {
    let ctx = &state.ctx;
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let mut failure = None;
    for Deletion {
        name,
        strip_finalizer,
    } in &plan.delete
    {
        let pod = all.iter().find(|p| p.metadata.name.as_ref() == Some(name));
        if *strip_finalizer {
            if let Some(pod) = pod {
                strip(&pods, pod).await?;
            }
        }
        match pods.delete(name, &DeleteParams::default()).await {
            Ok(_) => ctx.events.record(
                job,
                "Normal",
                "SuccessfulDelete",
                format!("Deleted pod: {name}"),
            ),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(err) => {
                ctx.events.record(
                    job,
                    "Warning",
                    "FailedDelete",
                    format!("Error deleting: {err}"),
                );
                failure = Some(err);
            }
        }
    }
    if let Err(err) = create_pods(ctx, &pods, job, &plan.create).await {
        failure = Some(err);
    }
    let mut current = job.clone();
    if let Some(status) = plan.flush.clone() {
        current = write_status(&jobs, &current, status).await?;
    }
    let uid = job.metadata.uid.clone().unwrap_or_default();
    lock(&state.backoff).insert(uid, plan.backoff);
    for name in &plan.strip_finalizers {
        if let Some(pod) = all.iter().find(|p| p.metadata.name.as_ref() == Some(name)) {
            strip(&pods, pod).await?;
        }
    }
    if current.status.as_ref() != Some(&plan.status) {
        write_status(&jobs, &current, plan.status.clone()).await?;
    }
    for event in &plan.events {
        let kind = if event.warning { "Warning" } else { "Normal" };
        ctx.events
            .record(job, kind, event.reason, event.message.clone());
    }
    if let Some(err) = failure {
        return Err(Error::Kube(err));
    }
    Ok(plan.requeue.map_or_else(Action::await_change, |d| {
        Action::requeue(d + Duration::from_millis(100))
    }))
}

/// Creates pods in batches of 1, 2, 4 … (upstream's slow start), stopping at the first
/// failure.
async fn create_pods(
    ctx: &Context,
    pods: &Api<Pod>,
    job: &Job,
    create: &[Option<i32>],
) -> Result<(), kube::Error> {
    let mut batch = 1;
    let mut rest = create;
    while !rest.is_empty() {
        let (now, later) = rest.split_at(batch.min(rest.len()));
        let made = futures::future::join_all(now.iter().map(|ix| async move {
            pods.create(&PostParams::default(), &pods::pod_from_template(job, *ix))
                .await
        }))
        .await;
        let mut failed = None;
        for outcome in made {
            match outcome {
                Ok(pod) => ctx.events.record(
                    job,
                    "Normal",
                    "SuccessfulCreate",
                    format!("Created pod: {}", pod.metadata.name.unwrap_or_default()),
                ),
                Err(err) => {
                    ctx.events.record(
                        job,
                        "Warning",
                        "FailedCreate",
                        format!("Error creating: {err}"),
                    );
                    failed = Some(err);
                }
            }
        }
        if let Some(err) = failed {
            return Err(err);
        }
        rest = later;
        batch *= 2;
    }
    Ok(())
}

/// Writes `status` onto the Job as read, guarded by its resourceVersion.
async fn write_status(
    jobs: &Api<Job>,
    job: &Job,
    status: k8s_openapi::api::batch::v1::JobStatus,
) -> Result<Job> {
    let mut next = job.clone();
    next.status = Some(status);
    let name = job.metadata.name.clone().unwrap_or_default();
    Ok(jobs
        .replace_status(&name, &PostParams::default(), &next)
        .await?)
}

/// Removes the tracking finalizer from a pod, guarded by the resourceVersion it was
/// read at; on a conflict the pod is read again. A pod already gone is fine.
async fn strip(pods: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut pod = pod.clone();
    for _ in 0..3 {
        let finalizers = pod.metadata.finalizers.clone().unwrap_or_default();
        if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
            return Ok(());
        }
        let rest: Vec<&String> = finalizers
            .iter()
            .filter(|f| *f != TRACKING_FINALIZER)
            .collect();
        let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": pod.metadata.resource_version}});
        match pods
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => match pods.get_opt(&name).await? {
                Some(fresh) => pod = fresh,
                None => return Ok(()),
            },
            Err(err) => return Err(err),
        }
    }
    Err(kube::Error::Api(
        kube::core::Status::failure("the pod kept changing", "Conflict")
            .with_code(409)
            .boxed(),
    ))
}

/// Pods whose Job is gone keep the tracking finalizer forever unless someone removes
/// it: upstream's orphan pod cleanup. Watches Job pods and strips the finalizer from
/// those no Job controls any more (the Job was deleted, or the pod orphaned).
async fn release_orphans(ctx: Arc<Context>, config: watcher::Config) {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let stream = watcher(pods, config).default_backoff().applied_objects();
    futures::pin_mut!(stream);
    while let Some(item) = stream.next().await {
        let Ok(pod) = item else { continue };
        if !pods::has_finalizer(&pod) {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true) && o.kind == "Job");
        let controlled = match owner {
            None => false,
            Some(owner) => {
                let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
                match jobs.get_opt(&owner.name).await {
                    Ok(Some(job)) => job.metadata.uid.as_deref() == Some(owner.uid.as_str()),
                    Ok(None) => false,
                    // Unsure: leave it for the next event.
                    Err(_) => true,
                }
            }
        };
        if !controlled {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            match strip(&api, &pod).await {
                Ok(()) => tracing::debug!(pod = ?pod.metadata.name, "Orphaned Job pod released."),
                Err(err) => {
                    tracing::debug!(error = %err, pod = ?pod.metadata.name, "Could not release an orphaned Job pod.")
                }
            }
        }
    }
}

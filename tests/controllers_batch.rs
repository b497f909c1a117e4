//! The Job and CronJob controllers inside a real `skiff server`, driven with kube-rs and
//! the real kubectl. There is no kubelet: the tests bind nothing themselves (the
//! scheduler does) and finish pods by writing their status as a kubelet would.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

mod support;
use support::kubectl::{kubectl, ok, VERSIONS};
use support::objects::{node, set_pod_finished, set_pod_running};
use support::Cluster;

const KUBECTL: u32 = 33;

async fn start() -> (Cluster, kube::Client) {
    // No kubelet renews n1's lease: a long grace period keeps it Ready past a minute.
    let c = Cluster::start_with(|_| vec!["--node-monitor-grace-period".into(), "1h".into()]);
    let client = c.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(&PostParams::default(), &node("n1", "8", json!({})))
        .await
        .unwrap();
    (c, client)
}

/// The pods of Job `name`.
async fn job_pods(pods: &Api<Pod>, name: &str) -> Vec<Pod> {
    let lp = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}"));
    pods.list(&lp).await.unwrap().items
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn bound(p: &Pod) -> bool {
    p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
}

/// The Job's condition of `type_` with status True: (reason, message).
fn condition(job: &Job, type_: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

/// Plays the kubelet until the Job has `until`: every bound pod still running finishes
/// with `exit_code(pod)`. Checks `check` on the pods each round; gives up after `limit`.
async fn drive(
    jobs: &Api<Job>,
    pods: &Api<Pod>,
    name: &str,
    until: &str,
    limit: Duration,
    exit_code: impl Fn(&Pod) -> i32,
    mut check: impl FnMut(&[Pod]),
) -> Job {
    let deadline = Instant::now() + limit;
    loop {
        let job = jobs.get(name).await.unwrap();
        if condition(&job, until).is_some() {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {name} never got {until}: {:?}",
            job.status
        );
        let current = job_pods(pods, name).await;
        check(&current);
        for pod in current
            .iter()
            .filter(|p| bound(p) && !matches!(phase(p), "Succeeded" | "Failed"))
        {
            set_pod_finished(pods, pod.metadata.name.as_deref().unwrap(), exit_code(pod)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn reasons(client: &kube::Client, involved: &str) -> Vec<(String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(involved))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

async fn wait_for_events(
    client: &kube::Client,
    involved: &str,
    wanted: &[&str],
) -> Vec<(String, String)> {
    for _ in 0..100 {
        let seen = reasons(client, involved).await;
        if wanted.iter().all(|w| seen.iter().any(|(r, _)| r == w)) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "events {wanted:?} of {involved} never came: {:?}",
        reasons(client, involved).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_five_completions_runs_two_at_a_time_and_completes() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let (c, client) = start().await;
        // `kubectl create job` has no flags for these: take its object and add them.
        let out = ok(
            &c,
            KUBECTL,
            &[
                "create",
                "job",
                "pi",
                "--image=busybox",
                "--dry-run=client",
                "-o",
                "json",
                "--",
                "true",
            ],
        );
        let mut job: serde_json::Value = serde_json::from_str(&out).unwrap();
        job["spec"]["completions"] = json!(5);
        job["spec"]["parallelism"] = json!(2);
        let created = kubectl(&c, KUBECTL, &["create", "-f", "-"], Some(&job.to_string()));
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stderr)
        );

        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let mut most = 0;
        let done = drive(
            &jobs,
            &pods,
            "pi",
            "Complete",
            Duration::from_secs(60),
            |_| 0,
            |all| {
                let running = all
                    .iter()
                    .filter(|p| !matches!(phase(p), "Succeeded" | "Failed"))
                    .count();
                most = most.max(running);
                assert!(running <= 2, "{running} pods running at once");
            },
        )
        .await;
        assert_eq!(most, 2, "two pods ran side by side");
        let status = done.status.clone().unwrap();
        assert_eq!(status.succeeded, Some(5));
        assert_eq!(status.active, None);
        assert!(status.completion_time.is_some() && status.start_time.is_some());
        assert_eq!(
            condition(&done, "Complete").unwrap().0,
            "CompletionsReached"
        );
        assert!(condition(&done, "SuccessCriteriaMet").is_some());

        // A finished Job is left alone: nothing writes it any more.
        let settled = jobs.get("pi").await.unwrap().metadata.resource_version;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let later = jobs.get("pi").await.unwrap().metadata.resource_version;
        assert_eq!(later, settled, "an idle Job is not written");

        for minor in VERSIONS {
            let args = [
                "wait",
                "--for=condition=complete",
                "job/pi",
                "--timeout=30s",
            ];
            let waited = ok(&c, minor, &args);
            assert!(
                waited.contains("job.batch/pi condition met"),
                "kubectl 1.{minor}: {waited}"
            );
        }

        let all = job_pods(&pods, "pi").await;
        assert_eq!(all.len(), 5, "no pod more than needed");
        for pod in &all {
            assert!(pod.metadata.generate_name.as_deref() == Some("pi-"));
            assert!(
                !pod.metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == "batch.kubernetes.io/job-tracking"),
                "counted pods lose the finalizer"
            );
            let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!((owner.kind.as_str(), owner.controller), ("Job", Some(true)));
            let labels = pod.metadata.labels.as_ref().unwrap();
            for key in [
                "batch.kubernetes.io/job-name",
                "job-name",
                "batch.kubernetes.io/controller-uid",
                "controller-uid",
            ] {
                assert!(labels.contains_key(key), "pod label {key}");
            }
        }
        let seen = wait_for_events(&client, "pi", &["SuccessfulCreate", "Completed"]).await;
        assert!(seen.contains(&("Completed".into(), "Job completed".into())));
        assert!(seen
            .iter()
            .any(|(r, m)| r == "SuccessfulCreate" && m.starts_with("Created pod: pi-")));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_pods_fail_stops_at_the_backoff_limit() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let (_c, client) = start().await;
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "flaky"},
            "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "busybox"}]}}}}))
        .unwrap();
        jobs.create(&PostParams::default(), &job).await.unwrap();
        // Two failures: the second pod only comes after the 10 s backoff.
        let started = Instant::now();
        let failed = drive(
            &jobs,
            &pods,
            "flaky",
            "Failed",
            Duration::from_secs(60),
            |_| 1,
            |_| {},
        )
        .await;
        assert!(
            started.elapsed() >= Duration::from_secs(9),
            "the replacement waited for the backoff"
        );
        assert_eq!(
            condition(&failed, "Failed").unwrap(),
            (
                "BackoffLimitExceeded".into(),
                "Job has reached the specified backoff limit".into()
            )
        );
        assert!(condition(&failed, "FailureTarget").is_some());
        let status = failed.status.unwrap();
        assert_eq!(status.failed, Some(2));
        assert_eq!(job_pods(&pods, "flaky").await.len(), 2);
        let seen = wait_for_events(&client, "flaky", &["BackoffLimitExceeded"]).await;
        assert!(seen.contains(&(
            "BackoffLimitExceeded".into(),
            "Job has reached the specified backoff limit".into()
        )));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexed_job_gives_each_pod_its_index() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let (_c, client) = start().await;
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "idx"},
            "spec": {"completions": 3, "parallelism": 3, "completionMode": "Indexed",
                     "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}))
        .unwrap();
        jobs.create(&PostParams::default(), &job).await.unwrap();
        let index = |p: &Pod| p.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"].clone();
        let mut first = Vec::new();
        for _ in 0..200 {
            first = job_pods(&pods, "idx").await;
            if first.len() == 3 && first.iter().all(bound) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let indexes: BTreeSet<String> = first.iter().map(index).collect();
        assert_eq!(indexes, ["0", "1", "2"].map(String::from).into());
        for pod in &first {
            let ix = index(pod);
            let spec = pod.spec.as_ref().unwrap();
            assert_eq!(spec.hostname.as_deref(), Some(format!("idx-{ix}").as_str()));
            assert!(pod.metadata.name.as_deref().unwrap().starts_with(&format!("idx-{ix}-")));
            let env = spec.containers[0].env.as_ref().unwrap();
            assert!(env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX"));
        }
        // Index 1 finishes first.
        let one = first.iter().find(|p| index(p) == "1").unwrap();
        set_pod_finished(&pods, one.metadata.name.as_deref().unwrap(), 0).await;
        let mut indexes_seen = None;
        for _ in 0..200 {
            let job = jobs.get("idx").await.unwrap();
            indexes_seen = job.status.and_then(|s| s.completed_indexes);
            if indexes_seen.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(indexes_seen.as_deref(), Some("1"));
        let done = drive(&jobs, &pods, "idx", "Complete", Duration::from_secs(30), |_| 0, |_| {}).await;
        assert_eq!(done.status.as_ref().unwrap().completed_indexes.as_deref(), Some("0-2"));
        assert_eq!(done.status.unwrap().succeeded, Some(3));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_runs_on_its_schedule_and_on_demand_and_keeps_its_history() {
    // One real scheduled run of `* * * * *`: up to a minute of waiting.
    tokio::time::timeout(Duration::from_secs(150), async {
        let (c, client) = start().await;
        ok(
            &c,
            KUBECTL,
            &[
                "create",
                "cronjob",
                "tick",
                "--image=busybox",
                "--schedule=* * * * *",
                "--",
                "true",
            ],
        );
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");

        // On demand: the Job controller runs it like any other.
        ok(
            &c,
            KUBECTL,
            &["create", "job", "manual", "--from=cronjob/tick"],
        );
        let manual = drive(
            &jobs,
            &pods,
            "manual",
            "Complete",
            Duration::from_secs(30),
            |_| 0,
            |_| {},
        )
        .await;
        assert_eq!(manual.metadata.owner_references.unwrap()[0].kind, "CronJob");

        // On schedule: a Job named after the minute, with the scheduled time.
        let deadline = Instant::now() + Duration::from_secs(75);
        let scheduled = loop {
            let found = jobs
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .find(|j| {
                    j.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("tick-"))
                });
            if let Some(job) = found {
                break job;
            }
            assert!(Instant::now() < deadline, "no scheduled Job within 75 s");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let name = scheduled.metadata.name.clone().unwrap();
        let stamp = scheduled.metadata.annotations.as_ref().unwrap()
            ["batch.kubernetes.io/cronjob-scheduled-timestamp"]
            .clone();
        let at: jiff::Timestamp = stamp.parse().unwrap();
        assert_eq!(at.as_second() % 60, 0, "scheduled on the minute: {stamp}");
        assert_eq!(name, format!("tick-{}", at.as_second() / 60));
        // The status follows the creation.
        let mut status = Default::default();
        for _ in 0..100 {
            status = cronjobs
                .get("tick")
                .await
                .unwrap()
                .status
                .unwrap_or_default();
            if status.last_schedule_time.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status: k8s_openapi::api::batch::v1::CronJobStatus = status;
        assert_eq!(status.last_schedule_time.map(|t| t.0), Some(at));
        let active = status.active.unwrap_or_default();
        assert_eq!(active[0].name.as_deref(), Some(name.as_str()));

        // It completes: the CronJob notes it and keeps no more history than allowed.
        drive(
            &jobs,
            &pods,
            &name,
            "Complete",
            Duration::from_secs(30),
            |_| 0,
            |_| {},
        )
        .await;
        let patch = json!({"spec": {"successfulJobsHistoryLimit": 0}});
        cronjobs
            .patch("tick", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let mut gone = false;
        for _ in 0..100 {
            let cj = cronjobs.get("tick").await.unwrap();
            let status = cj.status.unwrap_or_default();
            gone = jobs.get_opt(&name).await.unwrap().is_none()
                && status.active.is_none()
                && status.last_successful_time.is_some();
            if gone {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gone, "the finished Job is deleted beyond the history limit");
        let seen = wait_for_events(
            &client,
            "tick",
            &["SuccessfulCreate", "SawCompletedJob", "SuccessfulDelete"],
        )
        .await;
        assert!(seen.contains(&("SuccessfulCreate".into(), format!("Created job {name}"))));
        assert!(seen.contains(&(
            "SawCompletedJob".into(),
            format!("Saw completed job: {name}, condition: Complete")
        )));
        assert!(seen.contains(&("SuccessfulDelete".into(), format!("Deleted job {name}"))));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_deadline_fails_with_deadline_exceeded() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let (_c, client) = start().await;
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "slow"},
            "spec": {"activeDeadlineSeconds": 2, "parallelism": 2, "completions": 2,
                     "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}))
        .unwrap();
        jobs.create(&PostParams::default(), &job).await.unwrap();
        for _ in 0..100 {
            let current = job_pods(&pods, "slow").await;
            if current.len() == 2 && current.iter().all(bound) {
                for (i, pod) in current.iter().enumerate() {
                    set_pod_running(&pods, pod.metadata.name.as_deref().unwrap(), &format!("10.42.0.{}", i + 2), true).await;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The deadline passes with both pods running: the Job says FailureTarget and
        // deletes them (keeping their finalizer until it has counted them), then
        // Failed once none is left terminating. Pods a kubelet still runs are stopped
        // here as a kubelet would; this API server removes a deleted pod as soon as its
        // last finalizer goes, so they may be gone already.
        let deadline = Instant::now() + Duration::from_secs(30);
        let failed = loop {
            let job = jobs.get("slow").await.unwrap();
            if condition(&job, "Failed").is_some() {
                break job;
            }
            assert!(Instant::now() < deadline, "never Failed: {:?}", job.status);
            if condition(&job, "FailureTarget").is_some() {
                for pod in job_pods(&pods, "slow").await {
                    assert!(pod.metadata.deletion_timestamp.is_some(), "every pod is deleted");
                    let stop = json!({"status": {"phase": "Failed"}});
                    let _ = pods.patch_status(pod.metadata.name.as_deref().unwrap(), &PatchParams::default(), &Patch::Merge(&stop)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            condition(&failed, "FailureTarget"),
            Some(("DeadlineExceeded".into(), "Job was active longer than specified deadline".into()))
        );
        assert_eq!(condition(&failed, "Failed").unwrap().0, "DeadlineExceeded");
        let status = failed.status.unwrap();
        assert_eq!((status.active, status.terminating, status.failed), (None, Some(0), Some(2)));
        wait_for_events(&client, "slow", &["DeadlineExceeded", "SuccessfulCreate"]).await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_job_rule_ends_the_job_at_the_first_matching_exit_code() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let (_c, client) = start().await;
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "picky"},
            "spec": {"backoffLimit": 6, "podFailurePolicy": {"rules": [
                        {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}}]},
                     "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}))
        .unwrap();
        jobs.create(&PostParams::default(), &job).await.unwrap();
        let failed = drive(&jobs, &pods, "picky", "Failed", Duration::from_secs(30), |_| 42, |_| {}).await;
        let (reason, message) = condition(&failed, "Failed").unwrap();
        assert_eq!(reason, "PodFailurePolicy");
        let pod = &job_pods(&pods, "picky").await[0];
        let expected = format!(
            "Container c for pod default/{} failed with exit code 42 matching FailJob rule at index 0",
            pod.metadata.name.as_deref().unwrap()
        );
        assert_eq!(message, expected);
        assert_eq!(failed.status.unwrap().failed, Some(1), "one failure, no retry");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_deleted_job_lose_the_tracking_finalizer() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let (_c, client) = start().await;
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "gone"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}))
        .unwrap();
        jobs.create(&PostParams::default(), &job).await.unwrap();
        let mut name = None;
        for _ in 0..100 {
            name = job_pods(&pods, "gone").await.first().and_then(|p| p.metadata.name.clone());
            if name.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let name = name.expect("the Job made a pod");
        // Orphan the pod, as `kubectl delete job --cascade=orphan` does.
        let orphan = kube::api::DeleteParams { propagation_policy: Some(kube::api::PropagationPolicy::Orphan), ..Default::default() };
        jobs.delete("gone", &orphan).await.unwrap();
        let mut released = false;
        for _ in 0..100 {
            let pod = pods.get(&name).await.unwrap();
            released = !pod.metadata.finalizers.iter().flatten().any(|f| f == "batch.kubernetes.io/job-tracking");
            if released {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(released, "the pod no Job controls keeps no Job finalizer");
    })
    .await
    .unwrap();
}

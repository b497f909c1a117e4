//! Objects and waits shared by the tests that run control loops against a real server.
//! There is no kubelet in these tests: Node objects stand in for nodes, and
//! [`set_pod_running`] writes the status a kubelet would.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// Polls `check` every 50 ms for up to 20 s; panics naming `what` if it never holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A Ready node with `cpu` cores, 4 Gi of memory and room for 110 pods.
pub fn node(name: &str, cpu: &str, labels: serde_json::Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "status": {"capacity": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
                   "allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .unwrap()
}

/// Writes the status a kubelet would for a started pod: phase Running, `ip`, and the
/// Ready condition `ready` (with ContainersReady and every container's status).
pub async fn set_pod_running(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let pod = pods.get(name).await.unwrap();
    let status = if ready { "True" } else { "False" };
    let containers: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| {
            json!({"name": c.name, "image": c.image, "imageID": "", "ready": ready,
                   "restartCount": 0, "started": true,
                   "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}})
        })
        .collect();
    let patch = json!({"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.0.2.10",
        "startTime": "2026-01-01T00:00:00Z",
        "conditions": [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": status},
            {"type": "ContainersReady", "status": status},
            {"type": "PodScheduled", "status": "True"}],
        "containerStatuses": containers}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Writes the status a kubelet would for a pod whose only run is over: every container
/// terminated with `exit_code`, phase Succeeded for 0 and Failed otherwise.
pub async fn set_pod_finished(pods: &Api<Pod>, name: &str, exit_code: i32) {
    let pod = pods.get(name).await.unwrap();
    let reason = if exit_code == 0 { "Completed" } else { "Error" };
    // Finished now, as the Job controller's backoff counts from here.
    let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .unwrap()
        .to_string();
    let containers: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| {
            json!({"name": c.name, "image": c.image, "imageID": "", "ready": false,
                   "restartCount": 0, "started": false,
                   "state": {"terminated": {"exitCode": exit_code, "reason": reason,
                             "startedAt": now, "finishedAt": now}}})
        })
        .collect();
    let phase = if exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    };
    let patch = json!({"status": {
        "phase": phase, "startTime": now,
        "conditions": [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "False", "reason": "PodCompleted"},
            {"type": "PodScheduled", "status": "True"}],
        "containerStatuses": containers}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

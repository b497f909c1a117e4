//! The ReplicaSet and Deployment controllers inside a real `skiff server`, driven by the
//! real kubectl. Node objects stand in for nodes, the scheduler binds the pods, and a
//! small task plays the kubelet: it marks bound pods running and ready, finishes the
//! graceful deletions, and watches the rollout budget at every step it sees.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

mod support;
use support::kubectl::ok;
use support::kubelet::{
    app_pods, events_with, node_of, nodes, ready, start_kubelet, start_kubelet_for_image,
};
use support::objects::eventually;
use support::Cluster;

/// Runs kubectl off the async workers, so the fake kubelet keeps going meanwhile.
fn kubectl(c: &Cluster, minor: u32, args: &[&str]) -> String {
    tokio::task::block_in_place(|| ok(c, minor, args))
}

async fn replicasets(client: &kube::Client) -> Vec<ReplicaSet> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default()).await.unwrap().items
}

fn annotation(rs: &ReplicaSet, key: &str) -> Option<String> {
    rs.annotations().get(key).cloned()
}

fn image(rs: &ReplicaSet) -> String {
    rs.spec
        .as_ref()
        .unwrap()
        .template
        .as_ref()
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

fn condition(d: &Deployment, type_: &str) -> (String, String, String) {
    let c = d
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap();
    (
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    )
}

/// The rollout of a Deployment through kubectl 1.`minor`, from creation to undo,
/// scaling and pause.
async fn deployment_lifecycle(minor: u32) {
    let c = Cluster::start();
    let client = c.client().await;
    nodes(&client).await;
    let kubelet = start_kubelet(client.clone(), "web");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");

    // Three pods on the nodes, and a rollout that finishes once they are ready.
    kubectl(
        &c,
        minor,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox",
            "--replicas=3",
        ],
    );
    let out = kubectl(
        &c,
        minor,
        &["rollout", "status", "deployment/web", "--timeout=25s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    let running = app_pods(&pods, "web").await;
    assert_eq!(running.len(), 3);
    assert!(running
        .iter()
        .all(|p| node_of(p).is_some_and(|n| n == "n1" || n == "n2")));
    let first = replicasets(&client).await.remove(0);
    let hash = first.labels()["pod-template-hash"].clone();
    assert_eq!(first.name_any(), format!("web-{hash}"));
    assert!(running
        .iter()
        .all(|p| p.name_any().starts_with(&format!("web-{hash}-"))));
    let owner = &running[0].owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("ReplicaSet", first.name_any().as_str())
    );
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
    assert_eq!(
        annotation(&first, "deployment.kubernetes.io/revision").as_deref(),
        Some("1")
    );
    assert_eq!(
        annotation(&first, "deployment.kubernetes.io/desired-replicas").as_deref(),
        Some("3")
    );
    assert_eq!(
        annotation(&first, "deployment.kubernetes.io/max-replicas").as_deref(),
        Some("4")
    );
    let d = deployments.get("web").await.unwrap();
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    let st = d.status.clone().unwrap();
    assert_eq!(
        (
            st.replicas,
            st.updated_replicas,
            st.ready_replicas,
            st.available_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3))
    );
    assert_eq!(st.observed_generation, d.metadata.generation);
    assert_eq!(
        condition(&d, "Available"),
        (
            "True".into(),
            "MinimumReplicasAvailable".into(),
            "Deployment has minimum availability.".into()
        )
    );
    assert_eq!(
        condition(&d, "Progressing"),
        (
            "True".into(),
            "NewReplicaSetAvailable".into(),
            format!("ReplicaSet \"web-{hash}\" has successfully progressed.")
        )
    );
    let scaled = format!("Scaled up replica set web-{hash} from 0 to 3");
    eventually("the scaling event is recorded", || async {
        events_with(&client, "ScalingReplicaSet")
            .await
            .contains(&scaled)
    })
    .await;
    assert!(!events_with(&client, "SuccessfulCreate").await.is_empty());

    // A new image rolls one surge pod at a time, never below three ready pods.
    kubelet.watch(3);
    kubectl(
        &c,
        minor,
        &["set", "image", "deployment/web", "busybox=busybox:1.36"],
    );
    let out = kubectl(
        &c,
        minor,
        &["rollout", "status", "deployment/web", "--timeout=25s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    let (max_active, min_ready) = kubelet.stop();
    assert!(
        max_active <= 4,
        "maxSurge 25% of 3 is 1 pod, but {max_active} were up at once"
    );
    assert!(
        min_ready >= 3,
        "maxUnavailable 25% of 3 is 0 pods, but only {min_ready} were ready"
    );
    let rss = replicasets(&client).await;
    assert_eq!(rss.len(), 2);
    let second = rss.iter().find(|rs| image(rs) == "busybox:1.36").unwrap();
    assert_eq!(
        annotation(second, "deployment.kubernetes.io/revision").as_deref(),
        Some("2")
    );
    let old = rss.iter().find(|rs| image(rs) == "busybox").unwrap();
    assert_eq!(old.spec.as_ref().unwrap().replicas, Some(0));
    assert!(app_pods(&pods, "web")
        .await
        .iter()
        .all(|p| p.name_any().starts_with(&second.name_any())));
    assert!(!events_with(&client, "SuccessfulDelete").await.is_empty());

    // Undo goes back to the first template, whose ReplicaSet becomes revision 3.
    kubectl(&c, minor, &["rollout", "undo", "deployment/web"]);
    let out = kubectl(
        &c,
        minor,
        &["rollout", "status", "deployment/web", "--timeout=25s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    let rss = replicasets(&client).await;
    assert_eq!(rss.len(), 2, "the old ReplicaSet is reused, not copied");
    let back = rss
        .iter()
        .find(|rs| rs.name_any() == first.name_any())
        .unwrap();
    assert_eq!(back.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(
        annotation(back, "deployment.kubernetes.io/revision").as_deref(),
        Some("3")
    );
    assert_eq!(
        annotation(back, "deployment.kubernetes.io/revision-history").as_deref(),
        Some("1")
    );
    let d = deployments.get("web").await.unwrap();
    assert_eq!(
        d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .image
            .as_deref(),
        Some("busybox")
    );
    let history = kubectl(&c, minor, &["rollout", "history", "deployment/web"]);
    assert!(history.contains('2') && history.contains('3'), "{history}");

    // Scale to zero and back.
    kubectl(&c, minor, &["scale", "deployment/web", "--replicas=0"]);
    eventually("no pod is left", || async {
        app_pods(&pods, "web").await.is_empty()
    })
    .await;
    eventually("the status says zero", || async {
        let d = deployments.get("web").await.unwrap();
        let s = d.status.unwrap();
        s.observed_generation == d.metadata.generation && s.replicas.unwrap_or(0) == 0
    })
    .await;
    kubectl(&c, minor, &["scale", "deployment/web", "--replicas=3"]);
    let out = kubectl(
        &c,
        minor,
        &["rollout", "status", "deployment/web", "--timeout=25s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(
        app_pods(&pods, "web")
            .await
            .iter()
            .filter(|p| ready(p))
            .count(),
        3
    );

    // A paused Deployment takes a new template without rolling it.
    kubectl(&c, minor, &["rollout", "pause", "deployment/web"]);
    kubectl(
        &c,
        minor,
        &["set", "image", "deployment/web", "busybox=busybox:1.37"],
    );
    eventually("the paused Deployment is observed", || async {
        let d = deployments.get("web").await.unwrap();
        d.status.as_ref().unwrap().observed_generation == d.metadata.generation
            && condition(&d, "Progressing").1 == "DeploymentPaused"
    })
    .await;
    let d = deployments.get("web").await.unwrap();
    assert_eq!(
        condition(&d, "Progressing"),
        (
            "Unknown".into(),
            "DeploymentPaused".into(),
            "Deployment is paused".into()
        )
    );
    assert!(replicasets(&client)
        .await
        .iter()
        .all(|rs| image(rs) != "busybox:1.37"));
    kubectl(&c, minor, &["rollout", "resume", "deployment/web"]);
    let out = kubectl(
        &c,
        minor,
        &["rollout", "status", "deployment/web", "--timeout=25s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    let rss = replicasets(&client).await;
    let third = rss.iter().find(|rs| image(rs) == "busybox:1.37").unwrap();
    assert_eq!(
        annotation(third, "deployment.kubernetes.io/revision").as_deref(),
        Some("4")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_rolls_out_updates_undoes_scales_and_pauses_with_kubectl_1_33() {
    tokio::time::timeout(Duration::from_secs(180), deployment_lifecycle(33))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_rolls_out_updates_undoes_scales_and_pauses_with_kubectl_1_27() {
    tokio::time::timeout(Duration::from_secs(180), deployment_lifecycle(27))
        .await
        .unwrap();
}

async fn resource_versions(client: &kube::Client) -> Vec<Option<String>> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut rvs: Vec<_> = deployments
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|d| d.metadata.resource_version)
        .collect();
    rvs.extend(
        replicasets(client)
            .await
            .into_iter()
            .map(|rs| rs.metadata.resource_version),
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    rvs.extend(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| p.metadata.resource_version),
    );
    rvs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreate_deployment_stops_the_old_pods_before_starting_new_ones_and_then_rests() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let c = Cluster::start();
        let client = c.client().await;
        nodes(&client).await;
        let kubelet = start_kubelet(client.clone(), "re");
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "re"},
            "spec": {"replicas": 2, "strategy": {"type": "Recreate"},
                     "selector": {"matchLabels": {"app": "re"}},
                     "template": {"metadata": {"labels": {"app": "re"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
        }))
        .unwrap();
        deployments
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
        let out = kubectl(
            &c,
            33,
            &["rollout", "status", "deployment/re", "--timeout=25s"],
        );
        assert!(out.contains("successfully rolled out"), "{out}");

        kubelet.watch(0);
        kubectl(&c, 33, &["set", "image", "deployment/re", "c=busybox:1.36"]);
        let out = kubectl(
            &c,
            33,
            &["rollout", "status", "deployment/re", "--timeout=25s"],
        );
        assert!(out.contains("successfully rolled out"), "{out}");
        let (max_active, _) = kubelet.stop();
        assert!(
            max_active <= 2,
            "old and new pods ran together: {max_active} at once"
        );
        let rss = replicasets(&client).await;
        assert_eq!(rss.len(), 2);
        assert!(rss.iter().all(|rs| rs.spec.as_ref().unwrap().replicas
            == Some(if image(rs) == "busybox" { 0 } else { 2 })));

        // Once rolled out, the controllers write nothing more.
        let before = resource_versions(&client).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            resource_versions(&client).await,
            before,
            "an idle cluster was written to"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_controllers_take_up_their_pods_without_duplicates() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let mut c = Cluster::start();
        let client = c.client().await;
        nodes(&client).await;
        let kubelet = start_kubelet(client.clone(), "web");
        kubectl(
            &c,
            33,
            &[
                "create",
                "deployment",
                "web",
                "--image=busybox",
                "--replicas=3",
            ],
        );
        let out = kubectl(
            &c,
            33,
            &["rollout", "status", "deployment/web", "--timeout=25s"],
        );
        assert!(out.contains("successfully rolled out"), "{out}");
        drop(kubelet);

        tokio::task::block_in_place(|| c.restart());
        let client = c.client().await;
        let _kubelet = start_kubelet(client.clone(), "web");
        kubectl(&c, 33, &["scale", "deployment/web", "--replicas=4"]);
        let out = kubectl(
            &c,
            33,
            &["rollout", "status", "deployment/web", "--timeout=25s"],
        );
        assert!(out.contains("successfully rolled out"), "{out}");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        assert_eq!(app_pods(&pods, "web").await.len(), 4);
        assert_eq!(replicasets(&client).await.len(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_a_stuck_rollout_scales_every_replicaset_in_proportion() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let c = Cluster::start();
        let client = c.client().await;
        nodes(&client).await;
        // Only the first image ever gets ready, so the rollout stays half way.
        let _kubelet = start_kubelet_for_image(client.clone(), "web", Some("busybox"));
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
        }))
        .unwrap();
        deployments
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
        let out = kubectl(
            &c,
            33,
            &["rollout", "status", "deployment/web", "--timeout=25s"],
        );
        assert!(out.contains("successfully rolled out"), "{out}");
        kubectl(
            &c,
            33,
            &["set", "image", "deployment/web", "c=busybox:broken"],
        );
        let sizes = || async {
            let mut s: Vec<(String, i32)> = replicasets(&client)
                .await
                .iter()
                .map(|rs| (image(rs), rs.spec.as_ref().unwrap().replicas.unwrap()))
                .collect();
            s.sort();
            s
        };
        eventually("one surge pod of the new template", || async {
            sizes().await
                == [
                    ("busybox".to_string(), 4),
                    ("busybox:broken".to_string(), 1),
                ]
        })
        .await;
        // 9 allowed (8 + 1 surge) where 5 were: the old 4 become 7, the new 1 becomes 2.
        kubectl(&c, 33, &["scale", "deployment/web", "--replicas=8"]);
        eventually("both ReplicaSets are scaled in proportion", || async {
            sizes().await
                == [
                    ("busybox".to_string(), 7),
                    ("busybox:broken".to_string(), 2),
                ]
        })
        .await;
        let rss = replicasets(&client).await;
        assert!(rss.iter().all(
            |rs| annotation(rs, "deployment.kubernetes.io/desired-replicas").as_deref()
                == Some("8")
        ));
        assert!(rss
            .iter()
            .all(
                |rs| annotation(rs, "deployment.kubernetes.io/max-replicas").as_deref()
                    == Some("9")
            ));
    })
    .await
    .unwrap();
}

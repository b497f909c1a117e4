//! The ReplicaSet controller inside a real `skiff server`: adopting orphans, releasing
//! pods whose labels no longer match, deleting the least valuable pod, and its status.
//! A small task plays the kubelet (tests/support/kubelet.rs).

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

mod support;
use support::kubelet::{app_pods, events_with, nodes, ready, start_kubelet};
use support::objects::eventually;
use support::Cluster;

fn replicaset(name: &str, app: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
                 "template": {"metadata": {"labels": {"app": app, "tier": "front"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .unwrap()
}

fn bare_pod(name: &str, app: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap()
}

fn controller_uid(p: &Pod) -> Option<String> {
    p.owner_references()
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicaset_adopts_an_orphan_releases_a_stray_and_deletes_the_extra_pod() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let c = Cluster::start();
        let client = c.client().await;
        nodes(&client).await;
        let _kubelet = start_kubelet(client.clone(), "solo");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");

        // An orphan that matches is adopted; nothing more is created.
        pods.create(&PostParams::default(), &bare_pod("orphan", "solo"))
            .await
            .unwrap();
        eventually("the orphan runs", || async {
            ready(&pods.get("orphan").await.unwrap())
        })
        .await;
        let rs = rss
            .create(&PostParams::default(), &replicaset("solo", "solo", 1))
            .await
            .unwrap();
        let uid = rs.metadata.uid.clone().unwrap();
        eventually("the orphan is adopted", || async {
            controller_uid(&pods.get("orphan").await.unwrap()) == Some(uid.clone())
        })
        .await;
        let orphan = pods.get("orphan").await.unwrap();
        let r = &orphan.owner_references()[0];
        assert_eq!(
            (
                r.api_version.as_str(),
                r.kind.as_str(),
                r.block_owner_deletion
            ),
            ("apps/v1", "ReplicaSet", Some(true))
        );
        eventually("the status counts it", || async {
            let s = rss.get("solo").await.unwrap().status.unwrap();
            (
                s.replicas,
                s.ready_replicas,
                s.available_replicas,
                s.observed_generation,
            ) == (1, Some(1), Some(1), Some(1))
        })
        .await;
        let s = rss.get("solo").await.unwrap().status.unwrap();
        assert_eq!(
            s.fully_labeled_replicas.unwrap_or(0),
            0,
            "the orphan lacks the template's tier label"
        );
        assert_eq!(app_pods(&pods, "solo").await.len(), 1);

        // A pod whose labels stop matching is released and replaced.
        let relabel = json!({"metadata": {"labels": {"app": "elsewhere"}}});
        pods.patch("orphan", &PatchParams::default(), &Patch::Merge(&relabel))
            .await
            .unwrap();
        eventually("the stray is released", || async {
            controller_uid(&pods.get("orphan").await.unwrap()).is_none()
        })
        .await;
        eventually("a replacement is created from the template", || async {
            let live = app_pods(&pods, "solo").await;
            live.len() == 1
                && live[0].name_any().starts_with("solo-")
                && live[0].labels().get("tier").is_some()
        })
        .await;
        eventually("the replacement runs", || async {
            app_pods(&pods, "solo").await.iter().all(ready)
        })
        .await;
        eventually("fully labeled", || async {
            rss.get("solo")
                .await
                .unwrap()
                .status
                .unwrap()
                .fully_labeled_replicas
                == Some(1)
        })
        .await;

        // A second matching orphan makes one too many: the newer, not ready one goes.
        let mut extra = bare_pod("extra", "solo");
        extra.spec.as_mut().unwrap().node_selector =
            Some([("nowhere".to_string(), "true".to_string())].into());
        pods.create(&PostParams::default(), &extra).await.unwrap();
        eventually("the extra pod is adopted and deleted", || async {
            pods.get_opt("extra")
                .await
                .unwrap()
                .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
        })
        .await;
        let live = app_pods(&pods, "solo").await;
        assert_eq!(live.len(), 1);
        assert!(live[0].name_any().starts_with("solo-"));
        eventually("the deletion is recorded", || async {
            events_with(&client, "SuccessfulDelete")
                .await
                .contains(&"Deleted pod: extra".to_string())
        })
        .await;
    })
    .await
    .unwrap();
}

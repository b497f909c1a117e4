//! The scheduler inside a real `skiff server`: Node objects stand in for kubelets, and
//! pods get bound, or marked unschedulable with kube-scheduler's words.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

mod support;
use support::objects::{eventually, node};
use support::Cluster;

fn pod(name: &str, cpu: &str, selector: Option<serde_json::Value>) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox",
                          "resources": {"requests": {"cpu": cpu}}}]});
    if let Some(sel) = selector {
        spec["nodeSelector"] = sel;
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

async fn node_of(pods: &Api<Pod>, name: &str) -> Option<String> {
    pods.get(name).await.ok()?.spec?.node_name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_bound_where_they_fit_and_wait_with_the_reasons_where_they_do_not() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let c = Cluster::start();
        let client = c.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        nodes.create(&PostParams::default(), &node("n1", "2", json!({"disk": "hdd"}))).await.unwrap();
        nodes.create(&PostParams::default(), &node("n2", "1", json!({"disk": "hdd"}))).await.unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        pods.create(&PostParams::default(), &pod("fits", "1500m", None)).await.unwrap();
        eventually("the pod is bound", || async { node_of(&pods, "fits").await.is_some() }).await;
        assert_eq!(node_of(&pods, "fits").await.as_deref(), Some("n1"), "only n1 has room");
        let events: Api<Event> = Api::namespaced(client.clone(), "default");
        eventually("the Scheduled event is recorded", || async {
            events.list(&ListParams::default()).await.unwrap().items.iter().any(|e| {
                e.reason.as_deref() == Some("Scheduled")
                    && e.message.as_deref() == Some("Successfully assigned default/fits to n1")
            })
        })
        .await;

        // No room anywhere, and a selector no node matches: the upstream message.
        pods.create(&PostParams::default(), &pod("big", "1", Some(json!({"disk": "ssd"})))).await.unwrap();
        pods.create(&PostParams::default(), &pod("huge", "1500m", None)).await.unwrap();
        let condition = |name: &'static str| {
            let pods = pods.clone();
            async move {
                let pod = pods.get(name).await.ok()?;
                pod.status?.conditions?.into_iter().find(|c| c.type_ == "PodScheduled" && c.status == "False")?.message
            }
        };
        eventually("big is marked unschedulable", || async { condition("big").await.is_some() }).await;
        assert_eq!(
            condition("big").await.unwrap(),
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        );
        eventually("huge is marked unschedulable", || async { condition("huge").await.is_some() }).await;
        assert_eq!(
            condition("huge").await.unwrap(),
            "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
        );
        // A node that fits arrives: the waiting pod is placed there.
        nodes.create(&PostParams::default(), &node("n3", "4", json!({"disk": "ssd"}))).await.unwrap();
        eventually("big lands on the new node", || async { node_of(&pods, "big").await.as_deref() == Some("n3") }).await;
        eventually("huge lands on the new node", || async { node_of(&pods, "huge").await.as_deref() == Some("n3") }).await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_pods_never_overcommits_a_node() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let c = Cluster::start();
        let client = c.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        for i in 0..100 {
            nodes
                .create(
                    &PostParams::default(),
                    &node(&format!("n{i}"), "1", json!({})),
                )
                .await
                .unwrap();
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        // 100 nodes × 4 slots of 250m = 400 pods fit; 500 are sent.
        let creates = (0..500).map(|i| {
            let pods = pods.clone();
            async move {
                pods.create(&PostParams::default(), &pod(&format!("p{i}"), "250m", None))
                    .await
                    .unwrap()
            }
        });
        futures::future::join_all(creates).await;
        eventually("400 pods are bound", || async {
            let list = pods.list(&ListParams::default()).await.unwrap();
            list.items
                .iter()
                .filter(|p| p.spec.as_ref().unwrap().node_name.is_some())
                .count()
                == 400
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let list = pods.list(&ListParams::default()).await.unwrap();
        let mut per_node = std::collections::HashMap::new();
        for p in &list.items {
            if let Some(n) = &p.spec.as_ref().unwrap().node_name {
                *per_node.entry(n.clone()).or_insert(0) += 1;
            }
        }
        assert_eq!(per_node.values().sum::<i32>(), 400, "{per_node:?}");
        assert!(per_node.values().all(|n| *n == 4), "{per_node:?}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_priority_pod_preempts_a_lower_one() {
    use k8s_openapi::api::scheduling::v1::PriorityClass;
    tokio::time::timeout(Duration::from_secs(60), async {
        let c = Cluster::start();
        let client = c.client().await;
        let classes: Api<PriorityClass> = Api::all(client.clone());
        let high: PriorityClass =
            serde_json::from_value(json!({"metadata": {"name": "high"}, "value": 1000})).unwrap();
        classes.create(&PostParams::default(), &high).await.unwrap();
        let nodes: Api<Node> = Api::all(client.clone());
        nodes
            .create(&PostParams::default(), &node("n1", "1", json!({})))
            .await
            .unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        pods.create(&PostParams::default(), &pod("low", "800m", None))
            .await
            .unwrap();
        eventually("low is bound", || async {
            node_of(&pods, "low").await.is_some()
        })
        .await;
        let mut urgent = pod("urgent", "800m", None);
        urgent.spec.as_mut().unwrap().priority_class_name = Some("high".into());
        let made = pods.create(&PostParams::default(), &urgent).await.unwrap();
        assert_eq!(
            made.spec.unwrap().priority,
            Some(1000),
            "the class gives the priority"
        );
        eventually("the node is nominated and the victim goes", || async {
            let nominated = pods
                .get("urgent")
                .await
                .ok()
                .and_then(|p| p.status?.nominated_node_name);
            let victim = pods
                .get("low")
                .await
                .ok()
                .and_then(|p| p.metadata.deletion_timestamp);
            nominated.as_deref() == Some("n1") && victim.is_some()
        })
        .await;
        // No kubelet here: finish the victim's graceful deletion as one would.
        pods.delete(
            "low",
            &kube::api::DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        eventually("urgent is bound", || async {
            node_of(&pods, "urgent").await.as_deref() == Some("n1")
        })
        .await;
        let mut missing = pod("lost", "100m", None);
        missing.spec.as_mut().unwrap().priority_class_name = Some("nope".into());
        match pods.create(&PostParams::default(), &missing).await {
            Err(kube::Error::Api(e)) => assert!(
                e.message
                    .contains("no PriorityClass with name nope was found"),
                "{}",
                e.message
            ),
            other => panic!("expected 403, got {other:?}"),
        }
    })
    .await
    .unwrap();
}

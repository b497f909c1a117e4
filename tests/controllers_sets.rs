//! The DaemonSet controller inside a real `skiff server`, with the default scheduler
//! binding its pods: it follows nodes joining and leaving, keeps off tainted nodes, rolls
//! an update within its budget, and `kubectl rollout status` finishes.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

mod support;
use support::kubectl::{kubectl, ok};
use support::objects::{eventually, node, set_pod_running};
use support::Cluster;

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      nodeSelector: {role: edge}
      terminationGracePeriodSeconds: 0
      containers:
      - name: c
        image: busybox
"#;

/// The set's live pods (not being deleted), by the node they are bound to ("" if unbound).
async fn pods_by_node(pods: &Api<Pod>) -> Vec<(String, String)> {
    let list = pods
        .list(&ListParams::default().labels("app=agent"))
        .await
        .unwrap();
    let mut out: Vec<(String, String)> = list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let node = p.spec.and_then(|s| s.node_name).unwrap_or_default();
            (node, p.metadata.name.unwrap_or_default())
        })
        .collect();
    out.sort();
    out
}

async fn bound_nodes(pods: &Api<Pod>) -> Vec<String> {
    pods_by_node(pods)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// Plays the kubelet: every bound pod not yet Ready becomes Running and Ready.
async fn start_bound_pods(pods: &Api<Pod>) {
    let list = pods
        .list(&ListParams::default().labels("app=agent"))
        .await
        .unwrap();
    for (i, p) in list.items.iter().enumerate() {
        let bound = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        let ready = p
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if bound && !ready && p.metadata.deletion_timestamp.is_none() {
            let name = p.metadata.name.as_deref().unwrap();
            set_pod_running(pods, name, &format!("10.42.0.{}", i + 10), true).await;
        }
    }
}

async fn ds_status(sets: &Api<DaemonSet>) -> serde_json::Value {
    serde_json::to_value(sets.get("agent").await.unwrap().status).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_follows_nodes_joining_leaving_and_tainted() {
    tokio::time::timeout(Duration::from_secs(150), async {
        let c = Cluster::start();
        let client = c.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
        for n in ["n1", "n2"] {
            nodes
                .create(
                    &PostParams::default(),
                    &node(n, "4", json!({"role": "edge"})),
                )
                .await
                .unwrap();
        }
        nodes
            .create(
                &PostParams::default(),
                &node("other", "4", json!({"role": "core"})),
            )
            .await
            .unwrap();
        let out = kubectl(&c, 33, &["apply", "-f", "-"], Some(DAEMONSET));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        eventually("a pod is bound on each edge node", || async {
            bound_nodes(&pods).await == ["n1", "n2"]
        })
        .await;
        // Placed as upstream: pinned by matchFields, carrying the daemon tolerations.
        let (_, first) = pods_by_node(&pods).await.remove(0);
        let pod = serde_json::to_value(pods.get(&first).await.unwrap()).unwrap();
        assert_eq!(
            pod["spec"]["affinity"]["nodeAffinity"]
                ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
                ["matchFields"][0],
            json!({"key": "metadata.name", "operator": "In", "values": ["n1"]})
        );
        assert!(pod["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"));
        let hash = pod["metadata"]["labels"]["controller-revision-hash"]
            .as_str()
            .unwrap()
            .to_string();
        let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
        let rev = revisions.get(&format!("agent-{hash}")).await.unwrap();
        assert_eq!(rev.revision, 1);

        // A node joining gets a pod.
        nodes
            .create(
                &PostParams::default(),
                &node("n3", "4", json!({"role": "edge"})),
            )
            .await
            .unwrap();
        eventually("the new node gets a pod", || async {
            bound_nodes(&pods).await == ["n1", "n2", "n3"]
        })
        .await;

        // A node no longer matching the selector loses its pod.
        ok(&c, 33, &["label", "node", "n1", "role=core", "--overwrite"]);
        eventually("the relabelled node's pod is deleted", || async {
            bound_nodes(&pods).await == ["n2", "n3"]
        })
        .await;

        // A tainted node without a matching toleration gets none.
        let mut tainted = node("n4", "4", json!({"role": "edge"}));
        tainted.spec = Some(
            serde_json::from_value(json!({"taints": [
            {"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}))
            .unwrap(),
        );
        nodes
            .create(&PostParams::default(), &tainted)
            .await
            .unwrap();

        // Not ready yet: the rollout is not done.
        eventually("the status counts the pods scheduled", || async {
            let st = ds_status(&sets).await;
            st["desiredNumberScheduled"] == 2
                && st["currentNumberScheduled"] == 2
                && st["numberReady"] == 0
                && st["numberUnavailable"] == 2
                && st["observedGeneration"] == 1
        })
        .await;
        assert_eq!(
            bound_nodes(&pods).await,
            ["n2", "n3"],
            "the tainted node got no pod"
        );
        let out = kubectl(
            &c,
            33,
            &["rollout", "status", "daemonset/agent", "--timeout=1s"],
            None,
        );
        assert!(!out.status.success(), "no pod is ready yet");

        start_bound_pods(&pods).await;
        eventually("the status counts them ready", || async {
            let st = ds_status(&sets).await;
            st["numberReady"] == 2
                && st["numberAvailable"] == 2
                && st["updatedNumberScheduled"] == 2
                && st
                    .get("numberUnavailable")
                    .is_none_or(|v| v.is_null() || *v == 0)
        })
        .await;
        for minor in support::kubectl::VERSIONS {
            let out = ok(
                &c,
                minor,
                &["rollout", "status", "daemonset/agent", "--timeout=20s"],
            );
            assert!(out.contains("successfully rolled out"), "{out}");
        }

        // A node leaving: the set no longer counts it.
        nodes.delete("n3", &Default::default()).await.unwrap();
        eventually("the deleted node is not counted", || async {
            ds_status(&sets).await["desiredNumberScheduled"] == 1
        })
        .await;

        let events: Api<Event> = Api::namespaced(client.clone(), "default");
        let reasons: Vec<String> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.involved_object.kind.as_deref() == Some("DaemonSet"))
            .filter_map(|e| e.reason)
            .collect();
        assert!(
            reasons.iter().any(|r| r == "SuccessfulCreate"),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r == "SuccessfulDelete"),
            "{reasons:?}"
        );
    })
    .await
    .expect("finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_rolls_an_update_one_node_at_a_time() {
    tokio::time::timeout(Duration::from_secs(150), async {
        let c = Cluster::start();
        let client = c.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
        for n in ["n1", "n2", "n3"] {
            nodes
                .create(
                    &PostParams::default(),
                    &node(n, "4", json!({"role": "edge"})),
                )
                .await
                .unwrap();
        }
        let out = kubectl(&c, 30, &["apply", "-f", "-"], Some(DAEMONSET));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eventually("three pods are bound and ready", || async {
            start_bound_pods(&pods).await;
            let st = ds_status(&sets).await;
            let names = pods_by_node(&pods).await;
            names.len() == 3
                && names.iter().all(|(n, _)| !n.is_empty())
                && st["numberAvailable"] == 3
        })
        .await;
        ok(
            &c,
            30,
            &["rollout", "status", "daemonset/agent", "--timeout=20s"],
        );

        ok(&c, 30, &["set", "image", "daemonset/agent", "c=busybox:2"]);
        // maxUnavailable 1: never more than one node without a ready pod; play the kubelet
        // until every pod runs the new image.
        let mut rounds = 0;
        loop {
            let list = pods
                .list(&ListParams::default().labels("app=agent"))
                .await
                .unwrap()
                .items;
            let live: Vec<&Pod> = list
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let ready = live
                .iter()
                .filter(|p| {
                    p.status
                        .iter()
                        .flat_map(|s| s.conditions.iter().flatten())
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
                .count();
            assert!(ready >= 2, "at most one node is without a ready pod");
            let image = |p: &Pod| {
                p.spec.as_ref().unwrap().containers[0]
                    .image
                    .clone()
                    .unwrap_or_default()
            };
            if live.len() == 3 && ready == 3 && live.iter().all(|p| image(p) == "busybox:2") {
                break;
            }
            start_bound_pods(&pods).await;
            rounds += 1;
            assert!(rounds < 400, "the rollout did not finish");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let out = ok(
            &c,
            33,
            &["rollout", "status", "daemonset/agent", "--timeout=20s"],
        );
        assert!(out.contains("successfully rolled out"), "{out}");
        let st = ds_status(&sets).await;
        assert_eq!(st["observedGeneration"], 2);
        assert_eq!(st["updatedNumberScheduled"], 3);

        // Two revisions, the newest the pods' own.
        let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
        let mut revs: Vec<(i64, String)> = revisions
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|r| (r.revision, r.metadata.name.unwrap_or_default()))
            .collect();
        revs.sort();
        assert_eq!(revs.len(), 2, "{revs:?}");
        let (_, name) = pods_by_node(&pods).await.remove(0);
        let hash = pods.get(&name).await.unwrap().metadata.labels.unwrap()
            ["controller-revision-hash"]
            .clone();
        assert_eq!(revs[1], (2, format!("agent-{hash}")));
        let history = ok(&c, 33, &["rollout", "history", "daemonset/agent"]);
        assert!(history.contains('1') && history.contains('2'), "{history}");
    })
    .await
    .expect("finished in time");
}

const STATEFULSET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  replicas: 3
  serviceName: web
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: c
        image: nginx
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

/// The names of the StatefulSet's live pods, sorted.
async fn web_pods(pods: &Api<Pod>) -> Vec<String> {
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    let mut names: Vec<String> = list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    names
}

/// Whether the pods are exactly web-0 … web-(n-1).
fn is_prefix(names: &[String], n: usize) -> bool {
    names.len() == n
        && names
            .iter()
            .enumerate()
            .all(|(i, name)| *name == format!("web-{i}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_starts_pods_in_order_and_scales_down_from_the_highest() {
    tokio::time::timeout(Duration::from_secs(150), async {
        let c = Cluster::start();
        let client = c.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let sets: Api<k8s_openapi::api::apps::v1::StatefulSet> =
            Api::namespaced(client.clone(), "default");
        nodes
            .create(&PostParams::default(), &node("n1", "4", json!({})))
            .await
            .unwrap();
        let out = kubectl(&c, 33, &["apply", "-f", "-"], Some(STATEFULSET));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // Each ordinal appears only once the one before is Running and Ready.
        for i in 0..3usize {
            eventually(&format!("web-{i} is created and bound"), || async {
                let names = web_pods(&pods).await;
                assert!(
                    is_prefix(&names, i) || is_prefix(&names, i + 1),
                    "out of order: {names:?}"
                );
                let bound = pods
                    .get_opt(&format!("web-{i}"))
                    .await
                    .unwrap()
                    .and_then(|p| p.spec?.node_name)
                    .is_some();
                names.len() == i + 1 && bound
            })
            .await;
            // Give the controller a chance to run ahead of readiness: it must not.
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(
                is_prefix(&web_pods(&pods).await, i + 1),
                "web-{} waits for web-{i}",
                i + 1
            );
            let pod = serde_json::to_value(pods.get(&format!("web-{i}")).await.unwrap()).unwrap();
            assert_eq!(pod["spec"]["hostname"], format!("web-{i}"));
            assert_eq!(pod["spec"]["subdomain"], "web");
            assert_eq!(
                pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
                format!("web-{i}")
            );
            assert_eq!(
                pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
                i.to_string()
            );
            assert_eq!(
                pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
                format!("www-web-{i}")
            );
            set_pod_running(
                &pods,
                &format!("web-{i}"),
                &format!("10.42.1.{}", i + 10),
                true,
            )
            .await;
        }
        let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
            Api::namespaced(client.clone(), "default");
        for i in 0..3 {
            assert!(claims
                .get_opt(&format!("www-web-{i}"))
                .await
                .unwrap()
                .is_some());
        }
        eventually("the status counts three ready replicas", || async {
            let st = serde_json::to_value(sets.get("web").await.unwrap().status).unwrap();
            st["replicas"] == 3
                && st["readyReplicas"] == 3
                && st["updatedReplicas"] == 3
                && st["currentRevision"] == st["updateRevision"]
        })
        .await;
        let out = ok(
            &c,
            33,
            &["rollout", "status", "statefulset/web", "--timeout=20s"],
        );
        assert!(
            out.contains("roll out complete") || out.contains("rolled out"),
            "{out}"
        );

        // Scaling down removes the highest ordinal first.
        ok(&c, 33, &["scale", "statefulset/web", "--replicas=1"]);
        eventually("the set is scaled down to web-0", || async {
            let names = web_pods(&pods).await;
            assert!(
                (1..=3).any(|n| is_prefix(&names, n)),
                "not highest first: {names:?}"
            );
            is_prefix(&names, 1)
        })
        .await;
        // The claims stay (retention policy Retain).
        assert!(claims.get_opt("www-web-2").await.unwrap().is_some());
    })
    .await
    .expect("finished in time");
}

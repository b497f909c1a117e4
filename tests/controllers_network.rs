//! The network and node controllers inside a real `skiff server`: Endpoints and
//! EndpointSlices, node IPAM, node lifecycle (leases, taints, eviction) and
//! PodDisruptionBudget status. Node objects stand in for kubelets, and the tests write
//! pod status and node Leases as a kubelet would.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Event, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

mod support;
use support::kubectl::ok;
use support::objects::{eventually, node, set_pod_running};
use support::Cluster;

const LIMIT: Duration = Duration::from_secs(120);

/// A pod on `node` labelled app=web, with container port 8080 named `port_name`.
fn web_pod(name: &str, node: &str, port_name: &str, extra: serde_json::Value) -> Pod {
    let mut spec = json!({"nodeName": node, "containers": [{"name": "c", "image": "busybox",
        "ports": [{"name": port_name, "containerPort": 8080}]}]});
    if let Some(map) = extra.as_object() {
        for (k, v) in map {
            spec[k] = v.clone();
        }
    }
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": "web"}}, "spec": spec}),
    )
    .unwrap()
}

fn addresses(ep: &Endpoints) -> (Vec<String>, Vec<String>) {
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for s in ep.subsets.iter().flatten() {
        let port = s.ports.iter().flatten().map(|p| p.port).next().unwrap_or(0);
        ready.extend(
            s.addresses
                .iter()
                .flatten()
                .map(|a| format!("{}:{port}", a.ip)),
        );
        not_ready.extend(
            s.not_ready_addresses
                .iter()
                .flatten()
                .map(|a| format!("{}:{port}", a.ip)),
        );
    }
    ready.sort();
    not_ready.sort();
    (ready, not_ready)
}

/// The endpoints of Service `web`'s slices with port 8080: (address, ready, serving,
/// terminating), sorted.
async fn slice_endpoints(slices: &Api<EndpointSlice>) -> Vec<(String, bool, bool, bool)> {
    let list = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap();
    let mut out: Vec<_> = list
        .items
        .iter()
        .filter(|s| s.ports.iter().flatten().any(|p| p.port == Some(8080)))
        .flat_map(|s| &s.endpoints)
        .map(|e| {
            let c = e.conditions.clone().unwrap_or_default();
            (
                e.addresses[0].clone(),
                c.ready == Some(true),
                c.serving == Some(true),
                c.terminating == Some(true),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_slices_follow_pods_readiness_deletion_and_named_ports() {
    tokio::time::timeout(LIMIT, async {
        let c = Cluster::start();
        let client = c.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        let mut n1 = node("n1", "4", json!({"topology.kubernetes.io/zone": "zone-a"}));
        n1.metadata.labels.get_or_insert_default();
        nodes.create(&PostParams::default(), &n1).await.unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        for (name, port) in [("web-1", "http"), ("web-2", "http"), ("web-3", "other")] {
            pods.create(&PostParams::default(), &web_pod(name, "n1", port, json!({}))).await.unwrap();
        }
        set_pod_running(&pods, "web-1", "10.42.0.11", true).await;
        set_pod_running(&pods, "web-2", "10.42.0.12", false).await;
        set_pod_running(&pods, "web-3", "10.42.0.13", true).await;
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))
            .unwrap();
        services.create(&PostParams::default(), &svc).await.unwrap();

        // web-3 has no port named http: it is in neither.
        let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
        let want = (vec!["10.42.0.11:8080".to_string()], vec!["10.42.0.12:8080".to_string()]);
        eventually("the Endpoints list web-1 ready and web-2 not ready", || async {
            endpoints.get_opt("web").await.unwrap().is_some_and(|e| addresses(&e) == want)
        })
        .await;
        let ep = endpoints.get("web").await.unwrap();
        assert!(ep.metadata.annotations.unwrap().contains_key("endpoints.kubernetes.io/last-change-trigger-time"));
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
        eventually("the slice lists web-1 ready and web-2 not ready", || async {
            slice_endpoints(&slices).await
                == [("10.42.0.11".into(), true, true, false), ("10.42.0.12".into(), false, false, false)]
        })
        .await;
        let web_slices = slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.unwrap().items;
        // As upstream, web-3 (no port named http) is in a slice of its own with no ports.
        let portless: Vec<_> = web_slices.iter().filter(|s| s.ports.as_ref().is_none_or(Vec::is_empty)).collect();
        assert_eq!(portless.len(), 1);
        assert_eq!(portless[0].endpoints[0].addresses, ["10.42.0.13"]);
        let slice = web_slices.iter().find(|s| !s.ports.as_ref().is_none_or(Vec::is_empty)).unwrap();
        let labels = slice.metadata.labels.clone().unwrap();
        assert_eq!(labels["endpointslice.kubernetes.io/managed-by"], "endpointslice-controller.k8s.io");
        assert_eq!(slice.metadata.owner_references.as_ref().unwrap()[0].name, "web");
        assert!(slice.metadata.name.as_ref().unwrap().starts_with("web-"));
        assert_eq!(slice.endpoints[0].zone.as_deref(), Some("zone-a"));
        assert_eq!(slice.endpoints[0].node_name.as_deref(), Some("n1"));
        assert_eq!(slice.ports.as_ref().unwrap()[0].port, Some(8080));

        // web-2 becomes ready.
        set_pod_running(&pods, "web-2", "10.42.0.12", true).await;
        eventually("both pods are ready endpoints", || async {
            let ep = endpoints.get("web").await.unwrap();
            addresses(&ep).0 == ["10.42.0.11:8080", "10.42.0.12:8080"]
        })
        .await;
        let out = ok(&c, 33, &["get", "endpoints", "web"]);
        assert!(out.contains("10.42.0.11:8080,10.42.0.12:8080"), "{out}");
        let out = ok(&c, 33, &["get", "endpointslices", "-l", "kubernetes.io/service-name=web"]);
        assert!(out.contains("IPv4") && out.contains("8080") && out.contains("10.42.0.11,10.42.0.12"), "{out}");

        // Idle: another Service's sync of this namespace writes nothing for web.
        let before = endpoints.get("web").await.unwrap().metadata.resource_version;
        let versions = || async {
            let list = slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.unwrap();
            let mut v: Vec<_> = list.items.into_iter().map(|s| s.metadata.resource_version).collect();
            v.sort();
            v
        };
        let slice_before = versions().await;
        let other: Service = serde_json::from_value(json!({"metadata": {"name": "other"},
            "spec": {"selector": {"app": "other"}, "ports": [{"port": 80}]}})).unwrap();
        services.create(&PostParams::default(), &other).await.unwrap();
        eventually("other's Endpoints and slice exist", || async {
            endpoints.get_opt("other").await.unwrap().is_some()
                && !slices.list(&ListParams::default().labels("kubernetes.io/service-name=other")).await.unwrap().items.is_empty()
        })
        .await;
        assert_eq!(endpoints.get("web").await.unwrap().metadata.resource_version, before);
        assert_eq!(versions().await, slice_before);

        // A pod being deleted leaves the Endpoints, and stays in the slice as terminating.
        pods.delete("web-1", &DeleteParams::default()).await.unwrap();
        eventually("web-1 leaves the Endpoints and is terminating in the slice", || async {
            let ep = endpoints.get("web").await.unwrap();
            addresses(&ep).0 == ["10.42.0.12:8080"]
                && slice_endpoints(&slices).await[0] == ("10.42.0.11".into(), false, true, true)
        })
        .await;
        pods.delete("web-1", &DeleteParams::default().grace_period(0)).await.unwrap();
        eventually("web-1 leaves the slice", || async {
            slice_endpoints(&slices).await == [("10.42.0.12".into(), true, true, false)]
        })
        .await;

        // A Service whose targetPort names web-3's port reaches web-3 alone.
        services.delete("web", &DeleteParams::default()).await.unwrap();
        eventually("web's Endpoints and slices go with it", || async {
            endpoints.get_opt("web").await.unwrap().is_none()
                && slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.unwrap().items.is_empty()
        })
        .await;
        let by_number: Service = serde_json::from_value(json!({"metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "other"}]}}))
            .unwrap();
        services.create(&PostParams::default(), &by_number).await.unwrap();
        eventually("only web-3 serves the port named other", || async {
            endpoints.get_opt("web").await.unwrap().is_some_and(|e| addresses(&e).0 == ["10.42.0.13:8080"])
        })
        .await;
    })
    .await
    .expect("the test finished in time");
}

async fn pod_cidr(nodes: &Api<Node>, name: &str) -> Option<String> {
    let spec = nodes.get(name).await.ok()?.spec?;
    let cidrs = spec.pod_cidrs.clone().unwrap_or_default();
    let cidr = spec.pod_cidr?;
    assert_eq!(
        cidrs,
        std::slice::from_ref(&cidr),
        "podCIDR and podCIDRs agree"
    );
    Some(cidr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_pod_cidrs_that_survive_a_restart() {
    tokio::time::timeout(LIMIT, async {
        let mut c = Cluster::start();
        let nodes: Api<Node> = Api::all(c.client().await);
        for n in ["n1", "n2", "n3"] {
            nodes
                .create(&PostParams::default(), &node(n, "2", json!({})))
                .await
                .unwrap();
        }
        let mut first = Vec::new();
        for n in ["n1", "n2", "n3"] {
            eventually("the node has a pod CIDR", || async {
                pod_cidr(&nodes, n).await.is_some()
            })
            .await;
            first.push(pod_cidr(&nodes, n).await.unwrap());
        }
        let mut distinct = first.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 3, "{first:?}");
        assert!(
            first
                .iter()
                .all(|c| c.starts_with("10.42.") && c.ends_with(".0/24")),
            "{first:?}"
        );

        c.restart();
        let nodes: Api<Node> = Api::all(c.client().await);
        nodes
            .create(&PostParams::default(), &node("n4", "2", json!({})))
            .await
            .unwrap();
        eventually("n4 has a pod CIDR", || async {
            pod_cidr(&nodes, "n4").await.is_some()
        })
        .await;
        let fourth = pod_cidr(&nodes, "n4").await.unwrap();
        assert!(
            !first.contains(&fourth),
            "{fourth} was already given: {first:?}"
        );
        for (n, cidr) in ["n1", "n2", "n3"].iter().zip(&first) {
            assert_eq!(pod_cidr(&nodes, n).await.as_ref(), Some(cidr));
        }
    })
    .await
    .expect("the test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_range_says_cidr_not_available_and_a_deleted_nodes_range_is_reused() {
    tokio::time::timeout(LIMIT, async {
        let c = Cluster::start_with(|_| {
            [
                "--cluster-cidr",
                "10.42.0.0/23",
                "--node-cidr-mask-size",
                "24",
            ]
            .map(String::from)
            .to_vec()
        });
        let client = c.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        for n in ["n1", "n2"] {
            nodes
                .create(&PostParams::default(), &node(n, "2", json!({})))
                .await
                .unwrap();
            eventually("the node has a pod CIDR", || async {
                pod_cidr(&nodes, n).await.is_some()
            })
            .await;
        }
        let freed = pod_cidr(&nodes, "n1").await.unwrap();
        nodes
            .create(&PostParams::default(), &node("n3", "2", json!({})))
            .await
            .unwrap();
        let events: Api<Event> = Api::all(client.clone());
        eventually("n3 is told no CIDR is left", || async {
            events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("CIDRNotAvailable")
                        && e.involved_object.name.as_deref() == Some("n3")
                        && e.message.as_deref() == Some("Node n3 status is now: CIDRNotAvailable")
                })
        })
        .await;
        assert_eq!(pod_cidr(&nodes, "n3").await, None);
        nodes.delete("n1", &DeleteParams::default()).await.unwrap();
        eventually("n3 gets n1's range", || async {
            pod_cidr(&nodes, "n3").await.as_ref() == Some(&freed)
        })
        .await;
    })
    .await
    .expect("the test finished in time");
}

fn flag_of(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

async fn renew(leases: &Api<Lease>) {
    let patch = json!({"spec": {"renewTime": MicroTime(Timestamp::now())}});
    leases
        .patch("n1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .any(|t| t.key == key && t.effect == effect)
}

fn ready_of(node: &Node) -> Option<(String, Option<String>)> {
    let c = node
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?
        .clone();
    Some((c.status, c.reason))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_stops_is_tainted_and_its_pods_are_evicted_after_their_toleration() {
    tokio::time::timeout(LIMIT, async {
        let c = Cluster::start_with(|_| flag_of(&["--node-monitor-grace-period", "2s"]));
        let client = c.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        nodes.create(&PostParams::default(), &node("n1", "4", json!({}))).await.unwrap();
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "n1"},
            "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": MicroTime(Timestamp::now())}})).unwrap();
        leases.create(&PostParams::default(), &lease).await.unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let toleration = |secs: Option<i64>| json!({"tolerations": [{"key": "node.kubernetes.io/unreachable",
            "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": secs}]});
        pods.create(&PostParams::default(), &web_pod("short", "n1", "http", toleration(Some(2)))).await.unwrap();
        pods.create(&PostParams::default(), &web_pod("forever", "n1", "http", toleration(None))).await.unwrap();
        set_pod_running(&pods, "short", "10.42.0.21", true).await;
        set_pod_running(&pods, "forever", "10.42.0.22", true).await;

        // While the lease is renewed, the node stays as it is.
        for _ in 0..8 {
            renew(&leases).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let n = nodes.get("n1").await.unwrap();
        assert!(!has_taint(&n, "node.kubernetes.io/unreachable", "NoExecute"));
        assert_eq!(ready_of(&n).unwrap().0, "True");

        // The lease stops.
        eventually("n1 is Unknown and tainted unreachable", || async {
            let n = nodes.get("n1").await.unwrap();
            has_taint(&n, "node.kubernetes.io/unreachable", "NoExecute")
                && ready_of(&n) == Some(("Unknown".into(), Some("NodeStatusUnknown".into())))
        })
        .await;
        let gone = |name: &'static str| {
            let pods = pods.clone();
            async move { pods.get_opt(name).await.unwrap().is_none_or(|p| p.metadata.deletion_timestamp.is_some()) }
        };
        eventually("the pod tolerating 2 s is deleted", || async { gone("short").await }).await;
        let forever = pods.get("forever").await.unwrap();
        assert!(forever.metadata.deletion_timestamp.is_none());
        let ready = forever.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "False", "pods of an unreachable node are not ready");
        let events: Api<Event> = Api::namespaced(client.clone(), "default");
        eventually("the eviction is recorded", || async {
            events.list(&ListParams::default()).await.unwrap().items.iter().any(|e| {
                e.reason.as_deref() == Some("TaintManagerEviction")
                    && e.message.as_deref() == Some("Marking for deletion Pod default/short")
            })
        })
        .await;

        // The kubelet is back: status posted and the lease renewed.
        let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "lastHeartbeatTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now())}]}});
        nodes.patch_status("n1", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
        renew(&leases).await;
        eventually("the taint is removed", || async {
            !has_taint(&nodes.get("n1").await.unwrap(), "node.kubernetes.io/unreachable", "NoExecute")
        })
        .await;
    })
    .await
    .expect("the test finished in time");
}

async fn pdb_status(pdbs: &Api<PodDisruptionBudget>) -> Option<(i32, i32, i32, i32, String)> {
    let s = pdbs.get("web").await.ok()?.status?;
    let reason = s
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "DisruptionAllowed")?
        .reason;
    Some((
        s.current_healthy,
        s.desired_healthy,
        s.expected_pods,
        s.disruptions_allowed,
        reason,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_allows_disruptions_when_enough_pods_are_ready_and_eviction_follows_it() {
    tokio::time::timeout(LIMIT, async {
        let c = Cluster::start();
        let client = c.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        nodes
            .create(&PostParams::default(), &node("n1", "4", json!({})))
            .await
            .unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        for (i, name) in ["p1", "p2", "p3"].iter().enumerate() {
            pods.create(
                &PostParams::default(),
                &web_pod(name, "n1", "http", json!({})),
            )
            .await
            .unwrap();
            set_pod_running(&pods, name, &format!("10.42.0.{}", 31 + i), i < 2).await;
        }
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
        let pdb: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "web"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}))
        .unwrap();
        pdbs.create(&PostParams::default(), &pdb).await.unwrap();
        eventually("two of three ready: no disruption allowed", || async {
            pdb_status(&pdbs).await == Some((2, 2, 3, 0, "InsufficientPods".into()))
        })
        .await;
        // Without retries, so that a 429 comes back as it is.
        let evictions: Api<Pod> = Api::namespaced(c.client_with(false).await, "default");
        let refused = evictions
            .evict("p1", &EvictParams::default())
            .await
            .unwrap_err();
        assert!(
            matches!(refused, kube::Error::Api(ref s) if s.code == 429),
            "{refused:?}"
        );

        set_pod_running(&pods, "p3", "10.42.0.33", true).await;
        eventually("three ready: one disruption allowed", || async {
            pdb_status(&pdbs).await == Some((3, 2, 3, 1, "SufficientPods".into()))
        })
        .await;
        let out = ok(&c, 33, &["get", "pdb", "web"]);
        assert!(
            out.lines()
                .nth(1)
                .is_some_and(|l| l.split_whitespace().nth(3) == Some("1")),
            "{out}"
        );
        evictions
            .evict("p1", &EvictParams::default())
            .await
            .unwrap();
        let refused = evictions
            .evict("p2", &EvictParams::default())
            .await
            .unwrap_err();
        assert!(
            matches!(refused, kube::Error::Api(ref s) if s.code == 429),
            "{refused:?}"
        );
        eventually("the evicted pod no longer counts", || async {
            pdb_status(&pdbs)
                .await
                .is_some_and(|s| s.0 == 2 && s.3 == 0)
        })
        .await;
    })
    .await
    .expect("the test finished in time");
}

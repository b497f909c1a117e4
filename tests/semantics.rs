//! Object semantics over a real `skiff server` with kube-rs: Service addresses, the
//! subresources (scale, binding, eviction, finalize) and deletion (graceful pods,
//! propagation policies).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

mod support;
use support::{raw, Cluster};

async fn within<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(90), f)
        .await
        .expect("the test finished in time");
}

fn service(name: &str, spec: Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn ports(n: u16) -> Value {
    json!([{"name": "http", "port": n, "targetPort": 8080}])
}

async fn create_err(api: &Api<Service>, svc: &Service) -> kube::core::Status {
    match api.create(&PostParams::default(), svc).await {
        Err(kube::Error::Api(e)) => *e,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_unique_addresses_and_node_ports_that_outlive_a_restart() {
    within(async {
        let mut c = Cluster::start();
        let client = c.client().await;
        let api: Api<Service> = Api::namespaced(client.clone(), "default");
        // The API server's own service, with endpoints pointing at it.
        let k = api.get("kubernetes").await.unwrap();
        let spec = k.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.43.0.1"));
        assert_eq!(spec.ports.unwrap()[0].port, 443);
        let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
        let subsets = eps.get("kubernetes").await.unwrap().subsets.unwrap();
        assert!(!subsets[0].addresses.as_ref().unwrap()[0].ip.is_empty());

        let a = api.create(&PostParams::default(), &service("a", json!({"ports": ports(80)}))).await.unwrap();
        let b = api.create(&PostParams::default(), &service("b", json!({"ports": ports(80), "type": "NodePort"}))).await.unwrap();
        let ip_a = a.spec.unwrap().cluster_ip.unwrap();
        let b_spec = b.spec.unwrap();
        let ip_b = b_spec.cluster_ip.clone().unwrap();
        assert_ne!(ip_a, ip_b);
        for ip in [&ip_a, &ip_b] {
            assert!(ip.starts_with("10.43.") && ip != "10.43.0.1" && ip != "10.43.0.10", "{ip}");
        }
        let node_port = b_spec.ports.unwrap()[0].node_port.unwrap();
        assert!((30000..=32767).contains(&node_port), "{node_port}");
        let headless = api.create(&PostParams::default(), &service("h", json!({"clusterIP": "None", "ports": ports(80)}))).await.unwrap();
        assert_eq!(headless.spec.unwrap().cluster_ip.as_deref(), Some("None"));

        // Asking for a taken address, one outside the range, or a taken NodePort: 422.
        let e = create_err(&api, &service("c", json!({"clusterIP": ip_a, "ports": ports(80)}))).await;
        assert_eq!(e.code, 422, "{e:?}");
        assert!(e.message.contains("provided IP is already allocated"), "{}", e.message);
        let e = create_err(&api, &service("c", json!({"clusterIP": "10.0.0.7", "ports": ports(80)}))).await;
        assert_eq!(e.code, 422);
        assert!(e.message.contains("The range of valid IPs is 10.43.0.0/16"), "{}", e.message);
        let taken = json!({"type": "NodePort", "ports": [{"port": 81, "nodePort": node_port}]});
        let e = create_err(&api, &service("c", taken)).await;
        assert_eq!(e.code, 422);
        assert!(e.message.contains("spec.ports[0].nodePort"), "{}", e.message);
        assert!(api.get_opt("c").await.unwrap().is_none(), "nothing half-made is stored");

        // A requested address is honoured; after a restart nothing is handed out twice.
        let d = api.create(&PostParams::default(), &service("d", json!({"clusterIP": "10.43.0.10", "ports": ports(53)}))).await.unwrap();
        assert_eq!(d.spec.unwrap().cluster_ip.as_deref(), Some("10.43.0.10"));
        c.restart();
        let api: Api<Service> = Api::namespaced(c.client().await, "default");
        let e = create_err(&api, &service("c", json!({"clusterIP": ip_b, "ports": ports(80)}))).await;
        assert_eq!(e.code, 422);
        // Deleting gives the address and the port back.
        api.delete("b", &DeleteParams::default()).await.unwrap();
        let reuse = json!({"clusterIP": ip_b, "type": "NodePort", "ports": [{"port": 80, "nodePort": node_port}]});
        api.create(&PostParams::default(), &service("c", reuse)).await.unwrap();
        // Turning a ClusterIP service into a NodePort one gives it a port; back again
        // takes it away.
        let to_np = json!({"spec": {"type": "NodePort"}});
        let np = api.patch("a", &PatchParams::default(), &Patch::Merge(&to_np)).await.unwrap();
        assert!(np.spec.unwrap().ports.unwrap()[0].node_port.is_some());
        let back = json!({"spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
        let ci = api.patch("a", &PatchParams::default(), &Patch::Merge(&back)).await.unwrap();
        assert_eq!(ci.spec.as_ref().unwrap().cluster_ip.as_deref(), Some(ip_a.as_str()));
        assert!(ci.spec.unwrap().ports.unwrap()[0].node_port.is_none());
    })
    .await;
}

fn pod(name: &str, node: Option<&str>) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}], "terminationGracePeriodSeconds": 30});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": "web"}}, "spec": spec}),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_sets_the_node_once_and_eviction_honours_disruption_budgets() {
    within(async {
        let c = Cluster::start();
        // The eviction's 429 is the answer under test, not one to retry.
        let client = c.client_with(false).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        pods.create(&PostParams::default(), &pod("p", None)).await.unwrap();
        let bind = |node: &str| json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
                                       "target": {"kind": "Node", "name": node}}).to_string().into_bytes();
        let path = "/api/v1/namespaces/default/pods/p/binding";
        let (code, body) = raw(&client, "POST", path, "application/json", bind("n1")).await;
        assert_eq!(code, 201, "{body}");
        let bound = pods.get("p").await.unwrap();
        assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("n1"));
        let conds = bound.status.unwrap().conditions.unwrap();
        assert!(conds.iter().any(|c| c.type_ == "PodScheduled" && c.status == "True"));
        let (code, body) = raw(&client, "POST", path, "application/json", bind("n2")).await;
        assert_eq!(code, 409, "{body}");
        assert!(body.contains("is already assigned to node \\\"n1\\\""), "{body}");

        // A running pod under a budget that allows no disruption cannot be evicted.
        let running = json!({"status": {"phase": "Running"}});
        pods.patch_status("p", &PatchParams::default(), &Patch::Merge(&running)).await.unwrap();
        let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                         "metadata": {"name": "web"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}});
        let pdbs = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";
        let (code, body) = raw(&client, "POST", pdbs, "application/json", pdb.to_string().into_bytes()).await;
        assert_eq!(code, 201, "{body}");
        let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p", "namespace": "default"}});
        let evict = "/api/v1/namespaces/default/pods/p/eviction";
        let (code, body) = raw(&client, "POST", evict, "application/json", eviction.to_string().into_bytes()).await;
        assert_eq!(code, 429, "{body}");
        assert!(body.contains("DisruptionBudget"), "{body}");
        // Once the budget allows one, the eviction goes through and uses it up.
        let status = json!({"status": {"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 2,
                                       "desiredHealthy": 1, "expectedPods": 2}});
        let (code, body) = raw(&client, "PATCH", &format!("{pdbs}/web/status"), "application/merge-patch+json",
                               status.to_string().into_bytes()).await;
        assert_eq!(code, 200, "{body}");
        let (code, body) = raw(&client, "POST", evict, "application/json", eviction.to_string().into_bytes()).await;
        assert_eq!(code, 201, "{body}");
        let gone = pods.get("p").await.unwrap();
        assert!(gone.metadata.deletion_timestamp.is_some(), "a scheduled pod goes gracefully");
        let (_, body) = raw(&client, "GET", &format!("{pdbs}/web"), "application/json", Vec::new()).await;
        let pdb: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
        assert!(pdb["status"]["disruptedPods"]["p"].is_string());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_reads_and_writes_replicas_of_a_deployment() {
    use k8s_openapi::api::apps::v1::Deployment;
    within(async {
        let c = Cluster::start();
        let client = c.client().await;
        let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}))
        .unwrap();
        api.create(&PostParams::default(), &d).await.unwrap();
        let scale = api.get_scale("web").await.unwrap();
        assert_eq!(scale.spec.unwrap().replicas, Some(2));
        assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));
        let patch = json!({"spec": {"replicas": 5}});
        let scaled = api
            .patch_scale("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        assert_eq!(scaled.spec.unwrap().replicas, Some(5));
        let after = api.get("web").await.unwrap();
        assert_eq!(after.spec.unwrap().replicas, Some(5));
        assert_eq!(after.metadata.generation, Some(2));
        let bad = json!({"spec": {"replicas": -1}});
        match api
            .patch_scale("web", &PatchParams::default(), &Patch::Merge(&bad))
            .await
        {
            Err(kube::Error::Api(e)) => assert_eq!(e.code, 422),
            other => panic!("expected 422, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_is_graceful_for_pods_and_propagation_policies_leave_finalizers() {
    use k8s_openapi::api::core::v1::ConfigMap;
    within(async {
        // The API server alone: with the garbage collector running, the finalizers this
        // test looks at would be gone before it looked (tests/controllers_lifecycle.rs).
        let c = Cluster::start_with(|_| vec!["--disable-controller-manager".into()]);
        let client = c.client().await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        pods.create(&PostParams::default(), &pod("unscheduled", None))
            .await
            .unwrap();
        pods.delete("unscheduled", &DeleteParams::default())
            .await
            .unwrap();
        assert!(
            pods.get_opt("unscheduled").await.unwrap().is_none(),
            "no node: deleted at once"
        );
        pods.create(&PostParams::default(), &pod("running", Some("n1")))
            .await
            .unwrap();
        pods.delete("running", &DeleteParams::default())
            .await
            .unwrap();
        let terminating = pods.get("running").await.unwrap();
        assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
        pods.delete(
            "running",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(
            pods.get_opt("running").await.unwrap().is_none(),
            "grace 0 deletes at once"
        );

        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        for name in ["fg", "orphan"] {
            let cm: ConfigMap =
                serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
            cms.create(&PostParams::default(), &cm).await.unwrap();
        }
        cms.delete("fg", &DeleteParams::foreground()).await.unwrap();
        cms.delete("orphan", &DeleteParams::orphan()).await.unwrap();
        let fg = cms.get("fg").await.unwrap();
        assert_eq!(
            fg.metadata.finalizers,
            Some(vec!["foregroundDeletion".to_string()])
        );
        assert!(fg.metadata.deletion_timestamp.is_some());
        let orphan = cms.get("orphan").await.unwrap();
        assert_eq!(orphan.metadata.finalizers, Some(vec!["orphan".to_string()]));
        // Removing the finalizer (as the garbage collector will) ends the object.
        let clear = json!({"metadata": {"finalizers": null}});
        cms.patch("fg", &PatchParams::default(), &Patch::Merge(&clear))
            .await
            .unwrap();
        assert!(cms.get_opt("fg").await.unwrap().is_none());
        let (code, body) = raw(
            &client,
            "DELETE",
            "/api/v1/namespaces/default/configmaps/orphan",
            "application/json",
            br#"{"propagationPolicy":"Sideways"}"#.to_vec(),
        )
        .await;
        assert_eq!(code, 422, "{body}");

        // A namespace goes when its finalizers are cleared through finalize.
        let nss: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap();
        nss.create(&PostParams::default(), &ns).await.unwrap();
        nss.delete("doomed", &DeleteParams::default())
            .await
            .unwrap();
        let mut got = serde_json::to_value(nss.get("doomed").await.unwrap()).unwrap();
        got["spec"]["finalizers"] = json!([]);
        let (code, body) = raw(
            &client,
            "PUT",
            "/api/v1/namespaces/doomed/finalize",
            "application/json",
            got.to_string().into_bytes(),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        assert!(nss.get_opt("doomed").await.unwrap().is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_server_side_apply_and_merge_patch() {
    use k8s_openapi::api::core::v1::ConfigMap;
    within(async {
        let c = Cluster::start();
        let cms: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
        let apply = PatchParams::apply("skiff-test");
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"},
                            "data": {"a": "1", "b": "2"}});
        let made = cms
            .patch("ssa", &apply, &Patch::Apply(&config))
            .await
            .unwrap();
        assert_eq!(made.data.unwrap().len(), 2, "apply creates the object");
        let fields = made.metadata.managed_fields.unwrap();
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].manager.as_deref(), Some("skiff-test"));
        assert_eq!(fields[0].operation.as_deref(), Some("Apply"));
        let merge = json!({"data": {"c": "3"}});
        cms.patch("ssa", &PatchParams::default(), &Patch::Merge(&merge))
            .await
            .unwrap();
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"},
                            "data": {"a": "1"}});
        let applied = cms
            .patch("ssa", &apply, &Patch::Apply(&config))
            .await
            .unwrap();
        let data = applied.data.unwrap();
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            ["a", "c"],
            "b was the applier's alone"
        );
        let taken = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"},
                           "data": {"a": "1", "c": "other"}});
        match cms.patch("ssa", &apply, &Patch::Apply(&taken)).await {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 409);
                assert!(e.message.contains("conflict with"), "{}", e.message);
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        let forced = cms
            .patch("ssa", &apply.clone().force(), &Patch::Apply(&taken))
            .await
            .unwrap();
        assert_eq!(forced.data.unwrap()["c"], "other");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_objects_get_422_with_a_cause_per_field_and_nothing_is_stored() {
    within(async {
        let c = Cluster::start();
        let client = c.client().await;
        let tmpl = |spec: Value| json!({"metadata": {"labels": {"app": "x"}}, "spec": spec});
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            ("/api/v1/namespaces/default/pods",
             json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"}, "spec": {"containers": []}}),
             "spec.containers", "Required value"),
            ("/api/v1/namespaces/default/pods",
             json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"}, "spec": {"containers": [{"name": "c"}]}}),
             "spec.containers[0].image", "Required value"),
            ("/api/v1/namespaces/default/pods",
             json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad", "labels": {"bad key!": "v"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
             "metadata.labels", "Invalid value"),
            ("/api/v1/namespaces/default/pods",
             json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"},
                    "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 70000}]}]}}),
             "spec.containers[0].ports[0].containerPort", "between 1 and 65535"),
            ("/apis/apps/v1/namespaces/default/deployments",
             json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
                    "spec": {"selector": {"matchLabels": {"app": "y"}},
                             "template": tmpl(json!({"containers": [{"name": "c", "image": "busybox"}]}))}}),
             "spec.template.metadata.labels", "does not match template"),
            ("/api/v1/namespaces/default/services",
             json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad"},
                    "spec": {"ports": [{"port": 80}, {"port": 81}]}}),
             "spec.ports[0].name", "Required value"),
            ("/apis/batch/v1/namespaces/default/cronjobs",
             json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "bad"},
                    "spec": {"schedule": "every minute", "jobTemplate": {"spec": {"template":
                        {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}}),
             "spec.schedule", "Invalid value"),
        ];
        for (path, body, field, text) in cases {
            let (code, answer) = raw(&client, "POST", path, "application/json", body.to_string().into_bytes()).await;
            assert_eq!(code, 422, "{path} {body}: {answer}");
            let status: Value = serde_json::from_str(&answer).unwrap();
            let causes = status["details"]["causes"].as_array().cloned().unwrap_or_default();
            assert!(
                causes.iter().any(|c| c["field"] == field && c["message"].as_str().unwrap_or_default().contains(text)),
                "{path}: no cause for {field} saying {text:?} in {answer}"
            );
            let (code, _) = raw(&client, "GET", &format!("{path}/bad"), "application/json", Vec::new()).await;
            assert_eq!(code, 404, "{path}: a refused object is not stored");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_are_filled_in_and_a_pod_spec_may_change_only_where_upstream_allows() {
    use k8s_openapi::api::apps::v1::Deployment;
    within(async {
        let c = Cluster::start();
        let client = c.client().await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox:1.36"}]}})).unwrap();
        let made = pods.create(&PostParams::default(), &p).await.unwrap();
        let spec = made.spec.unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.service_account_name.as_deref(), Some("default"));
        assert_eq!(spec.containers[0].image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(spec.containers[1].image_pull_policy.as_deref(), Some("IfNotPresent"));
        // The image may change; another field of the spec may not.
        let image = json!({"spec": {"containers": [{"name": "a", "image": "busybox:2"}]}});
        pods.patch("p", &PatchParams::default(), &Patch::Strategic(&image)).await.unwrap();
        let policy = json!({"spec": {"restartPolicy": "Never"}});
        match pods.patch("p", &PatchParams::default(), &Patch::Merge(&policy)).await {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 422);
                assert!(e.message.contains("pod updates may not change fields other than"), "{}", e.message);
            }
            other => panic!("expected 422, got {other:?}"),
        }
        let deploys: Api<Deployment> = Api::namespaced(client, "default");
        let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"app": "d"}},
                     "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})).unwrap();
        let d = deploys.create(&PostParams::default(), &d).await.unwrap().spec.unwrap();
        assert_eq!(d.replicas, Some(1));
        assert_eq!(d.revision_history_limit, Some(10));
        assert_eq!(d.progress_deadline_seconds, Some(600));
        let rolling = d.strategy.unwrap().rolling_update.unwrap();
        assert_eq!(serde_json::to_value(rolling.max_surge).unwrap(), json!("25%"));
        let moved = json!({"spec": {"selector": {"matchLabels": {"app": "e"}}, "template": {"metadata": {"labels": {"app": "e"}}}}});
        match deploys.patch("d", &PatchParams::default(), &Patch::Merge(&moved)).await {
            Err(kube::Error::Api(e)) => assert!(e.message.contains("field is immutable"), "{}", e.message),
            other => panic!("expected 422, got {other:?}"),
        }
    })
    .await;
}

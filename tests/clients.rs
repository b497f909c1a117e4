//! kube-rs and the Python `kubernetes` client against a real `skiff server`.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};

mod support;
use support::{raw, Cluster};

/// The API server alone: these tests are about what clients see of the API, and a
/// controller writing meanwhile (the root CA ConfigMap in `default`) would race them.
fn start() -> Cluster {
    Cluster::start_with(|_| vec!["--disable-controller-manager".into()])
}

async fn client(c: &Cluster) -> kube::Client {
    c.client().await
}

fn configmap(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "kube-rs"}},
        "data": {"k": "v"},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_creates_lists_and_gets_conflicts_on_stale_replaces() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let c = start();
        let api: Api<ConfigMap> = Api::namespaced(client(&c).await, "default");
        let created = api
            .create(&PostParams::default(), &configmap("one"))
            .await
            .unwrap();
        let rv = created.metadata.resource_version.clone().unwrap();
        let list = api
            .list(&ListParams::default().labels("app=kube-rs"))
            .await
            .unwrap();
        assert_eq!(list.items.len(), 1);
        assert!(list.metadata.resource_version.is_some());
        let mut changed = created.clone();
        changed.data = Some([("k".to_string(), "w".to_string())].into());
        api.replace("one", &PostParams::default(), &changed)
            .await
            .unwrap();
        // The same resourceVersion again is stale now.
        let mut stale = created.clone();
        stale.metadata.resource_version = Some(rv);
        match api.replace("one", &PostParams::default(), &stale).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 409);
                assert_eq!(status.reason, "Conflict");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_watches_and_resumes_from_a_bookmark() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let c = start();
        let api: Api<ConfigMap> = Api::namespaced(client(&c).await, "default");
        let list = api.list(&ListParams::default()).await.unwrap();
        let start_rv = list.metadata.resource_version.unwrap();
        let params = WatchParams::default().timeout(60);
        let mut stream = api.watch(&params, &start_rv).await.unwrap().boxed();
        api.create(&PostParams::default(), &configmap("w1"))
            .await
            .unwrap();
        let mut bookmark = None;
        while let Some(event) = stream.try_next().await.unwrap() {
            match event {
                WatchEvent::Added(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("w1")),
                WatchEvent::Bookmark(b) => {
                    bookmark = Some(b.metadata.resource_version);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        drop(stream);
        let bookmark = bookmark.expect("a bookmark arrives");
        // Resuming from the bookmark replays nothing older, and sees what comes next.
        let mut resumed = api.watch(&params, &bookmark).await.unwrap().boxed();
        api.create(&PostParams::default(), &configmap("w2"))
            .await
            .unwrap();
        match resumed.try_next().await.unwrap() {
            Some(WatchEvent::Added(cm)) => assert_eq!(cm.metadata.name.as_deref(), Some("w2")),
            other => panic!("expected w2 only, got {other:?}"),
        }
    })
    .await
    .unwrap();
}

/// The Python client is installed by scripts/deps.sh into target/py.
#[test]
fn the_python_client_lists_watches_and_patches_with_a_dict() {
    let c = start();
    let script = r#"
import sys
from kubernetes import client, config, watch
config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
v1.create_namespaced_config_map("default", {"metadata": {"name": "py"}, "data": {"a": "b"}})
names = [cm.metadata.name for cm in v1.list_namespaced_config_map("default").items]
assert [n for n in names if n != "kube-root-ca.crt"] == ["py"], names
seen = []
for event in watch.Watch().stream(v1.list_namespaced_config_map, "default",
                                  field_selector="metadata.name=py", timeout_seconds=5):
    seen.append((event["type"], event["object"].metadata.name))
    break
assert seen == [("ADDED", "py")], seen
ns = [n.metadata.name for n in v1.list_namespace().items]
assert "kube-system" in ns, ns
# A dict body goes out as a strategic merge patch: containers merge by name.
v1.create_namespaced_pod("default", {"metadata": {"name": "pp", "labels": {"a": "1"}},
    "spec": {"containers": [{"name": "c", "image": "busybox"}, {"name": "d", "image": "busybox"}]}})
v1.patch_namespaced_pod("pp", "default", {"metadata": {"labels": {"b": "2", "a": None}},
    "spec": {"containers": [{"name": "d", "image": "busybox:2"}]}})
pod = v1.read_namespaced_pod("pp", "default")
assert pod.metadata.labels == {"b": "2"}, pod.metadata.labels
assert [(c.name, c.image) for c in pod.spec.containers] == [("c", "busybox"), ("d", "busybox:2")]
print("ok")
"#;
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/target/py/bin/python3");
    let out = std::process::Command::new(python)
        .args([
            "-c",
            script,
            c.dir.path().join("kubeconfig.yaml").to_str().unwrap(),
        ])
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

/// A bad request: method, path, content type, body, expected code, expected text.
type BadCase = (
    &'static str,
    &'static str,
    &'static str,
    Vec<u8>,
    u16,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_and_stores_nothing() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let c = start();
        let client = client(&c).await;
        let cms = "/api/v1/namespaces/default/configmaps";
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n";
        let (code, body) = raw(&client, "POST", cms, "application/yaml", yaml.into()).await;
        assert_eq!(code, 201, "{body}");
        let cases: Vec<BadCase> = vec![
            ("POST", cms, "application/json", b"{\"apiVersion\": \"v1\", \"kind\":".to_vec(), 400, "could not be decoded as JSON"),
            ("POST", cms, "application/yaml", b"metadata: [unclosed".to_vec(), 400, "could not be decoded as YAML"),
            ("POST", cms, "text/plain", b"hello".to_vec(), 415, "UnsupportedMediaType"),
            ("POST", cms, "application/json", vec![b' '; 4 << 20], 413, "larger than the limit"),
            ("POST", "/api/v1/namespaces/default/gadgets", "application/json", b"{}".to_vec(), 404, "NotFound"),
            ("POST", cms, "application/json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"other"}}"#.to_vec(), 400, "does not match the namespace"),
            ("POST", cms, "application/json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"UPPER"}}"#.to_vec(), 422, "Invalid"),
            ("POST", cms, "application/json", br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#.to_vec(), 400, "does not match the expected kind"),
            ("GET", "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=abc", "application/json", Vec::new(), 400, "invalid resource version"),
            ("GET", "/api/v1/namespaces/default/configmaps?labelSelector=a%20b", "application/json", Vec::new(), 400, "BadRequest"),
            ("GET", "/api/v1/namespaces/default/configmaps?continue=bogus", "application/json", Vec::new(), 400, "continue"),
        ];
        for (method, path, ct, body, want, text) in cases {
            let (code, answer) = raw(&client, method, path, ct, body).await;
            assert_eq!(code, want, "{method} {path} ({ct}): {answer}");
            assert!(answer.contains(text), "{method} {path}: {answer}");
            assert!(answer.contains("\"kind\":\"Status\""), "{answer}");
        }
        // The server is still up, and only the YAML object was stored (next to the root
        // CA that the controller manager publishes in every namespace).
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        let names: Vec<String> = api.list(&Default::default()).await.unwrap().items.into_iter()
            .filter_map(|cm| cm.metadata.name).filter(|n| n != "kube-root-ca.crt").collect();
        assert_eq!(names, ["from-yaml"]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_written_only_through_the_status_subresource() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Patch, PatchParams};
    tokio::time::timeout(Duration::from_secs(60), async {
        // The API server alone (the deployment controller would write this status too).
        let c = start();
        let client = client(&c).await;
        let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let deploy: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
            "status": {"replicas": 7}
        }))
        .unwrap();
        let created = api.create(&PostParams::default(), &deploy).await.unwrap();
        assert!(
            created.status.is_none(),
            "status given on create is dropped"
        );
        let patch = serde_json::json!({"status": {"replicas": 3, "readyReplicas": 2}});
        let patched = api
            .patch_status("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        assert_eq!(patched.status.as_ref().and_then(|s| s.replicas), Some(3));
        assert_eq!(
            patched.metadata.generation,
            Some(1),
            "status writes leave generation alone"
        );
        // As upstream's deployment status strategy: annotations are taken, labels and
        // the spec are not.
        let patch = serde_json::json!({
            "metadata": {"annotations": {"deployment.kubernetes.io/revision": "1"},
                         "labels": {"sneaky": "yes"}},
            "spec": {"replicas": 9}});
        let patched = api
            .patch_status("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let annotations = patched.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations
                .get("deployment.kubernetes.io/revision")
                .map(String::as_str),
            Some("1")
        );
        assert!(!patched
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
            .contains_key("sneaky"));
        assert_eq!(patched.spec.as_ref().and_then(|s| s.replicas), Some(1));
        // The main endpoint ignores status.
        let mut changed = patched.clone();
        changed.status.as_mut().unwrap().replicas = Some(99);
        changed.spec.as_mut().unwrap().replicas = Some(5);
        let replaced = api
            .replace("web", &PostParams::default(), &changed)
            .await
            .unwrap();
        assert_eq!(replaced.status.as_ref().and_then(|s| s.replicas), Some(3));
        assert_eq!(replaced.metadata.generation, Some(2));
        // A patch may not move an object to another namespace.
        let moved = serde_json::json!({"metadata": {"namespace": "kube-system"}});
        assert!(
            matches!(api.patch("web", &PatchParams::default(), &Patch::Merge(&moved)).await,
                         Err(kube::Error::Api(s)) if s.code == 400)
        );
        // Cluster-scoped kinds are not under a namespace; namespaces have no deletecollection.
        let (code, _) = raw(
            &client,
            "GET",
            "/api/v1/namespaces/default/nodes",
            "application/json",
            Vec::new(),
        )
        .await;
        assert_eq!(code, 404);
        let (code, _) = raw(
            &client,
            "DELETE",
            "/api/v1/namespaces",
            "application/json",
            Vec::new(),
        )
        .await;
        assert_eq!(code, 405);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_namespace_survives_updates_until_it_is_finalized() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{DeleteParams, Patch, PatchParams};
    tokio::time::timeout(Duration::from_secs(60), async {
        let c = start();
        let api: Api<Namespace> = Api::all(client(&c).await);
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "doomed"}})).unwrap();
        api.create(&PostParams::default(), &ns).await.unwrap();
        api.delete("doomed", &DeleteParams::default())
            .await
            .unwrap();
        let label = serde_json::json!({"metadata": {"labels": {"x": "y"}}});
        api.patch("doomed", &PatchParams::default(), &Patch::Merge(&label))
            .await
            .unwrap();
        let got = api.get("doomed").await.unwrap();
        assert_eq!(
            got.status.and_then(|s| s.phase).as_deref(),
            Some("Terminating")
        );
        let cms: Api<ConfigMap> = Api::namespaced(client(&c).await, "doomed");
        match cms.create(&PostParams::default(), &configmap("late")).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 403);
                assert!(
                    s.message.contains("configmaps \"late\" is forbidden"),
                    "{}",
                    s.message
                );
            }
            other => panic!("expected 403, got {other:?}"),
        }
        assert!(
            api.delete("default", &DeleteParams::default())
                .await
                .is_err(),
            "system namespaces stay"
        );
    })
    .await
    .unwrap();
}

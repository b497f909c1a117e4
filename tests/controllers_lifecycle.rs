//! The lifecycle controllers inside a real `skiff server`: the garbage collector behind
//! `kubectl delete --cascade`, namespace deletion, the default ServiceAccount and root CA
//! in every namespace, the pod GC and the TTL of finished Jobs.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

mod support;
use support::kubectl::ok;
use support::objects::eventually;
use support::Cluster;

/// Polls `check` every 100 ms for up to `secs`; panics naming `what` if it never holds.
async fn within<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..secs * 10 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {secs} s waiting until {what}");
}

fn owner_ref(owner: &ConfigMap, block: bool) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name,
           "uid": owner.metadata.uid, "blockOwnerDeletion": block})
}

async fn config_map(
    api: &Api<ConfigMap>,
    name: &str,
    owners: Vec<serde_json::Value>,
    finalizers: &[&str],
) -> ConfigMap {
    let cm = json!({"metadata": {"name": name, "ownerReferences": owners, "finalizers": finalizers},
                    "data": {"k": "v"}});
    api.create(&PostParams::default(), &serde_json::from_value(cm).unwrap())
        .await
        .unwrap()
}

async fn owner_names(api: &Api<ConfigMap>, name: &str) -> Option<Vec<String>> {
    let cm = api.get_opt(name).await.unwrap()?;
    Some(
        cm.metadata
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name)
            .collect(),
    )
}

async fn gone<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.unwrap().is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_cascades_in_the_background_in_the_foreground_and_orphans() {
    tokio::time::timeout(Duration::from_secs(150), async {
        let c = Cluster::start();
        let client = c.client().await;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

        // Background: dependents whose every owner is gone go; one with a live owner stays,
        // without the reference to the one gone.
        let owner = config_map(&cms, "owner", vec![], &[]).await;
        let keeper = config_map(&cms, "keeper", vec![], &[]).await;
        config_map(&cms, "dep-1", vec![owner_ref(&owner, false)], &[]).await;
        config_map(&cms, "dep-2", vec![owner_ref(&owner, true)], &[]).await;
        config_map(&cms, "shared", vec![owner_ref(&owner, false), owner_ref(&keeper, false)], &[]).await;
        let pod = json!({"metadata": {"name": "dep-pod", "ownerReferences": [owner_ref(&owner, true)]},
                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        pods.create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.unwrap();
        ok(&c, 33, &["delete", "configmap", "owner"]);
        eventually("the dependents are deleted", || async {
            gone(&cms, "dep-1").await && gone(&cms, "dep-2").await && gone(&pods, "dep-pod").await
        })
        .await;
        eventually("the shared dependent keeps only its live owner", || async {
            owner_names(&cms, "shared").await == Some(vec!["keeper".to_string()])
        })
        .await;

        // A dependent whose owner reference names a uid not the live owner's dangles.
        let stale = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "keeper", "uid": "not-the-uid"});
        config_map(&cms, "stale", vec![stale], &[]).await;
        eventually("a dangling reference by uid is collected", || async { gone(&cms, "stale").await }).await;

        // Foreground: the owner stays, marked, while a blocking dependent remains.
        let owner = config_map(&cms, "fg", vec![], &[]).await;
        config_map(&cms, "fg-held", vec![owner_ref(&owner, true)], &["example.com/hold"]).await;
        config_map(&cms, "fg-free", vec![owner_ref(&owner, true)], &[]).await;
        ok(&c, 30, &["delete", "configmap", "fg", "--cascade=foreground", "--wait=false"]);
        eventually("the free dependent goes first", || async { gone(&cms, "fg-free").await }).await;
        eventually("the held dependent is being deleted", || async {
            cms.get("fg-held").await.unwrap().metadata.deletion_timestamp.is_some()
        })
        .await;
        let fg = cms.get("fg").await.unwrap();
        assert!(fg.metadata.deletion_timestamp.is_some());
        assert_eq!(fg.metadata.finalizers, Some(vec!["foregroundDeletion".to_string()]));
        // Still there a little later: the blocking dependent holds it.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!gone(&cms, "fg").await, "the owner waits for its blocking dependent");
        let release = json!({"metadata": {"finalizers": null}});
        cms.patch("fg-held", &PatchParams::default(), &Patch::Merge(&release)).await.unwrap();
        eventually("the owner goes once its blocking dependents are gone", || async {
            gone(&cms, "fg-held").await && gone(&cms, "fg").await
        })
        .await;

        // Orphan: the dependents stay, stripped of the reference; the owner goes.
        let owner = config_map(&cms, "orphaner", vec![], &[]).await;
        config_map(&cms, "orphan-1", vec![owner_ref(&owner, true)], &[]).await;
        config_map(&cms, "orphan-2", vec![owner_ref(&owner, false), owner_ref(&keeper, false)], &[]).await;
        ok(&c, 27, &["delete", "configmap", "orphaner", "--cascade=orphan"]);
        eventually("the owner is gone", || async { gone(&cms, "orphaner").await }).await;
        assert_eq!(owner_names(&cms, "orphan-1").await, Some(vec![]));
        assert_eq!(owner_names(&cms, "orphan-2").await, Some(vec!["keeper".to_string()]));
        // And they are not collected later.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!gone(&cms, "orphan-1").await);
    })
    .await
    .unwrap();
}

fn condition(ns: &Namespace, type_: &str) -> Option<(String, String)> {
    let c = ns
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.message.clone().unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_empties_it_says_what_is_left_and_removes_it() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let c = Cluster::start();
        let client = c.client().await;
        ok(&c, 33, &["create", "namespace", "team"]);
        ok(&c, 33, &["-n", "team", "run", "web", "--image=busybox"]);
        ok(&c, 33, &["-n", "team", "create", "configmap", "cfg", "--from-literal=a=b"]);
        ok(&c, 33, &["-n", "team", "create", "secret", "generic", "pw", "--from-literal=a=b"]);
        ok(&c, 33, &["-n", "team", "create", "service", "clusterip", "web", "--tcp=80:80"]);
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
        config_map(&cms, "held", vec![], &["example.com/hold"]).await;

        ok(&c, 33, &["delete", "namespace", "team", "--wait=false"]);
        let namespaces: Api<Namespace> = Api::all(client.clone());
        within(30, "the namespace says a finalizer holds content", || async {
            let ns = namespaces.get("team").await.unwrap();
            condition(&ns, "NamespaceFinalizersRemaining")
                == Some(("True".into(), "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances".into()))
                && condition(&ns, "NamespaceContentRemaining")
                    == Some(("True".into(), "Some resources are remaining: configmaps. has 1 resource instances".into()))
        })
        .await;
        // Everything else is gone already.
        let out = ok(&c, 33, &["-n", "team", "get", "pods,secrets,services,configmaps", "-o", "name"]);
        assert_eq!(out.trim(), "configmap/held", "only the held object is left");
        let ns = namespaces.get("team").await.unwrap();
        assert_eq!(ns.spec.unwrap().finalizers, Some(vec!["kubernetes".to_string()]));

        let release = json!({"metadata": {"finalizers": null}});
        cms.patch("held", &PatchParams::default(), &Patch::Merge(&release)).await.unwrap();
        within(40, "the namespace is finalized and removed", || async {
            namespaces.get_opt("team").await.unwrap().is_none()
        })
        .await;
        // A namespace with nothing held goes at once through kubectl's wait.
        ok(&c, 30, &["create", "namespace", "quick"]);
        ok(&c, 30, &["-n", "quick", "create", "configmap", "cfg", "--from-literal=a=b"]);
        ok(&c, 30, &["delete", "namespace", "quick"]);
        assert!(namespaces.get_opt("quick").await.unwrap().is_none());
    })
    .await
    .unwrap();
}

fn cluster_ca(c: &Cluster) -> String {
    use base64::Engine;
    let kubeconfig = kube::config::Kubeconfig::read_from(c.kubeconfig()).unwrap();
    let data = kubeconfig.clusters[0]
        .cluster
        .as_ref()
        .unwrap()
        .certificate_authority_data
        .clone()
        .unwrap();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_a_default_service_account_and_the_root_ca_kept_as_published() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let c = Cluster::start();
        let client = c.client().await;
        let ca = cluster_ca(&c);
        for ns in ["default", "kube-system"] {
            let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
            eventually(
                "the built-in namespaces have their default account",
                || async { sas.get_opt("default").await.unwrap().is_some() },
            )
            .await;
        }
        ok(&c, 33, &["create", "namespace", "apps"]);
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "apps");
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "apps");
        eventually("the new namespace gets its default account", || async {
            sas.get_opt("default").await.unwrap().is_some()
        })
        .await;
        let ca_data = || async {
            let cm = cms.get_opt("kube-root-ca.crt").await.unwrap()?;
            cm.data?.get("ca.crt").cloned()
        };
        eventually("the new namespace gets the root CA", || async {
            ca_data().await.is_some()
        })
        .await;
        assert_eq!(ca_data().await.unwrap(), ca);
        let cm = cms.get("kube-root-ca.crt").await.unwrap();
        assert!(
            cm.metadata.annotations.unwrap()["kubernetes.io/description"]
                .starts_with("Contains a CA bundle")
        );

        // Deleted, the account comes back (a new one).
        let first = sas.get("default").await.unwrap().metadata.uid;
        ok(
            &c,
            33,
            &["-n", "apps", "delete", "serviceaccount", "default"],
        );
        eventually("the default account is created again", || async {
            sas.get_opt("default")
                .await
                .unwrap()
                .is_some_and(|sa| sa.metadata.uid != first)
        })
        .await;
        // Edited or deleted, the CA is restored.
        let edit = json!({"data": {"ca.crt": "tampered"}});
        cms.patch(
            "kube-root-ca.crt",
            &PatchParams::default(),
            &Patch::Merge(&edit),
        )
        .await
        .unwrap();
        eventually("the edited CA is restored", || async {
            ca_data().await.as_deref() == Some(ca.as_str())
        })
        .await;
        ok(
            &c,
            33,
            &["-n", "apps", "delete", "configmap", "kube-root-ca.crt"],
        );
        eventually("the deleted CA is restored", || async {
            ca_data().await.as_deref() == Some(ca.as_str())
        })
        .await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_missing_nodes_and_finished_jobs_past_their_ttl_are_removed() {
    tokio::time::timeout(Duration::from_secs(150), async {
        let c = Cluster::start();
        let client = c.client().await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");

        // Finished Jobs: with a TTL of 0 and 1 they go, without one it stays.
        for (name, ttl) in [("ttl-0", Some(0)), ("ttl-1", Some(1)), ("keep", None)] {
            let job = json!({"metadata": {"name": name},
                "spec": {"suspend": true, "ttlSecondsAfterFinished": ttl,
                         "template": {"spec": {"restartPolicy": "Never",
                                               "containers": [{"name": "c", "image": "busybox"}]}}}});
            jobs.create(&PostParams::default(), &serde_json::from_value(job).unwrap()).await.unwrap();
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            let status = json!({"status": {"conditions": [
                {"type": "Complete", "status": "True", "lastTransitionTime": now}]}});
            jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
        }
        eventually("the finished jobs past their TTL are deleted", || async {
            gone(&jobs, "ttl-0").await && gone(&jobs, "ttl-1").await
        })
        .await;
        assert!(!gone(&jobs, "keep").await, "a job without a TTL stays");

        // A pod bound to a node that does not exist goes after the quarantine (40 s, checked
        // every 20 s).
        let pod = json!({"metadata": {"name": "stray"},
                         "spec": {"nodeName": "ghost", "containers": [{"name": "c", "image": "busybox"}]}});
        pods.create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.unwrap();
        within(100, "the pod on the missing node is removed", || async { gone(&pods, "stray").await }).await;
    })
    .await
    .unwrap();
}

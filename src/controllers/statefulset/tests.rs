use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::plan::{self, Op, POD_INDEX_LABEL, POD_NAME_LABEL};
use crate::controllers::daemonset::plan::REVISION_HASH_LABEL;

fn sts(spec: Value) -> StatefulSet {
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": "web"}});
    spec["serviceName"] = json!("web");
    spec["template"] = json!({"metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "sts-uid", "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

/// Pod `web-<ordinal>` on revision `hash`: Running and Ready, or just created.
fn pod(ordinal: i32, hash: &str, ready: bool) -> Pod {
    let status = if ready {
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
    } else {
        json!({"phase": "Pending"})
    };
    serde_json::from_value(json!({
        "metadata": {"name": format!("web-{ordinal}"), "labels": {"app": "web", REVISION_HASH_LABEL: hash}},
        "spec": {"containers": []},
        "status": status,
    }))
    .unwrap()
}

#[test]
fn ordered_ready_creates_one_ordinal_at_a_time_once_the_previous_is_ready() {
    let set = sts(json!({"replicas": 3}));
    assert_eq!(plan::plan(&set, "h", &[]), vec![Op::Create(0)]);
    assert_eq!(plan::plan(&set, "h", &[pod(0, "h", false)]), vec![]);
    assert_eq!(
        plan::plan(&set, "h", &[pod(0, "h", true)]),
        vec![Op::Create(1)]
    );
    let parallel = sts(json!({"replicas": 3, "podManagementPolicy": "Parallel"}));
    assert_eq!(
        plan::plan(&parallel, "h", &[pod(1, "h", false)]),
        vec![Op::Create(0), Op::Create(2)]
    );
}

#[test]
fn scaling_down_deletes_the_highest_ordinal_first_and_one_at_a_time() {
    let set = sts(json!({"replicas": 1}));
    let pods = [pod(0, "h", true), pod(1, "h", true), pod(2, "h", true)];
    assert_eq!(
        plan::plan(&set, "h", &pods),
        vec![Op::Delete("web-2".into())]
    );
    let mut going = pod(2, "h", true);
    going.metadata.deletion_timestamp =
        Some(serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap());
    assert_eq!(
        plan::plan(&set, "h", &[pod(0, "h", true), pod(1, "h", true), going]),
        vec![]
    );
    // Not while a lower ordinal is not ready.
    assert_eq!(
        plan::plan(&set, "h", &[pod(0, "h", false), pod(1, "h", true)]),
        vec![]
    );
}

#[test]
fn rolling_update_replaces_the_highest_ordinal_down_to_the_partition() {
    let set = sts(json!({"replicas": 3,
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}));
    let pods = [
        pod(0, "old", true),
        pod(1, "old", true),
        pod(2, "old", true),
    ];
    assert_eq!(
        plan::plan(&set, "new", &pods),
        vec![Op::Delete("web-2".into())]
    );
    let pods = [
        pod(0, "old", true),
        pod(1, "old", true),
        pod(2, "new", true),
    ];
    assert_eq!(
        plan::plan(&set, "new", &pods),
        vec![Op::Delete("web-1".into())]
    );
    // The partition keeps web-0; a pod not ready holds the update.
    let pods = [
        pod(0, "old", true),
        pod(1, "new", true),
        pod(2, "new", true),
    ];
    assert_eq!(plan::plan(&set, "new", &pods), vec![]);
    let pods = [
        pod(0, "old", true),
        pod(1, "old", true),
        pod(2, "new", false),
    ];
    assert_eq!(plan::plan(&set, "new", &pods), vec![]);
    let on_delete = sts(json!({"replicas": 1, "updateStrategy": {"type": "OnDelete"}}));
    assert_eq!(
        plan::plan(&on_delete, "new", &[pod(0, "old", true)]),
        vec![]
    );
}

#[test]
fn the_pod_has_its_stable_identity_and_claims() {
    let mut set = sts(json!({"replicas": 1}));
    set.spec.as_mut().unwrap().volume_claim_templates = Some(vec![serde_json::from_value(json!({
        "metadata": {"name": "www"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
    .unwrap()]);
    let p = serde_json::to_value(plan::new_pod(&set, "h", 2)).unwrap();
    assert_eq!(p["metadata"]["name"], "web-2");
    assert_eq!(p["metadata"]["labels"][POD_NAME_LABEL], "web-2");
    assert_eq!(p["metadata"]["labels"][POD_INDEX_LABEL], "2");
    assert_eq!(p["metadata"]["labels"][REVISION_HASH_LABEL], "h");
    assert_eq!(p["spec"]["hostname"], "web-2");
    assert_eq!(p["spec"]["subdomain"], "web");
    assert_eq!(
        p["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "www-web-2"
    );
    let claims = plan::claims(&set, 2);
    assert_eq!(claims[0].metadata.name.as_deref(), Some("www-web-2"));
    assert_eq!(claims[0].metadata.labels.as_ref().unwrap()["app"], "web");
}

#[test]
fn status_counts_and_the_current_revision_follows_a_finished_update() {
    let set = sts(json!({"replicas": 2}));
    let st = plan::status(
        &set,
        "old",
        "new",
        &[pod(0, "old", true), pod(1, "new", false)],
        0,
    );
    assert_eq!(
        (
            st.replicas,
            st.ready_replicas,
            st.current_replicas,
            st.updated_replicas
        ),
        (2, Some(1), Some(1), Some(1))
    );
    assert_eq!(st.current_revision.as_deref(), Some("web-old"));
    assert_eq!(st.update_revision.as_deref(), Some("web-new"));
    let st = plan::status(
        &set,
        "old",
        "new",
        &[pod(0, "new", true), pod(1, "new", true)],
        0,
    );
    assert_eq!(st.current_revision.as_deref(), Some("web-new"));
    assert_eq!(
        (st.current_replicas, st.available_replicas),
        (Some(2), Some(2))
    );
}

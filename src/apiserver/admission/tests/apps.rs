//! Tests of Deployment, ReplicaSet, StatefulSet and DaemonSet rules.

use serde_json::{json, Value};

use super::{assert_causes, container, create_causes, update_causes};
use crate::apiserver::admission::default;

/// A workload of `kind` selecting and labelled `app: web`.
fn workload(kind: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container("web", "nginx")]}},
        },
    })
}

fn defaulted(kind: &str) -> Value {
    let mut obj = workload(kind);
    default("apps/v1", kind, &mut obj);
    obj
}

#[test]
fn deployments_get_a_rolling_strategy_and_limits() {
    let d = defaulted("Deployment");
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Always");
    assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");
    assert!(
        pod.get("serviceAccountName").is_none(),
        "templates get no admission defaults"
    );
    assert!(pod.get("enableServiceLinks").is_none());
}

#[test]
fn stateful_sets_and_daemon_sets_get_their_strategies() {
    let s = defaulted("StatefulSet");
    assert_eq!(s["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        s["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(
        s["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(s["spec"]["replicas"], 1);
    assert_eq!(s["spec"]["revisionHistoryLimit"], 10);
    let d = defaulted("DaemonSet");
    assert_eq!(
        d["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert!(d["spec"].get("replicas").is_none());
    assert_eq!(defaulted("ReplicaSet")["spec"]["replicas"], 1);
}

#[test]
fn valid_workloads_have_no_causes() {
    for kind in ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"] {
        assert_causes(&create_causes("apps/v1", kind, workload(kind)), &[]);
    }
}

#[test]
fn a_missing_selector_is_required_and_selects_nothing() {
    let mut d = workload("Deployment");
    d["spec"].as_object_mut().map(|s| s.remove("selector"));
    let causes = create_causes("apps/v1", "Deployment", d);
    assert_causes(
        &causes,
        &[
            "spec.selector: Required value",
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
        ],
    );
    assert_eq!(causes[0].reason, "FieldValueRequired");
}

#[test]
fn the_selector_must_match_the_template_labels() {
    let mut d = workload("Deployment");
    d["spec"]["template"]["metadata"]["labels"] = json!({"app": "x"});
    assert_causes(
        &create_causes("apps/v1", "Deployment", d),
        &["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`"],
    );
}

#[test]
fn match_expressions_select_too() {
    let mut d = workload("ReplicaSet");
    d["spec"]["selector"] =
        json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]});
    assert_causes(&create_causes("apps/v1", "ReplicaSet", d.clone()), &[]);
    d["spec"]["selector"] = json!({"matchExpressions": [{"key": "app", "operator": "In"}]});
    assert_causes(
        &create_causes("apps/v1", "ReplicaSet", d),
        &[
            "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
        ],
    );
}

#[test]
fn an_empty_selector_is_invalid() {
    let mut d = workload("Deployment");
    d["spec"]["selector"] = json!({});
    assert_causes(
        &create_causes("apps/v1", "Deployment", d),
        &["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"],
    );
}

#[test]
fn workload_templates_must_restart_always() {
    for kind in ["Deployment", "StatefulSet", "DaemonSet"] {
        let mut obj = workload(kind);
        obj["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        assert_causes(
            &create_causes("apps/v1", kind, obj),
            &["spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""],
        );
    }
}

#[test]
fn replicas_may_not_be_negative() {
    let mut d = workload("Deployment");
    d["spec"]["replicas"] = json!(-1);
    assert_causes(
        &create_causes("apps/v1", "Deployment", d),
        &["spec.replicas: Invalid value: -1: must be greater than or equal to 0"],
    );
}

#[test]
fn the_template_pod_spec_is_validated_under_its_path() {
    let mut d = workload("Deployment");
    d["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .map(|c| c.remove("image"));
    assert_causes(
        &create_causes("apps/v1", "Deployment", d),
        &["spec.template.spec.containers[0].image: Required value"],
    );
}

#[test]
fn rolling_updates_need_room_to_move() {
    let mut d = workload("Deployment");
    d["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
    assert_causes(
        &create_causes("apps/v1", "Deployment", d.clone()),
        &["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0%: may not be 0 when `maxSurge` is 0"],
    );
    d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}});
    assert_causes(
        &create_causes("apps/v1", "Deployment", d),
        &["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"],
    );
}

#[test]
fn selectors_are_immutable() {
    let old = workload("Deployment");
    let mut new = old.clone();
    new["spec"]["selector"] = json!({"matchLabels": {"app": "web", "tier": "front"}});
    new["spec"]["template"]["metadata"]["labels"] = json!({"app": "web", "tier": "front"});
    assert_causes(
        &update_causes("apps/v1", "Deployment", new, old),
        &["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"tier\":\"front\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"],
    );
}

#[test]
fn scaling_and_new_images_are_allowed_updates() {
    for kind in ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"] {
        let old = workload(kind);
        let mut new = old.clone();
        if kind != "DaemonSet" {
            new["spec"]["replicas"] = json!(3);
        }
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert_causes(&update_causes("apps/v1", kind, new, old), &[]);
    }
}

#[test]
fn stateful_sets_may_not_change_other_spec_fields() {
    let old = workload("StatefulSet");
    let mut new = old.clone();
    new["spec"]["serviceName"] = json!("other");
    assert_causes(
        &update_causes("apps/v1", "StatefulSet", new, old),
        &["spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"],
    );
}

#[test]
fn stateful_set_selectors_fall_under_the_spec_rule() {
    let old = workload("StatefulSet");
    let mut new = old.clone();
    new["spec"]["selector"] = json!({"matchLabels": {"app": "web", "v": "2"}});
    new["spec"]["template"]["metadata"]["labels"] = json!({"app": "web", "v": "2"});
    let causes = update_causes("apps/v1", "StatefulSet", new, old);
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].field, "spec");
}

#[test]
fn stateful_set_strategies_are_checked() {
    let mut s = workload("StatefulSet");
    s["spec"]["updateStrategy"] = json!({"type": "OnDelete", "rollingUpdate": {"partition": 1}});
    s["spec"]["podManagementPolicy"] = json!("Random");
    assert_causes(
        &create_causes("apps/v1", "StatefulSet", s),
        &[
            "spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'",
            "spec.updateStrategy.rollingUpdate: Invalid value: {\"partition\":1}: only allowed for updateStrategy 'RollingUpdate'",
        ],
    );
}

#[test]
fn an_explicit_stateful_set_rolling_update_gets_no_partition_block() {
    let mut s = workload("StatefulSet");
    s["spec"]["updateStrategy"] = json!({"type": "RollingUpdate"});
    default("apps/v1", "StatefulSet", &mut s);
    assert_eq!(
        s["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate"})
    );
}

#[test]
fn progress_deadlines_outlast_min_ready_seconds() {
    let mut d = workload("Deployment");
    d["spec"]["minReadySeconds"] = json!(30);
    d["spec"]["progressDeadlineSeconds"] = json!(30);
    assert_causes(
        &create_causes("apps/v1", "Deployment", d),
        &["spec.progressDeadlineSeconds: Invalid value: 30: must be greater than minReadySeconds"],
    );
}

#[test]
fn replica_set_templates_may_not_set_a_deadline() {
    let mut r = workload("ReplicaSet");
    r["spec"]["template"]["spec"]["activeDeadlineSeconds"] = json!(10);
    assert_causes(
        &create_causes("apps/v1", "ReplicaSet", r),
        &["spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported"],
    );
}

#[test]
fn daemon_set_update_strategies_are_known() {
    let mut d = workload("DaemonSet");
    d["spec"]["updateStrategy"] = json!({"type": "Sometimes"});
    assert_causes(
        &create_causes("apps/v1", "DaemonSet", d),
        &["spec.updateStrategy.type: Unsupported value: \"Sometimes\": supported values: \"OnDelete\", \"RollingUpdate\""],
    );
}

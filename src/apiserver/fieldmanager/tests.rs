//! Tests of field management: ownership on create and update, and server-side apply.

use serde_json::{json, Value};

use super::fieldset::FieldSet;
use super::*;

fn mgr<'a>(name: &'a str, time: &'a str) -> Manager<'a> {
    Manager {
        name,
        api_version: "apps/v1",
        subresource: None,
        time,
    }
}

/// A Deployment with one container `c` of `image` and `replicas`.
fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    })
}

fn entries(obj: &Value) -> Vec<Value> {
    obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn entry<'v>(obj: &'v Value, manager: &str, operation: &str) -> &'v Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|e| e["manager"] == manager && e["operation"] == operation)
        })
        .unwrap_or_else(|| panic!("no {operation} entry for {manager} in {obj:#}"))
}

fn owns(obj: &Value, manager: &str, operation: &str, path: &str) -> bool {
    let set = FieldSet::from_fields_v1(&entry(obj, manager, operation)["fieldsV1"]).unwrap();
    set.paths().iter().any(|p| fieldset::path_string(p) == path)
}

#[test]
fn fields_v1_round_trips() {
    let text = r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"c\"}":{".":{},"f:image":{},"f:name":{}}}}}"#;
    let v: Value = serde_json::from_str(text).unwrap();
    let set = FieldSet::from_fields_v1(&v).unwrap();
    assert_eq!(set.to_fields_v1(), v);
    assert_eq!(set.to_fields_v1().to_string(), text);
}

#[test]
fn malformed_fields_v1_is_refused() {
    assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_err());
    assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
    assert!(FieldSet::from_fields_v1(&json!({"k:[1]": {}})).is_err());
    assert!(FieldSet::from_fields_v1(&json!([])).is_err());
}

#[test]
fn set_from_object_keys_ports_by_port_and_default_protocol() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "u"},
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}});
    let set = fields_of(&pod).unwrap();
    let v = set.to_fields_v1();
    assert_eq!(
        v,
        json!({"f:spec": {"f:containers": {r#"k:{"name":"c"}"#: {".": {}, "f:name": {},
            "f:ports": {r#"k:{"containerPort":80,"protocol":"TCP"}"#: {".": {}, "f:containerPort": {}}}}}}})
    );
}

#[test]
fn create_sets_one_update_entry_owning_every_field() {
    let mut obj = deployment(1, "nginx");
    on_create(&mut obj, &mgr("kubectl-create", "2024-01-01T00:00:00Z"));
    let list = entries(&obj);
    assert_eq!(list.len(), 1);
    let e = &list[0];
    assert_eq!(e["manager"], "kubectl-create");
    assert_eq!(e["operation"], "Update");
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(e["time"], "2024-01-01T00:00:00Z");
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert!(e.get("subresource").is_none());
    for p in [".spec.replicas", ".metadata.labels.app", ".metadata.labels"] {
        assert!(owns(&obj, "kubectl-create", "Update", p), "{p}");
    }
    assert!(owns(
        &obj,
        "kubectl-create",
        "Update",
        r#".spec.template.spec.containers[name="c"].image"#
    ));
    assert!(!owns(&obj, "kubectl-create", "Update", ".metadata.name"));
}

#[test]
fn update_by_another_manager_moves_only_changed_fields() {
    let mut old = deployment(1, "nginx");
    on_create(&mut old, &mgr("creator", "2024-01-01T00:00:00Z"));
    let mut new = old.clone();
    new["spec"]["replicas"] = json!(3);
    on_update(&old, &mut new, &mgr("scaler", "2024-01-02T00:00:00Z"));
    assert!(owns(&new, "scaler", "Update", ".spec.replicas"));
    assert!(!owns(&new, "scaler", "Update", ".metadata.labels.app"));
    assert!(!owns(&new, "creator", "Update", ".spec.replicas"));
    assert!(owns(&new, "creator", "Update", ".metadata.labels.app"));
    assert_eq!(
        entry(&new, "creator", "Update")["time"],
        "2024-01-01T00:00:00Z"
    );
}

#[test]
fn update_that_removes_a_field_takes_it_from_every_set() {
    let mut old = deployment(1, "nginx");
    on_create(&mut old, &mgr("creator", "t1"));
    let mut new = old.clone();
    new["metadata"]["labels"] = json!({});
    on_update(&old, &mut new, &mgr("other", "t2"));
    assert!(!owns(&new, "creator", "Update", ".metadata.labels.app"));
    assert_eq!(
        entries(&new).len(),
        1,
        "an update that changes nothing adds no entry"
    );
}

#[test]
fn update_with_reset_managed_fields_clears_them() {
    let mut old = deployment(1, "nginx");
    on_create(&mut old, &mgr("creator", "t1"));
    let mut new = old.clone();
    new["metadata"]["managedFields"] = json!([{}]);
    on_update(&old, &mut new, &mgr("other", "t2"));
    assert!(new["metadata"].get("managedFields").is_none());
}

#[test]
fn apply_creates_an_apply_entry_owning_exactly_the_config() {
    let config = deployment(2, "nginx");
    let out = apply(None, &config, &mgr("kubectl", "t1"), false).unwrap();
    let list = entries(&out);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["operation"], "Apply");
    assert_eq!(
        list[0]["fieldsV1"],
        fields_of(&config).unwrap().to_fields_v1()
    );
    let mut without = out.clone();
    without["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    assert_eq!(without, config);
}

#[test]
fn reapply_without_a_field_removes_it_from_the_object() {
    let first = apply(None, &deployment(2, "nginx"), &mgr("kubectl", "t1"), false).unwrap();
    let mut config = deployment(2, "nginx");
    config["metadata"]["labels"] = json!({"tier": "web"});
    let out = apply(Some(&first), &config, &mgr("kubectl", "t2"), false).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"tier": "web"}));
    assert!(!owns(&out, "kubectl", "Apply", ".metadata.labels.app"));
}

fn applied_then_scaled() -> Value {
    let live = apply(None, &deployment(2, "nginx"), &mgr("kubectl", "t1"), false).unwrap();
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    on_update(&live, &mut scaled, &mgr("kubectl-client-side-apply", "t2"));
    scaled
}

#[test]
fn apply_of_a_field_another_manager_owns_with_another_value_conflicts() {
    let live = applied_then_scaled();
    let err = apply(
        Some(&live),
        &deployment(3, "nginx"),
        &mgr("kubectl", "t3"),
        false,
    )
    .unwrap_err();
    let ApplyError::Conflicts(conflicts) = err.clone() else {
        panic!("{err:?}");
    };
    assert_eq!(
        conflicts,
        vec![Conflict {
            manager: r#""kubectl-client-side-apply" using apps/v1"#.into(),
            field: ".spec.replicas".into()
        }]
    );
    let status = err.into_api_error("apps", "Deployment", "web").to_status();
    assert_eq!(status["code"], 409);
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["message"],
        r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#
    );
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldManagerConflict",
                "message": "conflict with \"kubectl-client-side-apply\" using apps/v1",
                "field": ".spec.replicas"}])
    );
}

#[test]
fn several_conflicts_are_listed_by_manager() {
    let conflicts = vec![
        Conflict {
            manager: r#""b""#.into(),
            field: ".spec.replicas".into(),
        },
        Conflict {
            manager: r#""a""#.into(),
            field: ".spec.paused".into(),
        },
    ];
    let status = ApplyError::Conflicts(conflicts)
        .into_api_error("apps", "Deployment", "web")
        .to_status();
    assert_eq!(
        status["message"],
        "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.paused\nconflicts with \"b\":\n- .spec.replicas"
    );
}

#[test]
fn forced_apply_takes_the_field_over() {
    let live = applied_then_scaled();
    let out = apply(
        Some(&live),
        &deployment(3, "nginx"),
        &mgr("kubectl", "t3"),
        true,
    )
    .unwrap();
    assert_eq!(out["spec"]["replicas"], 3);
    assert!(owns(&out, "kubectl", "Apply", ".spec.replicas"));
    assert!(!out["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["manager"] == "kubectl-client-side-apply"));
}

#[test]
fn apply_of_the_same_value_shares_ownership() {
    let live = applied_then_scaled();
    let out = apply(
        Some(&live),
        &deployment(5, "nginx"),
        &mgr("kubectl", "t3"),
        false,
    )
    .unwrap();
    assert!(owns(&out, "kubectl", "Apply", ".spec.replicas"));
    assert!(owns(
        &out,
        "kubectl-client-side-apply",
        "Update",
        ".spec.replicas"
    ));
}

#[test]
fn containers_merge_by_name_and_a_dropped_container_is_removed() {
    let mut two = deployment(1, "nginx");
    two["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]);
    let live = apply(None, &two, &mgr("kubectl", "t1"), false).unwrap();
    let mut config = deployment(1, "nginx");
    config["spec"]["template"]["spec"]["containers"] = json!([{"name": "a", "image": "a:2"}]);
    let out = apply(Some(&live), &config, &mgr("kubectl", "t2"), false).unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "a:2"}])
    );
    let mut sidecar = deployment(1, "nginx");
    sidecar["spec"]["template"]["spec"]["containers"] = json!([{"name": "s", "image": "s:1"}]);
    sidecar["metadata"]["labels"] = json!({});
    let shared = apply(Some(&out), &sidecar, &mgr("other", "t3"), false).unwrap();
    let names: Vec<&Value> = shared["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["name"])
        .collect();
    assert_eq!(names, vec!["a", "s"]);
}

#[test]
fn noop_apply_returns_an_equal_object_with_an_unchanged_entry() {
    let live = apply(None, &deployment(2, "nginx"), &mgr("kubectl", "t1"), false).unwrap();
    let out = apply(
        Some(&live),
        &deployment(2, "nginx"),
        &mgr("kubectl", "t2"),
        false,
    )
    .unwrap();
    assert_eq!(out, live);
    assert_eq!(entry(&out, "kubectl", "Apply")["time"], "t1");
}

#[test]
fn list_map_item_without_its_key_is_invalid() {
    let mut config = deployment(1, "nginx");
    config["spec"]["template"]["spec"]["containers"] = json!([{"image": "x"}]);
    let err = apply(None, &config, &mgr("kubectl", "t1"), false).unwrap_err();
    let ApplyError::Invalid(msg) = &err else {
        panic!("{err:?}");
    };
    assert!(
        msg.contains(".spec.template.spec.containers") && msg.contains("\"name\""),
        "{msg}"
    );
    assert_eq!(err.into_api_error("apps", "Deployment", "web").code, 422);
}

#[test]
fn apply_to_an_object_without_managed_fields_conflicts_with_before_first_apply() {
    let live = deployment(1, "nginx");
    let err = apply(
        Some(&live),
        &deployment(4, "nginx"),
        &mgr("kubectl", "t1"),
        false,
    )
    .unwrap_err();
    let ApplyError::Conflicts(c) = err else {
        panic!("{err:?}");
    };
    assert_eq!(c[0].manager, r#""before-first-apply" using apps/v1"#);
}

#[test]
fn custom_resources_keep_object_meta_and_own_their_fields() {
    let cr = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "labels": {"a": "b"}}, "spec": {"size": 1, "tags": ["x"]}});
    let mut created = cr.clone();
    on_create(&mut created, &mgr("kubectl-create", "t1"));
    let fields = &entries(&created)[0]["fieldsV1"];
    assert_eq!(
        fields,
        &json!({"f:metadata": {"f:labels": {".": {}, "f:a": {}}},
                "f:spec": {".": {}, "f:size": {}, "f:tags": {}}})
    );
}

#[test]
fn reapply_without_a_finalizer_removes_only_that_set_member() {
    let mut config = deployment(1, "nginx");
    config["metadata"]["finalizers"] = json!(["a.example/x", "a.example/y"]);
    let live = apply(None, &config, &mgr("kubectl", "t1"), false).unwrap();
    assert!(owns(
        &live,
        "kubectl",
        "Apply",
        r#".metadata.finalizers[="a.example/x"]"#
    ));
    config["metadata"]["finalizers"] = json!(["a.example/y"]);
    let out = apply(Some(&live), &config, &mgr("kubectl", "t2"), false).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["a.example/y"]));
}

#[test]
fn a_dropped_container_stays_while_another_manager_owns_a_field_in_it() {
    let mut two = deployment(1, "nginx");
    two["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]);
    let live = apply(None, &two, &mgr("kubectl", "t1"), false).unwrap();
    let mut edited = live.clone();
    edited["spec"]["template"]["spec"]["containers"][1]["image"] = json!("b:2");
    on_update(&live, &mut edited, &mgr("kubectl-edit", "t2"));
    let mut config = deployment(1, "nginx");
    config["spec"]["template"]["spec"]["containers"] = json!([{"name": "a", "image": "a:1"}]);
    let out = apply(Some(&edited), &config, &mgr("kubectl", "t3"), false).unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]),
        "the item stays with its key; only the fields no one else owns go"
    );
}

#[test]
fn subresource_update_ignores_managed_fields_in_the_request() {
    let mut old = deployment(1, "nginx");
    on_create(&mut old, &mgr("creator", "t1"));
    let mut new = old.clone();
    new["metadata"]["managedFields"] = json!([{}]);
    new["status"] = json!({"replicas": 1});
    let status_mgr = Manager {
        subresource: Some("status"),
        ..mgr("controller", "t2")
    };
    on_update(&old, &mut new, &status_mgr);
    assert!(owns(&new, "creator", "Update", ".spec.replicas"));
    assert_eq!(entry(&new, "controller", "Update")["subresource"], "status");
    assert!(owns(&new, "controller", "Update", ".status.replicas"));
}

/// A Deployment as `kubectl apply` (client-side) leaves it: the annotation, and the
/// `kubectl-client-side-apply` manager owning its fields.
fn client_side_applied(replicas: i64) -> Value {
    let config = deployment(replicas, "nginx");
    let mut obj = config.clone();
    obj["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": config.to_string()});
    on_create(&mut obj, &mgr("kubectl-client-side-apply", "t1"));
    obj
}

#[test]
fn kubectl_moving_to_server_side_apply_is_not_blocked_by_its_own_client_side_fields() {
    let live = client_side_applied(2);
    let out = apply(
        Some(&live),
        &deployment(4, "nginx"),
        &mgr("kubectl", "t2"),
        false,
    )
    .unwrap();
    assert_eq!(out["spec"]["replicas"], 4);
    let annotation = out["metadata"]["annotations"]
        ["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap();
    let last: Value = serde_json::from_str(annotation).unwrap();
    assert_eq!(last["spec"]["replicas"], 4);
}

#[test]
fn kubectl_still_conflicts_on_a_field_changed_since_its_last_client_side_apply() {
    let live = client_side_applied(2);
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(7);
    on_update(&live, &mut scaled, &mgr("kubectl-scale", "t2"));
    let err = apply(
        Some(&scaled),
        &deployment(4, "nginx"),
        &mgr("kubectl", "t3"),
        false,
    )
    .unwrap_err();
    let ApplyError::Conflicts(c) = err else {
        panic!("{err:?}");
    };
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].field, ".spec.replicas");
    assert_eq!(c[0].manager, r#""kubectl-scale" using apps/v1"#);
}

#[test]
fn apply_to_the_main_resource_neither_merges_nor_owns_status() {
    let live = apply(None, &deployment(1, "nginx"), &mgr("kubectl", "t1"), false).unwrap();
    let mut live = live;
    live["status"] = json!({"replicas": 1});
    let mut config = deployment(1, "nginx");
    config["status"] = json!({"replicas": 9});
    let out = apply(Some(&live), &config, &mgr("kubectl", "t2"), false).unwrap();
    assert_eq!(out["status"], json!({"replicas": 1}));
    assert!(!owns(&out, "kubectl", "Apply", ".status.replicas"));
}

#[test]
fn label_selector_is_owned_whole() {
    let out = apply(None, &deployment(1, "nginx"), &mgr("kubectl", "t1"), false).unwrap();
    assert!(owns(&out, "kubectl", "Apply", ".spec.selector"));
    assert!(!owns(
        &out,
        "kubectl",
        "Apply",
        ".spec.selector.matchLabels.app"
    ));
}

#[test]
fn reapply_without_any_label_leaves_no_empty_labels_map() {
    let live = apply(None, &deployment(1, "nginx"), &mgr("kubectl", "t1"), false).unwrap();
    let mut config = deployment(1, "nginx");
    config["metadata"].as_object_mut().unwrap().remove("labels");
    let out = apply(Some(&live), &config, &mgr("kubectl", "t2"), false).unwrap();
    assert!(out["metadata"].get("labels").is_none(), "{out:#}");
}

#[test]
fn a_field_another_applier_also_applies_survives_when_one_drops_it() {
    let live = apply(None, &deployment(1, "nginx"), &mgr("a", "t1"), false).unwrap();
    let shared = apply(Some(&live), &deployment(1, "nginx"), &mgr("b", "t2"), false).unwrap();
    let mut config = deployment(1, "nginx");
    config["spec"].as_object_mut().unwrap().remove("replicas");
    let out = apply(Some(&shared), &config, &mgr("a", "t3"), false).unwrap();
    assert_eq!(out["spec"]["replicas"], 1);
    assert!(owns(&out, "b", "Apply", ".spec.replicas"));
    assert!(!owns(&out, "a", "Apply", ".spec.replicas"));
}

//! Tests of the strategic merge patch, mostly the patches kubectl sends.

use serde_json::{json, Value};

use super::{strategic_merge, SmpError};

/// Applies `patch` to `target` as a value of `type_name`.
fn patched(target: Value, patch: Value, type_name: &str) -> Result<Value, SmpError> {
    let mut target = target;
    strategic_merge(&mut target, &patch, Some(type_name))?;
    Ok(target)
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "annotations": {"a": "1"},
            "labels": {"app": "web", "old": "yes"}
        },
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [
                {"name": "app", "image": "nginx:1.25", "env": [
                    {"name": "A", "value": "1"},
                    {"name": "B", "value": "2"}
                ]},
                {"name": "sidecar", "image": "busybox"}
            ]}}
        }
    })
}

fn pod_spec(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
}

/// Whether any object key anywhere in `value` starts with `$`.
fn has_directive(value: &Value) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| k.starts_with('$') || has_directive(v)),
        Value::Array(list) => list.iter().any(has_directive),
        _ => false,
    }
}

#[test]
fn kubectl_apply_three_way_patch_updates_image_and_labels() {
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                     "labels": {"old": null}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"name": "app", "image": "nginx:1.27"}]
        }}}
    });
    let out = patched(deployment(), patch, "apps.v1.Deployment").unwrap();
    assert_eq!(
        out["metadata"]["annotations"],
        json!({"a": "1", "kubectl.kubernetes.io/last-applied-configuration": "{}"})
    );
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
    let containers = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["name"], "app");
    assert_eq!(containers[0]["image"], "nginx:1.27");
    assert_eq!(containers[0]["env"].as_array().map(Vec::len), Some(2));
    // The server-only sidecar is kept, after the ordered item.
    assert_eq!(containers[1]["name"], "sidecar");
    assert_eq!(out["spec"]["replicas"], 2);
    assert!(!has_directive(&out));
}

#[test]
fn set_element_order_reorders_the_merged_list() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]
    }}}});
    let out = patched(deployment(), patch, "apps.v1.Deployment").unwrap();
    let names: Vec<&Value> = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["name"])
        .collect();
    assert_eq!(names, [&json!("sidecar"), &json!("app")]);
    assert!(!has_directive(&out));
}

#[test]
fn set_element_order_that_contradicts_the_patch_list_is_an_error() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [{"name": "app"}, {"name": "new"}]
    }}}});
    let err = patched(deployment(), patch, "apps.v1.Deployment").unwrap_err();
    assert!(matches!(err, SmpError::OrderMismatch { .. }), "{err}");
}

#[test]
fn container_env_merges_by_name() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}]}
    ]}}}});
    let out = patched(deployment(), patch, "apps.v1.Deployment").unwrap();
    let env = &out["spec"]["template"]["spec"]["containers"][0]["env"];
    // Patch items first in patch order; A is server-only and the live list has it before
    // B, so it stays in front; C is new and follows B.
    assert_eq!(
        env,
        &json!([
            {"name": "A", "value": "1"},
            {"name": "B", "value": "two"},
            {"name": "C", "value": "3"}
        ])
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][1]["name"],
        "sidecar"
    );
}

#[test]
fn new_merge_list_items_go_before_later_server_only_items() {
    // Upstream's mergeSortedSlice takes a patch item the live list lacks before any
    // remaining server-only item.
    let target = pod_spec(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
    let patch = json!({"spec": {"containers": [{"name": "c"}]}});
    let out = patched(target, patch, "core.v1.Pod").unwrap();
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "c"}, {"name": "a"}, {"name": "b"}])
    );
}

#[test]
fn patch_delete_directive_removes_a_container() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "$patch": "delete"}
    ]}}}});
    let out = patched(deployment(), patch, "apps.v1.Deployment").unwrap();
    let containers = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["name"], "app");
    assert!(!has_directive(&out));
}

#[test]
fn patch_replace_element_replaces_the_whole_list() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"$patch": "replace"},
        {"name": "only", "image": "alpine"}
    ]}}}});
    let out = patched(deployment(), patch, "apps.v1.Deployment").unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "only", "image": "alpine"}])
    );
}

#[test]
fn patch_replace_in_a_map_replaces_the_map() {
    let patch = json!({"metadata": {"labels": {"$patch": "replace", "fresh": "1"}}});
    let out = patched(deployment(), patch, "apps.v1.Deployment").unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"fresh": "1"}));
    assert_eq!(out["metadata"]["name"], "web");
}

#[test]
fn patch_delete_in_a_map_empties_the_map() {
    let patch = json!({"metadata": {"annotations": {"$patch": "delete"}}});
    let out = patched(deployment(), patch, "apps.v1.Deployment").unwrap();
    assert_eq!(out["metadata"]["annotations"], json!({}));
    assert_eq!(out["metadata"]["labels"]["app"], "web");
}

#[test]
fn patch_merge_in_a_map_is_the_default() {
    let patch = json!({"metadata": {"labels": {"$patch": "merge", "new": "1"}}});
    let out = patched(deployment(), patch, "apps.v1.Deployment").unwrap();
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "old": "yes", "new": "1"})
    );
}

#[test]
fn unknown_patch_directive_is_an_error() {
    let patch = json!({"metadata": {"labels": {"$patch": "explode"}}});
    let err = patched(deployment(), patch, "apps.v1.Deployment").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown patch type: explode in map: map[$patch:explode]"
    );
    assert_eq!(err.into_api_error().code, 500);
}

#[test]
fn patch_merge_as_a_list_element_is_an_error() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "merge"}]}}}});
    let err = patched(deployment(), patch, "apps.v1.Deployment").unwrap_err();
    assert_eq!(err, SmpError::MergeDirectiveInList);
}

#[test]
fn finalizers_merge_as_a_set_and_delete_from_primitive_list_removes() {
    let target = json!({"metadata": {"name": "p", "finalizers": ["a", "b"]}});
    let patch = json!({"metadata": {"finalizers": ["b", "c"]}});
    let out = patched(target, patch, "core.v1.Pod").unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));

    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zzz"]}});
    let out = patched(out, patch, "core.v1.Pod").unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
    assert!(!has_directive(&out));
}

#[test]
fn primitive_set_order_follows_set_element_order() {
    let target = json!({"spec": {"podCIDRs": ["10.0.0.0/24", "fd00::/64"]}});
    let patch = json!({"spec": {
        "$setElementOrder/podCIDRs": ["fd00::/64", "10.0.0.0/24"]
    }});
    let out = patched(target, patch, "core.v1.Node").unwrap();
    assert_eq!(out["spec"]["podCIDRs"], json!(["fd00::/64", "10.0.0.0/24"]));
}

#[test]
fn retain_keys_switches_a_volume_from_empty_dir_to_config_map() {
    let target = pod_spec(json!({"volumes": [
        {"name": "data", "emptyDir": {}},
        {"name": "keep", "hostPath": {"path": "/x"}}
    ]}));
    let patch = json!({"spec": {
        "$setElementOrder/volumes": [{"name": "data"}, {"name": "keep"}],
        "volumes": [{
            "$retainKeys": ["configMap", "name"],
            "name": "data",
            "configMap": {"name": "settings"},
            "emptyDir": null
        }]
    }});
    let out = patched(target, patch, "core.v1.Pod").unwrap();
    assert_eq!(
        out["spec"]["volumes"],
        json!([
            {"name": "data", "configMap": {"name": "settings"}},
            {"name": "keep", "hostPath": {"path": "/x"}}
        ])
    );
}

#[test]
fn retain_keys_clears_unlisted_keys_even_without_a_null() {
    let target = json!({"spec": {"strategy": {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1}
    }}});
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let out = patched(target, patch, "apps.v1.Deployment").unwrap();
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn retain_keys_that_omit_a_patched_key_are_a_bad_request() {
    let target = json!({"spec": {"strategy": {"type": "RollingUpdate"}}});
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}});
    let err = patched(target, patch, "apps.v1.Deployment").unwrap_err();
    assert_eq!(err, SmpError::BadRetainKeys);
    assert_eq!(err.into_api_error().code, 400);
}

#[test]
fn service_ports_merge_by_port() {
    let target = json!({"spec": {"ports": [
        {"port": 80, "targetPort": 8080, "name": "http"},
        {"port": 443, "name": "https"}
    ]}});
    let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
    let out = patched(target, patch, "core.v1.Service").unwrap();
    assert_eq!(
        out["spec"]["ports"],
        json!([
            {"port": 80, "targetPort": 9090, "name": "http"},
            {"port": 443, "name": "https"}
        ])
    );
}

#[test]
fn container_ports_merge_by_container_port() {
    let target = pod_spec(json!({"containers": [
        {"name": "app", "ports": [{"containerPort": 80, "name": "http"}]}
    ]}));
    let patch = json!({"spec": {"containers": [
        {"name": "app", "ports": [{"containerPort": 80, "protocol": "TCP"}]}
    ]}});
    let out = patched(target, patch, "core.v1.Pod").unwrap();
    assert_eq!(
        out["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80, "name": "http", "protocol": "TCP"}])
    );
}

#[test]
fn tolerations_and_args_are_replaced_whole() {
    let target = pod_spec(json!({
        "tolerations": [{"key": "a", "operator": "Exists"}],
        "containers": [{"name": "app", "args": ["--one", "--two"]}]
    }));
    let patch = json!({"spec": {
        "tolerations": [{"key": "b", "operator": "Exists"}],
        "containers": [{"name": "app", "args": ["--three"]}]
    }});
    let out = patched(target, patch, "core.v1.Pod").unwrap();
    assert_eq!(
        out["spec"]["tolerations"],
        json!([{"key": "b", "operator": "Exists"}])
    );
    assert_eq!(out["spec"]["containers"][0]["args"], json!(["--three"]));
}

#[test]
fn pdb_selector_is_replaced_not_merged() {
    let target = json!({"spec": {"selector": {"matchLabels": {"app": "web"}}}});
    let patch = json!({"spec": {"selector": {"matchExpressions": []}}});
    let out = patched(target, patch, "policy.v1.PodDisruptionBudget").unwrap();
    assert_eq!(out["spec"]["selector"], json!({"matchExpressions": []}));
}

#[test]
fn merge_list_element_without_its_merge_key_is_an_error() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"image": "nginx"}]}}}});
    let err = patched(deployment(), patch, "apps.v1.Deployment").unwrap_err();
    assert_eq!(
        err.to_string(),
        "map: map[image:nginx] does not contain declared merge key: name"
    );
    // kube-apiserver has no status for this one and answers 500 with the bare message.
    let api = err.into_api_error();
    assert_eq!((api.code, api.reason), (500, ""));
    assert_eq!(
        api.message,
        "map: map[image:nginx] does not contain declared merge key: name"
    );
}

#[test]
fn delete_directive_without_merge_key_is_an_error() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}});
    let err = patched(deployment(), patch, "apps.v1.Deployment").unwrap_err();
    assert!(matches!(err, SmpError::NoMergeKey { .. }), "{err}");
}

#[test]
fn null_deletes_and_unmatched_null_is_ignored() {
    let patch = json!({"metadata": {"annotations": null, "labels": {"missing": null}}});
    let out = patched(deployment(), patch, "apps.v1.Deployment").unwrap();
    assert!(out["metadata"].get("annotations").is_none());
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "old": "yes"})
    );
}

#[test]
fn unknown_fields_merge_like_a_json_merge_patch() {
    let target = json!({"spec": {"custom": {"a": 1, "b": [1, 2]}}});
    let patch = json!({"spec": {"custom": {"a": null, "b": [3], "c": {"d": 1}}}});
    let out = patched(target.clone(), patch.clone(), "apps.v1.Deployment").unwrap();
    assert_eq!(out["spec"]["custom"], json!({"b": [3], "c": {"d": 1}}));
    let mut untyped = target;
    strategic_merge(&mut untyped, &patch, None).unwrap();
    assert_eq!(untyped, out);
}

#[test]
fn directives_in_new_values_are_never_stored() {
    let target = json!({"metadata": {"name": "p"}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [{"name": "app", "$setElementOrder/env": [{"name": "A"}],
                        "env": [{"name": "A", "value": "1"}, {"name": "gone", "$patch": "delete"}]}],
        "securityContext": {"$patch": "replace", "runAsUser": 1, "fsGroup": null},
        "tolerations": [{"key": "x", "$retainKeys": ["key"]}],
        "$unknownDirective": true
    }});
    let out = patched(target, patch, "core.v1.Pod").unwrap();
    assert!(!has_directive(&out), "{out}");
    assert_eq!(
        out["spec"]["containers"][0]["env"],
        json!([{"name": "A", "value": "1"}])
    );
    assert_eq!(out["spec"]["securityContext"], json!({"runAsUser": 1}));
}

#[test]
fn patch_that_is_not_an_object_is_rejected() {
    let mut target = deployment();
    let err = strategic_merge(&mut target, &json!([1]), Some("apps.v1.Deployment")).unwrap_err();
    assert_eq!(err, SmpError::NotAnObject);
}

#[test]
fn merge_keys_compare_numbers_as_go_does() {
    let target = json!({"spec": {"ports": [{"port": 80, "name": "http"}]}});
    let patch = json!({"spec": {"ports": [{"port": 80.0, "targetPort": 1}]}});
    let out = patched(target, patch, "core.v1.Service").unwrap();
    assert_eq!(out["spec"]["ports"].as_array().map(Vec::len), Some(1));
}

#[test]
fn error_messages_print_values_as_go_does() {
    let cases = [
        (json!({"port": 8080, "b": true}), "map[b:true port:8080]"),
        (
            json!({"n": 1000000, "f": 0.5, "s": 0.00001}),
            "map[f:0.5 n:1e+06 s:1e-05]",
        ),
        (
            json!({"l": ["a", null], "m": {}}),
            "map[l:[a <nil>] m:map[]]",
        ),
    ];
    for (value, printed) in cases {
        assert_eq!(super::go_value(&value), printed);
    }
}

#[test]
fn new_map_that_deletes_itself_is_not_stored() {
    let target = pod_spec(json!({"containers": [{"name": "app"}]}));
    let patch = json!({"spec": {"securityContext": {"$patch": "delete"}}});
    let out = patched(target, patch, "core.v1.Pod").unwrap();
    assert!(out["spec"].get("securityContext").is_none(), "{out}");
}

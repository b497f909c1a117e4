//! Tests of container rules: init containers, host ports, env, hooks and tolerations.

use serde_json::{json, Value};

use super::{container, create_causes, nginx_pod, pod, update_causes};

fn pod_causes(spec: Value) -> Vec<String> {
    super::lines(&create_causes("v1", "Pod", pod(spec)))
}

#[test]
fn init_containers_may_not_probe_unless_they_restart_always() {
    let probe = json!({"exec": {"command": ["true"]}});
    let spec = json!({
        "containers": [container("app", "i")],
        "initContainers": [
            {"name": "setup", "image": "i", "readinessProbe": probe},
            {"name": "sidecar", "image": "i", "restartPolicy": "Always", "readinessProbe": probe},
            {"name": "odd", "image": "i", "restartPolicy": "OnFailure"},
        ],
    });
    assert_eq!(
        pod_causes(spec),
        [
            "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
            "spec.initContainers[2].restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"",
        ]
    );
}

#[test]
fn regular_containers_may_not_set_a_restart_policy() {
    let spec = json!({"containers": [{"name": "c", "image": "i", "restartPolicy": "Always"}]});
    assert_eq!(
        pod_causes(spec),
        ["spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"]
    );
}

#[test]
fn two_containers_may_not_claim_one_host_port() {
    let spec = json!({"containers": [
        {"name": "a", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]},
        {"name": "b", "image": "i", "ports": [{"containerPort": 81, "hostPort": 8080}, {"containerPort": 82, "hostPort": 8080, "protocol": "UDP"}]},
    ]});
    assert_eq!(
        pod_causes(spec),
        ["spec.containers[1].ports[0].hostPort: Duplicate value: \"TCP//8080\""]
    );
}

#[test]
fn host_network_pods_use_container_ports_on_the_host() {
    let mut spec = json!({"hostNetwork": true, "containers": [
        {"name": "a", "image": "i", "ports": [{"containerPort": 80}]}]});
    assert_eq!(pod_causes(spec.clone()), Vec::<String>::new());
    spec["containers"][0]["ports"][0]["hostPort"] = json!(8080);
    assert_eq!(
        pod_causes(spec),
        ["spec.containers[0].ports[0].hostPort: Invalid value: 8080: must match `containerPort` when `hostNetwork` is true"]
    );
}

#[test]
fn env_vars_need_names_and_one_source() {
    let spec = json!({"containers": [{"name": "c", "image": "i", "env": [
        {"name": "OK", "value": "1"},
        {"value": "x"},
        {"name": "A=B"},
        {"name": "FROM", "valueFrom": {}},
        {"name": "BOTH", "value": "v", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]}]});
    assert_eq!(
        pod_causes(spec),
        [
            "spec.containers[0].env[1].name: Required value",
            "spec.containers[0].env[2].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
            "spec.containers[0].env[3].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            "spec.containers[0].env[4].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty",
        ]
    );
}

#[test]
fn lifecycle_hooks_need_a_handler_and_a_short_sleep() {
    let spec = json!({"containers": [{"name": "c", "image": "i", "lifecycle": {
        "postStart": {},
        "preStop": {"sleep": {"seconds": 60}},
    }}]});
    assert_eq!(
        pod_causes(spec),
        [
            "spec.containers[0].lifecycle.postStart: Required value: must specify a handler type",
            "spec.containers[0].lifecycle.preStop.sleep: Invalid value: 60: must be non-negative and less than terminationGracePeriodSeconds (30)",
        ]
    );
}

#[test]
fn http_probe_schemes_must_be_known() {
    let spec = json!({"containers": [{"name": "c", "image": "i",
        "readinessProbe": {"httpGet": {"port": "web", "path": "", "scheme": "FTP"}}}]});
    assert_eq!(
        pod_causes(spec),
        [
            "spec.containers[0].readinessProbe.httpGet.scheme: Unsupported value: \"FTP\": supported values: \"HTTP\", \"HTTPS\"",
        ]
    );
}

#[test]
fn tolerations_are_checked() {
    let spec = json!({"containers": [container("c", "i")], "tolerations": [
        {"key": "k", "operator": "Exists", "value": "v"},
        {"operator": "Equal", "value": "v"},
        {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5},
        {"key": "k", "operator": "Like"},
    ]});
    let causes = pod_causes(spec);
    assert_eq!(
        &causes[..4],
        [
            "spec.tolerations[0].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'",
            "spec.tolerations[1].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            "spec.tolerations[2].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set",
            "spec.tolerations[3].operator: Unsupported value: \"Like\": supported values: \"Equal\", \"Exists\"",
        ]
    );
}

#[test]
fn a_negative_grace_period_may_become_one() {
    let mut old = nginx_pod();
    old["spec"]["terminationGracePeriodSeconds"] = json!(-1);
    let mut new = old.clone();
    new["spec"]["terminationGracePeriodSeconds"] = json!(1);
    assert_eq!(
        super::lines(&update_causes("v1", "Pod", new, old)),
        Vec::<String>::new()
    );
}

#[test]
fn scheduling_gates_may_only_be_removed() {
    let mut old = nginx_pod();
    old["spec"]["schedulingGates"] = json!([{"name": "a"}]);
    let mut removed = old.clone();
    removed["spec"]["schedulingGates"] = json!([]);
    assert_eq!(
        super::lines(&update_causes("v1", "Pod", removed, old.clone())),
        Vec::<String>::new()
    );
    let mut added = old.clone();
    added["spec"]["schedulingGates"] = json!([{"name": "a"}, {"name": "b"}]);
    assert_eq!(
        super::lines(&update_causes("v1", "Pod", added, old)),
        ["spec.schedulingGates[1].name: Forbidden: only deletion is allowed, but found new scheduling gate 'b'"]
    );
}

#[test]
fn extended_resources_are_whole_and_limited() {
    let spec = json!({"containers": [{"name": "c", "image": "i", "resources": {
        "requests": {"example.com/gpu": "500m", "example.com/fpga": "1"},
    }}]});
    assert_eq!(
        pod_causes(spec),
        [
            "spec.containers[0].resources.requests[example.com/gpu]: Invalid value: 500m: must be an integer",
            "spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable resources",
        ]
    );
}

//! Tests of Pod defaults, validation and update rules.

use serde_json::{json, Value};

use super::{assert_causes, container, create_causes, nginx_pod, pod, update_causes};
use crate::apiserver::admission::default;

const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn pod_causes(spec: Value) -> Vec<String> {
    super::lines(&create_causes("v1", "Pod", pod(spec)))
}

#[test]
fn pods_get_kube_apiserver_defaults() {
    let p = nginx_pod();
    let spec = &p["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["securityContext"], json!({}));
    assert_eq!(spec["enableServiceLinks"], true);
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(spec["serviceAccount"], "default");
    assert_eq!(spec["priority"], 0);
    assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
    assert_eq!(
        spec["tolerations"][0]["key"],
        "node.kubernetes.io/not-ready"
    );
    assert_eq!(spec["tolerations"][1]["tolerationSeconds"], 300);
    let c = &spec["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["terminationMessagePolicy"], "File");
    assert_eq!(c["resources"], json!({}));
}

#[test]
fn untagged_and_latest_images_are_always_pulled() {
    for (image, policy) in [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.25", "IfNotPresent"),
        ("nginx@sha256:0123", "IfNotPresent"),
        ("localhost:5000/app", "Always"),
    ] {
        let mut p = pod(json!({"containers": [container("c", image)]}));
        default("v1", "Pod", &mut p);
        assert_eq!(
            p["spec"]["containers"][0]["imagePullPolicy"], policy,
            "{image}"
        );
    }
}

#[test]
fn ports_probes_and_volumes_get_defaults() {
    let mut p = pod(json!({
        "containers": [{
            "name": "c", "image": "i:1",
            "ports": [{"containerPort": 80}],
            "livenessProbe": {"httpGet": {"port": 80}},
            "resources": {"limits": {"cpu": "500m"}},
        }],
        "initContainers": [container("init", "busybox")],
        "volumes": [{"name": "a"}, {"name": "b", "secret": {"secretName": "s"}}, {"name": "c", "configMap": {"name": "m"}}],
    }));
    default("v1", "Pod", &mut p);
    let c = &p["spec"]["containers"][0];
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(
        c["livenessProbe"],
        json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
               "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(c["resources"]["requests"], json!({"cpu": "500m"}));
    assert_eq!(p["spec"]["initContainers"][0]["imagePullPolicy"], "Always");
    assert_eq!(p["spec"]["volumes"][0]["emptyDir"], json!({}));
    assert_eq!(p["spec"]["volumes"][1]["secret"]["defaultMode"], 420);
    assert_eq!(p["spec"]["volumes"][2]["configMap"]["defaultMode"], 420);
}

#[test]
fn a_valid_pod_has_no_causes() {
    let spec = json!({
        "containers": [{
            "name": "web", "image": "nginx",
            "ports": [{"name": "http", "containerPort": 80}, {"containerPort": 53, "protocol": "UDP", "hostPort": 53}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}},
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "readinessProbe": {"tcpSocket": {"port": "http"}},
        }],
        "initContainers": [container("setup", "busybox")],
        "volumes": [{"name": "data", "emptyDir": {}}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
    });
    assert_eq!(pod_causes(spec), Vec::<String>::new());
}

#[test]
fn containers_are_required() {
    assert_eq!(pod_causes(json!({})), ["spec.containers: Required value"]);
}

#[test]
fn container_names_are_required_labels_and_unique() {
    let spec = json!({
        "containers": [{"image": "a"}, container("Web", "a"), container("x", "a")],
        "initContainers": [container("x", "b")],
    });
    assert_eq!(
        pod_causes(spec),
        [
            "spec.containers[0].name: Required value".to_string(),
            format!("spec.containers[1].name: Invalid value: \"Web\": {LABEL_MSG}"),
            "spec.initContainers[0].name: Duplicate value: \"x\"".to_string(),
        ]
    );
}

#[test]
fn images_are_required() {
    let spec = json!({"containers": [{"name": "c"}]});
    assert_eq!(
        pod_causes(spec),
        ["spec.containers[0].image: Required value"]
    );
}

#[test]
fn container_ports_are_in_range_with_known_protocols_and_unique_names() {
    let spec = json!({"containers": [{"name": "c", "image": "i", "ports": [
        {"containerPort": 70000, "name": "http"},
        {"containerPort": 81, "name": "http", "hostPort": -1},
        {"containerPort": 82, "protocol": "ICMP", "name": "HTTP_1"},
        {"name": "x"},
    ]}]});
    assert_eq!(
        pod_causes(spec),
        [
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[1].name: Duplicate value: \"http\"",
            "spec.containers[0].ports[1].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[2].name: Invalid value: \"HTTP_1\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            "spec.containers[0].ports[2].name: Invalid value: \"HTTP_1\": must contain at least one letter (a-z)",
            "spec.containers[0].ports[2].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.containers[0].ports[3].containerPort: Required value",
        ]
    );
}

#[test]
fn policies_must_be_supported_values() {
    let spec = json!({
        "containers": [{"name": "c", "image": "i", "imagePullPolicy": "Sometimes"}],
        "restartPolicy": "Maybe",
        "dnsPolicy": "Local",
    });
    let causes = create_causes("v1", "Pod", pod(spec));
    assert_causes(
        &causes,
        &[
            "spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
            "spec.restartPolicy: Unsupported value: \"Maybe\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            "spec.dnsPolicy: Unsupported value: \"Local\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
        ],
    );
    assert!(causes.iter().all(|c| c.reason == "FieldValueNotSupported"));
}

#[test]
fn requests_may_not_exceed_limits() {
    let spec = json!({"containers": [{"name": "c", "image": "i", "resources": {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"cpu": "500m", "memory": "1Gi"},
    }}]});
    assert_eq!(
        pod_causes(spec),
        ["spec.containers[0].resources.requests: Invalid value: \"1\": must be less than or equal to cpu limit of 500m"]
    );
}

#[test]
fn resource_quantities_must_parse_and_not_be_negative() {
    let spec = json!({"containers": [{"name": "c", "image": "i", "resources": {
        "requests": {"cpu": "lots", "memory": "-1Mi", "widgets": "1"},
    }}]});
    assert_eq!(
        pod_causes(spec),
        [
            "spec.containers[0].resources.requests[cpu]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            "spec.containers[0].resources.requests[memory]: Invalid value: \"-1Mi\": must be greater than or equal to 0",
            "spec.containers[0].resources.requests[widgets]: Invalid value: \"widgets\": must be a standard resource for containers",
        ]
    );
}

#[test]
fn extended_resources_need_equal_requests_and_limits() {
    let spec = json!({"containers": [{"name": "c", "image": "i", "resources": {
        "limits": {"example.com/gpu": "2"},
        "requests": {"example.com/gpu": "1"},
    }}]});
    assert_eq!(
        pod_causes(spec),
        ["spec.containers[0].resources.requests: Invalid value: \"1\": must be equal to example.com/gpu limit of 2"]
    );
}

#[test]
fn volume_mounts_must_name_a_volume() {
    let spec = json!({
        "containers": [{"name": "c", "image": "i", "volumeMounts": [
            {"name": "x", "mountPath": "/x"}, {"name": "v", "mountPath": "/x"}, {"name": "v"}]}],
        "volumes": [{"name": "v", "emptyDir": {}}],
    });
    assert_eq!(
        pod_causes(spec),
        [
            "spec.containers[0].volumeMounts[0].name: Not found: \"x\"",
            "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/x\": must be unique",
            "spec.containers[0].volumeMounts[2].mountPath: Required value",
        ]
    );
}

#[test]
fn volume_names_are_unique_labels_with_one_source() {
    let spec = json!({
        "containers": [container("c", "i")],
        "volumes": [
            {"name": "v", "emptyDir": {}},
            {"name": "v", "emptyDir": {}},
            {"name": "Bad", "emptyDir": {}},
            {"name": "two", "emptyDir": {}, "hostPath": {"path": "/"}},
        ],
    });
    assert_eq!(
        pod_causes(spec),
        [
            "spec.volumes[1].name: Duplicate value: \"v\"".to_string(),
            format!("spec.volumes[2].name: Invalid value: \"Bad\": {LABEL_MSG}"),
            "spec.volumes[3].emptyDir: Forbidden: may not specify more than 1 volume type"
                .to_string(),
        ]
    );
}

#[test]
fn probes_need_exactly_one_handler() {
    let spec = json!({"containers": [{"name": "c", "image": "i",
        "livenessProbe": {"periodSeconds": 5},
        "readinessProbe": {"exec": {"command": ["true"]}, "httpGet": {"port": 80}},
        "startupProbe": {"tcpSocket": {"port": 0}, "successThreshold": 2},
    }]});
    assert_eq!(
        pod_causes(spec),
        [
            "spec.containers[0].livenessProbe: Required value: must specify a handler type",
            "spec.containers[0].readinessProbe.httpGet: Forbidden: may not specify more than 1 handler type",
            "spec.containers[0].startupProbe.tcpSocket.port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.containers[0].startupProbe.successThreshold: Invalid value: 2: must be 1",
        ]
    );
}

#[test]
fn changing_only_the_image_is_an_allowed_update() {
    let old = nginx_pod();
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:1.26");
    new["spec"]["activeDeadlineSeconds"] = json!(60);
    new["metadata"]["labels"] = json!({"extra": "yes"});
    assert_causes(&update_causes("v1", "Pod", new, old), &[]);
}

#[test]
fn changing_other_pod_spec_fields_is_forbidden() {
    let old = nginx_pod();
    let mut new = old.clone();
    new["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080}]);
    let causes = update_causes("v1", "Pod", new, old);
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].field, "spec");
    assert_eq!(causes[0].reason, "FieldValueForbidden");
    assert!(causes[0].message.starts_with(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"
    ));
    assert!(causes[0].message.contains("+ \tcontainers: "));
}

#[test]
fn pod_updates_may_not_add_containers_or_drop_tolerations() {
    let old = nginx_pod();
    let mut more = old.clone();
    if let Some(list) = more["spec"]["containers"].as_array_mut() {
        list.push(container("extra", "busybox"));
    }
    assert_causes(
        &update_causes("v1", "Pod", more, old.clone()),
        &["spec.containers: Forbidden: pod updates may not add or remove containers"],
    );
    let mut fewer = old.clone();
    fewer["spec"]["tolerations"] = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]);
    let mut fewer_old = old;
    if let Some(list) = fewer_old["spec"]["tolerations"].as_array_mut() {
        list.push(json!({"key": "k", "operator": "Exists"}));
    }
    let causes = update_causes("v1", "Pod", fewer, fewer_old);
    assert!(causes.iter().any(|c| c.field == "spec.tolerations"
        && c.message
            == "Forbidden: existing toleration can not be modified except its tolerationSeconds"));
}

#[test]
fn active_deadline_may_only_go_down() {
    let mut old = nginx_pod();
    old["spec"]["activeDeadlineSeconds"] = json!(30);
    let mut new = old.clone();
    new["spec"]["activeDeadlineSeconds"] = json!(60);
    assert_causes(
        &update_causes("v1", "Pod", new, old),
        &["spec.activeDeadlineSeconds: Invalid value: 60: must be less than or equal to previous value"],
    );
}

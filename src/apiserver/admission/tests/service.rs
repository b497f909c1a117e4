//! Tests of Service defaults, validation and update rules.

use serde_json::{json, Value};

use super::{assert_causes, create_causes, update_causes};
use crate::apiserver::admission::{default, prepare_for_update, validate_update};

fn service(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec})
}

#[test]
fn services_get_type_affinity_and_port_defaults() {
    let mut s = service(
        json!({"ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}),
    );
    default("v1", "Service", &mut s);
    let spec = &s["spec"];
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert!(spec.get("externalTrafficPolicy").is_none());
    assert_eq!(
        spec["ports"][0],
        json!({"port": 80, "protocol": "TCP", "targetPort": 80})
    );
    assert_eq!(spec["ports"][1]["targetPort"], "dns");
    let mut n = service(
        json!({"type": "NodePort", "ports": [{"port": 80}], "sessionAffinity": "ClientIP"}),
    );
    default("v1", "Service", &mut n);
    assert_eq!(n["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(
        n["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
        10800
    );
}

#[test]
fn a_valid_service_has_no_causes() {
    let s = service(json!({
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "https", "port": 443, "nodePort": 30443}],
        "type": "NodePort",
    }));
    assert_causes(&create_causes("v1", "Service", s), &[]);
    let headless = service(json!({"clusterIP": "None", "selector": {"app": "db"}}));
    assert_causes(&create_causes("v1", "Service", headless), &[]);
    let external = service(json!({"type": "ExternalName", "externalName": "example.com."}));
    assert_causes(&create_causes("v1", "Service", external), &[]);
}

#[test]
fn ports_are_required_unless_headless_or_external_name() {
    assert_causes(
        &create_causes("v1", "Service", service(json!({}))),
        &["spec.ports: Required value"],
    );
}

#[test]
fn several_ports_need_unique_names() {
    let s = service(
        json!({"ports": [{"port": 80}, {"name": "a", "port": 81}, {"name": "a", "port": 82}]}),
    );
    assert_causes(
        &create_causes("v1", "Service", s),
        &[
            "spec.ports[0].name: Required value",
            "spec.ports[2].name: Duplicate value: \"a\"",
        ],
    );
}

#[test]
fn ports_numbers_protocols_and_types_are_checked() {
    let s = service(json!({
        "ports": [{"port": 0, "protocol": "HTTP"}],
        "type": "Internal",
        "sessionAffinity": "Sticky",
    }));
    assert_causes(
        &create_causes("v1", "Service", s),
        &[
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
            "spec.type: Unsupported value: \"Internal\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
        ],
    );
}

#[test]
fn node_ports_are_forbidden_on_cluster_ip_services() {
    let s = service(json!({"ports": [{"port": 80, "nodePort": 30080}]}));
    assert_causes(
        &create_causes("v1", "Service", s),
        &["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
    );
}

#[test]
fn the_same_port_and_protocol_twice_is_a_duplicate() {
    let s = service(json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}));
    assert_causes(
        &create_causes("v1", "Service", s),
        &["spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}"],
    );
}

#[test]
fn cluster_ips_may_not_change_once_set() {
    let old = service(
        json!({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ports": [{"port": 80}]}),
    );
    let new = service(
        json!({"clusterIP": "10.96.0.11", "clusterIPs": ["10.96.0.11"], "ports": [{"port": 80}]}),
    );
    let causes = update_causes("v1", "Service", new, old);
    assert_causes(
        &causes,
        &["spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set"],
    );
}

#[test]
fn an_update_without_cluster_ip_keeps_the_allocated_one() {
    let mut old = service(
        json!({"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [{"port": 80, "nodePort": 30080}]}),
    );
    default("v1", "Service", &mut old);
    let mut new = service(json!({"type": "NodePort", "ports": [{"port": 80}]}));
    default("v1", "Service", &mut new);
    prepare_for_update("v1", "Service", &mut new, &old);
    assert_eq!(new["spec"]["clusterIPs"], json!(["10.96.0.10"]));
    assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
    assert_causes(&validate_update("v1", "Service", &new, &old), &[]);
}

#[test]
fn cluster_ips_must_be_addresses() {
    let s = service(json!({"clusterIP": "10.0.0.300", "ports": [{"port": 80}]}));
    assert_causes(
        &create_causes("v1", "Service", s),
        &["spec.clusterIPs[0]: Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"],
    );
}

#[test]
fn traffic_policies_and_affinity_config_fit_the_type() {
    let s = service(json!({
        "ports": [{"port": 80}],
        "externalTrafficPolicy": "Local",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
    }));
    let mut obj = s;
    default("v1", "Service", &mut obj);
    obj["spec"]["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 60}});
    assert_causes(
        &super::super::validate_create("v1", "Service", &obj),
        &[
            "spec.sessionAffinityConfig: Forbidden: must not be set when session affinity is None",
            "spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for externally-accessible services",
        ],
    );
}

#[test]
fn node_port_services_may_not_be_headless() {
    let s = service(json!({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]}));
    assert_causes(
        &create_causes("v1", "Service", s),
        &["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"],
    );
}

#[test]
fn update_rules_come_before_the_service_rules() {
    let old = service(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}));
    let new = service(json!({"clusterIP": "10.96.0.11", "ports": [{"port": 0}]}));
    let causes = super::lines(&update_causes("v1", "Service", new, old));
    assert_eq!(
        causes[0],
        "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set"
    );
    assert!(causes[1].starts_with("spec.ports[0].port: Invalid value: 0"));
}

#[test]
fn external_name_services_need_a_dns_name() {
    let s = service(json!({"type": "ExternalName"}));
    assert_causes(
        &create_causes("v1", "Service", s),
        &["spec.externalName: Required value"],
    );
}

#[test]
fn none_must_be_the_only_cluster_ip() {
    let s = service(json!({"clusterIP": "None", "clusterIPs": ["None", "10.0.0.1"]}));
    assert_causes(
        &create_causes("v1", "Service", s),
        &["spec.clusterIPs: Invalid value: []string{\"None\", \"10.0.0.1\"}: 'None' must be the first and only value"],
    );
}

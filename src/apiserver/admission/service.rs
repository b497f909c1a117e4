//! Services (`v1`): `SetDefaults_Service`, cluster IPs that may not change once set,
//! and the values an update keeps from the stored object (upstream's REST
//! `patchAllocatedValues`). What a Service must be lives in `service_rules.rs`.
//!
//! `ipFamilies` and `ipFamilyPolicy` are left to the cluster-IP allocator, which sets
//! them when it assigns the address, as kube-apiserver's allocator does.

use serde_json::{json, Map, Value};

use super::errors::{default_str, index, invalid, list_of, objects_mut, set_default, str_of, Bad};
use super::service_rules::{go_strings, is_headless};
use crate::apiserver::status::Cause;

/// Defaults a Service in place.
pub(super) fn default(obj: &mut Value) {
    if let Some(o) = obj.as_object_mut() {
        set_default(o, "status", json!({"loadBalancer": {}}));
    }
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    default_str(spec, "sessionAffinity", "None");
    if spec.get("sessionAffinity") == Some(&json!("None")) {
        spec.remove("sessionAffinityConfig");
    } else if spec.get("sessionAffinity") == Some(&json!("ClientIP")) {
        let config = spec
            .entry("sessionAffinityConfig")
            .or_insert_with(|| json!({}));
        if let Some(client_ip) = config.as_object_mut().and_then(|c| {
            c.entry("clientIP")
                .or_insert_with(|| json!({}))
                .as_object_mut()
        }) {
            set_default(client_ip, "timeoutSeconds", json!(10800));
        }
    }
    default_str(spec, "type", "ClusterIP");
    for port in objects_mut(spec, "ports") {
        default_str(port, "protocol", "TCP");
        let target = port.get("targetPort");
        if target.is_none_or(|t| t.is_null() || t == 0 || t == "") {
            if let Some(number) = port.get("port").cloned() {
                port.insert("targetPort".into(), number);
            }
        }
    }
    let kind = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|ips| !ips.is_empty());
    if kind == "NodePort" || kind == "LoadBalancer" || (kind == "ClusterIP" && external_ips) {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if kind == "NodePort" || kind == "LoadBalancer" || kind == "ClusterIP" {
        default_str(spec, "internalTrafficPolicy", "Cluster");
    }
    if kind == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    cluster_ips_from_cluster_ip(spec);
}

/// `clusterIPs` starts with `clusterIP` (upstream's `NormalizeClusterIPs`).
fn cluster_ips_from_cluster_ip(spec: &mut Map<String, Value>) {
    let ip = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if ip.is_empty() {
        return;
    }
    let ips = spec.get("clusterIPs").and_then(Value::as_array);
    if ips.is_none_or(Vec::is_empty) {
        spec.insert("clusterIPs".into(), json!([ip]));
    }
}

/// Keeps what the server allocated when an update leaves it out: the cluster IPs and
/// node ports of the stored object, as kube-apiserver's Service REST update does.
pub(super) fn prepare_for_update(obj: &mut Value, old: &Value) {
    drop_type_dependent_fields(obj, old);
    let Some(old_spec) = old.get("spec") else {
        return;
    };
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let new_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if new_type != "ExternalName" && str_of(old_spec, "type") != "ExternalName" {
        if spec.get("clusterIP").is_none_or(|v| v.is_null() || v == "") {
            if let Some(ip) = old_spec.get("clusterIP") {
                spec.insert("clusterIP".into(), ip.clone());
                if let Some(ips) = old_spec.get("clusterIPs") {
                    spec.insert("clusterIPs".into(), ips.clone());
                }
            }
        }
        cluster_ips_from_cluster_ip(spec);
    }
    if new_type == "NodePort" || new_type == "LoadBalancer" {
        let old_ports = list_of(old_spec, "ports");
        for port in objects_mut(spec, "ports") {
            if port.get("nodePort").is_some_and(|n| n != 0 && !n.is_null()) {
                continue;
            }
            let same = old_ports.iter().find(|o| {
                o.get("port") == port.get("port") && o.get("protocol") == port.get("protocol")
            });
            if let Some(node_port) = same.and_then(|o| o.get("nodePort")) {
                port.insert("nodePort".into(), node_port.clone());
            }
        }
    }
}

/// Checks an update: cluster IPs, once set, stay (unless ExternalName is involved).
pub(super) fn validate_update(obj: &Value, old: &Value, out: &mut Vec<Cause>) {
    let (Some(spec), Some(old_spec)) = (obj.get("spec"), old.get("spec")) else {
        return;
    };
    if str_of(spec, "type") == "ExternalName" || str_of(old_spec, "type") == "ExternalName" {
        return;
    }
    if is_headless(spec) && is_headless(old_spec) {
        return;
    }
    let strings = |s: &Value| -> Vec<String> {
        list_of(s, "clusterIPs")
            .iter()
            .map(|v| v.as_str().unwrap_or("").to_string())
            .collect()
    };
    let (new_ips, old_ips) = (strings(spec), strings(old_spec));
    let new_refs: Vec<&str> = new_ips.iter().map(String::as_str).collect();
    let shown = || Bad::Raw(go_strings(&new_refs));
    if new_ips.is_empty() && !old_ips.is_empty() {
        out.push(invalid(
            "spec.clusterIPs[0]",
            shown(),
            "primary clusterIP can not be unset",
        ));
        return;
    }
    for (i, (n, o)) in new_ips.iter().zip(&old_ips).enumerate() {
        let primary_only = new_ips.len() != old_ips.len();
        if n != o && (i == 0 || !primary_only) {
            out.push(invalid(
                &index("spec.clusterIPs", i),
                shown(),
                "may not change once set",
            ));
        }
    }
}

/// Whether clients outside the cluster reach the Service (upstream's
/// `ExternallyAccessible`).
fn externally_accessible(spec: &Value) -> bool {
    match str_of(spec, "type") {
        "NodePort" | "LoadBalancer" => true,
        "ClusterIP" | "" => spec["externalIPs"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        _ => false,
    }
}

/// A type change drops what the old type had and the new one cannot use, where the update
/// left it as it was (upstream's `dropTypeDependentFields`): node ports, the health-check
/// node port and the external traffic policy. Addresses are the allocator's.
fn drop_type_dependent_fields(obj: &mut Value, old: &Value) {
    let old_spec = &old["spec"];
    let had_ports = matches!(str_of(old_spec, "type"), "NodePort" | "LoadBalancer");
    let spec = &mut obj["spec"];
    let has_ports = matches!(str_of(spec, "type"), "NodePort" | "LoadBalancer");
    let node_ports = |s: &Value| -> Vec<Value> {
        s["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["nodePort"].clone())
            .collect()
    };
    if had_ports && !has_ports && node_ports(spec) == node_ports(old_spec) {
        for port in spec["ports"].as_array_mut().into_iter().flatten() {
            if let Some(map) = port.as_object_mut() {
                map.remove("nodePort");
            }
        }
    }
    let Some(map) = spec.as_object_mut() else {
        return;
    };
    if str_of(old_spec, "type") == "LoadBalancer"
        && map.get("type").and_then(Value::as_str) != Some("LoadBalancer")
    {
        for field in [
            "healthCheckNodePort",
            "allocateLoadBalancerNodePorts",
            "loadBalancerClass",
        ] {
            if map.get(field) == old_spec.get(field) {
                map.remove(field);
            }
        }
    }
    let accessible = externally_accessible(&Value::Object(map.clone()));
    if externally_accessible(old_spec)
        && !accessible
        && map.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy")
    {
        map.remove("externalTrafficPolicy");
    }
}

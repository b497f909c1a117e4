//! Services (`v1`): `SetDefaults_Service`, the rules of `ValidateService` for ports,
//! types and session affinity, cluster IPs that may not change once set, and the values
//! an update keeps from the stored object (upstream's REST `patchAllocatedValues`).
//!
//! `ipFamilies` and `ipFamilyPolicy` are left to the cluster-IP allocator, which sets
//! them when it assigns the address, as kube-apiserver's allocator does.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::errors::{
    child, default_str, duplicate, forbidden, index, invalid, list_of, not_supported, objects_mut,
    required, set_default, str_of, Bad,
};
use super::meta::validate_labels;
use super::names::{dns_label_error, dns_subdomain_error, port_num_error};
use super::pod_parts::{validate_port_num_or_name, PROTOCOLS};
use crate::apiserver::status::Cause;

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const AFFINITIES: &[&str] = &["ClientIP", "None"];

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
    if kind == "NodePort" || kind == "LoadBalancer" {
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

fn is_headless(spec: &Value) -> bool {
    str_of(spec, "clusterIP") == "None"
}

/// Checks a new Service.
pub(super) fn validate(obj: &Value, out: &mut Vec<Cause>) {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let kind = str_of(&spec, "type");
    let ports = list_of(&spec, "ports");
    if ports.is_empty() && !is_headless(&spec) && kind != "ExternalName" {
        out.push(required("spec.ports", ""));
    }
    if kind == "ExternalName" {
        if !list_of(&spec, "clusterIPs").is_empty() {
            out.push(forbidden(
                "spec.clusterIPs",
                "may not be set for ExternalName services",
            ));
        }
        let cname = str_of(&spec, "externalName");
        let cname = cname.strip_suffix('.').unwrap_or(cname);
        if cname.is_empty() {
            out.push(required("spec.externalName", ""));
        } else if let Some(msg) = dns_subdomain_error(cname) {
            out.push(invalid("spec.externalName", Bad::Str(cname), &msg));
        }
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        validate_port(
            port,
            ports.len() > 1,
            &mut names,
            &index("spec.ports", i),
            out,
        );
    }
    validate_cluster_ips(&spec, out);
    validate_labels(spec.get("selector"), "spec.selector", out);
    super::pod::validate_enum(&spec, "sessionAffinity", AFFINITIES, "spec", out);
    super::pod::validate_enum(&spec, "type", TYPES, "spec", out);
    validate_node_ports(kind, ports, out);
}

/// One port: a name when there are several, a number, a protocol, a target.
fn validate_port<'a>(
    port: &'a Value,
    name_required: bool,
    names: &mut BTreeSet<&'a str>,
    path: &str,
    out: &mut Vec<Cause>,
) {
    let name = str_of(port, "name");
    let name_path = child(path, "name");
    if name.is_empty() {
        if name_required {
            out.push(required(&name_path, ""));
        }
    } else {
        if let Some(msg) = dns_label_error(name) {
            out.push(invalid(&name_path, Bad::Str(name), &msg));
        }
        if !names.insert(name) {
            out.push(duplicate(&name_path, Bad::Str(name)));
        }
    }
    let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
    if let Some(msg) = port_num_error(number) {
        out.push(invalid(&child(path, "port"), Bad::Int(number), msg));
    }
    match str_of(port, "protocol") {
        "" => out.push(required(&child(path, "protocol"), "")),
        p if PROTOCOLS.contains(&p) => {}
        p => out.push(not_supported(&child(path, "protocol"), p, PROTOCOLS)),
    }
    validate_port_num_or_name(port.get("targetPort"), &child(path, "targetPort"), out);
}

/// Node ports: forbidden on ClusterIP Services, in range, and no (protocol, port) twice.
fn validate_node_ports(kind: &str, ports: &[Value], out: &mut Vec<Cause>) {
    let mut node_ports = BTreeSet::new();
    let mut service_ports = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let at = index("spec.ports", i);
        let protocol = str_of(port, "protocol");
        let node_port = port.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if node_port != 0 {
            if kind == "ClusterIP" {
                let detail = "may not be used when `type` is 'ClusterIP'";
                out.push(forbidden(&child(&at, "nodePort"), detail));
            } else if let Some(msg) = port_num_error(node_port) {
                out.push(invalid(&child(&at, "nodePort"), Bad::Int(node_port), msg));
            }
            if !node_ports.insert((protocol, node_port)) {
                out.push(duplicate(&child(&at, "nodePort"), Bad::Int(node_port)));
            }
        }
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !service_ports.insert((protocol, number)) {
            let shown = format!(
                "core.ServicePort{{Name:\"\", Protocol:\"{protocol}\", AppProtocol:(*string)(nil), Port:{number}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}"
            );
            out.push(duplicate(&at, Bad::Raw(shown)));
        }
    }
}

/// `clusterIPs` begins with `clusterIP`, and each is `None` (alone) or an IP address.
fn validate_cluster_ips(spec: &Value, out: &mut Vec<Cause>) {
    let ips: Vec<&str> = list_of(spec, "clusterIPs")
        .iter()
        .map(|v| v.as_str().unwrap_or(""))
        .collect();
    let ip = str_of(spec, "clusterIP");
    if !ip.is_empty() && ips.first() != Some(&ip) {
        let detail = "first value must match `clusterIP`";
        out.push(invalid(
            "spec.clusterIPs",
            Bad::Raw(go_strings(&ips)),
            detail,
        ));
    }
    for (i, value) in ips.iter().enumerate() {
        let field = index("spec.clusterIPs", i);
        if *value == "None" {
            if ips.len() > 1 {
                let detail = "'None' must be the first and only value";
                out.push(invalid(&field, Bad::Raw(go_strings(&ips)), detail));
            }
        } else if value.parse::<std::net::IpAddr>().is_err() {
            let detail = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
            out.push(invalid(&field, Bad::Str(value), detail));
        }
    }
}

/// A list of strings as Go's `%#v` prints `[]string`.
fn go_strings(list: &[&str]) -> String {
    if list.is_empty() {
        return "[]string(nil)".into();
    }
    let items: Vec<String> = list.iter().map(|s| super::errors::go_quote(s)).collect();
    format!("[]string{{{}}}", items.join(", "))
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

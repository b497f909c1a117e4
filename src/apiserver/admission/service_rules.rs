//! What a Service must be, in the order of core's `ValidateService`: ports, types,
//! session affinity, cluster IPs and IP families, node ports and traffic policies.

use std::collections::BTreeSet;

use serde_json::Value;

use super::errors::{
    child, duplicate, forbidden, go_quote, index, invalid, list_of, not_supported, required,
    str_of, Bad,
};
use super::meta::validate_labels;
use super::names::{dns_label_error, dns_subdomain_error, port_num_error, qualified_name_errors};
use super::pod::validate_enum;
use super::pod_parts::{validate_port_num_or_name, PROTOCOLS};
use crate::apiserver::status::Cause;

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const AFFINITIES: &[&str] = &["ClientIP", "None"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const FAMILIES: &[&str] = &["IPv4", "IPv6"];
const FAMILY_POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];

/// Whether the Service is headless (`clusterIP: None`).
pub(super) fn is_headless(spec: &Value) -> bool {
    str_of(spec, "clusterIP") == "None"
}

/// A list of strings as Go's `%#v` prints `[]string`.
pub(super) fn go_strings(list: &[&str]) -> String {
    if list.is_empty() {
        return "[]string(nil)".into();
    }
    let items: Vec<String> = list.iter().map(|s| go_quote(s)).collect();
    format!("[]string{{{}}}", items.join(", "))
}

/// Checks a Service (create, and after the update rules on update).
pub(super) fn validate(obj: &Value, out: &mut Vec<Cause>) {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let kind = str_of(&spec, "type");
    let ports = list_of(&spec, "ports");
    if ports.is_empty() && !is_headless(&spec) && kind != "ExternalName" {
        out.push(required("spec.ports", ""));
    }
    validate_by_type(&spec, kind, out);
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
    validate_labels(spec.get("selector"), "spec.selector", out);
    validate_affinity(&spec, out);
    if kind != "ExternalName" {
        validate_cluster_ips(&spec, out);
    }
    for (i, ip) in list_of(&spec, "externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        if ip.parse::<std::net::IpAddr>().is_err() {
            let field = index("spec.externalIPs", i);
            out.push(invalid(&field, Bad::Str(ip), IP_DETAIL));
        }
    }
    validate_enum(&spec, "type", TYPES, "spec", out);
    validate_node_ports(kind, ports, out);
    if spec
        .get("allocateLoadBalancerNodePorts")
        .is_some_and(|v| !v.is_null())
        && kind != "LoadBalancer"
    {
        let detail = "may only be used when `type` is 'LoadBalancer'";
        out.push(forbidden("spec.allocateLoadBalancerNodePorts", detail));
    }
    validate_traffic_policies(&spec, kind, out);
}

const IP_DETAIL: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

/// What each type requires: no `None` for node ports, a DNS name for ExternalName.
fn validate_by_type(spec: &Value, kind: &str, out: &mut Vec<Cause>) {
    let first_ip = list_of(spec, "clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or("None");
    match kind {
        "LoadBalancer" | "NodePort" if is_headless(spec) => {
            let detail = format!("may not be set to 'None' for {kind} services");
            out.push(invalid("spec.clusterIPs[0]", Bad::Str(first_ip), &detail));
        }
        "ExternalName" => {
            let detail = "may not be set for ExternalName services";
            for key in ["clusterIPs", "ipFamilies"] {
                if !list_of(spec, key).is_empty() {
                    out.push(forbidden(&child("spec", key), detail));
                }
            }
            if spec.get("ipFamilyPolicy").is_some_and(|v| !v.is_null()) {
                out.push(forbidden("spec.ipFamilyPolicy", detail));
            }
            let cname = str_of(spec, "externalName");
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                out.push(required("spec.externalName", ""));
            } else if let Some(msg) = dns_subdomain_error(cname) {
                out.push(invalid("spec.externalName", Bad::Str(cname), &msg));
            }
        }
        _ => {}
    }
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
    if let Some(app) = port.get("appProtocol").and_then(Value::as_str) {
        for msg in qualified_name_errors(app) {
            out.push(invalid(&child(path, "appProtocol"), Bad::Str(app), &msg));
        }
    }
}

/// `sessionAffinity`, and its config only with ClientIP.
fn validate_affinity(spec: &Value, out: &mut Vec<Cause>) {
    validate_enum(spec, "sessionAffinity", AFFINITIES, "spec", out);
    let config = spec.get("sessionAffinityConfig").filter(|c| !c.is_null());
    match str_of(spec, "sessionAffinity") {
        "ClientIP" => {
            let timeout = config.and_then(|c| c.pointer("/clientIP/timeoutSeconds"));
            match timeout.and_then(Value::as_i64) {
                None => {
                    let field = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
                    out.push(required(field, "when session affinity type is ClientIP"));
                }
                Some(t) if !(1..=86400).contains(&t) => {
                    let field = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
                    let detail = "must be greater than 0 and less than 86400";
                    out.push(invalid(field, Bad::Int(t), detail));
                }
                Some(_) => {}
            }
        }
        "None" if config.is_some() => {
            let detail = "must not be set when session affinity is None";
            out.push(forbidden("spec.sessionAffinityConfig", detail));
        }
        _ => {}
    }
}

/// `clusterIPs` follows `clusterIP`; each is `None` (alone) or an IP; families known.
fn validate_cluster_ips(spec: &Value, out: &mut Vec<Cause>) {
    let ips: Vec<&str> = list_of(spec, "clusterIPs")
        .iter()
        .map(|v| v.as_str().unwrap_or(""))
        .collect();
    let shown = || Bad::Raw(go_strings(&ips));
    match (str_of(spec, "clusterIP"), ips.first()) {
        ("", Some(_)) => {
            let detail = "must be empty when `clusterIP` is not specified";
            out.push(invalid("spec.clusterIPs", shown(), detail));
        }
        ("", None) => {}
        (_, None) => out.push(required("spec.clusterIPs", "")),
        (ip, Some(first)) if ip != *first => {
            out.push(invalid(
                "spec.clusterIPs",
                shown(),
                "first value must match `clusterIP`",
            ));
        }
        _ => {}
    }
    let mut seen = BTreeSet::new();
    for (i, family) in list_of(spec, "ipFamilies").iter().enumerate() {
        let family = family.as_str().unwrap_or("");
        let field = index("spec.ipFamilies", i);
        if !FAMILIES.contains(&family) {
            out.push(not_supported(&field, family, FAMILIES));
        }
        if !seen.insert(family) {
            out.push(duplicate(&field, Bad::Str(family)));
        }
    }
    if let Some(policy) = spec.get("ipFamilyPolicy").and_then(Value::as_str) {
        if !FAMILY_POLICIES.contains(&policy) {
            out.push(not_supported(
                "spec.ipFamilyPolicy",
                policy,
                FAMILY_POLICIES,
            ));
        }
    }
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && *ip == "None" {
            if ips.len() > 1 {
                let detail = "'None' must be the first and only value";
                out.push(invalid("spec.clusterIPs", shown(), detail));
            }
        } else if ip.parse::<std::net::IpAddr>().is_err() {
            out.push(invalid(
                &index("spec.clusterIPs", i),
                Bad::Str(ip),
                IP_DETAIL,
            ));
        }
    }
}

/// Node ports: forbidden on ClusterIP Services; no (protocol, port) twice.
fn validate_node_ports(kind: &str, ports: &[Value], out: &mut Vec<Cause>) {
    let node_port = |p: &Value| p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
    if kind == "ClusterIP" {
        for (i, _) in ports.iter().enumerate().filter(|(_, p)| node_port(p) != 0) {
            let detail = "may not be used when `type` is 'ClusterIP'";
            out.push(forbidden(
                &child(&index("spec.ports", i), "nodePort"),
                detail,
            ));
        }
    }
    let mut node_ports = BTreeSet::new();
    for (i, port) in ports.iter().enumerate().filter(|(_, p)| node_port(p) != 0) {
        if !node_ports.insert((str_of(port, "protocol"), node_port(port))) {
            let field = child(&index("spec.ports", i), "nodePort");
            out.push(duplicate(&field, Bad::Int(node_port(port))));
        }
    }
    let mut service_ports = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let protocol = str_of(port, "protocol");
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !service_ports.insert((protocol, number)) {
            let shown = format!(
                "core.ServicePort{{Name:\"\", Protocol:\"{protocol}\", AppProtocol:(*string)(nil), Port:{number}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}"
            );
            out.push(duplicate(&index("spec.ports", i), Bad::Raw(shown)));
        }
    }
}

/// `externalTrafficPolicy` only where the Service is reachable from outside;
/// `internalTrafficPolicy` for every type but ExternalName.
fn validate_traffic_policies(spec: &Value, kind: &str, out: &mut Vec<Cause>) {
    let external = kind == "LoadBalancer"
        || kind == "NodePort"
        || (kind == "ClusterIP" && !list_of(spec, "externalIPs").is_empty());
    let policy = str_of(spec, "externalTrafficPolicy");
    if !external && !policy.is_empty() {
        let detail = "may only be set for externally-accessible services";
        out.push(invalid(
            "spec.externalTrafficPolicy",
            Bad::Str(policy),
            detail,
        ));
    } else if external {
        validate_enum(spec, "externalTrafficPolicy", TRAFFIC_POLICIES, "spec", out);
    }
    match spec.get("internalTrafficPolicy").and_then(Value::as_str) {
        None if matches!(kind, "NodePort" | "LoadBalancer" | "ClusterIP") => {
            out.push(required("spec.internalTrafficPolicy", ""));
        }
        Some(p) if !TRAFFIC_POLICIES.contains(&p) => {
            out.push(not_supported(
                "spec.internalTrafficPolicy",
                p,
                TRAFFIC_POLICIES,
            ));
        }
        _ => {}
    }
}

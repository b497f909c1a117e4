//! The parts of a pod spec with rules of their own: container ports, resource
//! requirements, volumes and volume mounts.

use std::collections::BTreeSet;

use serde_json::Value;

use super::errors::{
    child, duplicate, forbidden, index, invalid, not_found, not_supported, required, str_of, Bad,
};
use super::names::{dns_label_error, port_name_errors, port_num_error, qualified_name_errors};
use crate::apiserver::status::Cause;
use crate::k8s::quantity::Quantity;

/// The protocols of container and service ports.
pub(super) const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// Resources a container may name without a domain prefix.
const STANDARD_CONTAINER_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// The kinds of volume source a volume may have (one of them).
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

/// Container ports: names unique IANA names, numbers in range, a known protocol.
pub(super) fn validate_ports(ports: &[Value], path: &str, out: &mut Vec<Cause>) {
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let at = index(path, i);
        let name = str_of(port, "name");
        if !name.is_empty() {
            let errs = port_name_errors(name);
            for msg in &errs {
                out.push(invalid(&child(&at, "name"), Bad::Str(name), msg));
            }
            if errs.is_empty() && !names.insert(name) {
                out.push(duplicate(&child(&at, "name"), Bad::Str(name)));
            }
        }
        match port
            .get("containerPort")
            .and_then(Value::as_i64)
            .unwrap_or(0)
        {
            0 => out.push(required(&child(&at, "containerPort"), "")),
            n => push_port_num(n, &child(&at, "containerPort"), out),
        }
        match port.get("hostPort").and_then(Value::as_i64).unwrap_or(0) {
            0 => {}
            n => push_port_num(n, &child(&at, "hostPort"), out),
        }
        match str_of(port, "protocol") {
            "" => out.push(required(&child(&at, "protocol"), "")),
            p if PROTOCOLS.contains(&p) => {}
            p => out.push(not_supported(&child(&at, "protocol"), p, PROTOCOLS)),
        }
    }
}

fn push_port_num(n: i64, field: &str, out: &mut Vec<Cause>) {
    if let Some(msg) = port_num_error(n) {
        out.push(invalid(field, Bad::Int(n), msg));
    }
}

/// A port given by number or by name (`targetPort`, probe ports).
pub(super) fn validate_port_num_or_name(port: Option<&Value>, field: &str, out: &mut Vec<Cause>) {
    match port {
        Some(Value::Number(n)) => push_port_num(n.as_i64().unwrap_or(0), field, out),
        Some(Value::String(name)) => {
            for msg in port_name_errors(name) {
                out.push(invalid(field, Bad::Str(name), &msg));
            }
        }
        _ => {}
    }
}

/// Limits and requests: known names, quantities that parse, are not negative, and
/// requests no larger than limits.
pub(super) fn validate_resources(resources: &Value, path: &str, out: &mut Vec<Cause>) {
    let limits_path = child(path, "limits");
    let requests_path = child(path, "requests");
    let limits = amounts(resources.get("limits"), &limits_path, out);
    let requests = amounts(resources.get("requests"), &requests_path, out);
    for (name, text, request) in &requests {
        let native = !name.contains('/') || name.starts_with("kubernetes.io/");
        let overcommit = native && !name.starts_with("hugepages-");
        let Some((_, limit_text, limit)) = limits.iter().find(|(n, _, _)| n == name) else {
            if !overcommit {
                let detail = "Limit must be set for non overcommitable resources";
                out.push(required(&limits_path, detail));
            }
            continue;
        };
        if !overcommit && request != limit {
            let detail = format!("must be equal to {name} limit of {limit_text}");
            out.push(invalid(&requests_path, Bad::Str(text), &detail));
        } else if request > limit {
            let detail = format!("must be less than or equal to {name} limit of {limit_text}");
            out.push(invalid(&requests_path, Bad::Str(text), &detail));
        }
    }
}

/// The parsed entries of a resource list, reporting the bad ones.
fn amounts(
    list: Option<&Value>,
    path: &str,
    out: &mut Vec<Cause>,
) -> Vec<(String, String, Quantity)> {
    let mut parsed = Vec::new();
    let Some(list) = list.and_then(Value::as_object) else {
        return parsed;
    };
    for (name, value) in list {
        let field = index(path, name);
        validate_resource_name(name, &field, out);
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match Quantity::parse(&text) {
            Err(e) => out.push(invalid(&field, Bad::Str(&text), &e.to_string())),
            Ok(q) if q.is_negative() => {
                let detail = "must be greater than or equal to 0";
                out.push(invalid(&field, Bad::Str(&text), detail));
            }
            Ok(q) if is_extended(name) && q.nanos() % 1_000_000_000 != 0 => {
                out.push(invalid(
                    &field,
                    Bad::Raw(text.clone()),
                    "must be an integer",
                ));
            }
            Ok(q) => parsed.push((name.clone(), text, q)),
        }
    }
    parsed
}

/// Extended resources (`example.com/gpu`) come in whole units.
fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.starts_with("kubernetes.io/") && !name.starts_with("requests.")
}

/// A container resource is standard (`cpu`, `memory`, `hugepages-*`, …) or qualified.
fn validate_resource_name(name: &str, field: &str, out: &mut Vec<Cause>) {
    for msg in qualified_name_errors(name) {
        out.push(invalid(field, Bad::Str(name), &msg));
    }
    let standard = STANDARD_CONTAINER_RESOURCES.contains(&name) || name.starts_with("hugepages-");
    if !name.contains('/') && !standard {
        let detail = "must be a standard resource for containers";
        out.push(invalid(field, Bad::Str(name), detail));
    }
}

/// Volumes: unique DNS-label names and exactly one source. Returns the names.
pub(super) fn validate_volumes(
    volumes: &[Value],
    path: &str,
    out: &mut Vec<Cause>,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let at = index(path, i);
        let sources: Vec<&str> = VOLUME_SOURCES
            .iter()
            .copied()
            .filter(|k| volume.get(*k).is_some_and(|v| !v.is_null()))
            .collect();
        match sources.as_slice() {
            [] => out.push(required(&at, "must specify a volume type")),
            [_] => {}
            [_, rest @ ..] => {
                for key in rest {
                    let detail = "may not specify more than 1 volume type";
                    out.push(forbidden(&child(&at, key), detail));
                }
            }
        }
        let name = str_of(volume, "name");
        let name_path = child(&at, "name");
        if name.is_empty() {
            out.push(required(&name_path, ""));
        } else if let Some(msg) = dns_label_error(name) {
            out.push(invalid(&name_path, Bad::Str(name), &msg));
        }
        if !names.insert(name.to_string()) {
            out.push(duplicate(&name_path, Bad::Str(name)));
        }
    }
    names
}

/// Volume mounts name a volume of the pod and unique mount paths.
pub(super) fn validate_mounts(
    mounts: &[Value],
    volumes: &BTreeSet<String>,
    path: &str,
    out: &mut Vec<Cause>,
) {
    let mut paths = BTreeSet::new();
    for (i, mount) in mounts.iter().enumerate() {
        let at = index(path, i);
        let name = str_of(mount, "name");
        if name.is_empty() {
            out.push(required(&child(&at, "name"), ""));
        }
        if !volumes.contains(name) {
            out.push(not_found(&child(&at, "name"), name));
        }
        let mount_path = str_of(mount, "mountPath");
        if mount_path.is_empty() {
            out.push(required(&child(&at, "mountPath"), ""));
        }
        if !paths.insert(mount_path) {
            let field = child(&at, "mountPath");
            out.push(invalid(&field, Bad::Str(mount_path), "must be unique"));
        }
    }
}

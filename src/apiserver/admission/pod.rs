//! Pod spec validation, as core's `ValidatePodSpec` does it for the fields people write:
//! containers and init containers, volumes, policies and scheduling fields. The parts of
//! a container live in `pod_parts.rs`.

use std::collections::BTreeSet;

use serde_json::Value;

use super::errors::{
    child, duplicate, index, invalid, list_of, nonnegative, not_supported, required, str_of, Bad,
};
use super::meta::validate_labels;
use super::names::dns_label_error;
use super::pod_parts::{
    validate_mounts, validate_ports, validate_probe, validate_resources, validate_volumes,
};
use crate::apiserver::status::Cause;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];

/// Checks the pod spec `spec` found at `path` (`spec`, `spec.template.spec`, …).
pub(super) fn validate_pod_spec(spec: &Value, path: &str, out: &mut Vec<Cause>) {
    let volumes = validate_volumes(list_of(spec, "volumes"), &child(path, "volumes"), out);
    let containers = list_of(spec, "containers");
    let containers_path = child(path, "containers");
    let mut names = BTreeSet::new();
    if containers.is_empty() {
        out.push(required(&containers_path, ""));
    }
    for (i, c) in containers.iter().enumerate() {
        validate_container(c, &index(&containers_path, i), &volumes, &mut names, out);
    }
    let init_path = child(path, "initContainers");
    for (i, c) in list_of(spec, "initContainers").iter().enumerate() {
        validate_container(c, &index(&init_path, i), &volumes, &mut names, out);
    }
    validate_enum(spec, "restartPolicy", RESTART_POLICIES, path, out);
    validate_enum(spec, "dnsPolicy", DNS_POLICIES, path, out);
    nonnegative(spec, "terminationGracePeriodSeconds", path, out);
    if let Some(n) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64) {
        if !(1..=i64::from(i32::MAX)).contains(&n) {
            let field = child(path, "activeDeadlineSeconds");
            out.push(invalid(
                &field,
                Bad::Int(n),
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    validate_labels(spec.get("nodeSelector"), &child(path, "nodeSelector"), out);
    for key in ["serviceAccountName", "nodeName"] {
        let value = str_of(spec, key);
        if let (false, Some(msg)) = (value.is_empty(), dns_subdomain(value)) {
            out.push(invalid(&child(path, key), Bad::Str(value), &msg));
        }
    }
}

fn dns_subdomain(name: &str) -> Option<String> {
    super::names::dns_subdomain_error(name)
}

/// An enumerated string field: required, and one of `allowed`.
pub(super) fn validate_enum(
    obj: &Value,
    key: &str,
    allowed: &[&str],
    path: &str,
    out: &mut Vec<Cause>,
) {
    let field = child(path, key);
    match obj.get(key).and_then(Value::as_str).unwrap_or("") {
        "" => out.push(required(&field, "")),
        v if allowed.contains(&v) => {}
        v => out.push(not_supported(&field, v, allowed)),
    }
}

/// One container (regular or init): name, image, ports, mounts, policy, resources and
/// probes. `names` gathers container names across both lists.
fn validate_container(
    c: &Value,
    path: &str,
    volumes: &BTreeSet<String>,
    names: &mut BTreeSet<String>,
    out: &mut Vec<Cause>,
) {
    let name = str_of(c, "name");
    let name_path = child(path, "name");
    if name.is_empty() {
        out.push(required(&name_path, ""));
    } else if let Some(msg) = dns_label_error(name) {
        out.push(invalid(&name_path, Bad::Str(name), &msg));
    }
    if !names.insert(name.to_string()) {
        out.push(duplicate(&name_path, Bad::Str(name)));
    }
    let image = str_of(c, "image");
    if image.is_empty() {
        out.push(required(&child(path, "image"), ""));
    } else if image.trim() != image {
        let detail = "must not have leading or trailing whitespace";
        out.push(invalid(&child(path, "image"), Bad::Str(image), detail));
    }
    validate_ports(list_of(c, "ports"), &child(path, "ports"), out);
    validate_mounts(
        list_of(c, "volumeMounts"),
        volumes,
        &child(path, "volumeMounts"),
        out,
    );
    validate_enum(c, "imagePullPolicy", PULL_POLICIES, path, out);
    if let Some(resources) = c.get("resources") {
        validate_resources(resources, &child(path, "resources"), out);
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = c.get(key).filter(|p| !p.is_null()) {
            let probe_path = child(path, key);
            validate_probe(probe, &probe_path, out);
            let success = probe.get("successThreshold").and_then(Value::as_i64);
            if key != "readinessProbe" && success.is_some_and(|n| n != 1) {
                let field = child(&probe_path, "successThreshold");
                out.push(invalid(&field, Bad::Int(success.unwrap_or(0)), "must be 1"));
            }
        }
    }
}

//! Pod spec validation, as core's `ValidatePodSpec` does it for the fields people write:
//! volumes, containers, policies, scheduling fields and tolerations, in upstream's order.
//! Containers live in `pod_container.rs`, their parts in `pod_parts.rs`.

use serde_json::Value;

use super::errors::{child, index, invalid, list_of, not_supported, required, str_of, Bad};
use super::meta::validate_labels;
use super::names::{
    dns_label_error, dns_subdomain_error, label_value_errors, qualified_name_errors,
};
use super::pod_container::{validate_containers, validate_init_containers};
use super::pod_parts::validate_volumes;
use crate::apiserver::status::Cause;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PREEMPTION_POLICIES: &[&str] = &["PreemptLowerPriority", "Never"];
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Checks the pod spec `spec` found at `path` (`spec`, `spec.template.spec`, …);
/// `is_pod` adds the rules only a Pod (not a template) has.
pub(super) fn validate_pod_spec(spec: &Value, path: &str, is_pod: bool, out: &mut Vec<Cause>) {
    if spec
        .get("terminationGracePeriodSeconds")
        .is_none_or(Value::is_null)
    {
        out.push(required(&child(path, "terminationGracePeriodSeconds"), ""));
    }
    let volumes = validate_volumes(list_of(spec, "volumes"), &child(path, "volumes"), out);
    let names = validate_containers(spec, path, &volumes, out);
    validate_init_containers(spec, path, names, &volumes, out);
    validate_host_network(spec, path, is_pod, out);
    validate_enum(spec, "restartPolicy", RESTART_POLICIES, path, out);
    validate_enum(spec, "dnsPolicy", DNS_POLICIES, path, out);
    validate_labels(spec.get("nodeSelector"), &child(path, "nodeSelector"), out);
    for key in ["serviceAccountName", "nodeName"] {
        check_name(spec, key, path, dns_subdomain_error, out);
    }
    if let Some(n) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64) {
        if !(1..=i64::from(i32::MAX)).contains(&n) {
            let field = child(path, "activeDeadlineSeconds");
            let detail = "must be between 1 and 2147483647, inclusive";
            out.push(invalid(&field, Bad::Int(n), detail));
        }
    }
    for key in ["hostname", "subdomain"] {
        check_name(spec, key, path, dns_label_error, out);
    }
    validate_tolerations(
        list_of(spec, "tolerations"),
        &child(path, "tolerations"),
        out,
    );
    check_name(spec, "priorityClassName", path, dns_subdomain_error, out);
    if spec.get("preemptionPolicy").is_some_and(|p| !p.is_null()) {
        validate_enum(spec, "preemptionPolicy", PREEMPTION_POLICIES, path, out);
    }
    if is_pod {
        for key in ["containers", "initContainers"] {
            let list_path = child(path, key);
            for (i, c) in list_of(spec, key).iter().enumerate() {
                let image = str_of(c, "image");
                if image.trim() != image {
                    let field = child(&index(&list_path, i), "image");
                    let detail = "must not have leading or trailing whitespace";
                    out.push(invalid(&field, Bad::Str(image), detail));
                }
            }
        }
    }
}

/// A non-empty `spec[key]` must pass `check`.
fn check_name(
    spec: &Value,
    key: &str,
    path: &str,
    check: fn(&str) -> Option<String>,
    out: &mut Vec<Cause>,
) {
    let value = str_of(spec, key);
    if let (false, Some(msg)) = (value.is_empty(), check(value)) {
        out.push(invalid(&child(path, key), Bad::Str(value), &msg));
    }
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

/// With `hostNetwork`, a host port must equal its container port (a template may
/// leave it 0, to be defaulted when the Pod is made).
fn validate_host_network(spec: &Value, path: &str, is_pod: bool, out: &mut Vec<Cause>) {
    if spec.get("hostNetwork") != Some(&Value::Bool(true)) {
        return;
    }
    let containers_path = child(path, "containers");
    for (i, c) in list_of(spec, "containers").iter().enumerate() {
        let ports_path = child(&index(&containers_path, i), "ports");
        for (j, port) in list_of(c, "ports").iter().enumerate() {
            let host = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
            let container = port
                .get("containerPort")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if (is_pod || host != 0) && host != container {
                let field = child(&index(&ports_path, j), "hostPort");
                let detail = "must match `containerPort` when `hostNetwork` is true";
                out.push(invalid(&field, Bad::Int(host), detail));
            }
        }
    }
}

/// Tolerations, as `ValidateTolerations` checks them.
pub(super) fn validate_tolerations(tolerations: &[Value], path: &str, out: &mut Vec<Cause>) {
    for (i, t) in tolerations.iter().enumerate() {
        let at = index(path, i);
        let key = str_of(t, "key");
        let operator = str_of(t, "operator");
        let value = str_of(t, "value");
        let effect = str_of(t, "effect");
        for msg in qualified_name_errors(key)
            .into_iter()
            .filter(|_| !key.is_empty())
        {
            out.push(invalid(&child(&at, "key"), Bad::Str(key), &msg));
        }
        if key.is_empty() && operator != "Exists" {
            let detail = "operator must be Exists when `key` is empty, which means \"match all values and all keys\"";
            out.push(invalid(&child(&at, "operator"), Bad::Str(operator), detail));
        }
        if t.get("tolerationSeconds").is_some_and(|s| !s.is_null()) && effect != "NoExecute" {
            let detail = "effect must be 'NoExecute' when `tolerationSeconds` is set";
            out.push(invalid(&child(&at, "effect"), Bad::Str(effect), detail));
        }
        match operator {
            "Equal" | "" => {
                let errs = label_value_errors(value);
                if !errs.is_empty() {
                    let field = child(&at, "operator");
                    out.push(invalid(&field, Bad::Str(value), &errs.join(";")));
                }
            }
            "Exists" if !value.is_empty() => {
                let detail = "value must be empty when `operator` is 'Exists'";
                out.push(invalid(&child(&at, "operator"), Bad::Str(value), detail));
            }
            "Exists" => {}
            other => {
                let field = child(&at, "operator");
                out.push(not_supported(&field, other, &["Equal", "Exists"]));
            }
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            out.push(not_supported(&child(&at, "effect"), effect, TAINT_EFFECTS));
        }
    }
}

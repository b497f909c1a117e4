//! Containers and init containers: names, images, policies, env, probes and lifecycle
//! hooks, and host ports that collide; as core's `validateContainers`,
//! `validateInitContainers` and `validateContainerCommon` check them.

use std::collections::BTreeSet;

use serde_json::Value;

use super::errors::{
    child, duplicate, forbidden, index, invalid, list_of, nonnegative, not_supported, required,
    str_of, Bad,
};
use super::names::dns_label_error;
use super::pod::validate_enum;
use super::pod_parts::{
    validate_mounts, validate_port_num_or_name, validate_ports, validate_resources,
};
use crate::apiserver::status::Cause;

const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
const PROBES: [&str; 3] = ["livenessProbe", "readinessProbe", "startupProbe"];

/// The regular containers of `spec`; returns their names.
pub(super) fn validate_containers<'a>(
    spec: &'a Value,
    path: &str,
    volumes: &BTreeSet<String>,
    out: &mut Vec<Cause>,
) -> BTreeSet<&'a str> {
    let list_path = child(path, "containers");
    let containers = list_of(spec, "containers");
    let mut names = BTreeSet::new();
    if containers.is_empty() {
        out.push(required(&list_path, ""));
        return names;
    }
    let grace = spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    for (i, c) in containers.iter().enumerate() {
        let at = index(&list_path, i);
        validate_common(c, &at, volumes, out);
        let name = str_of(c, "name");
        if !names.insert(name) {
            out.push(duplicate(&child(&at, "name"), Bad::Str(name)));
        }
        validate_hooks_and_probes(c, &at, grace, out);
        if c.get("restartPolicy").is_some_and(|p| !p.is_null()) {
            let detail = "may not be set for non-init containers";
            out.push(forbidden(&child(&at, "restartPolicy"), detail));
        }
    }
    host_port_conflicts(containers, &list_path, out);
    names
}

/// The init containers of `spec`, whose names must differ from `names` too.
pub(super) fn validate_init_containers<'a>(
    spec: &'a Value,
    path: &str,
    mut names: BTreeSet<&'a str>,
    volumes: &BTreeSet<String>,
    out: &mut Vec<Cause>,
) {
    let list_path = child(path, "initContainers");
    let grace = spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    for (i, c) in list_of(spec, "initContainers").iter().enumerate() {
        let at = index(&list_path, i);
        validate_common(c, &at, volumes, out);
        let policy = c.get("restartPolicy").and_then(Value::as_str);
        if let Some(p) = policy.filter(|p| *p != "Always") {
            out.push(not_supported(&child(&at, "restartPolicy"), p, &["Always"]));
        }
        let name = str_of(c, "name");
        if names.contains(name) {
            out.push(duplicate(&child(&at, "name"), Bad::Str(name)));
        } else if !name.is_empty() {
            names.insert(name);
        }
        host_port_conflicts(std::slice::from_ref(c), &list_path, out);
        if policy == Some("Always") {
            validate_hooks_and_probes(c, &at, grace, out);
            continue;
        }
        for key in ["lifecycle"].into_iter().chain(PROBES) {
            if c.get(key).is_some_and(|v| !v.is_null()) {
                let detail = "may not be set for init containers without restartPolicy=Always";
                out.push(forbidden(&child(&at, key), detail));
            }
        }
    }
}

/// What every kind of container is checked for.
fn validate_common(c: &Value, path: &str, volumes: &BTreeSet<String>, out: &mut Vec<Cause>) {
    let name = str_of(c, "name");
    let name_path = child(path, "name");
    if name.is_empty() {
        out.push(required(&name_path, ""));
    } else if let Some(msg) = dns_label_error(name) {
        out.push(invalid(&name_path, Bad::Str(name), &msg));
    }
    if str_of(c, "image").is_empty() {
        out.push(required(&child(path, "image"), ""));
    }
    validate_enum(c, "terminationMessagePolicy", MESSAGE_POLICIES, path, out);
    validate_ports(list_of(c, "ports"), &child(path, "ports"), out);
    validate_env(list_of(c, "env"), &child(path, "env"), out);
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
}

/// Env vars: a name of printable ASCII without `=`, and at most one value source.
fn validate_env(env: &[Value], path: &str, out: &mut Vec<Cause>) {
    for (i, var) in env.iter().enumerate() {
        let at = index(path, i);
        let name = str_of(var, "name");
        if name.is_empty() {
            out.push(required(&child(&at, "name"), ""));
        } else if name.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
            let detail = "a valid environment variable name must consist only of printable ASCII characters other than '='";
            out.push(invalid(&child(&at, "name"), Bad::Str(name), detail));
        }
        let Some(from) = var.get("valueFrom").filter(|v| !v.is_null()) else {
            continue;
        };
        let sources = [
            "fieldRef",
            "resourceFieldRef",
            "configMapKeyRef",
            "secretKeyRef",
        ]
        .iter()
        .filter(|k| from.get(**k).is_some_and(|v| !v.is_null()))
        .count();
        let detail = if sources == 0 {
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"
        } else if !str_of(var, "value").is_empty() {
            "may not be specified when `value` is not empty"
        } else if sources > 1 {
            "may not have more than one field specified at a time"
        } else {
            continue;
        };
        out.push(invalid(&child(&at, "valueFrom"), Bad::Str(""), detail));
    }
}

/// Lifecycle hooks and the three probes of a container that runs alongside others.
fn validate_hooks_and_probes(c: &Value, path: &str, grace: Option<i64>, out: &mut Vec<Cause>) {
    if let Some(lifecycle) = c.get("lifecycle").filter(|l| !l.is_null()) {
        let lifecycle_path = child(path, "lifecycle");
        for key in ["postStart", "preStop"] {
            if let Some(hook) = lifecycle.get(key).filter(|h| !h.is_null()) {
                validate_handler(hook, &child(&lifecycle_path, key), grace, out);
            }
        }
    }
    for key in PROBES {
        let Some(probe) = c.get(key).filter(|p| !p.is_null()) else {
            continue;
        };
        let probe_path = child(path, key);
        validate_probe(probe, &probe_path, out);
        let success = probe
            .get("successThreshold")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if key != "readinessProbe" && success != 1 {
            let field = child(&probe_path, "successThreshold");
            out.push(invalid(&field, Bad::Int(success), "must be 1"));
        }
        let probe_grace = probe
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        if let (true, Some(g)) = (key == "readinessProbe", probe_grace) {
            let field = child(&probe_path, "terminationGracePeriodSeconds");
            out.push(invalid(
                &field,
                Bad::Int(g),
                "must not be set for readinessProbes",
            ));
        }
    }
}

/// A probe: one handler, counts not negative, a positive grace period if any.
fn validate_probe(probe: &Value, path: &str, out: &mut Vec<Cause>) {
    validate_handler(probe, path, None, out);
    for key in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        nonnegative(probe, key, path, out);
    }
    let grace = probe
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    if let Some(g) = grace.filter(|g| *g <= 0) {
        let field = child(path, "terminationGracePeriodSeconds");
        out.push(invalid(&field, Bad::Int(g), "must be greater than 0"));
    }
}

/// Exactly one of exec, httpGet, tcpSocket, grpc (probes) or sleep (hooks).
fn validate_handler(handler: &Value, path: &str, grace: Option<i64>, out: &mut Vec<Cause>) {
    let mut handlers = 0;
    for key in ["exec", "httpGet", "tcpSocket", "grpc", "sleep"] {
        let Some(action) = handler.get(key).filter(|h| !h.is_null()) else {
            continue;
        };
        let at = child(path, key);
        if handlers > 0 {
            out.push(forbidden(&at, "may not specify more than 1 handler type"));
            continue;
        }
        handlers += 1;
        match key {
            "exec" if list_of(action, "command").is_empty() => {
                out.push(required(&child(&at, "command"), ""));
            }
            "httpGet" => {
                if str_of(action, "path").is_empty() {
                    out.push(required(&child(&at, "path"), ""));
                }
                validate_port_num_or_name(action.get("port"), &child(&at, "port"), out);
                let scheme = str_of(action, "scheme");
                if scheme != "HTTP" && scheme != "HTTPS" {
                    out.push(not_supported(
                        &child(&at, "scheme"),
                        scheme,
                        &["HTTP", "HTTPS"],
                    ));
                }
            }
            "tcpSocket" | "grpc" => {
                validate_port_num_or_name(action.get("port"), &child(&at, "port"), out);
            }
            "sleep" => {
                let seconds = action.get("seconds").and_then(Value::as_i64).unwrap_or(0);
                if let Some(g) = grace.filter(|g| seconds < 0 || seconds > *g) {
                    let detail = format!(
                        "must be non-negative and less than terminationGracePeriodSeconds ({g})"
                    );
                    out.push(invalid(&at, Bad::Int(seconds), &detail));
                }
            }
            _ => {}
        }
    }
    if handlers == 0 {
        out.push(required(path, "must specify a handler type"));
    }
}

/// The same host port, protocol and host IP twice among `containers`.
fn host_port_conflicts(containers: &[Value], path: &str, out: &mut Vec<Cause>) {
    let mut seen = BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let ports_path = child(&index(path, i), "ports");
        for (j, port) in list_of(c, "ports").iter().enumerate() {
            let host = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
            if host == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{host}",
                str_of(port, "protocol"),
                str_of(port, "hostIP")
            );
            if !seen.insert(key.clone()) {
                let field = child(&index(&ports_path, j), "hostPort");
                out.push(duplicate(&field, Bad::Str(&key)));
            }
        }
    }
}

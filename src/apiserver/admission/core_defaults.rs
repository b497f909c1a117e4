//! Defaults of the smaller core kinds (`v1`): Namespaces, Secrets, persistent volumes
//! and claims, and Endpoints, as `pkg/apis/core/v1/defaults.go` sets them.

use serde_json::{json, Value};

use super::errors::{default_str, object_entry, objects_mut};

/// A Namespace is labelled with its own name and starts Active.
pub(super) fn default_namespace(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    if !name.is_empty() {
        let labels = object_entry(o, "metadata").and_then(|m| object_entry(m, "labels"));
        if let Some(labels) = labels {
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    if let Some(status) = object_entry(o, "status") {
        default_str(status, "phase", "Active");
    }
}

/// A Secret without a type is Opaque.
pub(super) fn default_secret(obj: &mut Value) {
    if let Some(o) = obj.as_object_mut() {
        default_str(o, "type", "Opaque");
    }
}

/// A claim is Pending and, unless it says otherwise, a filesystem.
pub(super) fn default_claim(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    if let Some(spec) = object_entry(o, "spec") {
        default_str(spec, "volumeMode", "Filesystem");
    }
    if let Some(status) = object_entry(o, "status") {
        default_str(status, "phase", "Pending");
    }
}

/// A volume is Pending, retained when released, and a filesystem.
pub(super) fn default_volume(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    if let Some(spec) = object_entry(o, "spec") {
        default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
        default_str(spec, "volumeMode", "Filesystem");
    }
    if let Some(status) = object_entry(o, "status") {
        default_str(status, "phase", "Pending");
    }
}

/// Endpoint ports speak TCP unless they say otherwise.
pub(super) fn default_endpoints(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    for subset in objects_mut(o, "subsets") {
        for port in objects_mut(subset, "ports") {
            default_str(port, "protocol", "TCP");
        }
    }
}

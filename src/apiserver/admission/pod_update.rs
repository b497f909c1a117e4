//! What may change in a Pod's spec once it exists: images, `activeDeadlineSeconds`
//! (downwards), added tolerations and a negative grace period raised to 1, as core's
//! `ValidatePodUpdate` allows. Everything else is refused with upstream's message.

use serde_json::{Map, Value};

use super::errors::{child, forbidden, index, invalid, list_of, str_of, Bad};
use crate::apiserver::status::Cause;

/// Upstream's refusal; upstream follows it with a `cmp.Diff` of Go structs, for which
/// this module gives the changed fields as JSON.
pub(super) const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Checks the update of a Pod's spec from `old` to `new`, in `ValidatePodUpdate`'s order
/// and with its early stops.
pub(super) fn validate_pod_spec_update(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    let (Some(new_spec), Some(old_spec)) = (new.get("spec"), old.get("spec")) else {
        return;
    };
    for key in ["containers", "initContainers"] {
        if list_of(new_spec, key).len() != list_of(old_spec, key).len() {
            let detail = "pod updates may not add or remove containers";
            out.push(forbidden(&child("spec", key), detail));
            return;
        }
    }
    if !validate_deadline(new_spec, old_spec, out) {
        return;
    }
    validate_tolerations(new_spec, old_spec, out);
    validate_scheduling_gates(new_spec, old_spec, out);
    let mut munged = new_spec.clone();
    if let Some(m) = munged.as_object_mut() {
        for key in ["containers", "initContainers"] {
            copy_images(m, old_spec, key);
        }
        for key in ["activeDeadlineSeconds", "tolerations", "schedulingGates"] {
            copy_field(m, old_spec, key);
        }
        let grace = |s: &Value| {
            s.get("terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        };
        if grace(old_spec).is_some_and(|g| g < 0) && grace(new_spec) == Some(1) {
            copy_field(m, old_spec, "terminationGracePeriodSeconds");
        }
    }
    let (munged, old_norm) = (normalized(&munged), normalized(old_spec));
    if munged != old_norm {
        let message = format!("{POD_UPDATE_FORBIDDEN}\n{}", spec_diff(&old_norm, &munged));
        out.push(forbidden("spec", &message));
    }
}

/// The top-level spec fields that differ, as `- old` / `+ new` lines of JSON.
fn spec_diff(old: &Value, new: &Value) -> String {
    let empty = Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut lines = vec!["  PodSpec{".to_string()];
    for key in keys.into_iter().filter(|k| old.get(*k) != new.get(*k)) {
        if let Some(v) = old.get(key) {
            lines.push(format!("- \t{key}: {v},"));
        }
        if let Some(v) = new.get(key) {
            lines.push(format!("+ \t{key}: {v},"));
        }
    }
    lines.push("  }".to_string());
    lines.join("\n")
}

/// `activeDeadlineSeconds` may be set or lowered, never removed or raised; false when
/// upstream stops checking.
fn validate_deadline(new: &Value, old: &Value, out: &mut Vec<Cause>) -> bool {
    let field = "spec.activeDeadlineSeconds";
    let old_value = old.get("activeDeadlineSeconds").and_then(Value::as_i64);
    match (
        old_value,
        new.get("activeDeadlineSeconds").and_then(Value::as_i64),
    ) {
        (_, Some(n)) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            let detail = "must be between 0 and 2147483647, inclusive";
            out.push(invalid(field, Bad::Int(n), detail));
            false
        }
        (Some(o), Some(n)) if n > o => {
            let detail = "must be less than or equal to previous value";
            out.push(invalid(field, Bad::Int(n), detail));
            false
        }
        (Some(_), None) => {
            let detail = "must not update from a positive integer to nil value";
            out.push(invalid(field, Bad::Raw("null".into()), detail));
            true
        }
        _ => true,
    }
}

/// Scheduling gates may only be removed.
fn validate_scheduling_gates(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    let old_names: Vec<&str> = list_of(old, "schedulingGates")
        .iter()
        .map(|g| str_of(g, "name"))
        .collect();
    for (i, gate) in list_of(new, "schedulingGates").iter().enumerate() {
        let name = str_of(gate, "name");
        if !old_names.contains(&name) {
            let field = child(&index("spec.schedulingGates", i), "name");
            let detail =
                format!("only deletion is allowed, but found new scheduling gate '{name}'");
            out.push(forbidden(&field, &detail));
        }
    }
}

/// Existing tolerations stay; only their `tolerationSeconds` may change.
fn validate_tolerations(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    let without_seconds = |t: &Value| {
        let mut t = t.clone();
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        t
    };
    let new_list: Vec<Value> = list_of(new, "tolerations")
        .iter()
        .map(without_seconds)
        .collect();
    if list_of(old, "tolerations")
        .iter()
        .any(|t| !new_list.contains(&without_seconds(t)))
    {
        let detail = "existing toleration can not be modified except its tolerationSeconds";
        out.push(forbidden("spec.tolerations", detail));
    }
}

/// Copies each container's image from `from` into `spec`.
fn copy_images(spec: &mut Map<String, Value>, from: &Value, key: &str) {
    let images: Vec<Option<Value>> = list_of(from, key)
        .iter()
        .map(|c| c.get("image").cloned())
        .collect();
    let Some(list) = spec.get_mut(key).and_then(Value::as_array_mut) else {
        return;
    };
    for (c, image) in list.iter_mut().zip(images) {
        if let (Some(c), Some(image)) = (c.as_object_mut(), image) {
            c.insert("image".into(), image);
        }
    }
}

fn copy_field(spec: &mut Map<String, Value>, from: &Value, key: &str) {
    match from.get(key) {
        Some(v) => spec.insert(key.to_string(), v.clone()),
        None => spec.remove(key),
    };
}

/// The value with nulls, empty lists and empty maps dropped, as Go's semantic equality
/// treats nil and empty alike.
pub(super) fn normalized(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), normalized(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(list) => Value::Array(list.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

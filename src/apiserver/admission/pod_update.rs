//! What may change in a Pod's spec once it exists: images, `activeDeadlineSeconds`
//! (downwards), added tolerations and a negative grace period raised to 1, as core's
//! `ValidatePodUpdate` allows. Everything else is refused with upstream's message.

use serde_json::{Map, Value};

use super::errors::{child, forbidden, invalid, list_of, Bad};
use crate::apiserver::status::Cause;

/// Upstream's refusal, without the `cmp.Diff` of Go structs it appends.
pub(super) const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Checks the update of a Pod's spec from `old` to `new`.
pub(super) fn validate_pod_spec_update(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    let (Some(new_spec), Some(old_spec)) = (new.get("spec"), old.get("spec")) else {
        return;
    };
    for key in ["containers", "initContainers"] {
        if list_of(new_spec, key).len() != list_of(old_spec, key).len() {
            let field = child("spec", key);
            out.push(forbidden(
                &field,
                "pod updates may not add or remove containers",
            ));
            return;
        }
    }
    validate_deadline(new_spec, old_spec, out);
    validate_tolerations(new_spec, old_spec, out);
    let mut munged = old_spec.clone();
    if let Some(m) = munged.as_object_mut() {
        for key in ["containers", "initContainers"] {
            copy_images(m, new_spec, key);
        }
        for key in ["activeDeadlineSeconds", "tolerations"] {
            copy_field(m, new_spec, key);
        }
        let old_grace = old_spec
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        let new_grace = new_spec
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
            copy_field(m, new_spec, "terminationGracePeriodSeconds");
        }
    }
    if normalized(&munged) != normalized(new_spec) {
        out.push(forbidden("spec", POD_UPDATE_FORBIDDEN));
    }
}

/// `activeDeadlineSeconds` may be set or lowered, never removed or raised.
fn validate_deadline(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    let field = "spec.activeDeadlineSeconds";
    let new_value = new.get("activeDeadlineSeconds").and_then(Value::as_i64);
    match (
        old.get("activeDeadlineSeconds").and_then(Value::as_i64),
        new_value,
    ) {
        (Some(_), None) => out.push(invalid(
            field,
            Bad::Raw("null".into()),
            "must not update from a positive integer to nil value",
        )),
        (Some(o), Some(n)) if n > o => out.push(invalid(
            field,
            Bad::Int(n),
            "must be less than or equal to previous value",
        )),
        _ => {}
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

/// Copies each container's image from `new` into `spec`.
fn copy_images(spec: &mut Map<String, Value>, new: &Value, key: &str) {
    let images: Vec<Option<Value>> = list_of(new, key)
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

fn copy_field(spec: &mut Map<String, Value>, new: &Value, key: &str) {
    match new.get(key) {
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

//! The move from client-side to server-side apply for `kubectl`, as upstream's
//! `lastAppliedManager` and `lastAppliedUpdater`: the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation vouches for fields.

use serde_json::Value;

use super::extract::{diff, root_slot, set_from_object};
use super::fieldset::{path_string, FieldSet};
use super::Conflict;

/// The only manager the migration applies to; others opt out by using another name.
pub const KUBECTL: &str = "kubectl";

/// The annotation client-side apply keeps.
pub const ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn annotation(obj: &Value) -> Option<&str> {
    obj.get("metadata")?
        .get("annotations")?
        .get(ANNOTATION)?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// The fields the annotation applied that the live object still has as applied: a
/// conflict on one of them is only client-side apply's ownership, not a real one.
fn allowed(live: &Value) -> Option<FieldSet> {
    let last: Value = serde_json::from_str(annotation(live)?).ok()?;
    let slot = root_slot(&last);
    let applied = set_from_object(&last, slot, false).ok()?;
    let d = diff(&last, live, slot);
    Some(applied.difference(&d.changed.union(&d.removed)))
}

/// The conflicts the annotation does not vouch for (all of them without one).
pub fn remaining(live: &Value, conflicts: Vec<Conflict>) -> Vec<Conflict> {
    let Some(allowed) = allowed(live) else {
        return conflicts;
    };
    let vouched: Vec<String> = allowed.paths().iter().map(|p| path_string(p)).collect();
    conflicts
        .into_iter()
        .filter(|c| !vouched.contains(&c.field))
        .collect()
}

/// Rewrites the annotation, if the object has one, to the applied configuration.
pub fn sync(obj: &mut Value, config: &Value) {
    if annotation(obj).is_none() {
        return;
    }
    let mut applied = config.clone();
    if let Some(annotations) = applied
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        annotations.remove(ANNOTATION);
    }
    let text = applied.to_string();
    if let Some(annotations) = obj
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        annotations.insert(ANNOTATION.into(), Value::String(text));
    }
}

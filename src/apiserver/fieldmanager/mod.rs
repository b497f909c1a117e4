//! Field management: `metadata.managedFields` and server-side apply, pure, on JSON values.
//!
//! Modelled on structured-merge-diff (`fieldpath`, `merge/update.go`) and kube-apiserver's
//! `handlers/fieldmanager`. Every write records who owns which fields: a create or update
//! gives its manager the fields it added or changed ([`on_create`], [`on_update`]); an
//! apply ([`apply`]) merges the applied configuration into the live object by the schema
//! of `crate::apiserver::patch`, removes the fields the applier stopped applying when no
//! one else owns them, and refuses to change a field another manager owns unless forced.
//! [`fieldset`] holds paths and the FieldsV1 encoding, [`extract`] the schema walk, and
//! [`merge`] the apply merge.

mod entries;
pub mod extract;
pub mod fieldset;
mod lastapplied;
pub mod merge;
#[cfg(test)]
mod tests;

use serde_json::{json, Value};

use self::entries::Entry;
use self::extract::{diff, root_slot, set_from_object, Slot};
use self::fieldset::{path_string, FieldSet};
use crate::apiserver::patch;
use crate::apiserver::status::{ApiError, Cause};

pub use self::fieldset::{Path, PathElement};

/// Who writes: the field manager of a request.
#[derive(Clone, Copy, Debug)]
pub struct Manager<'a> {
    /// `fieldManager` (or the user agent's program name).
    pub name: &'a str,
    /// The API version the request used (`apps/v1`).
    pub api_version: &'a str,
    /// The subresource written (`status`, `scale`), if any.
    pub subresource: Option<&'a str>,
    /// When, in RFC 3339.
    pub time: &'a str,
}

/// A field another manager owns and an apply would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The manager as upstream prints it: `"kubectl" using apps/v1` for an updater,
    /// `"kubectl"` for an applier, with `with subresource "status"` when it wrote one.
    pub manager: String,
    /// The field, as upstream prints paths: `.spec.replicas`, `.spec.containers[name="c"]`.
    pub field: String,
}

/// Why an apply failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields of the config that other managers own with other values (409).
    #[error("apply failed with {} conflict(s)", .0.len())]
    Conflicts(Vec<Conflict>),
    /// The config does not fit the schema (422), as a list item without its key.
    #[error("invalid apply configuration: {0}")]
    Invalid(String),
}

impl ApplyError {
    /// The API error: upstream's `NewConflictError` (409 with a cause per field), or 422
    /// naming the object (`group`, `kind`, `name`).
    pub fn into_api_error(self, group: &str, kind: &str, name: &str) -> ApiError {
        match self {
            ApplyError::Conflicts(conflicts) => {
                let causes = conflicts
                    .iter()
                    .map(|c| Cause {
                        reason: "FieldManagerConflict",
                        message: format!("conflict with {}", c.manager),
                        field: c.field.clone(),
                    })
                    .collect();
                ApiError::apply_conflict(conflict_message(&conflicts), causes)
            }
            ApplyError::Invalid(message) => {
                let cause = Cause {
                    reason: "FieldValueInvalid",
                    message: message.clone(),
                    field: String::new(),
                };
                ApiError::invalid(group, kind, name, vec![cause])
                    .with_message(format!("{kind} \"{name}\" is invalid: {message}"))
            }
        }
    }
}

/// Upstream's `getConflictMessage`.
fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager, only.field
        );
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort_unstable();
    managers.dedup();
    let mut lines = Vec::new();
    for m in managers {
        lines.push(format!("conflicts with {m}:"));
        for c in conflicts.iter().filter(|c| c.manager == m) {
            lines.push(format!("- {}", c.field));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// managedFields after a create (operation Update) by `mgr`: one entry owning every field
/// of `obj`. managedFields the client sent are kept, as upstream does, with `mgr`'s
/// fields taken from them.
pub fn on_create(obj: &mut Value, mgr: &Manager) {
    let empty = json!({
        "apiVersion": obj.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": obj.get("kind").cloned().unwrap_or(Value::Null),
    });
    on_update(&empty, obj, mgr);
}

/// managedFields after an update from `old` to `new` (PUT, JSON/merge/strategic patch) by
/// `mgr` with operation Update: fields that changed (added or modified) move to `mgr`;
/// fields removed leave every set; other entries keep the rest; empty entries are dropped.
/// If `new` carries managedFields different from `old`'s, they are taken as given (a
/// client resetting them; `[]` or `[{}]` clears them), as kube-apiserver does; on a
/// subresource they are ignored.
pub fn on_update(old: &Value, new: &mut Value, mgr: &Manager) {
    let mut list = if mgr.subresource.is_some() {
        entries::decode_or_empty(old)
    } else {
        match entries::raw(new) {
            Some(raw) if entries::is_reset(raw) => Vec::new(),
            Some(raw) => entries::decode(raw).unwrap_or_else(|_| entries::decode_or_empty(old)),
            None => entries::decode_or_empty(old),
        }
    };
    entries::strip(new);
    let slot = root_slot(new);
    let mut old_clean = old.clone();
    entries::strip(&mut old_clean);
    let d = diff(&old_clean, new, slot);
    for e in &mut list {
        e.set = e.set.difference(&d.changed).difference(&d.removed);
    }
    if !d.changed.is_empty() {
        let me = Entry::of(mgr, "Update");
        match list.iter_mut().find(|e| e.same_manager(&me)) {
            Some(e) => {
                e.set = e.set.union(&d.changed);
                e.api_version = me.api_version;
                e.time = me.time;
            }
            None => list.push(Entry {
                set: d.changed,
                ..me
            }),
        }
    }
    entries::encode(new, list);
}

/// Server-side apply of `config` (the applied configuration, already parsed) onto `live`
/// (None: the object does not exist yet). Returns the new object with managedFields set
/// (`mgr`'s entry with operation Apply owns exactly the fields of `config`).
///
/// The caller checks `apiVersion` and `kind`, and refuses a config carrying
/// `metadata.managedFields` (upstream answers 400 "metadata.managedFields must be nil").
/// A built-in kind's `status` is ignored on the main resource, and all but `status` on
/// the status subresource.
///
/// As upstream, the manager `kubectl` moving from client-side apply is let through
/// conflicts on fields still as its last-applied-configuration annotation has them, and
/// keeps that annotation in step when the object has one.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    mgr: &Manager,
    force: bool,
) -> Result<Value, ApplyError> {
    let result = match apply_once(live, config, mgr, force) {
        Err(ApplyError::Conflicts(conflicts)) if mgr.name == lastapplied::KUBECTL => {
            match live.map(|l| lastapplied::remaining(l, conflicts.clone())) {
                Some(rest) if rest.is_empty() => apply_once(live, config, mgr, true),
                Some(rest) => Err(ApplyError::Conflicts(rest)),
                None => Err(ApplyError::Conflicts(conflicts)),
            }
        }
        other => other,
    };
    let mut out = result?;
    if mgr.name == lastapplied::KUBECTL {
        lastapplied::sync(&mut out, config);
    }
    Ok(out)
}

fn apply_once(
    live: Option<&Value>,
    config: &Value,
    mgr: &Manager,
    force: bool,
) -> Result<Value, ApplyError> {
    let slot = root_slot(config);
    let reduced = reset_fields(config, slot, mgr.subresource);
    let config = &reduced;
    let config_set = set_from_object(config, slot, true).map_err(ApplyError::Invalid)?;
    let (mut list, live_clean) = match live {
        Some(live) => live_entries(live),
        None => (Vec::new(), json!({})),
    };
    let me = Entry::of(mgr, "Apply");
    let previous = list.iter().position(|e| e.same_manager(&me));
    let last = previous.map(|i| list[i].set.clone()).unwrap_or_default();
    let mut merged = merge::merge(&live_clean, config, slot);
    let owned = list
        .iter()
        .filter(|e| !e.same_manager(&me))
        .fold(config_set.clone(), |acc, e| acc.union(&e.set));
    merge::prune(&mut merged, slot, &last, &owned);
    let d = diff(&live_clean, &merged, slot);
    let mut conflicts = Vec::new();
    for e in list.iter_mut().filter(|e| !e.same_manager(&me)) {
        let clash = e.set.intersection(&d.changed);
        for path in clash.paths() {
            conflicts.push(Conflict {
                manager: e.printed(),
                field: path_string(&path),
            });
        }
        e.set = e.set.difference(&clash).difference(&d.removed);
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(conflicts));
    }
    let unchanged = merged == live_clean;
    match previous {
        Some(i) => {
            let e = &mut list[i];
            if !(unchanged && e.set == config_set) {
                e.time = me.time;
            }
            e.set = config_set;
            e.api_version = me.api_version;
        }
        None => list.push(Entry {
            set: config_set,
            ..me
        }),
    }
    entries::encode(&mut merged, list);
    Ok(merged)
}

/// The config without the fields the endpoint resets, as upstream's `GetResetFields`: a
/// built-in kind's `status` on the main resource, everything but `status` (and the
/// identity) on the status subresource. They are neither merged nor owned.
fn reset_fields(config: &Value, slot: Slot, subresource: Option<&str>) -> Value {
    let mut out = config.clone();
    let Some(map) = out.as_object_mut() else {
        return out;
    };
    match subresource {
        None => {
            let known_status = matches!(slot, Slot::Type(t) if patch::field(t, "status").is_some());
            if known_status {
                map.remove("status");
            }
        }
        Some("status") => {
            map.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"))
        }
        Some(_) => {}
    }
    out
}

/// The live object's entries and the object without them; an object that has none is
/// owned by `before-first-apply`, as upstream has it.
fn live_entries(live: &Value) -> (Vec<Entry>, Value) {
    let list = entries::decode_or_empty(live);
    let mut clean = live.clone();
    entries::strip(&mut clean);
    if !list.is_empty() {
        return (list, clean);
    }
    let mut base = json!({});
    for k in ["apiVersion", "kind"] {
        if let Some(v) = clean.get(k) {
            base[k] = v.clone();
        }
    }
    let set = diff(&base, &clean, root_slot(&clean)).changed;
    let api_version = clean
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let first = Entry {
        manager: "before-first-apply".into(),
        operation: "Update".into(),
        api_version: api_version.into(),
        time: None,
        subresource: None,
        set,
    };
    let list = if first.set.is_empty() {
        Vec::new()
    } else {
        vec![first]
    };
    (list, clean)
}

/// The field set of an object: what an apply of it would own.
pub fn fields_of(obj: &Value) -> Result<FieldSet, String> {
    set_from_object(obj, root_slot(obj), true)
}

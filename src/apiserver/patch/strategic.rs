//! The strategic merge patch algorithm, after kube-apiserver's (apimachinery's
//! `pkg/util/strategicpatch`, as `StrategicMergeMapPatch` runs it on the server: parallel
//! lists merged, unmatched nulls ignored).
//!
//! Maps merge key by key and `null` deletes; lists of the schema's merge fields merge by
//! their merge key (maps) or as sets (primitives); every other list is replaced. The
//! directives: `$patch` (`replace`, `delete`, `merge`) in a map or a list element,
//! `$deleteFromPrimitiveList/<field>`, `$setElementOrder/<field>` and `$retainKeys`. No
//! directive is ever stored: kube-apiserver drops them when it decodes the result into its
//! typed object, and skiff keeps JSON, so values taken from the patch are cleaned here.

mod order;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use super::smp::{patch_meta, PatchMeta, PatchStrategy};
use crate::apiserver::status::ApiError;

pub(super) const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// Why a strategic merge patch cannot be applied. The messages are kube-apiserver's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SmpError {
    /// The patch is not a JSON object.
    #[error("invalid JSON document")]
    NotAnObject,
    /// An element of a merge list lacks the list's merge key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey {
        /// The element, as Go prints a map.
        map: String,
        /// The merge key.
        key: String,
    },
    /// `$patch` has a value other than `replace`, `delete` or `merge`.
    #[error("unknown patch type: {kind} in map: {map}")]
    UnknownPatchType {
        /// The value of `$patch`.
        kind: String,
        /// The map it is in, as Go prints it.
        map: String,
    },
    /// `{"$patch": "merge"}` as a list element.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    /// A `$deleteFromPrimitiveList` key without `/<field>`, or not a list.
    #[error("invalid patch format of primitive list")]
    BadDeleteList,
    /// `$retainKeys` is not a list, or the patch sets a key it does not list.
    #[error("invalid patch format of retainKeys")]
    BadRetainKeys,
    /// A `$setElementOrder` key without `/<field>`, or not a list.
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrder,
    /// The patch list's order contradicts its `$setElementOrder` list.
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    OrderMismatch {
        /// The patch list, as Go prints it.
        patch: String,
        /// The `$setElementOrder` list, as Go prints it.
        order: String,
    },
    /// A list holds lists.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A list's elements are not all of one type.
    #[error("list element types are not identical: {0}")]
    MixedList(String),
    /// A merge list of maps whose field declares no merge key.
    #[error("cannot merge lists without merge key for type map")]
    NoMergeKeyDeclared,
    /// A value of the wrong JSON type where a list or map is needed.
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType {
        /// What was needed, in Go's words (`[]interface {}`).
        expected: &'static str,
        /// What came, in Go's words.
        actual: &'static str,
    },
}

impl SmpError {
    /// The error as kube-apiserver answers it (`interpretStrategicMergePatchError`): 400
    /// BadRequest for a malformed directive, 422 for a list of lists, and for the rest
    /// (a missing merge key, say) a 500 carrying the bare message, since upstream has no
    /// status for them either.
    pub fn into_api_error(self) -> ApiError {
        match self {
            SmpError::NotAnObject
            | SmpError::BadDeleteList
            | SmpError::BadRetainKeys
            | SmpError::BadSetElementOrder => ApiError::bad_request(self.to_string()),
            SmpError::ListOfLists => ApiError::patch_failed(self.to_string()),
            _ => ApiError::unclassified(self.to_string()),
        }
    }
}

/// Applies the strategic merge patch `patch` to `target`, a value of the schema type
/// `type_name` (from [`super::root_type`]; `None` merges as a JSON merge patch would,
/// with the directives still honoured).
pub fn strategic_merge(
    target: &mut Value,
    patch: &Value,
    type_name: Option<&str>,
) -> Result<(), SmpError> {
    let Value::Object(patch) = patch else {
        return Err(SmpError::NotAnObject);
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(original) = target {
        merge_map(original, patch, type_name)?;
    }
    Ok(())
}

/// Merges `patch` into the map `original`, a value of `type_name`.
fn merge_map(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    type_name: Option<&str>,
) -> Result<(), SmpError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => {
                *original = clean_map(patch);
                return Ok(());
            }
            Some("delete") => {
                original.clear();
                return Ok(());
            }
            // Upstream rejects `merge` in a map; it is the default, so skiff accepts it.
            Some("merge") => {}
            _ => return Err(unknown_patch_type(directive, patch)),
        }
    }
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        apply_retain_keys(original, patch, retain)?;
    }
    let mut ordered = Vec::new();
    for (key, order) in patch {
        if key.starts_with(SET_ELEMENT_ORDER) {
            let field = directive_field(key, SET_ELEMENT_ORDER, SmpError::BadSetElementOrder)?;
            order::merge_with_element_order(original, patch, field, order, type_name)?;
            ordered.push(field);
        }
    }
    for (key, value) in patch {
        if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            let field = directive_field(key, DELETE_FROM_PRIMITIVE_LIST, SmpError::BadDeleteList)?;
            delete_from_primitive_list(original, field, value)?;
            continue;
        }
        if key.starts_with('$') || ordered.contains(&key.as_str()) {
            continue;
        }
        merge_field(original, key, value, type_name)?;
    }
    Ok(())
}

/// Merges one key of a patch map into `original`.
fn merge_field(
    original: &mut Map<String, Value>,
    key: &str,
    value: &Value,
    type_name: Option<&str>,
) -> Result<(), SmpError> {
    if value.is_null() {
        original.remove(key);
        return Ok(());
    }
    let meta = patch_meta(type_name, key);
    let current = original.get_mut(key);
    match (current, value) {
        (Some(Value::Object(current)), Value::Object(patch)) => {
            if meta.strategy == PatchStrategy::Replace {
                *current = clean_map(patch);
            } else {
                merge_map(current, patch, meta.child)?;
            }
        }
        (Some(Value::Array(current)), Value::Array(patch)) => merge_list(current, patch, &meta)?,
        // Upstream's removeDirectives: a new map that deletes itself is not stored.
        (_, Value::Object(patch))
            if patch.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") =>
        {
            original.remove(key);
        }
        _ => {
            let fresh = fresh_value(value, &meta)?;
            original.insert(key.to_string(), fresh);
        }
    }
    Ok(())
}

/// A patch value for a key the original lacks (or holds with another JSON type): the
/// patch merged into an empty value, which drops its directives and nulls.
fn fresh_value(value: &Value, meta: &PatchMeta) -> Result<Value, SmpError> {
    Ok(match value {
        Value::Object(patch) if meta.strategy == PatchStrategy::Replace => {
            Value::Object(clean_map(patch))
        }
        Value::Object(patch) => {
            let mut map = Map::new();
            merge_map(&mut map, patch, meta.child)?;
            Value::Object(map)
        }
        Value::Array(patch) => {
            let mut list = Vec::new();
            merge_list(&mut list, patch, meta)?;
            Value::Array(list)
        }
        other => other.clone(),
    })
}

/// Merges a patch list into the list `original` of a field with metadata `meta`.
pub(super) fn merge_list(
    original: &mut Vec<Value>,
    patch: &[Value],
    meta: &PatchMeta,
) -> Result<(), SmpError> {
    let merge_key = match meta.strategy {
        PatchStrategy::MergeSet => None,
        PatchStrategy::MergeKey(key) => Some(key),
        PatchStrategy::Default | PatchStrategy::Replace => {
            *original = patch.iter().map(clean).collect();
            return Ok(());
        }
    };
    if original.is_empty() && patch.is_empty() {
        return Ok(());
    }
    if !element_type(original, patch)?.is_object() {
        let server_order = original.clone();
        for item in patch {
            if !original.contains(item) {
                original.push(item.clone());
            }
        }
        let merged = std::mem::take(original);
        *original = order::normalize(merged, patch, &server_order, None)?;
        return Ok(());
    }
    let Some(key) = merge_key else {
        return Err(SmpError::NoMergeKeyDeclared);
    };
    let Some(patch) = apply_special_elements(original, patch, key)? else {
        return Ok(());
    };
    let server_order = original.clone();
    for item in &patch {
        let Value::Object(item_map) = item else {
            return Err(bad_arg_type("map[string]interface {}", item));
        };
        let Some(wanted) = item_map.get(key) else {
            return Err(no_merge_key(item_map, key));
        };
        match find_by_key(original, key, wanted)? {
            Some(i) => {
                if let Value::Object(current) = &mut original[i] {
                    merge_map(current, item_map, meta.child)?;
                }
            }
            None => {
                let mut fresh = Map::new();
                merge_map(&mut fresh, item_map, meta.child)?;
                original.push(Value::Object(fresh));
            }
        }
    }
    let merged = std::mem::take(original);
    *original = order::normalize(merged, &patch, &server_order, Some(key))?;
    Ok(())
}

/// Handles the elements of a merge list that carry `$patch`: `delete` removes the
/// matching elements of `original`, `replace` makes the list the patch's other elements.
/// Returns the ordinary elements left to merge, or `None` when the list was replaced.
fn apply_special_elements(
    original: &mut Vec<Value>,
    patch: &[Value],
    key: &str,
) -> Result<Option<Vec<Value>>, SmpError> {
    let mut plain = Vec::new();
    let mut replace = false;
    for item in patch {
        let Value::Object(map) = item else {
            return Err(bad_arg_type("map[string]interface {}", item));
        };
        let Some(directive) = map.get(DIRECTIVE) else {
            plain.push(item.clone());
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(wanted) = map.get(key) else {
                    return Err(no_merge_key(map, key));
                };
                original.retain(|v| v.get(key).is_none_or(|have| !key_eq(have, wanted)));
            }
            Some("replace") => replace = true,
            Some("merge") => return Err(SmpError::MergeDirectiveInList),
            _ => return Err(unknown_patch_type(directive, map)),
        }
    }
    if !replace {
        return Ok(Some(plain));
    }
    for item in &plain {
        if let Value::Object(map) = item {
            if !map.contains_key(key) {
                return Err(no_merge_key(map, key));
            }
        }
    }
    *original = plain.iter().map(clean).collect();
    Ok(None)
}

/// `$retainKeys`: every key of `original` not listed is cleared; the patch may set only
/// listed keys.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: &Value,
) -> Result<(), SmpError> {
    let Value::Array(retain) = retain else {
        return Err(SmpError::BadRetainKeys);
    };
    let listed = |key: &str| retain.iter().any(|k| k.as_str() == Some(key));
    for (key, value) in patch {
        let directive = key == DIRECTIVE || key == RETAIN_KEYS;
        let parallel =
            key.starts_with(DELETE_FROM_PRIMITIVE_LIST) || key.starts_with(SET_ELEMENT_ORDER);
        if !value.is_null() && !directive && !parallel && !listed(key) {
            return Err(SmpError::BadRetainKeys);
        }
    }
    original.retain(|key, _| listed(key));
    Ok(())
}

/// `$deleteFromPrimitiveList/<field>`: removes the listed values from the field's list.
fn delete_from_primitive_list(
    original: &mut Map<String, Value>,
    field: &str,
    values: &Value,
) -> Result<(), SmpError> {
    let Value::Array(values) = values else {
        return Err(bad_arg_type("[]interface {}", values));
    };
    if let Some(Value::Array(list)) = original.get_mut(field) {
        list.retain(|v| !values.contains(v));
    }
    Ok(())
}

/// The field a parallel-list directive key (`$setElementOrder/containers`) names.
fn directive_field<'a>(
    key: &'a str,
    prefix: &str,
    malformed: SmpError,
) -> Result<&'a str, SmpError> {
    match key.split_once('/') {
        Some((found, field)) if found == prefix => Ok(field),
        _ => Err(malformed),
    }
}

/// The JSON type all elements of the lists share (`Value::Null` if they are all empty);
/// lists of lists and mixed lists are errors.
pub(super) fn element_type(original: &[Value], patch: &[Value]) -> Result<Value, SmpError> {
    let mut seen: Option<&Value> = None;
    for item in original.iter().chain(patch) {
        if item.is_array() {
            return Err(SmpError::ListOfLists);
        }
        match seen {
            None => seen = Some(item),
            Some(first) if same_type(first, item) => {}
            Some(_) => {
                let lists = format!("[{} {}]", go_list(original), go_list(patch));
                return Err(SmpError::MixedList(lists));
            }
        }
    }
    Ok(match seen {
        Some(Value::Object(_)) => Value::Object(Map::new()),
        Some(other) => other.clone(),
        None => Value::Null,
    })
}

fn same_type(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// The index of the element of `list` whose `key` equals `wanted`.
pub(super) fn find_by_key(
    list: &[Value],
    key: &str,
    wanted: &Value,
) -> Result<Option<usize>, SmpError> {
    for (i, item) in list.iter().enumerate() {
        let Value::Object(map) = item else {
            return Err(bad_arg_type("map[string]interface {}", item));
        };
        if map.get(key).is_some_and(|have| key_eq(have, wanted)) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Equality as Go's `==` on decoded JSON: every number is a float64.
pub(super) fn key_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A value taken whole from the patch, without directives or null map values.
fn clean(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(clean_map(map)),
        Value::Array(list) => Value::Array(list.iter().map(clean).collect()),
        other => other.clone(),
    }
}

fn clean_map(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
        .map(|(k, v)| (k.clone(), clean(v)))
        .collect()
}

pub(super) fn no_merge_key(map: &Map<String, Value>, key: &str) -> SmpError {
    SmpError::NoMergeKey {
        map: go_map(map),
        key: key.to_string(),
    }
}

fn unknown_patch_type(directive: &Value, map: &Map<String, Value>) -> SmpError {
    SmpError::UnknownPatchType {
        kind: go_value(directive),
        map: go_map(map),
    }
}

pub(super) fn bad_arg_type(expected: &'static str, actual: &Value) -> SmpError {
    let actual = match actual {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    };
    SmpError::BadArgType { expected, actual }
}

/// A value as Go's `%v` prints a decoded JSON value (`map[name:app ports:[80]]`).
pub(super) fn go_value(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), go_float),
        Value::String(s) => s.clone(),
        Value::Array(list) => go_list(list),
        Value::Object(map) => go_map(map),
    }
}

/// A float64 as Go's `%v` prints it: shortest digits, in exponent form below 1e-4 and
/// from 1e6 (`8080`, `0.5`, `1e+06`).
fn go_float(f: f64) -> String {
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return f.to_string();
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

pub(super) fn go_list(list: &[Value]) -> String {
    let items: Vec<String> = list.iter().map(go_value).collect();
    format!("[{}]", items.join(" "))
}

fn go_map(map: &Map<String, Value>) -> String {
    let mut items: Vec<(&String, &Value)> = map.iter().collect();
    items.sort_by(|a, b| a.0.cmp(b.0));
    let items: Vec<String> = items
        .into_iter()
        .map(|(k, v)| format!("{k}:{}", go_value(v)))
        .collect();
    format!("map[{}]", items.join(" "))
}

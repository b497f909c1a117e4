//! Field errors in the shapes of apimachinery's `field.Error`: reasons, messages and
//! paths, plus the small JSON accessors every rule file uses.

use serde_json::{Map, Value};

use crate::apiserver::status::Cause;

/// A bad value as Go's `field.Error` prints it: strings quoted, numbers bare, anything
/// else already rendered (Go's `%#v`).
pub(super) enum Bad<'a> {
    /// Printed with `%q`.
    Str(&'a str),
    /// Printed bare.
    Int(i64),
    /// Printed as given.
    Raw(String),
}

/// `a.b` from `a` and `b`.
pub(super) fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// `a[3]`, and `a[key]` for map keys.
pub(super) fn index(path: &str, i: impl std::fmt::Display) -> String {
    format!("{path}[{i}]")
}

/// `Required value`, with an optional detail.
pub(super) fn required(field: &str, detail: &str) -> Cause {
    cause(
        "FieldValueRequired",
        field,
        with_detail("Required value", detail),
    )
}

/// `Invalid value: <value>: <detail>`.
pub(super) fn invalid(field: &str, value: Bad<'_>, detail: &str) -> Cause {
    let body = format!("Invalid value: {}", show(&value));
    cause("FieldValueInvalid", field, with_detail(&body, detail))
}

/// `Unsupported value: "x": supported values: "a", "b"`.
pub(super) fn not_supported(field: &str, value: &str, supported: &[&str]) -> Cause {
    not_supported_value(field, Bad::Str(value), supported)
}

/// `Unsupported value: <value>: supported values: …` for a value that is no string.
pub(super) fn not_supported_value(field: &str, value: Bad<'_>, supported: &[&str]) -> Cause {
    let list: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
    let body = format!("Unsupported value: {}", show(&value));
    let detail = format!("supported values: {}", list.join(", "));
    cause("FieldValueNotSupported", field, with_detail(&body, &detail))
}

/// `Duplicate value: <value>`.
pub(super) fn duplicate(field: &str, value: Bad<'_>) -> Cause {
    let body = format!("Duplicate value: {}", show(&value));
    cause("FieldValueDuplicate", field, body)
}

/// `Not found: <value>`.
pub(super) fn not_found(field: &str, value: &str) -> Cause {
    let body = format!("Not found: {}", go_quote(value));
    cause("FieldValueNotFound", field, body)
}

/// `Forbidden: <detail>`.
pub(super) fn forbidden(field: &str, detail: &str) -> Cause {
    cause(
        "FieldValueForbidden",
        field,
        with_detail("Forbidden", detail),
    )
}

/// `Too long: may not be more than N bytes` (the wording of Kubernetes 1.32 and later).
pub(super) fn too_long(field: &str, max: usize) -> Cause {
    let unit = if max == 1 { "byte" } else { "bytes" };
    let detail = format!("may not be more than {max} {unit}");
    cause("FieldValueTooLong", field, with_detail("Too long", &detail))
}

/// `must be greater than or equal to 0` for a present, negative integer field.
pub(super) fn nonnegative(spec: &Value, key: &str, path: &str, out: &mut Vec<Cause>) {
    if let Some(n) = spec.get(key).and_then(Value::as_i64) {
        if n < 0 {
            let detail = "must be greater than or equal to 0";
            out.push(invalid(&child(path, key), Bad::Int(n), detail));
        }
    }
}

fn cause(reason: &'static str, field: &str, message: String) -> Cause {
    Cause {
        reason,
        message,
        field: field.to_string(),
    }
}

fn with_detail(body: &str, detail: &str) -> String {
    if detail.is_empty() {
        body.to_string()
    } else {
        format!("{body}: {detail}")
    }
}

fn show(value: &Bad<'_>) -> String {
    match value {
        Bad::Str(s) => go_quote(s),
        Bad::Int(n) => n.to_string(),
        Bad::Raw(s) => s.clone(),
    }
}

/// A string as Go's `%q` prints it (for the characters people write).
pub(super) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A string-to-string map as Go's `%#v` prints `map[string]string`.
pub(super) fn go_string_map(map: Option<&Map<String, Value>>) -> String {
    let Some(map) = map else {
        return "map[string]string(nil)".into();
    };
    let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v.as_str().unwrap_or(""))))
        .collect();
    format!("map[string]string{{{}}}", body.join(", "))
}

/// `obj[key]` as a string, `""` when absent or not a string.
pub(super) fn str_of<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `obj[key]` as a slice, empty when absent or not an array.
pub(super) fn list_of<'a>(obj: &'a Value, key: &str) -> &'a [Value] {
    obj.get(key)
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
}

/// Sets `map[key]` to `value` when it is absent or null.
pub(super) fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_string(), value);
    }
}

/// Sets `map[key]` to `value` when it is absent, null or the empty string.
pub(super) fn default_str(map: &mut Map<String, Value>, key: &str, value: &str) {
    if map.get(key).is_none_or(|v| v.is_null() || v == "") {
        map.insert(key.to_string(), Value::String(value.to_string()));
    }
}

/// `map[key]` as an object, created (replacing null) when absent.
pub(super) fn object_entry<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    set_default(map, key, Value::Object(Map::new()));
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// Every object in the array at `map[key]`, for defaulting in place.
pub(super) fn objects_mut<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    map.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

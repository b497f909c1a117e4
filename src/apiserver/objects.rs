//! Objects as the API server handles them: JSON values, stored without their
//! resourceVersion (the store's revision is it), checked against their k8s-openapi type.

use serde_json::{Map, Value};

use super::resources::Resource;
use super::status::{ApiError, ApiResult, Cause};
use crate::store::KeyValue;

/// An object read from the store, with `metadata.resourceVersion` set to its revision.
pub fn from_stored(kv: &KeyValue) -> ApiResult<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

/// The bytes stored for an object: its JSON without resourceVersion.
pub fn to_stored(obj: &Value) -> Vec<u8> {
    serde_json::to_vec(&WithoutResourceVersion(obj)).unwrap_or_default()
}

/// An object serialized as it is, except for `metadata.resourceVersion`: the store's
/// revision is the resourceVersion, so it is not kept twice. Serializing through this
/// spares a copy of the whole object on every write.
struct WithoutResourceVersion<'a>(&'a Value);

impl serde::Serialize for WithoutResourceVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(map) = self.0 else {
            return serde::Serialize::serialize(self.0, s);
        };
        let mut out = s.serialize_map(Some(map.len()))?;
        for (key, value) in map {
            match value {
                Value::Object(meta) if key == "metadata" => {
                    let kept = meta.iter().filter(|(k, _)| *k != "resourceVersion");
                    out.serialize_entry(key, &MapOf(kept.collect()))?;
                }
                _ => out.serialize_entry(key, value)?,
            }
        }
        out.end()
    }
}

/// Borrowed entries serialized as a JSON object.
struct MapOf<'a>(Vec<(&'a String, &'a Value)>);

impl serde::Serialize for MapOf<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().copied())
    }
}

/// Sets `metadata.resourceVersion`.
pub fn set_resource_version(obj: &mut Value, revision: i64) {
    if let Some(meta) = metadata_mut(obj) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
}

/// `metadata` as a mutable map, created if missing.
pub fn metadata_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = obj.as_object_mut()?;
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
}

/// How unknown fields are treated (`?fieldValidation=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    /// Refuse with 400.
    Strict,
    /// Accept, with a warning header.
    Warn,
    /// Accept silently.
    Ignore,
}

impl FieldValidation {
    /// Parses the query parameter; absent means Warn.
    pub fn parse(value: Option<&str>) -> ApiResult<Self> {
        match value {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}"
            ))),
        }
    }
}

/// Fields of `input` that `typed` (the same object after its type read it) lost.
fn unknown_fields(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(t) => unknown_fields(v, t, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, t)) in a.iter().zip(b).enumerate() {
                unknown_fields(v, t, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Checks an object against its kind's type. Returns the object as the type writes it and
/// the warnings for unknown fields (refused instead under Strict).
pub fn decode(
    res: &Resource,
    input: Value,
    validation: FieldValidation,
) -> ApiResult<(Value, Vec<String>)> {
    let name = input
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let typed = (res.decode)(&input).map_err(|e| {
        ApiError::invalid(
            res.group,
            res.kind,
            &name,
            vec![Cause {
                reason: "FieldValueInvalid",
                message: e.to_string(),
                field: String::new(),
            }],
        )
    })?;
    let mut unknown = Vec::new();
    if validation != FieldValidation::Ignore {
        unknown_fields(&input, &typed, "", &mut unknown);
    }
    let warnings: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if validation == FieldValidation::Strict && !warnings.is_empty() {
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            warnings.join(", ")
        )));
    }
    Ok((typed, warnings))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn stored_bytes_are_the_object_without_its_resource_version() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "c", "resourceVersion": "42", "uid": "u"},
                         "data": {"resourceVersion": "kept"}});
        let stored: Value = serde_json::from_slice(&to_stored(&obj)).unwrap();
        let mut expected = obj.clone();
        expected["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("resourceVersion");
        assert_eq!(stored, expected);
        assert_eq!(to_stored(&json!("plain")), b"\"plain\"");
    }
    use crate::apiserver::resources::find;

    #[test]
    fn strict_validation_names_every_unknown_field() {
        let cm = find("", "v1", "configmaps").unwrap();
        let input = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "bogus": 1},
                           "data": {"a": "b"}, "extra": {"x": 1}, "nothing": null});
        let err = decode(cm, input.clone(), FieldValidation::Strict).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(
            err.message.contains("unknown field \"metadata.bogus\""),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("unknown field \"extra\""),
            "{}",
            err.message
        );
        let (out, warnings) = decode(cm, input, FieldValidation::Warn).unwrap();
        assert_eq!(warnings.len(), 2);
        assert!(out.get("extra").is_none());
    }

    #[test]
    fn stored_objects_carry_their_revision_only_when_read() {
        let obj = json!({"metadata": {"name": "a", "resourceVersion": "5"}});
        let bytes = to_stored(&obj);
        let kv = KeyValue {
            key: "/k".into(),
            value: bytes,
            create_revision: 7,
            mod_revision: 9,
        };
        assert_eq!(
            from_stored(&kv).unwrap()["metadata"]["resourceVersion"],
            "9"
        );
        assert!(!String::from_utf8(to_stored(&obj))
            .unwrap()
            .contains("resourceVersion"));
    }
}

//! `metadata.managedFields` entries: decoding, encoding, and who counts as the same manager.

use serde_json::{json, Map, Value};

use super::fieldset::FieldSet;
use super::Manager;

/// One managedFields entry, its fields decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `manager`.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// `apiVersion` the fields were written in.
    pub api_version: String,
    /// `time`, RFC 3339, if any.
    pub time: Option<String>,
    /// `subresource`, if one was written.
    pub subresource: Option<String>,
    /// `fieldsV1`, decoded.
    pub set: FieldSet,
}

impl Entry {
    /// An empty entry for `mgr` with `operation`, timed now.
    pub fn of(mgr: &Manager, operation: &str) -> Entry {
        Entry {
            manager: mgr.name.to_string(),
            operation: operation.to_string(),
            api_version: mgr.api_version.to_string(),
            time: Some(mgr.time.to_string()),
            subresource: mgr.subresource.map(str::to_string),
            set: FieldSet::new(),
        }
    }

    /// Upstream's manager identifier: name, operation, subresource, and for an updater
    /// the API version (an applier stays one manager across versions).
    pub fn same_manager(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == "Apply" || self.api_version == other.api_version)
    }

    /// Upstream's `printManager`: `"kubectl" with subresource "status" using apps/v1`.
    pub fn printed(&self) -> String {
        let mut s = Value::from(self.manager.as_str()).to_string();
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {}", Value::from(sub.as_str())));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn to_json(&self) -> Value {
        let mut e = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.set.to_fields_v1(),
        });
        if let Some(t) = &self.time {
            e["time"] = json!(t);
        }
        if let Some(s) = &self.subresource {
            e["subresource"] = json!(s);
        }
        e
    }

    fn from_json(v: &Value) -> Result<Entry, String> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        if let Some(t) = text("fieldsType") {
            if t != "FieldsV1" {
                return Err(format!("managedFields: unsupported fieldsType {t:?}"));
            }
        }
        let set = match v.get("fieldsV1") {
            Some(f) if !f.is_null() => {
                FieldSet::from_fields_v1(f).map_err(|e| format!("managedFields: {e}"))?
            }
            _ => FieldSet::new(),
        };
        Ok(Entry {
            manager: text("manager").unwrap_or_default(),
            operation: text("operation").unwrap_or_default(),
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            set,
        })
    }
}

/// The raw `metadata.managedFields` of an object, if it has the field.
pub fn raw(obj: &Value) -> Option<&Value> {
    obj.get("metadata")?.get("managedFields")
}

/// Whether a client's managedFields ask for a reset: `[]` or `[{}]`.
pub fn is_reset(raw: &Value) -> bool {
    match raw.as_array().map(Vec::as_slice) {
        Some([]) => true,
        Some([only]) => only.as_object().is_some_and(Map::is_empty),
        _ => false,
    }
}

/// Decodes managedFields; an entry repeated for one manager is merged into the first.
pub fn decode(raw: &Value) -> Result<Vec<Entry>, String> {
    let items = match raw {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err("managedFields must be a list".into()),
    };
    let mut out: Vec<Entry> = Vec::new();
    for item in items {
        let e = Entry::from_json(item)?;
        match out.iter_mut().find(|o| o.same_manager(&e)) {
            Some(o) => o.set = o.set.union(&e.set),
            None => out.push(e),
        }
    }
    Ok(out)
}

/// The entries of a stored object; undecodable ones count as none.
pub fn decode_or_empty(obj: &Value) -> Vec<Entry> {
    raw(obj).and_then(|r| decode(r).ok()).unwrap_or_default()
}

/// Removes `metadata.managedFields`.
pub fn strip(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
}

/// Writes the non-empty entries in upstream's order (operation, time, manager, version,
/// subresource); with none, the field is left out.
pub fn encode(obj: &mut Value, mut list: Vec<Entry>) {
    list.retain(|e| !e.set.is_empty());
    list.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    strip(obj);
    if list.is_empty() {
        return;
    }
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let meta = root.entry("metadata").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        let items = list.iter().map(Entry::to_json).collect();
        meta.insert("managedFields".into(), Value::Array(items));
    }
}

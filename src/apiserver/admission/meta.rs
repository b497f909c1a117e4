//! Metadata rules every kind shares: label and annotation syntax, the total size of
//! annotations, and `generateName`; as apimachinery's `ValidateObjectMeta` has them.

use serde_json::{Map, Value};

use super::errors::{child, invalid, too_long, Bad};
use super::names::{
    dns1035_label_error, dns_label_error, dns_subdomain_error, label_value_errors,
    qualified_name_errors,
};
use crate::apiserver::status::Cause;

/// Annotations may hold at most this many bytes of keys and values together.
pub(super) const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// Checks `metadata` of an object of `kind`.
pub(super) fn validate(kind: &str, obj: &Value, out: &mut Vec<Cause>) {
    let Some(meta) = obj.get("metadata") else {
        return;
    };
    validate_generate_name(kind, meta, out);
    validate_labels(meta.get("labels"), "metadata.labels", out);
    validate_annotations(meta.get("annotations"), "metadata.annotations", out);
}

/// Checks a pod template's `metadata` (labels and annotations) under `path`.
pub(super) fn validate_template_meta(template: &Value, path: &str, out: &mut Vec<Cause>) {
    let Some(meta) = template.get("metadata") else {
        return;
    };
    let path = child(path, "metadata");
    validate_labels(meta.get("labels"), &child(&path, "labels"), out);
    validate_annotations(meta.get("annotations"), &child(&path, "annotations"), out);
}

/// Label keys must be qualified names, values label values (`ValidateLabels`).
pub(super) fn validate_labels(labels: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    let Some(labels) = labels.and_then(Value::as_object) else {
        return;
    };
    for (key, value) in sorted(labels) {
        for msg in qualified_name_errors(key) {
            out.push(invalid(path, Bad::Str(key), &msg));
        }
        let value = value.as_str().unwrap_or("");
        for msg in label_value_errors(value) {
            out.push(invalid(path, Bad::Str(value), &msg));
        }
    }
}

/// Annotation keys must be qualified names (case aside); all of them fit 256 KiB.
fn validate_annotations(annotations: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    let Some(annotations) = annotations.and_then(Value::as_object) else {
        return;
    };
    let mut size = 0;
    for (key, value) in sorted(annotations) {
        for msg in qualified_name_errors(&key.to_lowercase()) {
            out.push(invalid(path, Bad::Str(key), &msg));
        }
        size += key.len() + value.as_str().map_or(0, str::len);
    }
    if size > ANNOTATIONS_MAX_BYTES {
        out.push(too_long(path, ANNOTATIONS_MAX_BYTES));
    }
}

/// `generateName` must be a valid name once a suffix follows; a trailing dash is fine.
fn validate_generate_name(kind: &str, meta: &Value, out: &mut Vec<Cause>) {
    let Some(base) = meta.get("generateName").and_then(Value::as_str) else {
        return;
    };
    if base.is_empty() {
        return;
    }
    let masked = match base.strip_suffix('-') {
        Some(rest) => format!("{rest}a"),
        None => base.to_string(),
    };
    let error = match kind {
        "Service" => dns1035_label_error(&masked),
        "Namespace" => dns_label_error(&masked),
        _ => dns_subdomain_error(&masked),
    };
    if let Some(msg) = error {
        out.push(invalid("metadata.generateName", Bad::Str(base), &msg));
    }
}

/// Map entries in key order, as Go's validation walks them (for stable output).
fn sorted(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

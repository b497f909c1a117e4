//! `metav1.LabelSelector` as workloads use it: validation, matching a template's labels,
//! and printing it the way Go's `%#v` does in "field is immutable" messages.

use serde_json::{Map, Value};

use super::errors::{
    child, go_quote, go_string_map, index, invalid, list_of, required, str_of, Bad,
};
use super::meta::validate_labels;
use super::names::{label_value_errors, qualified_name_errors};
use crate::apiserver::status::Cause;

/// Checks `matchLabels` and `matchExpressions` of the selector at `path`.
pub(super) fn validate_selector(selector: &Value, path: &str, out: &mut Vec<Cause>) {
    validate_labels(
        selector.get("matchLabels"),
        &child(path, "matchLabels"),
        out,
    );
    let exprs_path = child(path, "matchExpressions");
    for (i, expr) in list_of(selector, "matchExpressions").iter().enumerate() {
        let at = index(&exprs_path, i);
        let values = list_of(expr, "values");
        match str_of(expr, "operator") {
            "In" | "NotIn" if values.is_empty() => {
                let detail = "must be specified when `operator` is 'In' or 'NotIn'";
                out.push(required(&child(&at, "values"), detail));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                let detail = "may not be specified when `operator` is 'Exists' or 'DoesNotExist'";
                out.push(super::errors::forbidden(&child(&at, "values"), detail));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            op => {
                let detail = "not a valid selector operator";
                out.push(invalid(&child(&at, "operator"), Bad::Str(op), detail));
            }
        }
        let key = str_of(expr, "key");
        for msg in qualified_name_errors(key) {
            out.push(invalid(&child(&at, "key"), Bad::Str(key), &msg));
        }
        for (j, value) in values.iter().enumerate() {
            let value = value.as_str().unwrap_or("");
            for msg in label_value_errors(value) {
                let field = index(&child(&at, "values"), j);
                out.push(invalid(&field, Bad::Str(value), &msg));
            }
        }
    }
}

/// Whether the selector has no terms at all (which matches everything).
pub(super) fn is_empty(selector: &Value) -> bool {
    let labels = selector.get("matchLabels").and_then(Value::as_object);
    labels.is_none_or(Map::is_empty) && list_of(selector, "matchExpressions").is_empty()
}

/// Whether `labels` satisfy every term of `selector`.
pub(super) fn matches(selector: &Value, labels: Option<&Map<String, Value>>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let match_labels = selector.get("matchLabels").and_then(Value::as_object);
    let labels_ok = match_labels
        .into_iter()
        .flatten()
        .all(|(k, v)| get(k) == v.as_str());
    labels_ok
        && list_of(selector, "matchExpressions").iter().all(|expr| {
            let value = get(str_of(expr, "key"));
            let listed = |v: &str| list_of(expr, "values").iter().any(|x| x == v);
            match str_of(expr, "operator") {
                "In" => value.is_some_and(listed),
                "NotIn" => !value.is_some_and(listed),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// The template's labels as Go prints them, for "does not match" messages.
pub(super) fn template_labels(template: &Value) -> Option<&Map<String, Value>> {
    template
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
}

/// `spec.template.metadata.labels: Invalid value: map[string]string{…}: …` when the
/// selector does not select its own template. A missing selector selects nothing, as
/// upstream's `LabelSelectorAsSelector(nil)` does, so it reports this too.
pub(super) fn check_template_match(spec: &Value, path: &str, out: &mut Vec<Cause>) {
    let labels = spec.get("template").and_then(template_labels);
    let selector = spec.get("selector").filter(|s| !s.is_null());
    if !selector.is_some_and(|s| matches(s, labels)) {
        let field = child(path, "template.metadata.labels");
        let shown = Bad::Raw(go_string_map(labels));
        let detail = "`selector` does not match template `labels`";
        out.push(invalid(&field, shown, detail));
    }
}

/// The selector as Go's `%#v` prints a `v1.LabelSelector`.
pub(super) fn go_selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return "null".into();
    };
    let labels = go_string_map(selector.get("matchLabels").and_then(Value::as_object));
    let exprs = list_of(selector, "matchExpressions");
    let exprs = if exprs.is_empty() {
        "[]v1.LabelSelectorRequirement(nil)".to_string()
    } else {
        let items: Vec<String> = exprs.iter().map(go_requirement).collect();
        format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs}}}")
}

fn go_requirement(expr: &Value) -> String {
    let values = list_of(expr, "values");
    let values = if values.is_empty() {
        "[]string(nil)".to_string()
    } else {
        let items: Vec<String> = values
            .iter()
            .map(|v| go_quote(v.as_str().unwrap_or("")))
            .collect();
        format!("[]string{{{}}}", items.join(", "))
    };
    format!(
        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{values}}}",
        go_quote(str_of(expr, "key")),
        go_quote(str_of(expr, "operator"))
    )
}

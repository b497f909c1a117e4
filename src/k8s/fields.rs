//! Field selectors (`metadata.name=web,status.phase!=Running`).

use serde_json::Value;

/// One requirement of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field, such as `spec.nodeName`.
    pub field: String,
    /// The value compared with.
    pub value: String,
    /// `!=` rather than `=`.
    pub negated: bool,
}

/// A field selector: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

/// A selector that does not parse or names a field the resource cannot select on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldSelectorError {
    /// Bad syntax.
    #[error("invalid field selector: {0}")]
    Syntax(String),
    /// kube-apiserver's words for an unsupported field.
    #[error("field label not supported: {0}")]
    Unsupported(String),
}

impl FieldSelector {
    /// Parses a selector and checks each field against `supported` (besides
    /// `metadata.name`, and `metadata.namespace` when `namespaced`).
    pub fn parse(
        text: &str,
        namespaced: bool,
        supported: &[&str],
    ) -> Result<Self, FieldSelectorError> {
        let mut reqs = Vec::new();
        if text.trim().is_empty() {
            return Ok(FieldSelector(reqs));
        }
        for part in text.split(',') {
            let (field, value, negated) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, false)
            } else {
                return Err(FieldSelectorError::Syntax(format!(
                    "{part:?} has no operator"
                )));
            };
            let field = field.trim();
            let ok = field == "metadata.name"
                || (namespaced && field == "metadata.namespace")
                || supported.contains(&field);
            if !ok {
                return Err(FieldSelectorError::Unsupported(field.to_string()));
            }
            reqs.push(FieldRequirement {
                field: field.to_string(),
                value: value.trim().to_string(),
                negated,
            });
        }
        Ok(FieldSelector(reqs))
    }

    /// Whether `object` satisfies every requirement. A missing field reads as "".
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|r| {
            let mut at = object;
            for part in r.field.split('.') {
                at = at.get(part).unwrap_or(&Value::Null);
            }
            let actual = match at {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            (actual == r.value) != r.negated
        })
    }

    /// The name the selector pins with `metadata.name=X`, if any.
    pub fn name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|r| r.field == "metadata.name" && !r.negated)
            .map(|r| r.value.as_str())
    }

    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_select_on_paths_and_refuse_unknown_ones() {
        let pod = json!({"metadata": {"name": "web", "namespace": "default"},
                         "spec": {"nodeName": "n1", "hostNetwork": false}, "status": {"phase": "Running"}});
        let supported = ["spec.nodeName", "status.phase", "spec.hostNetwork"];
        for (sel, want) in [
            ("metadata.name=web", true),
            ("metadata.name!=web", false),
            ("spec.nodeName==n1,status.phase=Running", true),
            ("spec.nodeName=", false),
            ("spec.hostNetwork=false", true),
            ("metadata.namespace=kube-system", false),
        ] {
            let s = FieldSelector::parse(sel, true, &supported).unwrap();
            assert_eq!(s.matches(&pod), want, "{sel}");
        }
        assert_eq!(
            FieldSelector::parse("spec.foo=x", true, &supported)
                .unwrap_err()
                .to_string(),
            "field label not supported: spec.foo"
        );
        assert!(FieldSelector::parse("metadata.namespace=x", false, &[]).is_err());
    }
}

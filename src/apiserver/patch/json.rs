//! The two patch formats that know nothing of Kubernetes types: JSON merge patch
//! (RFC 7386) and JSON patch (RFC 6902).

use serde_json::{Map, Value};

use crate::apiserver::status::{ApiError, ApiResult};

/// RFC 7386: maps merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let map = target.as_object_mut().expect("made an object above");
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// An RFC 6901 pointer's tokens.
fn pointer_tokens(pointer: &str) -> ApiResult<Vec<String>> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer
        .strip_prefix('/')
        .ok_or_else(|| ApiError::bad_request(format!("invalid JSON pointer {pointer:?}")))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn parent_and_key<'a>(doc: &'a mut Value, pointer: &str) -> ApiResult<(&'a mut Value, String)> {
    let mut tokens = pointer_tokens(pointer)?;
    let last = tokens
        .pop()
        .ok_or_else(|| ApiError::bad_request("a JSON patch path may not be the whole document"))?;
    let mut at = doc;
    for t in &tokens {
        at = match at {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(move |i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| unprocessable(format!("doc is missing path: {pointer:?}")))?;
    }
    Ok((at, last))
}

fn unprocessable(message: String) -> ApiError {
    ApiError::patch_failed(message)
}

fn add(doc: &mut Value, path: &str, value: Value) -> ApiResult<()> {
    let (parent, key) = parent_and_key(doc, path)?;
    match parent {
        Value::Object(m) => {
            m.insert(key, value);
        }
        Value::Array(a) => {
            let i = if key == "-" {
                a.len()
            } else {
                key.parse()
                    .map_err(|_| unprocessable(format!("invalid array index {key:?}")))?
            };
            if i > a.len() {
                return Err(unprocessable(format!("array index {i} out of bounds")));
            }
            a.insert(i, value);
        }
        _ => return Err(unprocessable(format!("doc is missing path: {path:?}"))),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> ApiResult<Value> {
    let (parent, key) = parent_and_key(doc, path)?;
    let removed = match parent {
        Value::Object(m) => m.remove(&key),
        Value::Array(a) => key
            .parse::<usize>()
            .ok()
            .filter(|i| *i < a.len())
            .map(|i| a.remove(i)),
        _ => None,
    };
    removed.ok_or_else(|| unprocessable(format!("unable to remove nonexistent key: {path:?}")))
}

fn get<'a>(doc: &'a Value, path: &str) -> ApiResult<&'a Value> {
    let mut at = doc;
    for t in pointer_tokens(path)? {
        at = match at {
            Value::Object(m) => m.get(&t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        }
        .ok_or_else(|| unprocessable(format!("doc is missing path: {path:?}")))?;
    }
    Ok(at)
}

/// RFC 6902. A failed `test` is 422, which kopf relies on for optimistic locking.
pub fn json_patch(doc: &mut Value, ops: &Value) -> ApiResult<()> {
    let ops = ops
        .as_array()
        .ok_or_else(|| ApiError::bad_request("a JSON patch must be a list of operations"))?;
    for op in ops {
        let path = op["path"]
            .as_str()
            .ok_or_else(|| ApiError::bad_request("a JSON patch operation needs a path"))?;
        let value = || {
            op.get("value").cloned().ok_or_else(|| {
                ApiError::bad_request(format!("operation on {path:?} needs a value"))
            })
        };
        let from = || {
            op["from"]
                .as_str()
                .ok_or_else(|| ApiError::bad_request(format!("operation on {path:?} needs from")))
        };
        match op["op"].as_str().unwrap_or_default() {
            "add" => add(doc, path, value()?)?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                remove(doc, path)?;
                add(doc, path, value()?)?;
            }
            "move" => {
                let moved = remove(doc, from()?)?;
                add(doc, path, moved)?;
            }
            "copy" => {
                let copied = get(doc, from()?)?.clone();
                add(doc, path, copied)?;
            }
            "test" => {
                if *get(doc, path)? != value()? {
                    return Err(unprocessable(format!("testing value {path} failed")));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown JSON patch operation {other:?}"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut doc,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}}),
        );
        assert_eq!(
            doc,
            json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}})
        );
    }

    #[test]
    fn json_patch_follows_rfc_6902_and_a_failed_test_is_422() {
        let mut doc = json!({"metadata": {"labels": {"a/b": "1"}}, "list": [1, 2, 3]});
        json_patch(
            &mut doc,
            &json!([
                {"op": "add", "path": "/metadata/labels/c", "value": "2"},
                {"op": "remove", "path": "/metadata/labels/a~1b"},
                {"op": "replace", "path": "/list/0", "value": 9},
                {"op": "add", "path": "/list/-", "value": 4},
                {"op": "copy", "from": "/list/0", "path": "/first"},
                {"op": "move", "from": "/first", "path": "/moved"},
                {"op": "test", "path": "/moved", "value": 9},
            ]),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"labels": {"c": "2"}}, "list": [9, 2, 3, 4], "moved": 9})
        );
        let err = json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/moved", "value": 1}]),
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}]))
                .unwrap_err()
                .code,
            422
        );
    }
}

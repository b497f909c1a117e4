//! PATCH with `application/merge-patch+json` (RFC 7386) and `application/json-patch+json`
//! (RFC 6902). Strategic merge patch and server-side apply come with the object-semantics
//! work; until then they answer 415, as kube-apiserver does for a type it cannot patch so.

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::write::{commit_update, UpdateOutcome};
use super::{json_response, Ctx};
use crate::apiserver::objects::decode;
use crate::apiserver::status::{ApiError, ApiResult};
use crate::k8s::meta::meta_str;

/// The patch formats served.
enum PatchType {
    Merge,
    Json,
}

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
    ApiError::invalid("", "Patch", "", Vec::new()).with_message(message)
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

/// The patch format the request's Content-Type names, and the patch itself.
fn read_patch(ctx: &Ctx, body: &Bytes) -> ApiResult<(PatchType, Value)> {
    let content_type = ctx
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let kind = match content_type.split(';').next().unwrap_or_default().trim() {
        "application/merge-patch+json" => PatchType::Merge,
        "application/json-patch+json" => PatchType::Json,
        _ => return Err(ApiError::unsupported_media_type(content_type)),
    };
    let patch: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the patch could not be decoded as JSON: {e}"))
    })?;
    Ok((kind, patch))
}

fn apply(kind: &PatchType, doc: &mut Value, patch: &Value) -> ApiResult<()> {
    match kind {
        PatchType::Merge => merge_patch(doc, patch),
        PatchType::Json => json_patch(doc, patch)?,
    }
    Ok(())
}

/// Applies the request's patch to `doc`, a document that is not stored as such (a Scale).
pub fn patch_view(ctx: &Ctx, doc: &mut Value, body: &Bytes) -> ApiResult<()> {
    let (kind, patch) = read_patch(ctx, body)?;
    apply(&kind, doc, &patch)
}

/// `PATCH` an object.
pub async fn patch(ctx: &Ctx, name: &str, body: &Bytes) -> ApiResult<Response> {
    let (kind, patch) = read_patch(ctx, body)?;
    let dry_run = ctx.query.dry_run()?;
    let validation = ctx.validation()?;
    let key = ctx.res.key(ctx.namespace(), name);
    loop {
        let (kv, current) = ctx.current(&key, name).await?;
        let mut patched = current.clone();
        apply(&kind, &mut patched, &patch)?;
        // A patch that names a resourceVersion is a precondition on it; one that removes
        // it is unconditional.
        let wanted_rv = meta_str(&patched, "resourceVersion").to_string();
        if !wanted_rv.is_empty() && wanted_rv != kv.mod_revision.to_string() {
            return Err(ApiError::conflict(ctx.res.group, ctx.res.plural, name));
        }
        let pinned =
            matches!(kind, PatchType::Merge) && !meta_str(&patch, "resourceVersion").is_empty();
        if meta_str(&patched, "name") != name {
            return Err(ApiError::bad_request(
                "the name of an object cannot be changed by a patch",
            ));
        }
        super::write::check_namespace(ctx, &mut patched)?;
        let (patched, warnings) = decode(ctx.res, patched, validation)?;
        match commit_update(ctx, &key, name, &kv, &current, patched, dry_run).await {
            Ok(UpdateOutcome(obj)) => return Ok(json_response(StatusCode::OK, &obj, &warnings)),
            Err(ApiError { code: 409, .. }) if !pinned => continue,
            Err(e) => return Err(e),
        }
    }
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

//! PATCH: JSON merge patch, JSON patch and strategic merge patch (the formats themselves are
//! in `apiserver::patch`), retried on a conflict unless the patch pins a resourceVersion;
//! server-side apply is in `apply.rs`.

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;

use super::write::{commit_update, Tracking, UpdateOutcome};
use super::{json_response, Ctx};
use crate::apiserver::objects::decode;
use crate::apiserver::patch::json::{json_patch, merge_patch};
use crate::apiserver::patch::{root_type, strategic_merge};
use crate::apiserver::status::{ApiError, ApiResult};
use crate::k8s::meta::meta_str;

/// The patch formats served.
enum PatchType {
    Merge,
    Json,
    Strategic,
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
        "application/strategic-merge-patch+json" => PatchType::Strategic,
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
        PatchType::Strategic => {
            let api_version = doc["apiVersion"].as_str().unwrap_or_default();
            let kind = doc["kind"].as_str().unwrap_or_default();
            let schema = root_type(api_version, kind);
            strategic_merge(doc, patch, schema).map_err(|e| e.into_api_error())?;
        }
    }
    Ok(())
}

/// Applies the request's patch to `doc`, a document that is not stored as such (a Scale).
pub fn patch_view(ctx: &Ctx, doc: &mut Value, body: &Bytes) -> ApiResult<()> {
    let (kind, patch) = read_patch(ctx, body)?;
    apply(&kind, doc, &patch)
}

/// The media type of the request body.
fn media_type(ctx: &Ctx) -> &str {
    ctx.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
}

/// `PATCH` an object.
pub async fn patch(ctx: &Ctx, name: &str, body: &Bytes) -> ApiResult<Response> {
    if media_type(ctx) == "application/apply-patch+yaml" {
        return super::apply::server_side_apply(ctx, name, body).await;
    }
    if ctx.query.get("force").is_some() {
        return Err(super::apply::options_invalid(
            "FieldValueForbidden",
            "Forbidden: may not be specified for non-apply patch",
            "force",
        ));
    }
    let (kind, patch) = read_patch(ctx, body)?;
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
            !matches!(kind, PatchType::Json) && !meta_str(&patch, "resourceVersion").is_empty();
        if meta_str(&patched, "name") != name {
            return Err(ApiError::bad_request(
                "the name of an object cannot be changed by a patch",
            ));
        }
        super::write::check_namespace(ctx, &mut patched)?;
        let (patched, warnings) = decode(ctx.res, patched, validation)?;
        let outcome = commit_update(ctx, &key, name, &kv, &current, patched, Tracking::Update);
        match outcome.await {
            Ok(UpdateOutcome(obj)) => return Ok(json_response(StatusCode::OK, &obj, &warnings)),
            Err(ApiError { code: 409, .. }) if !pinned => continue,
            Err(e) => return Err(e),
        }
    }
}

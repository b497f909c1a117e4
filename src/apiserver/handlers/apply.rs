//! Server-side apply (`PATCH` with `application/apply-patch+yaml`): the applied
//! configuration is merged by field ownership (`apiserver::fieldmanager`), creating the
//! object when it does not exist yet.

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};

use super::write::{commit_update, insert, Tracking, UpdateOutcome};
use super::{json_response, Ctx};
use crate::apiserver::fieldmanager::{self, Manager};
use crate::apiserver::objects::{decode, metadata_mut};
use crate::apiserver::status::{ApiError, ApiResult, Cause};
use crate::k8s::meta::{meta_str, now_rfc3339};

/// A 422 about the PatchOptions of the request.
pub fn options_invalid(reason: &'static str, message: &str, field: &str) -> ApiError {
    ApiError::invalid(
        "meta.k8s.io",
        "PatchOptions",
        "",
        vec![Cause {
            reason,
            message: message.into(),
            field: field.into(),
        }],
    )
}

/// The applied configuration: YAML (or JSON, which is YAML too), of this path's kind.
fn read_config(ctx: &Ctx, name: &str, body: &Bytes) -> ApiResult<Value> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the applied configuration is not UTF-8"))?;
    let config: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => serde_saphyr::from_str(text).map_err(|e| {
            ApiError::bad_request(format!(
                "error decoding YAML: the applied configuration could not be read: {e}"
            ))
        })?,
    };
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "the applied configuration must be an object",
        ));
    }
    let (api_version, kind) = (
        config["apiVersion"].as_str().unwrap_or_default(),
        config["kind"].as_str().unwrap_or_default(),
    );
    if api_version.is_empty() || kind.is_empty() {
        return Err(ApiError::bad_request(
            "the applied configuration must set apiVersion and kind",
        ));
    }
    if api_version != ctx.res.api_version() || kind != ctx.res.kind {
        return Err(ApiError::bad_request(format!(
            "the applied configuration is a {kind} of {api_version}, but the path serves {} of {}",
            ctx.res.kind,
            ctx.res.api_version()
        )));
    }
    let given = meta_str(&config, "name");
    if !given.is_empty() && given != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    if config["metadata"].get("managedFields").is_some() {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    Ok(config)
}

/// `PATCH` with an applied configuration.
pub async fn server_side_apply(ctx: &Ctx, name: &str, body: &Bytes) -> ApiResult<Response> {
    let manager = ctx
        .query
        .get("fieldManager")
        .unwrap_or_default()
        .to_string();
    if manager.is_empty() {
        return Err(options_invalid(
            "FieldValueRequired",
            "Required value: is required for apply requests",
            "fieldManager",
        ));
    }
    let force = ctx.query.flag("force");
    let mut config = read_config(ctx, name, body)?;
    if let Some(meta) = metadata_mut(&mut config) {
        meta.insert("name".into(), json!(name));
    }
    super::write::check_namespace(ctx, &mut config)?;
    let (config, warnings) = decode(ctx.res, config, ctx.validation()?)?;
    let api_version = ctx.res.api_version();
    let key = ctx.res.key(ctx.namespace(), name);
    loop {
        let time = now_rfc3339();
        let mgr = Manager {
            name: &manager,
            api_version: &api_version,
            subresource: ctx.path.subresource.as_deref(),
            time: &time,
        };
        let current = match ctx.current(&key, name).await {
            Ok(found) => Some(found),
            Err(ApiError { code: 404, .. }) if ctx.path.subresource.is_none() => None,
            Err(e) => return Err(e),
        };
        let Some((kv, live)) = current else {
            let obj = fieldmanager::apply(None, &config, &mgr, force)
                .map_err(|e| e.into_api_error(ctx.res.group, ctx.res.kind, name))?;
            match insert(ctx, obj, &warnings, Tracking::Recorded).await {
                // Made by someone else meanwhile: apply onto theirs.
                Err(ApiError { code: 409, .. }) => continue,
                other => return other,
            }
        };
        let next = fieldmanager::apply(Some(&live), &config, &mgr, force)
            .map_err(|e| e.into_api_error(ctx.res.group, ctx.res.kind, name))?;
        let outcome = commit_update(ctx, &key, name, &kv, &live, next, Tracking::Recorded);
        match outcome.await {
            Ok(UpdateOutcome(obj)) => return Ok(json_response(StatusCode::OK, &obj, &warnings)),
            // A write between read and store: apply again onto the new version.
            Err(ApiError { code: 409, .. }) => continue,
            Err(e) => return Err(e),
        }
    }
}

//! Resource requests: routing by method and path to get, list, watch, create, update,
//! delete and deletecollection, with kube-apiserver's semantics.

mod apply;
mod deletion;
mod patch;
mod read;
mod strategy;
mod subresource;
mod watch;
mod write;

pub use write::{prepare_create, SYSTEM_NAMESPACES};

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use super::objects::FieldValidation;
use super::request::ResourcePath;
use super::resources::{self, Resource};
use super::status::{ApiError, ApiResult};
use super::table;
use crate::k8s::fields::FieldSelector;
use crate::k8s::labels::LabelSelector;
use crate::store::Backend;

/// Whether `text` is true as Go's `strconv.ParseBool` reads it, as clients written in Go
/// send booleans.
fn go_bool(text: &str) -> bool {
    matches!(text, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// What every handler shares.
pub struct ApiState {
    /// The datastore.
    pub store: Arc<dyn Backend>,
    /// The watch caches, one per kind.
    pub caches: Arc<super::cache::Caches>,
    /// The ClusterIP and NodePort ranges.
    pub services: Arc<super::services::ServiceNetwork>,
}

/// The query parameters of a resource request.
#[derive(Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Parses a query string.
    pub fn parse(query: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// One parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A boolean parameter, read as Go's `strconv.ParseBool` reads it.
    fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(go_bool)
    }

    fn int(&self, name: &str) -> ApiResult<Option<i64>> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid value for {name}: {v:?}"))),
        }
    }

    fn dry_run(&self) -> ApiResult<bool> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dry run value: {other:?}; supported values: \"All\""
            ))),
        }
    }
}

/// One resource request, with everything parsed.
pub struct Ctx {
    pub state: Arc<ApiState>,
    pub res: &'static Resource,
    pub path: ResourcePath,
    pub query: Query,
    pub headers: HeaderMap,
    /// Whether the client asked for a Table.
    pub table: bool,
}

impl Ctx {
    /// The namespace the request is scoped to, for namespaced kinds.
    pub fn namespace(&self) -> Option<&str> {
        if self.res.namespaced {
            self.path.namespace.as_deref()
        } else {
            None
        }
    }

    fn labels(&self) -> ApiResult<LabelSelector> {
        LabelSelector::parse(self.query.get("labelSelector").unwrap_or_default())
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }

    fn fields(&self) -> ApiResult<FieldSelector> {
        FieldSelector::parse(
            self.query.get("fieldSelector").unwrap_or_default(),
            self.res.namespaced,
            self.res.field_selectors,
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))
    }

    fn validation(&self) -> ApiResult<FieldValidation> {
        FieldValidation::parse(self.query.get("fieldValidation"))
    }

    /// The object stored at `key` now, with its store entry; 404 if there is none.
    async fn current(&self, key: &str, name: &str) -> ApiResult<(crate::store::KeyValue, Value)> {
        let (_, kv) = self
            .state
            .store
            .get(key, 0)
            .await
            .map_err(|e| self.store_err(e, name))?;
        let kv = kv.ok_or_else(|| self.not_found(name))?;
        let obj = super::objects::from_stored(&kv)?;
        Ok((kv, obj))
    }

    /// The field manager a write is recorded under: `?fieldManager=`, else the program name
    /// at the head of the User-Agent (`kubectl/v1.33.0 …` is `kubectl`), as kube-apiserver
    /// does. More than 128 characters is refused.
    fn field_manager(&self) -> ApiResult<String> {
        if let Some(given) = self.query.get("fieldManager").filter(|m| !m.is_empty()) {
            if given.len() > 128 {
                return Err(ApiError::invalid(
                    "meta.k8s.io",
                    "UpdateOptions",
                    "",
                    vec![super::status::Cause {
                        reason: "FieldValueTooLong",
                        message: "Too long: may not be more than 128 bytes".into(),
                        field: "fieldManager".into(),
                    }],
                ));
            }
            return Ok(given.to_string());
        }
        let agent = self
            .headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let program = agent.split('/').next().unwrap_or_default();
        Ok(program.chars().take(128).collect())
    }

    /// Whether the request is for the status subresource.
    fn status_only(&self) -> bool {
        self.path.subresource.as_deref() == Some("status")
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::not_found(self.res.group, self.res.plural, name)
    }

    fn store_err(&self, err: crate::store::StoreError, name: &str) -> ApiError {
        ApiError::from_store(err, self.res.group, self.res.plural, name)
    }
}

/// A JSON answer with a status code and warnings.
pub fn json_response(code: StatusCode, body: &Value, warnings: &[String]) -> Response {
    let mut resp = (code, body.to_string()).into_response();
    let headers = resp.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            headers.append("warning", v);
        }
    }
    resp
}

/// A 200 answer of JSON already encoded.
pub fn bytes_response(body: Vec<u8>) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',')
                .any(|m| m.contains("as=Table") && m.contains("g=meta.k8s.io"))
        })
}

/// Handles a request for a resource path.
pub async fn handle(
    state: Arc<ApiState>,
    method: Method,
    path: ResourcePath,
    query: Option<&str>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(res) = resources::find(&path.group, &path.version, &path.resource) else {
        return ApiError::no_route().into_response();
    };
    let ctx = Ctx {
        state,
        res,
        table: wants_table(&headers),
        query: Query::parse(query),
        headers,
        path,
    };
    let outcome = dispatch(&ctx, method, body).await;
    outcome.unwrap_or_else(IntoResponse::into_response)
}

async fn dispatch(ctx: &Ctx, method: Method, body: Bytes) -> ApiResult<Response> {
    match ctx.path.subresource.as_deref() {
        None => {}
        Some("status") if ctx.res.has_status() && ctx.path.name.is_some() => {
            let name = ctx.path.name.clone().unwrap_or_default();
            return match method {
                Method::GET => read::get(ctx, &name).await,
                Method::PUT => write::update(ctx, &name, &body).await,
                Method::PATCH => patch::patch(ctx, &name, &body).await,
                other => Err(ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource: {other}"
                ))),
            };
        }
        Some(sub) if ctx.path.name.is_some() => {
            let name = ctx.path.name.clone().unwrap_or_default();
            let scalable = ctx.res.subresources.iter().any(|s| s.name == "scale");
            let pods = ctx.res.group.is_empty() && ctx.res.plural == "pods";
            return match (sub, method) {
                ("scale", method) if scalable => {
                    subresource::scale(ctx, &name, method, &body).await
                }
                ("binding", Method::POST) if pods => subresource::binding(ctx, &name, &body).await,
                ("eviction", Method::POST) if pods => {
                    subresource::eviction(ctx, &name, &body).await
                }
                ("finalize", Method::PUT) if ctx.res.plural == "namespaces" => {
                    write::update(ctx, &name, &body).await
                }
                ("binding" | "eviction", _) if pods => Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                )),
                _ => Err(ApiError::no_route()),
            };
        }
        Some(_) => return Err(ApiError::no_route()),
    }
    if ctx.res.namespaced && ctx.path.name.is_some() && ctx.path.namespace.is_none() {
        return Err(ApiError::no_route());
    }
    if !ctx.res.namespaced && ctx.path.namespace.is_some() {
        return Err(ApiError::no_route());
    }
    let name = ctx.path.name.clone();
    match (method, name) {
        (Method::GET, Some(name)) => read::get(ctx, &name).await,
        (Method::GET, None) if ctx.query.flag("watch") => watch::watch(ctx).await,
        (Method::GET, None) => read::list(ctx).await,
        (Method::POST, None) => write::create(ctx, &body).await,
        (Method::PUT, Some(name)) => write::update(ctx, &name, &body).await,
        (Method::DELETE, Some(name)) => write::delete(ctx, &name, &body).await,
        (Method::DELETE, None) => write::delete_collection(ctx, &body).await,
        (Method::PATCH, Some(name)) => patch::patch(ctx, &name, &body).await,
        (method, _) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource: {method}"
        ))),
    }
}

/// The body as JSON, with a clear error for malformed input or a wrong Content-Type.
pub fn parse_body(headers: &HeaderMap, body: &Bytes) -> ApiResult<Value> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if media == "application/vnd.kubernetes.protobuf" {
        return crate::apiserver::protobuf::decode_object(body)
            .map_err(|e| ApiError::bad_request(e.to_string()));
    }
    let value: Value = match media {
        "application/json" | "" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body of the request could not be decoded as JSON: {e}"
            ))
        })?,
        "application/yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("the YAML body of the request is not UTF-8"))?;
            serde_saphyr::from_str(text).map_err(|e| {
                ApiError::bad_request(format!(
                    "the body of the request could not be decoded as YAML: {e}"
                ))
            })?
        }
        _ => return Err(ApiError::unsupported_media_type(content_type)),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    Ok(value)
}

/// Renders a list or object answer, as a Table when asked.
pub fn render(ctx: &Ctx, items: &[Value], list_meta: Option<Value>, single: bool) -> Value {
    if ctx.table {
        return table::table(ctx.res, items, list_meta, true);
    }
    if single {
        return items.first().cloned().unwrap_or(Value::Null);
    }
    serde_json::json!({
        "kind": format!("{}List", ctx.res.kind),
        "apiVersion": ctx.res.api_version(),
        "metadata": list_meta.unwrap_or_else(|| serde_json::json!({})),
        "items": items,
    })
}

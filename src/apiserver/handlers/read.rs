//! get and list.

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde_json::{json, Value};

use super::{bytes_response, json_response, render, Ctx};
use crate::apiserver::objects::from_stored;
use crate::apiserver::status::{ApiError, ApiResult};
use crate::k8s::meta::labels;
use crate::store::{ListRequest, Revision, StoreError};

/// `GET …/NAME`.
pub async fn get(ctx: &Ctx, name: &str) -> ApiResult<Response> {
    let key = ctx.res.key(ctx.namespace(), name);
    let (_, obj) = ctx.current(&key, name).await?;
    Ok(json_response(
        StatusCode::OK,
        &render(ctx, &[obj], None, true),
        &[],
    ))
}

/// Where a list page starts: the revision all pages share and the first key.
#[derive(Debug, PartialEq, Eq)]
struct Continue {
    revision: Revision,
    start: String,
}

const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

impl Continue {
    fn encode(&self) -> String {
        let text = json!({"v": "skiff/1", "rv": self.revision, "start": self.start}).to_string();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    fn decode(token: &str) -> ApiResult<Self> {
        let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad())?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        Ok(Continue {
            revision: v["rv"].as_i64().filter(|r| *r > 0).ok_or_else(bad)?,
            start: v["start"].as_str().ok_or_else(bad)?.to_string(),
        })
    }
}

/// The revision a list reads at, from `resourceVersion` and `resourceVersionMatch`.
async fn list_revision(ctx: &Ctx) -> ApiResult<Revision> {
    let rv = ctx.query.get("resourceVersion").unwrap_or_default();
    let exact = match ctx.query.get("resourceVersionMatch") {
        None | Some("") => false,
        Some("Exact") => true,
        Some("NotOlderThan") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
            )))
        }
    };
    if rv.is_empty() || rv == "0" {
        if exact {
            return Err(ApiError::bad_request(
                "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\" or unset",
            ));
        }
        return Ok(0);
    }
    let n: Revision = rv
        .parse()
        .ok()
        .filter(|n: &Revision| *n >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?;
    let current = ctx
        .state
        .store
        .current_revision()
        .await
        .map_err(|e| ctx.store_err(e, ""))?;
    if n > current {
        return Err(ApiError::too_large_resource_version(n, current));
    }
    Ok(if exact { n } else { 0 })
}

/// `GET` a collection.
pub async fn list(ctx: &Ctx) -> ApiResult<Response> {
    let labels_sel = ctx.labels()?;
    let fields_sel = ctx.fields()?;
    let limit = ctx.query.int("limit")?.unwrap_or(0).max(0) as usize;
    let from_cache = ctx.query.get("continue").is_none_or(str::is_empty)
        && ctx.query.get("resourceVersion") == Some("0")
        && ctx
            .query
            .get("resourceVersionMatch")
            .is_none_or(|m| m.is_empty() || m == "NotOlderThan");
    if from_cache {
        // Any recent state will do: the watch cache's, whole (a limit may be ignored).
        let snap = ctx
            .state
            .caches
            .get(ctx.res)
            .await?
            .snapshot(&ctx.res.collection_key(ctx.namespace()));
        let selected = snap.objects.iter().filter(|o| {
            labels_sel.matches(&o.labels)
                && (fields_sel.is_empty() || fields_sel.matches(&o.value()))
        });
        let mut body = ListBody::new(ctx);
        for o in selected {
            body.push_bytes(&o.json, || o.value());
        }
        let meta = json!({"resourceVersion": snap.revision.to_string()});
        return Ok(body.finish(ctx, meta));
    }
    let (mut revision, mut start) = match ctx.query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            if ctx
                .query
                .get("resourceVersion")
                .is_some_and(|rv| !rv.is_empty())
            {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            let c = Continue::decode(token)?;
            if !c
                .start
                .starts_with(&ctx.res.collection_key(ctx.namespace()))
            {
                return Err(ApiError::bad_request(
                    "continue key is not valid for this list",
                ));
            }
            (c.revision, Some(c.start))
        }
        None => (list_revision(ctx).await?, None),
    };
    let prefix = ctx.res.collection_key(ctx.namespace());
    let mut items = ListBody::new(ctx);
    let mut next = None;
    loop {
        let req = ListRequest {
            prefix: prefix.clone(),
            start_key: start.clone(),
            limit,
            revision,
        };
        let page = ctx.state.store.list(&req).await.map_err(|e| match e {
            StoreError::Compacted { .. } if start.is_some() => ApiError::expired(CONTINUE_EXPIRED),
            other => ctx.store_err(other, ""),
        })?;
        revision = page.revision;
        let count = page.kvs.len();
        for (i, kv) in page.kvs.iter().enumerate() {
            let obj = from_stored(kv)?;
            if labels_sel.matches(&labels(&obj)) && fields_sel.matches(&obj) {
                items.push_value(obj);
            }
            if limit > 0 && items.len() == limit {
                if i + 1 < count || page.more {
                    next = Some(format!("{}\0", kv.key));
                }
                break;
            }
        }
        if next.is_some() || !page.more || (limit > 0 && items.len() == limit) {
            break;
        }
        start = page.kvs.last().map(|kv| format!("{}\0", kv.key));
    }
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if let Some(start) = next {
        meta["continue"] = json!(Continue { revision, start }.encode());
    }
    Ok(items.finish(ctx, meta))
}

/// A list answer built one item at a time: JSON items are encoded as they come, so a large
/// list never holds every object parsed at once (tables need them whole).
enum ListBody {
    Table(Vec<Value>),
    Json { items: Vec<u8>, count: usize },
}

impl ListBody {
    fn new(ctx: &Ctx) -> Self {
        if ctx.table {
            ListBody::Table(Vec::new())
        } else {
            ListBody::Json {
                items: Vec::new(),
                count: 0,
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            ListBody::Table(v) => v.len(),
            ListBody::Json { count, .. } => *count,
        }
    }

    fn push_value(&mut self, obj: Value) {
        match self {
            ListBody::Table(v) => v.push(obj),
            ListBody::Json { .. } => {
                let json = serde_json::to_vec(&obj).unwrap_or_default();
                self.push_bytes(&json, || Value::Null)
            }
        }
    }

    fn push_bytes(&mut self, json: &[u8], parse: impl FnOnce() -> Value) {
        match self {
            ListBody::Table(v) => v.push(parse()),
            ListBody::Json { items, count } => {
                if *count > 0 {
                    items.push(b',');
                }
                items.extend_from_slice(json);
                *count += 1;
            }
        }
    }

    fn finish(self, ctx: &Ctx, meta: Value) -> Response {
        match self {
            ListBody::Table(items) => {
                json_response(StatusCode::OK, &render(ctx, &items, Some(meta), false), &[])
            }
            ListBody::Json { items, .. } => {
                let head = json!({"kind": format!("{}List", ctx.res.kind),
                                  "apiVersion": ctx.res.api_version(), "metadata": meta})
                .to_string();
                // The head without its closing brace, then the items.
                let mut body = Vec::with_capacity(head.len() + items.len() + 16);
                body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
                body.extend_from_slice(b",\"items\":[");
                body.extend_from_slice(&items);
                body.extend_from_slice(b"]}");
                bytes_response(body)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_refuse_garbage() {
        let c = Continue {
            revision: 42,
            start: "/registry/pods/default/b\0".into(),
        };
        assert_eq!(Continue::decode(&c.encode()).unwrap(), c);
        assert_eq!(Continue::decode("not-a-token").unwrap_err().code, 400);
    }
}

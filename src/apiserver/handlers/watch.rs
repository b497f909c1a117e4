//! watch: a chunked stream of one JSON event per line, flushed per event.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::Ctx;
use crate::apiserver::objects::{from_stored, set_resource_version};
use crate::apiserver::status::{ApiError, ApiResult, Cause};
use crate::apiserver::table;
use crate::k8s::fields::FieldSelector;
use crate::k8s::labels::LabelSelector;
use crate::k8s::meta::labels;
use crate::store::{Event, EventKind, ListRequest, Revision, StoreError, Watch};

/// How often a watch that asked for bookmarks gets one, when its revision moved.
const BOOKMARK_EVERY: Duration = Duration::from_secs(10);

/// What a watch filters on and how it writes events.
struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(&labels(obj)) && self.fields.matches(obj)
    }
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::invalid(
        "",
        "ListOptions",
        "",
        vec![Cause {
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {message}"),
            field: field.into(),
        }],
    )
}

/// `GET` a collection with `watch=true`.
pub async fn watch(ctx: &Ctx) -> ApiResult<Response> {
    if ctx.query.get("sendInitialEvents").is_some() {
        return Err(invalid(
            "sendInitialEvents",
            "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
        ));
    }
    if ctx
        .query
        .get("resourceVersionMatch")
        .is_some_and(|m| !m.is_empty())
    {
        return Err(invalid(
            "resourceVersionMatch",
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        ));
    }
    let filter = Filter {
        labels: ctx.labels()?,
        fields: ctx.fields()?,
    };
    let timeout = match ctx.query.int("timeoutSeconds")? {
        Some(secs) if secs > 0 => Duration::from_secs(secs as u64),
        _ => Duration::from_secs(1800 + rand_below(1800)),
    };
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    let prefix = ctx.res.collection_key(ctx.namespace());
    let store = &ctx.state.store;
    let rv = ctx.query.get("resourceVersion").unwrap_or_default();
    let (start, initial) = if rv.is_empty() || rv == "0" {
        let list = store
            .list(&ListRequest::prefix(prefix.clone()))
            .await
            .map_err(|e| ctx.store_err(e, ""))?;
        let mut initial = Vec::new();
        for kv in &list.kvs {
            let obj = from_stored(kv)?;
            if filter.matches(&obj) {
                initial.push(("ADDED", obj));
            }
        }
        (list.revision + 1, initial)
    } else {
        let n: Revision = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?;
        let current = store
            .current_revision()
            .await
            .map_err(|e| ctx.store_err(e, ""))?;
        if n > current {
            return Err(ApiError::too_large_resource_version(n, current));
        }
        (n + 1, Vec::new())
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let writer = EventWriter {
        tx,
        table: ctx.table,
        res: ctx.res,
        columns_sent: false,
    };
    match store.watch(&prefix, start).await {
        Ok(watch) => {
            let stream = Stream {
                writer,
                filter,
                watch,
                last: start - 1,
                bookmarks,
                timeout,
            };
            tokio::spawn(stream.run(initial));
        }
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            let status = ApiError::expired(format!(
                "too old resource version: {} ({compacted})",
                requested - 1
            ));
            let mut writer = writer;
            tokio::spawn(async move { writer.send("ERROR", status.to_status()).await });
        }
        Err(e) => return Err(ctx.store_err(e, "")),
    }
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    }));
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    Ok(resp)
}

fn rand_below(n: u64) -> u64 {
    u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * n / 256
}

/// Writes events as lines, as Tables when the client asked for them.
struct EventWriter {
    tx: mpsc::Sender<Bytes>,
    table: bool,
    res: &'static crate::apiserver::resources::Resource,
    columns_sent: bool,
}

impl EventWriter {
    /// Sends one event; false once the client is gone.
    async fn send(&mut self, kind: &str, object: Value) -> bool {
        let object = if self.table && kind != "ERROR" && kind != "BOOKMARK" {
            let with_columns = !self.columns_sent;
            self.columns_sent = true;
            table::table(self.res, &[object], None, with_columns)
        } else {
            object
        };
        let mut line = json!({"type": kind, "object": object}).to_string();
        line.push('\n');
        self.tx.send(Bytes::from(line)).await.is_ok()
    }
}

/// A running watch.
struct Stream {
    writer: EventWriter,
    filter: Filter,
    watch: Watch,
    /// The last revision delivered (or known to hold nothing for this watch).
    last: Revision,
    bookmarks: bool,
    timeout: Duration,
}

impl Stream {
    async fn run(mut self, initial: Vec<(&'static str, Value)>) {
        for (kind, obj) in initial {
            if !self.writer.send(kind, obj).await {
                return;
            }
        }
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        let mut bookmarked = self.last;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = self.writer.tx.closed() => return,
                _ = tick.tick(), if self.bookmarks => {
                    if self.last > bookmarked {
                        bookmarked = self.last;
                        let object = json!({"kind": self.writer.res.kind, "apiVersion": self.writer.res.api_version(),
                                            "metadata": {"resourceVersion": self.last.to_string()}});
                        if !self.writer.send("BOOKMARK", object).await {
                            return;
                        }
                    }
                }
                next = self.watch.next() => match next {
                    Some(Ok(events)) => {
                        for event in events {
                            self.last = event.revision();
                            if let Some((kind, obj)) = self.convert(&event) {
                                if !self.writer.send(kind, obj).await {
                                    return;
                                }
                            }
                        }
                    }
                    Some(Err(err)) => {
                        let status = match err {
                            StoreError::Compacted { requested, compacted } => ApiError::expired(
                                format!("too old resource version: {} ({compacted})", requested - 1)),
                            other => ApiError::internal(format!("watch ended: {other}")),
                        };
                        self.writer.send("ERROR", status.to_status()).await;
                        return;
                    }
                    None => return,
                },
            }
        }
    }

    /// The event a client sees for a store event, after its selectors.
    fn convert(&self, event: &Event) -> Option<(&'static str, Value)> {
        let parse = |kv: &crate::store::KeyValue| from_stored(kv).ok();
        let old = event.prev.as_ref().and_then(parse);
        let old_match = old.as_ref().is_some_and(|o| self.filter.matches(o));
        match event.kind {
            EventKind::Delete => {
                let mut obj = old?;
                set_resource_version(&mut obj, event.revision());
                old_match.then_some(("DELETED", obj))
            }
            EventKind::Put => {
                let obj = parse(&event.kv)?;
                let new_match = self.filter.matches(&obj);
                match (old.is_some() && old_match, new_match) {
                    (false, true) => Some(("ADDED", obj)),
                    (true, true) => Some(("MODIFIED", obj)),
                    (true, false) => Some(("DELETED", obj)),
                    (false, false) => None,
                }
            }
        }
    }
}

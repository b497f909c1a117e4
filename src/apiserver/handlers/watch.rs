//! watch: a chunked stream of one JSON event per line, flushed per event.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::Ctx;
use crate::apiserver::cache::{watch_line, CachedEvent, CachedObject};
use crate::apiserver::objects::{from_stored, set_resource_version};
use crate::apiserver::status::{ApiError, ApiResult, Cause};
use crate::apiserver::table;
use crate::k8s::fields::FieldSelector;
use crate::k8s::labels::LabelSelector;
use crate::k8s::meta::labels;
use crate::store::{Event, EventKind, Revision, StoreError, Watch};

/// How often a watch that asked for bookmarks gets one, when its revision moved.
const BOOKMARK_EVERY: Duration = Duration::from_secs(10);

/// What a watch filters on and how it writes events.
struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches_cached(&self, obj: &CachedObject) -> bool {
        self.labels.matches(&obj.labels)
            && (self.fields.is_empty() || self.fields.matches(&obj.value()))
    }

    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(&labels(obj)) && self.fields.matches(obj)
    }

    fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
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
    if ctx.query.flag("sendInitialEvents") {
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
    let cache = ctx.state.caches.get(ctx.res).await?;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut writer = EventWriter {
        tx,
        table: ctx.table,
        res: ctx.res,
        columns_sent: false,
    };
    let (source, last, initial) = if rv.is_empty() || rv == "0" {
        // The current state from the cache, then what follows it.
        let snap = cache.snapshot(&prefix);
        let initial = snap
            .objects
            .iter()
            .filter(|o| filter.matches_cached(o))
            .cloned()
            .collect();
        let source = Source::Cache {
            past: VecDeque::new(),
            live: snap.events,
            prefix: prefix.clone(),
        };
        (source, snap.revision, initial)
    } else {
        let n: Revision = rv
            .parse()
            .ok()
            .filter(|n: &Revision| *n >= 0)
            .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?;
        let current = store
            .current_revision()
            .await
            .map_err(|e| ctx.store_err(e, ""))?;
        if n > current {
            return Err(ApiError::too_large_resource_version(n, current));
        }
        match cache.since(n) {
            Some((past, live)) => (
                Source::Cache {
                    past: past.into(),
                    live,
                    prefix: prefix.clone(),
                },
                n,
                Vec::new(),
            ),
            // Older than the cache's history: the datastore replays it, or says it is gone.
            None => match store.watch(&prefix, n + 1).await {
                Ok(watch) => (Source::Store(watch), n, Vec::new()),
                Err(StoreError::Compacted {
                    requested,
                    compacted,
                }) => {
                    let status = ApiError::expired(format!(
                        "too old resource version: {} ({compacted})",
                        requested - 1
                    ));
                    tokio::spawn(async move { writer.send("ERROR", status.to_status()).await });
                    return Ok(stream_response(rx));
                }
                Err(e) => return Err(ctx.store_err(e, "")),
            },
        }
    };
    let stream = Stream {
        writer,
        filter,
        source,
        last,
        bookmarks,
        timeout,
    };
    tokio::spawn(stream.run(initial));
    Ok(stream_response(rx))
}

fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    }));
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp
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
        self.send_line(Bytes::from(line)).await
    }

    /// Sends an encoded line; false once the client is gone.
    async fn send_line(&mut self, line: Bytes) -> bool {
        self.tx.send(line).await.is_ok()
    }
}

/// Where a watch's events come from.
enum Source {
    /// The kind's watch cache: events it still held, then live ones.
    Cache {
        past: VecDeque<Arc<CachedEvent>>,
        live: broadcast::Receiver<Arc<CachedEvent>>,
        prefix: String,
    },
    /// The datastore, for a resume older than the cache's history.
    Store(Watch),
}

/// What the next step of a source gave.
enum Next {
    Cached(Arc<CachedEvent>),
    Stored(Vec<Event>),
    Failed(ApiError),
    /// The source ended (the cache restarted, or the watcher fell too far behind).
    End,
}

impl Source {
    async fn next(&mut self) -> Next {
        match self {
            Source::Cache { past, live, prefix } => loop {
                let event = match past.pop_front() {
                    Some(e) => e,
                    None => match live.recv().await {
                        Ok(e) => e,
                        Err(_) => return Next::End,
                    },
                };
                if event.key.starts_with(prefix.as_str()) {
                    return Next::Cached(event);
                }
            },
            Source::Store(watch) => match watch.next().await {
                Some(Ok(events)) => Next::Stored(events),
                Some(Err(StoreError::Compacted {
                    requested,
                    compacted,
                })) => Next::Failed(ApiError::expired(format!(
                    "too old resource version: {} ({compacted})",
                    requested - 1
                ))),
                Some(Err(other)) => {
                    Next::Failed(ApiError::internal(format!("watch ended: {other}")))
                }
                None => Next::End,
            },
        }
    }
}

/// A running watch.
struct Stream {
    writer: EventWriter,
    filter: Filter,
    source: Source,
    /// The last revision delivered (or known to hold nothing for this watch).
    last: Revision,
    bookmarks: bool,
    timeout: Duration,
}

impl Stream {
    async fn run(mut self, initial: Vec<Arc<CachedObject>>) {
        for obj in initial {
            let sent = if self.writer.table {
                self.writer.send("ADDED", obj.value()).await
            } else {
                self.writer.send_line(watch_line("ADDED", &obj.json)).await
            };
            if !sent {
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
                next = self.source.next() => match next {
                    Next::Cached(event) => {
                        if event.revision <= self.last {
                            continue;
                        }
                        self.last = event.revision;
                        let sent = if self.filter.is_empty() && !self.writer.table {
                            self.writer.send_line(event.line()).await
                        } else {
                            let prev = event.prev.as_ref().map(|p| p.value());
                            match self.filtered(event.kind, prev.as_ref(), &event.object.value()) {
                                Some((kind, obj)) => self.writer.send(kind, obj).await,
                                None => true,
                            }
                        };
                        if !sent {
                            return;
                        }
                    }
                    Next::Stored(events) => {
                        for event in events {
                            self.last = event.revision();
                            if let Some((kind, obj)) = self.convert(&event) {
                                if !self.writer.send(kind, obj).await {
                                    return;
                                }
                            }
                        }
                    }
                    Next::Failed(status) => {
                        self.writer.send("ERROR", status.to_status()).await;
                        return;
                    }
                    Next::End => return,
                },
            }
        }
    }

    /// The event a client sees for a store event, after its selectors.
    fn convert(&self, event: &Event) -> Option<(&'static str, Value)> {
        let parse = |kv: &crate::store::KeyValue| from_stored(kv).ok();
        let old = event.prev.as_ref().and_then(parse);
        let new = match event.kind {
            EventKind::Delete => {
                let mut obj = old.clone()?;
                set_resource_version(&mut obj, event.revision());
                obj
            }
            EventKind::Put => parse(&event.kv)?,
        };
        self.filtered(event.kind, old.as_ref(), &new)
    }

    /// The event type a watcher with selectors sees, if any: an object that starts or stops
    /// matching is ADDED or DELETED for it.
    fn filtered(
        &self,
        kind: EventKind,
        old: Option<&Value>,
        new: &Value,
    ) -> Option<(&'static str, Value)> {
        let old_match = old.is_some_and(|o| self.filter.matches(o));
        match kind {
            EventKind::Delete => old_match.then(|| ("DELETED", new.clone())),
            EventKind::Put => match (old_match, self.filter.matches(new)) {
                (false, true) => Some(("ADDED", new.clone())),
                (true, true) => Some(("MODIFIED", new.clone())),
                (true, false) => Some(("DELETED", new.clone())),
                (false, false) => None,
            },
        }
    }
}

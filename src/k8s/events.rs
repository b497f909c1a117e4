//! An event recorder for skiff's own components: `core/v1` Events about an object,
//! written by one background task so that the caller never waits for them. As
//! client-go's broadcaster, it drops events rather than block when too many are queued.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, PostParams};
use kube::Resource;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::k8s::meta::now_rfc3339;

/// Events waiting to be written at most; more are dropped.
const QUEUE: usize = 1000;
/// Events written at once.
const CONCURRENCY: usize = 8;

/// Records events in the background.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Event>,
    component: Arc<str>,
}

impl EventSink {
    /// Starts the writer task for `component` (`default-scheduler`, …).
    pub fn start(client: kube::Client, component: &str, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel::<Event>(QUEUE);
        tokio::spawn(async move {
            let writes = tokio_stream_from(rx)
                .map(|event| {
                    let client = client.clone();
                    async move {
                        let ns = event
                            .metadata
                            .namespace
                            .clone()
                            .unwrap_or_else(|| "default".into());
                        let api: Api<Event> = Api::namespaced(client, &ns);
                        if let Err(err) = api.create(&PostParams::default(), &event).await {
                            tracing::debug!(error = %err, "Could not record an event.");
                        }
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .for_each(|()| async {});
            tokio::select! {
                _ = writes => {}
                _ = shutdown.cancelled() => {}
            }
        });
        EventSink {
            tx,
            component: component.into(),
        }
    }

    /// Records an event of `kind` (`Normal`, `Warning`) about `obj`.
    pub fn record<K>(&self, obj: &K, kind: &str, reason: &str, message: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let meta = obj.meta();
        let name = meta.name.clone().unwrap_or_default();
        let now = now_rfc3339();
        let event = json!({
            // client-go's recorder names events `<object>.<nanoseconds in hex>`.
            "metadata": {"name": format!("{name}.{:x}", unix_nanos()), "namespace": meta.namespace.clone().unwrap_or_else(|| "default".into())},
            "involvedObject": {
                "apiVersion": K::api_version(&()), "kind": K::kind(&()), "name": name,
                "namespace": meta.namespace, "uid": meta.uid, "resourceVersion": meta.resource_version,
            },
            "reason": reason, "message": message, "type": kind,
            "source": {"component": &*self.component},
            "reportingComponent": &*self.component, "reportingInstance": &*self.component,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        let event = match serde_json::from_value::<Event>(event) {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(error = %err, reason, "An event could not be made; dropping it.");
                return;
            }
        };
        if self.tx.try_send(event).is_err() {
            tracing::debug!(reason, "The event queue is full; dropping an event.");
        }
    }
}

/// A stream of what a channel receives.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

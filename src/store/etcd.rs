//! The etcd backend (`etcd://HOST:PORT[,…]`): a real etcd cluster, the way to several
//! servers.
//!
//! Each call maps onto etcd directly: guarded writes are etcd transactions comparing the
//! key's mod revision, watches are etcd watches with previous values, times to live are
//! etcd leases, compaction is etcd's. etcd's revision is the store's revision.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions,
    Identity, KvClient, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchClient,
    WatchOptions,
};
use tokio_util::sync::CancellationToken;

use super::{
    check_key, prefix_end, Backend, Event, EventKind, KeyValue, ListRequest, ListResult, Result,
    Revision, StoreError, TlsFiles, Watch,
};

/// The longest wait between two attempts to reach etcd at start.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Batches buffered between an etcd watch and its consumer.
const WATCH_BUFFER: usize = 64;
/// The largest answer taken from etcd: a list of a whole prefix can be large, and gRPC's
/// default of 4 MiB is far too small for it (kube-apiserver lifts the limit as well).
const MAX_MESSAGE: usize = i32::MAX as usize;
/// How long to wait for etcd to cancel a watch below its compaction point.
const COMPACTION_PROBE_WAIT: Duration = Duration::from_millis(500);

/// A connection to an etcd cluster.
pub struct EtcdBackend {
    client: Client,
    kv: KvClient,
    watch: WatchClient,
    endpoint: Arc<str>,
    /// The highest compaction point seen: from our compactions, from watches refused below
    /// it, or from one probe at the first question.
    compacted: Arc<AtomicI64>,
    probed: Arc<AtomicBool>,
}

/// What an etcd error means for the caller.
enum Kind {
    Compacted,
    Future,
    Other,
}

fn kind(err: &etcd_client::Error) -> Kind {
    let text = err.to_string();
    if text.contains("required revision has been compacted") {
        Kind::Compacted
    } else if text.contains("required revision is a future revision") {
        Kind::Future
    } else {
        Kind::Other
    }
}

fn convert(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    Ok(KeyValue {
        key: String::from_utf8(kv.key().to_vec())
            .map_err(|_| StoreError::backend("etcd", "a key in etcd is not UTF-8"))?,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

/// The first key of a prefix range: etcd refuses an empty key, so "" starts at NUL.
fn range_start(prefix: &str) -> String {
    if prefix.is_empty() {
        "\0".to_string()
    } else {
        prefix.to_string()
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map_or(0, |h| h.revision())
}

impl EtcdBackend {
    /// Connects, retrying with backoff until etcd answers or `shutdown` is cancelled.
    pub async fn connect(
        endpoints: &[String],
        tls: Option<&TlsFiles>,
        shutdown: &CancellationToken,
    ) -> Result<Self> {
        let endpoint: Arc<str> = endpoints.join(",").into();
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(30))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10));
        if let Some(files) = tls {
            options = options.with_tls(tls_options(files, &endpoint)?);
        }
        let mut backoff = Duration::from_millis(250);
        loop {
            let attempt = async {
                let mut client = Client::connect(endpoints, Some(options.clone())).await?;
                client.status().await?;
                Ok::<_, etcd_client::Error>(client)
            };
            let err = tokio::select! {
                _ = shutdown.cancelled() => None,
                outcome = attempt => match outcome {
                    Ok(client) => {
                        tracing::info!(endpoint = %endpoint, "Connected to etcd.");
                        return Ok(EtcdBackend {
                            kv: client.kv_client().max_decoding_message_size(MAX_MESSAGE),
                            watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE),
                            client,
                            endpoint,
                            compacted: Arc::new(AtomicI64::new(0)),
                            probed: Arc::new(AtomicBool::new(false)),
                        });
                    }
                    Err(err) => Some(err),
                },
            };
            let Some(err) = err else {
                return Err(StoreError::Etcd {
                    endpoint: endpoint.to_string(),
                    message: "gave up waiting for etcd: shutting down".into(),
                });
            };
            tracing::warn!(endpoint = %endpoint, error = %err, retry_in = ?backoff, "Cannot reach etcd; retrying.");
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn err(&self, err: etcd_client::Error) -> StoreError {
        StoreError::Etcd {
            endpoint: self.endpoint.to_string(),
            message: err.to_string(),
        }
    }

    /// Maps an error of a read or compaction at `requested`.
    async fn revision_err(&self, err: etcd_client::Error, requested: Revision) -> StoreError {
        match kind(&err) {
            Kind::Compacted => StoreError::Compacted {
                requested,
                compacted: self.compacted_revision().await.unwrap_or(0),
            },
            Kind::Future => StoreError::FutureRevision {
                requested,
                current: self.current_revision().await.unwrap_or(0),
            },
            Kind::Other => self.err(err),
        }
    }

    /// Grants a lease for a time to live (at least one second), or none.
    async fn lease(&self, ttl: Option<Duration>) -> Result<Option<i64>> {
        let Some(ttl) = ttl else { return Ok(None) };
        let secs = ttl.as_secs_f64().ceil().max(1.0) as i64;
        let mut c = self.client.lease_client();
        let granted = c.grant(secs, None).await.map_err(|e| self.err(e))?;
        Ok(Some(granted.id()))
    }

    /// A transaction guarded by the key's existence and, if given, its mod revision; runs
    /// `then` on success and reads the key otherwise. Returns the response and whether the
    /// guard held, or the error to give when it did not.
    async fn guarded(
        &self,
        key: &str,
        expected: Option<Revision>,
        then: TxnOp,
    ) -> Result<etcd_client::TxnResponse> {
        let mut compares = vec![Compare::create_revision(key, CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(key, CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([then])
            .or_else([TxnOp::get(key, None)]);
        let mut c = self.kv.clone();
        let resp = c.txn(txn).await.map_err(|e| self.err(e))?;
        if resp.succeeded() {
            return Ok(resp);
        }
        let current = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().cloned(),
            _ => None,
        });
        Err(match (current, expected) {
            (Some(kv), Some(expected)) => StoreError::Conflict {
                key: key.to_string(),
                expected,
                current: Some(Box::new(convert(&kv)?)),
            },
            _ => StoreError::NotFound {
                key: key.to_string(),
            },
        })
    }
}

fn tls_options(files: &TlsFiles, endpoint: &str) -> Result<TlsOptions> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).map_err(|e| StoreError::Etcd {
            endpoint: endpoint.to_string(),
            message: format!("read {what} {}: {e}", path.display()),
        })
    };
    let mut tls = TlsOptions::new();
    if let Some(ca) = &files.ca_file {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca, "--datastore-cafile")?));
    }
    match (&files.cert_file, &files.key_file) {
        (Some(cert), Some(key)) => {
            let cert = read(cert, "--datastore-certfile")?;
            let key = read(key, "--datastore-keyfile")?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::Etcd {
                endpoint: endpoint.to_string(),
                message: "--datastore-certfile and --datastore-keyfile go together".into(),
            })
        }
    }
    Ok(tls)
}

#[async_trait]
impl Backend for EtcdBackend {
    fn name(&self) -> &'static str {
        "etcd"
    }

    async fn get(&self, key: &str, revision: Revision) -> Result<(Revision, Option<KeyValue>)> {
        let mut c = self.kv.clone();
        let opts = GetOptions::new().with_revision(revision);
        match c.get(key, Some(opts)).await {
            Ok(resp) => {
                let at = if revision == 0 {
                    header_revision(resp.header())
                } else {
                    revision
                };
                let kv = resp.kvs().first().map(convert).transpose()?;
                Ok((at, kv))
            }
            Err(err) => Err(self.revision_err(err, revision).await),
        }
    }

    async fn list(&self, req: &ListRequest) -> Result<ListResult> {
        let start = match &req.start_key {
            Some(s) if s.as_str() > req.prefix.as_str() => s.clone(),
            _ => range_start(&req.prefix),
        };
        let end = prefix_end(&req.prefix).unwrap_or_else(|| vec![0]);
        let opts = GetOptions::new()
            .with_range(end)
            .with_limit(req.limit as i64)
            .with_revision(req.revision);
        let mut c = self.kv.clone();
        match c.get(start, Some(opts)).await {
            Ok(resp) => Ok(ListResult {
                revision: if req.revision == 0 {
                    header_revision(resp.header())
                } else {
                    req.revision
                },
                kvs: resp.kvs().iter().map(convert).collect::<Result<_>>()?,
                more: resp.more(),
            }),
            Err(err) => Err(self.revision_err(err, req.revision).await),
        }
    }

    async fn count(&self, prefix: &str) -> Result<(Revision, u64)> {
        let end = prefix_end(prefix).unwrap_or_else(|| vec![0]);
        let opts = GetOptions::new().with_range(end).with_count_only();
        let mut c = self.kv.clone();
        let resp = c
            .get(range_start(prefix), Some(opts))
            .await
            .map_err(|e| self.err(e))?;
        Ok((header_revision(resp.header()), resp.count().max(0) as u64))
    }

    async fn create(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<Revision> {
        check_key(key)?;
        let mut put = PutOptions::new();
        if let Some(lease) = self.lease(ttl).await? {
            put = put.with_lease(lease);
        }
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, Some(put))]);
        let mut c = self.kv.clone();
        let resp = c.txn(txn).await.map_err(|e| self.err(e))?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        Ok(header_revision(resp.header()))
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue> {
        check_key(key)?;
        let mut put = PutOptions::new().with_prev_key();
        if let Some(lease) = self.lease(ttl).await? {
            put = put.with_lease(lease);
        }
        let op = TxnOp::put(key, value.clone(), Some(put));
        let resp = self.guarded(key, Some(expected), op).await?;
        let revision = header_revision(resp.header());
        let create_revision = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(put) => put.prev_key().map(|kv| kv.create_revision()),
                _ => None,
            })
            .unwrap_or(revision);
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        check_key(key)?;
        let op = TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key()));
        let resp = self.guarded(key, expected, op).await?;
        let prev = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Delete(del) => del.prev_kvs().first().cloned(),
            _ => None,
        });
        let prev = prev.ok_or_else(|| StoreError::NotFound {
            key: key.to_string(),
        })?;
        Ok((header_revision(resp.header()), convert(&prev)?))
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<Watch> {
        let end = prefix_end(prefix).unwrap_or_else(|| vec![0]);
        let opts = WatchOptions::new()
            .with_range(end)
            .with_prev_key()
            .with_start_revision(start_revision);
        let mut c = self.watch.clone();
        let mut stream = c
            .watch(range_start(prefix), Some(opts))
            .await
            .map_err(|e| self.err(e))?;
        // The first answer says whether the watch was created or refused.
        let first = stream.message().await.map_err(|e| self.err(e))?;
        if let Some(err) = first
            .as_ref()
            .and_then(|resp| cancelled(resp, start_revision, &self.endpoint))
        {
            return Err(err);
        }
        let (tx, watch) = Watch::channel(WATCH_BUFFER);
        let endpoint = self.endpoint.clone();
        let span = tracing::debug_span!("watch", backend = "etcd", prefix = %prefix);
        let forward = async move {
            let mut pending = first;
            loop {
                let resp = match pending.take() {
                    Some(resp) => resp,
                    None => {
                        let next = tokio::select! {
                            next = stream.message() => next,
                            _ = tx.closed() => return,
                        };
                        let message = match next {
                            Ok(Some(resp)) => Ok(resp),
                            Ok(None) => Err("etcd closed the watch stream".to_string()),
                            Err(err) => Err(format!("watch failed: {err}")),
                        };
                        match message {
                            Ok(resp) => resp,
                            Err(message) => {
                                let endpoint = endpoint.to_string();
                                let _ = tx.send(Err(StoreError::Etcd { endpoint, message })).await;
                                return;
                            }
                        }
                    }
                };
                let outcome = watch_batch(&resp, start_revision, &endpoint);
                let end = outcome.is_err();
                if !matches!(&outcome, Ok(events) if events.is_empty())
                    && tx.send(outcome).await.is_err()
                {
                    return;
                }
                if end {
                    return;
                }
            }
        };
        tokio::spawn(tracing::Instrument::instrument(forward, span));
        Ok(watch)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut c = self.kv.clone();
        let opts = etcd_client::CompactionOptions::new().with_physical();
        match c.compact(revision, Some(opts)).await {
            Ok(_) => {
                self.compacted.fetch_max(revision, Ordering::AcqRel);
                Ok(())
            }
            Err(err) => Err(self.revision_err(err, revision).await),
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        let mut c = self.kv.clone();
        let opts = GetOptions::new().with_count_only();
        let resp = c.get("\0", Some(opts)).await.map_err(|e| self.err(e))?;
        Ok(header_revision(resp.header()))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        if !self.probed.swap(true, Ordering::AcqRel) {
            let probed = self.probe_compacted().await?;
            self.compacted.fetch_max(probed, Ordering::AcqRel);
        }
        Ok(self.compacted.load(Ordering::Acquire))
    }

    async fn db_size(&self) -> Result<u64> {
        let mut c = self.client.maintenance_client();
        let status = c.status().await.map_err(|e| self.err(e))?;
        Ok(status.db_size().max(0) as u64)
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

impl EtcdBackend {
    /// Asks etcd for its compaction point; costly on a long history, so done once.
    async fn probe_compacted(&self) -> Result<Revision> {
        // etcd tells the compaction point only to a watch that starts below it: first the
        // watch is created, then, at etcd's next sync of slow watchers (every 100 ms), it is
        // cancelled with the compaction point. A watch still open after that wait starts at
        // a revision that is held: nothing was compacted.
        let mut c = self.watch.clone();
        let opts = WatchOptions::new().with_start_revision(1);
        let mut stream = c.watch("\0", Some(opts)).await.map_err(|e| self.err(e))?;
        for _ in 0..2 {
            let next = tokio::time::timeout(COMPACTION_PROBE_WAIT, stream.message()).await;
            match next {
                Ok(Ok(Some(resp))) if resp.compact_revision() > 0 => {
                    return Ok(resp.compact_revision())
                }
                Ok(Ok(Some(resp))) if resp.created() && !resp.canceled() => continue,
                Ok(Err(err)) => return Err(self.err(err)),
                _ => break,
            }
        }
        Ok(0)
    }
}

/// The error of a watch response that ends the watch, if it does.
fn cancelled(
    resp: &etcd_client::WatchResponse,
    start_revision: Revision,
    endpoint: &str,
) -> Option<StoreError> {
    if !resp.canceled() {
        return None;
    }
    Some(if resp.compact_revision() > 0 {
        StoreError::Compacted {
            requested: start_revision,
            compacted: resp.compact_revision(),
        }
    } else {
        StoreError::Etcd {
            endpoint: endpoint.to_string(),
            message: format!("watch cancelled: {}", resp.cancel_reason()),
        }
    })
}

/// The events of one etcd watch response, or the error that ends the watch.
fn watch_batch(
    resp: &etcd_client::WatchResponse,
    start_revision: Revision,
    endpoint: &str,
) -> Result<Vec<Event>> {
    if let Some(err) = cancelled(resp, start_revision, endpoint) {
        return Err(err);
    }
    resp.events()
        .iter()
        .filter_map(|e| {
            let kv = e.kv()?;
            Some((e, kv))
        })
        .map(|(e, kv)| {
            let mut kv = convert(kv)?;
            let prev = e.prev_kv().map(convert).transpose()?;
            let kind = match e.event_type() {
                EventType::Put => EventKind::Put,
                EventType::Delete => {
                    kv.create_revision = 0;
                    kv.value.clear();
                    EventKind::Delete
                }
            };
            Ok(Event { kind, kv, prev })
        })
        .collect()
}

#[cfg(test)]
mod tests;

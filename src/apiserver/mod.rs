//! The Kubernetes API server: HTTPS with rustls, authentication, discovery, and the REST
//! verbs on every kind in the resource table, over the datastore shim.
//!
//! It owns nothing but the request path: it never calls a control loop or an agent. Until
//! authorization lands, every authenticated user may do everything.

pub mod admission;
pub mod auth;
pub mod cache;
pub mod discovery;
pub mod fieldmanager;
pub mod handlers;
pub mod objects;
pub mod patch;
pub mod protobuf;
pub mod request;
pub mod resources;
pub mod services;
pub mod status;
pub mod table;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::auth::{TokenFile, User};
use self::handlers::ApiState;
use self::status::ApiError;
use crate::pki::ClusterPki;
use crate::store::Backend;

/// Request bodies larger than this are refused with 413, as kube-apiserver does (3 MiB).
pub const MAX_BODY: usize = 3 << 20;

/// Errors starting the API server.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    /// The address could not be bound.
    #[error("listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause (for example, the port is in use).
        source: std::io::Error,
    },
    /// The TLS material does not load.
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// How the API server is reached and who it lets in.
pub struct ApiServerConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The cluster certificates.
    pub pki: ClusterPki,
    /// Bearer tokens, if a token file was given.
    pub tokens: TokenFile,
    /// The ClusterIP and NodePort ranges.
    pub services: Arc<services::ServiceNetwork>,
}

/// An API server bound to its port, ready to serve.
pub struct ApiServer {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<ApiState>,
    tokens: Arc<TokenFile>,
}

fn tls_config(pki: &ClusterPki) -> Result<rustls::ServerConfig, ApiServerError> {
    let tls = |e: &dyn std::fmt::Display| ApiServerError::Tls(e.to_string());
    let ca = CertificateDer::from_pem_slice(pki.ca.cert_pem.as_bytes()).map_err(|e| tls(&e))?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.serving.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_slice(pki.serving.key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).map_err(|e| tls(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

impl ApiServer {
    /// Binds the port and loads TLS, so that both fail at start with a clear message.
    pub async fn bind(
        config: ApiServerConfig,
        store: Arc<dyn Backend>,
    ) -> Result<Self, ApiServerError> {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&config.pki)?));
        let listener =
            TcpListener::bind(config.addr)
                .await
                .map_err(|source| ApiServerError::Bind {
                    addr: config.addr,
                    source,
                })?;
        Ok(ApiServer {
            listener,
            acceptor,
            state: Arc::new(ApiState {
                caches: Arc::new(cache::Caches::new(store.clone())),
                store,
                services: config.services,
            }),
            tokens: Arc::new(config.tokens),
        })
    }

    /// A kube-rs client whose transport is this server's request router itself: no socket
    /// and no TLS, the same API and semantics that remote clients get. The scheduler and
    /// controllers use it, authenticated as `user`.
    pub fn client(&self, user: User) -> kube::Client {
        let state = self.state.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let (state, user) = (state.clone(), user.clone());
            async move {
                Ok::<_, std::convert::Infallible>(
                    route(state, Some(user), req.map(Body::new)).await,
                )
            }
        });
        kube::Client::new(service, "default")
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::warn!(error = %err, "Accepting a connection failed.");
                        continue;
                    }
                },
            };
            let (acceptor, state, tokens, stop) = (
                self.acceptor.clone(),
                self.state.clone(),
                self.tokens.clone(),
                shutdown.clone(),
            );
            tokio::spawn(async move {
                if let Err(err) = serve_connection(acceptor, tcp, state, tokens, stop).await {
                    tracing::debug!(peer = %peer, error = %err, "Connection ended with an error.");
                }
            });
        }
    }
}

async fn serve_connection(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    state: Arc<ApiState>,
    tokens: Arc<TokenFile>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tls = acceptor.accept(tcp).await?;
    let cert_user = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| auth::user_from_certificate(cert));
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let (state, tokens, cert_user) = (state.clone(), tokens.clone(), cert_user.clone());
        async move {
            let user = cert_user.or_else(|| {
                req.headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|a| tokens.authenticate(a))
            });
            Ok::<_, std::convert::Infallible>(route(state, user, req.map(Body::new)).await)
        }
    });
    let builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), service);
    tokio::select! {
        outcome = conn => outcome.map_err(|e| anyhow::anyhow!(e)),
        _ = shutdown.cancelled() => Ok(()),
    }
}

fn text(code: StatusCode, body: String) -> Response {
    let mut resp = (code, body).into_response();
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json(value: serde_json::Value, content_type: &str) -> Response {
    let mut resp = (StatusCode::OK, value.to_string()).into_response();
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert("content-type", ct);
    }
    resp
}

fn health(path: &str, verbose: bool) -> Response {
    if verbose {
        let mut body = String::from("[+]ping ok\n[+]log ok\n[+]etcd ok\n");
        body.push_str(&format!("{} check passed\n", path.trim_start_matches('/')));
        text(StatusCode::OK, body)
    } else {
        text(StatusCode::OK, "ok".into())
    }
}

/// Routes one request: health and version for anyone, the rest for authenticated users.
async fn route(state: Arc<ApiState>, user: Option<User>, req: Request<Body>) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let verbose = query.as_deref().is_some_and(|q| {
        q.split('&')
            .any(|p| p == "verbose" || p.starts_with("verbose="))
    });
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" => return health(&path, verbose),
        "/version" => return json(discovery::version(), "application/json"),
        _ => {}
    }
    let Some(user) = user else {
        return ApiError::unauthorized().into_response();
    };
    tracing::trace!(user = %user.name, method = %req.method(), path = %path, "Request.");
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let aggregated = discovery::Aggregated::from_accept(&accept);
    if req.method() == Method::GET {
        match path.trim_end_matches('/') {
            "/api" => {
                return match aggregated {
                    Some(f) => json(discovery::aggregated(f, true), &f.content_type()),
                    None => json(discovery::core_versions(), "application/json"),
                }
            }
            "/apis" => {
                return match aggregated {
                    Some(f) => json(discovery::aggregated(f, false), &f.content_type()),
                    None => json(discovery::group_list(), "application/json"),
                }
            }
            "/openapi/v2" => {
                // kubectl only needs this to answer; an empty protobuf document makes it
                // skip client-side validation, and the server validates (fieldValidation).
                let mut resp = (StatusCode::OK, "").into_response();
                resp.headers_mut().insert(
                    "content-type",
                    HeaderValue::from_static(
                        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                    ),
                );
                return resp;
            }
            other => {
                let parts: Vec<&str> = other.trim_start_matches('/').split('/').collect();
                let gv = match parts.as_slice() {
                    ["api", v] => Some(("", *v)),
                    ["apis", g, v] => Some((*g, *v)),
                    _ => None,
                };
                if let Some((g, v)) = gv {
                    return match discovery::resource_list(g, v) {
                        Some(list) => json(list, "application/json"),
                        None => ApiError::no_route().into_response(),
                    };
                }
            }
        }
    }
    let Some(resource_path) = request::parse(&path) else {
        return ApiError::no_route().into_response();
    };
    let (parts, body) = req.into_parts();
    let body = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(resp) => return resp,
    };
    handlers::handle(
        state,
        parts.method,
        resource_path,
        query.as_deref(),
        parts.headers,
        body,
    )
    .await
}

/// How much of an oversized body is read and thrown away, so that the client sees the 413
/// instead of a connection cut while it is still sending.
const DRAIN_LIMIT: usize = 64 << 20;

/// Reads a request body of at most [`MAX_BODY`] bytes; a larger one is answered with 413.
async fn read_body(body: Body) -> Result<bytes::Bytes, Response> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(ApiError::bad_request("the request body could not be read").into_response());
        };
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= MAX_BODY {
                buf.extend_from_slice(&data);
            } else if seen > DRAIN_LIMIT {
                break;
            }
        }
    }
    if seen > MAX_BODY {
        return Err(ApiError::too_large(MAX_BODY).into_response());
    }
    Ok(buf.freeze())
}

/// Creates the built-in namespaces on first start, and makes the `kubernetes` Service
/// point at `api`.
pub async fn bootstrap(
    store: &dyn Backend,
    net: &services::ServiceNetwork,
    api: services::kubernetes::Advertised,
) -> Result<(), crate::store::StoreError> {
    for ns in handlers::SYSTEM_NAMESPACES {
        let mut obj =
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        handlers::prepare_create(false, true, "Namespace", &mut obj);
        admission::default("v1", "Namespace", &mut obj);
        let key = format!("/registry/namespaces/{ns}");
        match store.create(&key, objects::to_stored(&obj), None).await {
            Ok(_) => tracing::info!(namespace = ns, "Created namespace."),
            Err(crate::store::StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    for (name, value, what) in [
        (
            "system-cluster-critical",
            2_000_000_000,
            "must run in the cluster, but can be moved to another node if necessary.",
        ),
        (
            "system-node-critical",
            2_000_001_000,
            "must not be moved from their current node.",
        ),
    ] {
        let mut class = serde_json::json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value,
            "description": format!("Used for system critical pods that {what}"),
            "preemptionPolicy": "PreemptLowerPriority",
        });
        handlers::prepare_create(false, false, "PriorityClass", &mut class);
        let key = format!("/registry/priorityclasses/{name}");
        match store.create(&key, objects::to_stored(&class), None).await {
            Ok(_) | Err(crate::store::StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    services::kubernetes::reconcile(store, net, api).await?;
    services::repair::repair_once(store, net).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_in_process_client_speaks_the_api_without_a_socket() {
        use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
        let dir = tempfile::tempdir().unwrap();
        let config = crate::store::StoreConfig {
            endpoint: crate::store::Endpoint::default_for(dir.path()),
            tls: Default::default(),
        };
        let stop = CancellationToken::new();
        let store = crate::store::open(&config, &stop).await.unwrap();
        let net = services::ServiceNetwork::default();
        let api = services::kubernetes::Advertised {
            address: "127.0.0.1".parse().unwrap(),
            port: 6443,
        };
        bootstrap(store.as_ref(), &net, api).await.unwrap();
        let (pki, _) = crate::pki::load_or_create(&dir.path().join("tls"), &[]).unwrap();
        let config = ApiServerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            pki,
            tokens: TokenFile::default(),
            services: Arc::new(net),
        };
        let server = ApiServer::bind(config, store).await.unwrap();
        let client = server.client(User::component("test"));
        let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
        let names: Vec<String> = namespaces
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        assert!(names.contains(&"kube-system".to_string()), "{names:?}");
        let cms: kube::Api<ConfigMap> = kube::Api::namespaced(client, "default");
        let cm: ConfigMap =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "c"}})).unwrap();
        let made = cms.create(&Default::default(), &cm).await.unwrap();
        assert!(made.metadata.uid.is_some());
        // Watches stream through it too.
        use futures::StreamExt;
        let mut events = kube::runtime::watcher::watcher(cms, Default::default()).boxed();
        let first = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
            .await
            .expect("the watcher answers");
        assert!(
            matches!(first, Some(Ok(kube::runtime::watcher::Event::Init))),
            "{first:?}"
        );
        let second = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
            .await
            .expect("the watcher lists");
        assert!(
            matches!(
                second,
                Some(Ok(kube::runtime::watcher::Event::InitApply(_)))
            ),
            "{second:?}"
        );
    }
}

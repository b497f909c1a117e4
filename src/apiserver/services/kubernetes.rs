//! The `kubernetes` Service in `default`: ClusterIP the first address of the service
//! range, port 443, with Endpoints and an EndpointSlice that point at the API server.
//! Made at start and brought up to date when the advertised address or port changes.

use std::net::IpAddr;

use serde_json::{json, Value};

use super::{alloc, ServiceNetwork};
use crate::apiserver::admission;
use crate::apiserver::handlers::prepare_create;
use crate::apiserver::objects::{from_stored, to_stored};
use crate::store::{Backend, StoreError};

/// Where clients reach the API server.
#[derive(Clone, Copy, Debug)]
pub struct Advertised {
    /// The address.
    pub address: IpAddr,
    /// The port.
    pub port: u16,
}

fn service(net: &ServiceNetwork, api: Advertised) -> Value {
    let ip = net.api_service_ip();
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "clusterIP": ip, "clusterIPs": [ip], "type": "ClusterIP",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api.port}],
            "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster",
        },
    })
}

fn endpoints(api: Advertised) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": api.address.to_string()}],
                     "ports": [{"name": "https", "port": api.port, "protocol": "TCP"}]}],
    })
}

fn endpoint_slice(api: Advertised) -> Value {
    let family = if api.address.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    };
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": family,
        "endpoints": [{"addresses": [api.address.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": api.port, "protocol": "TCP"}],
    })
}

/// Makes the object at `key` carry `want`'s content: created when absent, rewritten when
/// the fields that matter differ, left alone otherwise.
async fn ensure(
    store: &dyn Backend,
    key: &str,
    mut want: Value,
    fields: &[&str],
) -> Result<(), StoreError> {
    let (_, kv) = store.get(key, 0).await?;
    match kv {
        None => {
            prepare_create(false, false, "", &mut want);
            let (api_version, kind) = (
                want["apiVersion"].as_str().unwrap_or_default().to_string(),
                want["kind"].as_str().unwrap_or_default().to_string(),
            );
            admission::default(&api_version, &kind, &mut want);
            store.create(key, to_stored(&want), None).await?;
            tracing::info!(key, "Created the API server's own object.");
        }
        Some(kv) => {
            let Ok(mut have) = from_stored(&kv) else {
                return Ok(());
            };
            if fields.iter().all(|f| have[f] == want[f]) {
                return Ok(());
            }
            for f in fields {
                have[*f] = want[*f].take();
            }
            store
                .update(key, to_stored(&have), kv.mod_revision, None)
                .await?;
            tracing::info!(key, "Updated the API server's own object.");
        }
    }
    Ok(())
}

/// Creates or updates the `kubernetes` Service, its Endpoints and its EndpointSlice.
pub async fn reconcile(
    store: &dyn Backend,
    net: &ServiceNetwork,
    api: Advertised,
) -> Result<(), StoreError> {
    let ip = net.api_service_ip();
    match alloc::reserve(store, &net.ips, &ip, "default/kubernetes").await {
        Ok(()) => {}
        Err(alloc::AllocError::Store(e)) => return Err(e),
        Err(e) => {
            tracing::warn!(ip = %ip, error = %e, "The kubernetes service's address is held by another Service.")
        }
    }
    ensure(
        store,
        "/registry/services/default/kubernetes",
        service(net, api),
        &["spec"],
    )
    .await?;
    ensure(
        store,
        "/registry/endpoints/default/kubernetes",
        endpoints(api),
        &["subsets"],
    )
    .await?;
    ensure(
        store,
        "/registry/endpointslices/default/kubernetes",
        endpoint_slice(api),
        &["addressType", "endpoints", "ports"],
    )
    .await
}

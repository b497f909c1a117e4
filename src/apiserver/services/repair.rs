//! The repair loop, as kube-apiserver's ClusterIP and NodePort repair controllers: every
//! address and port a stored Service holds has its reservation, and a reservation that no
//! Service holds (an API server stopped between reserving and storing) is given back once
//! it is old enough not to belong to a create still in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::alloc::{self, Range};
use super::{cluster_ip, node_ports, owner, ServiceNetwork};
use crate::apiserver::objects::from_stored;
use crate::store::{Backend, ListRequest, StoreError};

/// How often the loop runs.
const PERIOD: Duration = Duration::from_secs(180);
/// A reservation younger than this may belong to a create in flight.
const GRACE_SECS: u64 = 60;

/// What one pass changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repaired {
    /// Reservations made for values Services held without one.
    pub restored: usize,
    /// Reservations given back.
    pub released: usize,
}

/// Runs one pass.
pub async fn repair_once(
    store: &dyn Backend,
    net: &ServiceNetwork,
) -> Result<Repaired, StoreError> {
    // Reservations first: a Service stored after this read holds a reservation made
    // before it, which the pass then sees as held.
    let ips = store.list(&ListRequest::prefix(alloc::IP_PREFIX)).await?;
    let ports = store.list(&ListRequest::prefix(alloc::PORT_PREFIX)).await?;
    let services = store
        .list(&ListRequest::prefix("/registry/services/"))
        .await?;
    let mut held_ips = HashMap::new();
    let mut held_ports = HashMap::new();
    for kv in &services.kvs {
        let Ok(svc) = from_stored(kv) else { continue };
        let who = owner(&svc);
        if let Some(ip) = cluster_ip(&svc) {
            held_ips.insert(ip.to_string(), who.clone());
        }
        for port in node_ports(&svc) {
            held_ports.insert(port, who.clone());
        }
    }
    let mut done = Repaired::default();
    fix(store, &net.ips, &ips.kvs, &held_ips, &mut done).await?;
    fix(store, &net.ports, &ports.kvs, &held_ports, &mut done).await?;
    Ok(done)
}

async fn fix<R: Range>(
    store: &dyn Backend,
    range: &R,
    reservations: &[crate::store::KeyValue],
    held: &HashMap<String, String>,
    done: &mut Repaired,
) -> Result<(), StoreError> {
    let mut seen = Vec::new();
    for kv in reservations {
        let value = kv.key.trim_start_matches(range.prefix()).to_string();
        let (_, age) = alloc::parse_reservation(&kv.value);
        if !held.contains_key(&value) && age >= GRACE_SECS {
            match store.delete(&kv.key, Some(kv.mod_revision)).await {
                Ok(_) => {
                    tracing::info!(value = %value, "Released a {} no Service holds.", R::WHAT);
                    done.released += 1;
                }
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        seen.push(value);
    }
    for (value, who) in held {
        if seen.contains(value) || range.slot_of(value).is_none() {
            continue;
        }
        match store
            .create(
                &format!("{}{value}", range.prefix()),
                alloc::reservation(who),
                None,
            )
            .await
        {
            Ok(_) => {
                tracing::warn!(value = %value, service = %who, "A Service held a {} without a reservation; restored it.", R::WHAT);
                done.restored += 1;
            }
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The loop: a pass now and every few minutes until shutdown.
pub async fn run(
    store: Arc<dyn Backend>,
    net: Arc<ServiceNetwork>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        if let Err(err) = repair_once(store.as_ref(), &net).await {
            tracing::warn!(error = %err, "Repairing service address reservations failed; retrying later.");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(PERIOD) => {}
        }
    }
}

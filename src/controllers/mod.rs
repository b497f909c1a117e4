//! kube-controller-manager's control loops, as tasks of `skiff server`.
//!
//! Each controller is one file here. Like the scheduler, a controller reaches the cluster
//! only through the Kubernetes API (kube-rs over the in-process transport, with the
//! identity `system:kube-controller-manager`), so whatever it does `kubectl` can see, and
//! it never touches the store or the API server's internals. Controllers are built on
//! `kube::runtime::Controller` (reflectors, a work queue, reconcile with backoff) where it
//! fits; the decision each one takes is a pure function of what it read, unit-tested
//! without the API.
//!
//! [`spawn_all`] starts them; `--disable-controller-manager` leaves them all out.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::k8s::cidr::Ipv4Cidr;
use crate::k8s::events::EventSink;

pub mod claim;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod dirty;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod garbagecollector;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod replicaset;
pub mod resources;
pub mod rootcacert;
pub mod serviceaccount;
pub mod statefulset;
pub mod template;
pub mod ttlafterfinished;

/// What the controllers need to know of the cluster's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The range pods' addresses come from (`--cluster-cidr`).
    pub cluster_cidr: Ipv4Cidr,
    /// The prefix length of each node's podCIDR (`--node-cidr-mask-size`, k3s: /24).
    pub node_cidr_mask_size: u8,
    /// How long a node may go unheard before it is marked unreachable
    /// (`--node-monitor-grace-period`, 40 s).
    pub node_monitor_grace_period: Duration,
    /// The cluster CA certificate (PEM), published as `kube-root-ca.crt` in every namespace.
    pub root_ca_pem: String,
}

/// What every reconcile gets: a client, an event recorder and the configuration.
pub struct Context {
    /// A client with the controller manager's identity.
    pub client: kube::Client,
    /// Events about the objects reconciled, reported as `component`.
    pub events: EventSink,
    /// The cluster's configuration.
    pub config: Config,
}

/// Why a reconcile failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with an error or could not be reached.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// Something read from the API could not be acted on.
    #[error("{0}")]
    Invalid(String),
}

/// The usual result of a reconcile.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The retry after a failed reconcile: kube-controller-manager's rate-limited queues
/// back off from 5 ms to 1000 s per item; a fixed few seconds is what matters in
/// practice, as conflicts clear as soon as the cache catches up.
pub fn retry_after(error: &Error) -> Action {
    match error {
        Error::Kube(kube::Error::Api(status)) if status.code == 409 => {
            Action::requeue(Duration::from_millis(200))
        }
        _ => Action::requeue(Duration::from_secs(5)),
    }
}

/// A task for `tasks` that runs a controller until `shutdown`, in a span named after it.
/// A controller that returns, or fails, stops the server as any component does.
pub fn spawn<F>(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    name: &'static str,
    shutdown: &CancellationToken,
    run: F,
) where
    F: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let token = shutdown.clone();
    tasks.spawn(
        async move {
            tokio::select! {
                outcome = run => outcome.map_err(|e| anyhow::Error::new(e).context(name)),
                _ = token.cancelled() => Ok(()),
            }
        }
        .instrument(tracing::info_span!("controller", name)),
    );
}

/// Starts every controller.
pub fn spawn_all(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    client: kube::Client,
    config: Config,
    shutdown: &CancellationToken,
) {
    let context = |component: &str| {
        Arc::new(Context {
            client: client.clone(),
            events: EventSink::start(client.clone(), component, shutdown.clone()),
            config: config.clone(),
        })
    };
    // Each controller is one line: its name, its component name in events, its task.
    macro_rules! start {
        ($name:literal, $component:literal, $run:expr) => {
            spawn(tasks, $name, shutdown, $run(context($component)))
        };
    }
    start!(
        "garbagecollector",
        "garbage-collector-controller",
        garbagecollector::run
    );
    start!("namespace", "namespace-controller", namespace::run);
    start!(
        "serviceaccount",
        "serviceaccount-controller",
        serviceaccount::run
    );
    start!("rootcacert", "root-ca-cert-publisher", rootcacert::run);
    start!("podgc", "pod-garbage-collector", podgc::run);
    start!(
        "ttlafterfinished",
        "ttl-after-finished-controller",
        ttlafterfinished::run
    );
    start!("endpoints", "endpoint-controller", endpoints::run);
    start!(
        "endpointslice",
        "endpoint-slice-controller",
        endpointslice::run
    );
    start!("disruption", "disruption-controller", disruption::run);
    start!("nodeipam", "node-ipam-controller", nodeipam::run);
    start!("nodelifecycle", "node-controller", nodelifecycle::run);
    start!("replicaset", "replicaset-controller", replicaset::run);
    start!("deployment", "deployment-controller", deployment::run);
    start!("job", "job-controller", job::run);
    start!("cronjob", "cronjob-controller", cronjob::run);
    start!("daemonset", "daemonset-controller", daemonset::run);
    start!("statefulset", "statefulset-controller", statefulset::run);
}

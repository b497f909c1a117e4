//! `skiff server`: opens the datastore, makes or reuses the cluster certificates, serves
//! the Kubernetes API over HTTPS and writes the admin kubeconfig; then runs until a signal.
//!
//! The scheduler, controllers and embedded agent join the same supervisor as they land.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::apiserver::auth::TokenFile;
use crate::apiserver::auth::User;
use crate::apiserver::services::kubernetes::Advertised;
use crate::apiserver::services::{repair, ServiceNetwork};
use crate::apiserver::{self, ApiServer, ApiServerConfig};
use crate::controllers;
use crate::k8s::cidr::Ipv4Cidr;
use crate::pki;
use crate::scheduler::run::Scheduler;
use crate::store::compactor::{Compactor, CompactorConfig};
use crate::store::{self, Backend, Endpoint, StoreConfig, TlsFiles};

/// How long components get to stop after a signal before they are aborted.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Flags of `skiff server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Where skiff keeps its state.
    #[arg(long, env = "SKIFF_DATA_DIR", default_value = "/var/lib/skiff")]
    pub data_dir: PathBuf,

    /// The datastore: sqlite://PATH (default: sqlite://<data-dir>/server/db/state.db),
    /// sled://PATH, or etcd://HOST:PORT[,HOST:PORT...] (https://... or etcds://... for TLS).
    #[arg(long, env = "SKIFF_DATASTORE_ENDPOINT")]
    pub datastore_endpoint: Option<String>,

    /// CA file that signed etcd's serving certificate.
    #[arg(long, env = "SKIFF_DATASTORE_CAFILE")]
    pub datastore_cafile: Option<PathBuf>,

    /// Client certificate presented to etcd.
    #[arg(long, env = "SKIFF_DATASTORE_CERTFILE")]
    pub datastore_certfile: Option<PathBuf>,

    /// Key of the client certificate presented to etcd.
    #[arg(long, env = "SKIFF_DATASTORE_KEYFILE")]
    pub datastore_keyfile: Option<PathBuf>,

    /// How often old history is compacted away (0 turns it off).
    #[arg(long, env = "SKIFF_DATASTORE_COMPACT_INTERVAL", default_value = "5m",
          value_parser = super::parse_duration)]
    pub datastore_compact_interval: Duration,

    /// How many of the latest revisions compaction always keeps.
    #[arg(
        long,
        env = "SKIFF_DATASTORE_COMPACT_MIN_RETAIN",
        default_value_t = 1000
    )]
    pub datastore_compact_min_retain: i64,

    /// The port the API server listens on (HTTPS).
    #[arg(long, env = "SKIFF_HTTPS_LISTEN_PORT", default_value_t = 6443)]
    pub https_listen_port: u16,

    /// The address the API server listens on.
    #[arg(long, env = "SKIFF_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,

    /// More names or addresses for the serving certificate (repeat the flag).
    #[arg(long = "tls-san", env = "SKIFF_TLS_SAN", value_delimiter = ',')]
    pub tls_san: Vec<String>,

    /// This node's addresses, added to the serving certificate.
    #[arg(long = "node-ip", env = "SKIFF_NODE_IP", value_delimiter = ',')]
    pub node_ip: Vec<IpAddr>,

    /// Where to write the admin kubeconfig.
    #[arg(
        long,
        env = "SKIFF_WRITE_KUBECONFIG",
        default_value = "/etc/skiff/skiff.yaml"
    )]
    pub write_kubeconfig: PathBuf,

    /// File mode of the admin kubeconfig, in octal.
    #[arg(long, env = "SKIFF_WRITE_KUBECONFIG_MODE", default_value = "0600", value_parser = parse_mode)]
    pub write_kubeconfig_mode: u32,

    /// A file of bearer tokens: `token,user,uid[,"group1,group2"]` per line.
    #[arg(long, env = "SKIFF_TOKEN_AUTH_FILE")]
    pub token_auth_file: Option<PathBuf>,

    /// The range ClusterIPs are allocated from.
    #[arg(long, env = "SKIFF_SERVICE_CIDR", default_value = "10.43.0.0/16", value_parser = parse_service_cidr)]
    pub service_cidr: Ipv4Cidr,

    /// The range NodePorts are allocated from.
    #[arg(long, env = "SKIFF_SERVICE_NODE_PORT_RANGE", default_value = "30000-32767", value_parser = parse_port_range)]
    pub service_node_port_range: (u16, u16),

    /// The address other nodes and pods reach the API server at (default: the first
    /// --node-ip, else --bind-address, else the address of the default route).
    #[arg(long, env = "SKIFF_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<IpAddr>,

    /// Run without the scheduler (pods stay Pending unless something else binds them).
    #[arg(long, env = "SKIFF_DISABLE_SCHEDULER")]
    pub disable_scheduler: bool,

    /// Run without the controller manager (no ReplicaSets, Deployments, garbage
    /// collection, … unless something else runs them).
    #[arg(long, env = "SKIFF_DISABLE_CONTROLLER_MANAGER")]
    pub disable_controller_manager: bool,

    /// The range pod addresses come from; each node gets a block of it.
    #[arg(long, env = "SKIFF_CLUSTER_CIDR", default_value = "10.42.0.0/16", value_parser = parse_cluster_cidr)]
    pub cluster_cidr: Ipv4Cidr,

    /// The prefix length of each node's block of the cluster CIDR.
    #[arg(long, env = "SKIFF_NODE_CIDR_MASK_SIZE", default_value_t = 24)]
    pub node_cidr_mask_size: u8,

    /// How long a node may go without renewing its Lease (or posting status) before it
    /// is marked unreachable.
    #[arg(long, env = "SKIFF_NODE_MONITOR_GRACE_PERIOD", default_value = "40s",
          value_parser = super::parse_duration)]
    pub node_monitor_grace_period: Duration,

    /// Run without the embedded agent (this build has none yet, so it is always off).
    #[arg(long, env = "SKIFF_DISABLE_AGENT")]
    pub disable_agent: bool,
}

fn parse_service_cidr(text: &str) -> Result<Ipv4Cidr, String> {
    let cidr: Ipv4Cidr = text.parse().map_err(|e| format!("{e}"))?;
    // kube-apiserver's limits: at most 2^20 addresses, and room for a few services.
    if cidr.prefix() < 12 || cidr.prefix() > 28 {
        return Err(format!(
            "{text} has a /{} mask; use a mask between /12 and /28",
            cidr.prefix()
        ));
    }
    Ok(cidr)
}

fn parse_cluster_cidr(text: &str) -> Result<Ipv4Cidr, String> {
    text.parse().map_err(|e| format!("{e}"))
}

/// Checks `--node-cidr-mask-size` against `--cluster-cidr`: a node's block must fit in
/// the range, be no smaller than a /30, and the range hold at most 2^16 of them (as
/// kube-controller-manager).
fn check_node_cidr_mask_size(cluster: Ipv4Cidr, mask: u8) -> Result<()> {
    if mask > 30 {
        anyhow::bail!("--node-cidr-mask-size {mask} is too long; use /30 or shorter");
    }
    if mask < cluster.prefix() {
        anyhow::bail!(
            "--node-cidr-mask-size {mask} is shorter than --cluster-cidr {cluster}: each node's block must fit in the cluster CIDR"
        );
    }
    if mask - cluster.prefix() > 16 {
        anyhow::bail!(
            "--node-cidr-mask-size {mask} cuts --cluster-cidr {cluster} into more than 65536 blocks; use a mask of /{} or shorter",
            cluster.prefix() + 16
        );
    }
    Ok(())
}

fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid port range {text:?}: give it as FIRST-LAST, such as 30000-32767");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a == 0 || b < a {
        return Err(bad());
    }
    Ok((a, b))
}

fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            format!("invalid file mode {text:?}: give an octal mode such as 0600 or 0644")
        })
}

impl ServerArgs {
    fn store_config(&self) -> Result<StoreConfig> {
        let endpoint = match &self.datastore_endpoint {
            Some(text) => Endpoint::parse(text)?,
            None => Endpoint::default_for(&self.data_dir),
        };
        Ok(StoreConfig {
            endpoint,
            tls: TlsFiles {
                ca_file: self.datastore_cafile.clone(),
                cert_file: self.datastore_certfile.clone(),
                key_file: self.datastore_keyfile.clone(),
            },
        })
    }
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(args: ServerArgs) -> Result<()> {
    let config = args.store_config()?;
    if args.datastore_compact_min_retain < 0 {
        anyhow::bail!("--datastore-compact-min-retain must not be negative");
    }
    check_node_cidr_mask_size(args.cluster_cidr, args.node_cidr_mask_size)?;
    if args.node_monitor_grace_period.is_zero() {
        anyhow::bail!("--node-monitor-grace-period must be longer than zero");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("skiff")
        .build()
        .context("start the async runtime")?;
    runtime.block_on(serve(args, config))
}

async fn serve(args: ServerArgs, config: StoreConfig) -> Result<()> {
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let started = std::time::Instant::now();
    let store = store::open(&config, &shutdown)
        .await
        .context("open the datastore")?;
    let revision = store.current_revision().await?;
    tracing::info!(backend = store.name(), endpoint = ?config.endpoint, revision, took = ?started.elapsed(), "Datastore opened.");

    let net = Arc::new(ServiceNetwork::new(
        args.service_cidr,
        args.service_node_port_range.0,
        args.service_node_port_range.1,
    ));
    let (api, root_ca_pem) = start_api_server(&args, store.clone(), net.clone()).await?;
    let advertised = Advertised {
        address: advertise_address(&args),
        port: api
            .local_addr()
            .map_or(args.https_listen_port, |a| a.port()),
    };
    apiserver::bootstrap(store.as_ref(), &net, advertised)
        .await
        .context("create the built-in namespaces and the kubernetes service")?;
    tracing::info!(address = %advertised.address, port = advertised.port, "Advertising the API server.");

    let mut tasks = JoinSet::new();
    if !args.disable_scheduler {
        let scheduler = Scheduler::new(api.client(User::component("kube-scheduler")));
        let token = shutdown.clone();
        tasks.spawn(
            async move { scheduler.run(token).await.context("scheduler") }
                .instrument(tracing::info_span!("scheduler")),
        );
    }
    if !args.disable_controller_manager {
        let config = controllers::Config {
            cluster_cidr: args.cluster_cidr,
            node_cidr_mask_size: args.node_cidr_mask_size,
            node_monitor_grace_period: args.node_monitor_grace_period,
            root_ca_pem,
        };
        let client = api.client(User::component("kube-controller-manager"));
        controllers::spawn_all(&mut tasks, client, config, &shutdown);
    }
    let token = shutdown.clone();
    tasks.spawn(async move { api.run(token).await.context("API server") });
    let compactor = Compactor::new(
        store.clone(),
        CompactorConfig {
            interval: args.datastore_compact_interval,
            min_retain: args.datastore_compact_min_retain,
        },
    );
    let token = shutdown.clone();
    tasks.spawn(async move { compactor.run(token).await.context("datastore compactor") });
    let (token, repair_store) = (shutdown.clone(), store.clone());
    tasks.spawn(async move {
        repair::run(repair_store, net, token)
            .await
            .context("service address repair")
    });

    if !args.disable_agent {
        tracing::warn!("This build has no embedded agent yet; running the control plane only.");
    }
    tracing::info!(took = ?started.elapsed(), "Server is running.");
    let outcome = supervise(&mut tasks, &shutdown).await;
    close(store).await;
    outcome
}

/// Makes or reuses the certificates, binds the API port and writes the kubeconfig.
/// The address the `kubernetes` Service points at.
fn advertise_address(args: &ServerArgs) -> IpAddr {
    if let Some(addr) = args.advertise_address.or(args.node_ip.first().copied()) {
        return addr;
    }
    if !args.bind_address.is_unspecified() {
        return args.bind_address;
    }
    // The source address of the default route: connecting a UDP socket picks it without
    // sending anything.
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").and_then(|()| s.local_addr()))
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

async fn start_api_server(
    args: &ServerArgs,
    store: Arc<dyn Backend>,
    services: Arc<ServiceNetwork>,
) -> Result<(ApiServer, String)> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let service_ip: IpAddr = services
        .api_service_ip()
        .parse()
        .context("the service CIDR has no first address")?;
    let sans = pki::serving_sans(&hostname, &args.node_ip, service_ip, &args.tls_san);
    let tls_dir = args.data_dir.join("server").join("tls");
    let (certs, origins) = pki::load_or_create(&tls_dir, &sans).context("cluster certificates")?;
    for (what, origin) in ["CA", "serving certificate", "admin client certificate"]
        .iter()
        .zip(origins)
    {
        tracing::info!(dir = %tls_dir.display(), "{what}: {}.", match origin {
            pki::Origin::Created => "created",
            pki::Origin::Reused => "reused",
        });
    }
    let tokens = match &args.token_auth_file {
        Some(path) => TokenFile::load(path)?,
        None => TokenFile::default(),
    };
    let addr = SocketAddr::new(args.bind_address, args.https_listen_port);
    let config = ApiServerConfig {
        addr,
        pki: certs.clone(),
        tokens,
        services,
    };
    let api = ApiServer::bind(config, store).await?;
    let port = api
        .local_addr()
        .map_or(args.https_listen_port, |a| a.port());
    tracing::info!(address = %addr, "API server listening (HTTPS).");
    let server_url = format!("https://127.0.0.1:{port}");
    pki::write_kubeconfig(
        &args.write_kubeconfig,
        args.write_kubeconfig_mode,
        &server_url,
        &certs.ca.cert_pem,
        &certs.admin,
    )
    .context("write the admin kubeconfig")?;
    tracing::info!(path = %args.write_kubeconfig.display(), "Wrote the admin kubeconfig.");
    Ok((api, certs.ca.cert_pem.clone()))
}

/// Waits for a signal or for a component to stop; then stops the others with a deadline.
async fn supervise(tasks: &mut JoinSet<Result<()>>, shutdown: &CancellationToken) -> Result<()> {
    let mut outcome = Ok(());
    tokio::select! {
        _ = shutdown.cancelled() => {}
        Some(done) = tasks.join_next() => {
            outcome = match done {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(err),
                Err(join) => Err(anyhow::anyhow!("a component panicked: {join}")),
            };
        }
    }
    shutdown.cancel();
    let drain = async {
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(err)) = done {
                tracing::warn!(error = %format!("{err:#}"), "A component failed while stopping.");
            }
        }
    };
    if tokio::time::timeout(DRAIN_DEADLINE, drain).await.is_err() {
        tracing::warn!("Components did not stop in time; aborting them.");
        tasks.abort_all();
    }
    outcome
}

async fn close(store: Arc<dyn Backend>) {
    match store.close().await {
        Ok(()) => tracing::info!("Datastore closed."),
        Err(err) => tracing::warn!(error = %err, "Closing the datastore failed."),
    }
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(err) => {
                    tracing::warn!(error = %err, "Cannot listen for SIGTERM.");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; stopping."),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; stopping."),
        }
        shutdown.cancel();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_cidr_mask_size_must_fit_the_cluster_cidr() {
        let cluster: Ipv4Cidr = "10.42.0.0/16".parse().unwrap();
        assert!(check_node_cidr_mask_size(cluster, 24).is_ok());
        assert!(check_node_cidr_mask_size(cluster, 16).is_ok());
        assert!(check_node_cidr_mask_size(cluster, 15).is_err());
        assert!(check_node_cidr_mask_size(cluster, 31).is_err());
        let wide: Ipv4Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(check_node_cidr_mask_size(wide, 25).is_err());
        assert!(check_node_cidr_mask_size(wide, 24).is_ok());
    }
}

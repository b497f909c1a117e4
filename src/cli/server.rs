//! `skiff server`: opens the datastore and runs the server's components until a signal.
//!
//! Today the server is the datastore with its automatic compaction and key expiry; the
//! API server, scheduler and controllers join the same supervisor as they land.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

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

    let mut tasks = JoinSet::new();
    let compactor = Compactor::new(
        store.clone(),
        CompactorConfig {
            interval: args.datastore_compact_interval,
            min_retain: args.datastore_compact_min_retain,
        },
    );
    let token = shutdown.clone();
    tasks.spawn(async move { compactor.run(token).await.context("datastore compactor") });

    tracing::info!("Server is running.");
    let outcome = supervise(&mut tasks, &shutdown).await;
    close(store).await;
    outcome
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

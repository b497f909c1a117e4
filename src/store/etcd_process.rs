//! A single-member etcd run as a child process on loopback, for the conformance tests and
//! the benchmarks that compare skiff's datastore with etcd side by side.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running etcd, stopped (by its process id) when dropped.
pub struct EtcdProcess {
    child: Option<Child>,
    data_dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    tls: Option<EtcdTls>,
}

/// Certificates for an etcd that serves TLS and requires client certificates.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    /// The CA that signed both the serving and the client certificate.
    pub ca_file: PathBuf,
    /// etcd's serving certificate (with 127.0.0.1 among its names).
    pub cert_file: PathBuf,
    /// Its key.
    pub key_file: PathBuf,
    /// A client certificate signed by the CA, used to check that etcd answers.
    pub client_cert_file: PathBuf,
    /// Its key.
    pub client_key_file: PathBuf,
}

/// Errors starting etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdProcessError {
    /// The binary could not be run.
    #[error("start etcd (is etcd-server installed? scripts/test.sh installs it): {0}")]
    Spawn(std::io::Error),
    /// No free port was found.
    #[error("find a free loopback port: {0}")]
    Port(std::io::Error),
    /// etcd did not answer in time.
    #[error("etcd did not answer on 127.0.0.1:{port} within {waited:?}; its log is {log}")]
    NotReady {
        /// The client port.
        port: u16,
        /// How long we waited.
        waited: Duration,
        /// Where its log is.
        log: String,
    },
}

fn free_port() -> Result<u16, EtcdProcessError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(EtcdProcessError::Port)?;
    Ok(listener
        .local_addr()
        .map_err(EtcdProcessError::Port)?
        .port())
}

impl EtcdProcess {
    /// Starts etcd with its data under `data_dir` and waits until it answers.
    pub async fn start(data_dir: &Path) -> Result<Self, EtcdProcessError> {
        Self::start_with(data_dir, None).await
    }

    /// Starts etcd serving TLS to clients, which must present a certificate.
    pub async fn start_tls(data_dir: &Path, tls: EtcdTls) -> Result<Self, EtcdProcessError> {
        Self::start_with(data_dir, Some(tls)).await
    }

    async fn start_with(data_dir: &Path, tls: Option<EtcdTls>) -> Result<Self, EtcdProcessError> {
        let mut etcd = EtcdProcess {
            child: None,
            data_dir: data_dir.to_path_buf(),
            client_port: free_port()?,
            peer_port: free_port()?,
            tls,
        };
        etcd.spawn().await?;
        Ok(etcd)
    }

    /// The client endpoint, `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// etcd's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills etcd with SIGKILL, as a crash or a power cut would stop it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same data and ports.
    pub async fn restart(&mut self) -> Result<(), EtcdProcessError> {
        self.kill();
        self.spawn().await
    }

    async fn spawn(&mut self) -> Result<(), EtcdProcessError> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log_path = self.data_dir.join("etcd.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(EtcdProcessError::Spawn)?;
        let mut command = Command::new("etcd");
        let mut options = None;
        if let Some(tls) = &self.tls {
            command
                .arg(format!("--cert-file={}", tls.cert_file.display()))
                .arg(format!("--key-file={}", tls.key_file.display()))
                .arg(format!("--trusted-ca-file={}", tls.ca_file.display()))
                .arg("--client-cert-auth");
            options = Some(client_tls(tls).map_err(EtcdProcessError::Spawn)?);
        }
        let child = command
            .arg("--name=skiff-test")
            .arg(format!(
                "--data-dir={}",
                self.data_dir.join("member").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=skiff-test={peer}"))
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(EtcdProcessError::Spawn)?;
        self.child = Some(child);
        let started = Instant::now();
        let limit = Duration::from_secs(30);
        while started.elapsed() < limit {
            let connected = etcd_client::Client::connect([client.as_str()], options.clone()).await;
            if let Ok(mut c) = connected {
                if c.status().await.is_ok() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(EtcdProcessError::NotReady {
            port: self.client_port,
            waited: limit,
            log: log_path.display().to_string(),
        })
    }
}

fn client_tls(tls: &EtcdTls) -> std::io::Result<etcd_client::ConnectOptions> {
    let ca = std::fs::read(&tls.ca_file)?;
    let cert = std::fs::read(&tls.client_cert_file)?;
    let key = std::fs::read(&tls.client_key_file)?;
    let options = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(ca))
        .identity(etcd_client::Identity::from_pem(cert, key));
    Ok(etcd_client::ConnectOptions::new().with_tls(options))
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

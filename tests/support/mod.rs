//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod kubectl;
pub mod kubelet;
pub mod objects;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A tmpfs mounted for one test, unmounted even when the test fails.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs(dir.to_path_buf())
    }

    pub fn remount_read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A running `skiff server`, stopped by its process id when dropped.
pub struct Server {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("server")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start skiff server");
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Server {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing `text`.
    pub fn wait_for(&mut self, text: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                let found = line.contains(text);
                self.seen.push(line);
                if found {
                    return;
                }
            }
        }
        panic!("no log line with {text:?}; seen:\n{}", self.seen.join("\n"));
    }

    /// Sends SIGTERM and returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                    self.seen.push(line);
                }
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("skiff server did not stop within 30 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `skiff server` on a free port with its own data dir and kubeconfig.
pub struct Cluster {
    /// The server process.
    pub server: Server,
    /// Its data dir, where the kubeconfig is too.
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// A server with the usual flags.
    pub fn start() -> Cluster {
        Cluster::start_with(|_| Vec::new())
    }

    fn args(dir: &Path) -> Vec<String> {
        let data = dir.to_str().unwrap().to_string();
        let kubeconfig = format!("{data}/kubeconfig.yaml");
        [
            "--data-dir",
            &data,
            "--https-listen-port",
            "0",
            "--write-kubeconfig",
            &kubeconfig,
            "--disable-agent",
        ]
        .map(String::from)
        .to_vec()
    }

    /// A server with more flags, made from its data dir.
    pub fn start_with(extra: impl Fn(&Path) -> Vec<String>) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut args = Cluster::args(dir.path());
        args.extend(extra(dir.path()));
        let mut server = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
        server.wait_for("Server is running");
        Cluster { server, dir }
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    /// A kube-rs client with the admin credentials.
    pub async fn client(&self) -> kube::Client {
        self.client_with(true).await
    }

    /// A kube-rs client; `retry` false turns off its retries of 429 and 503 answers, for
    /// tests that expect them.
    pub async fn client_with(&self, retry: bool) -> kube::Client {
        use kube::config::{KubeConfigOptions, Kubeconfig};
        let kubeconfig = Kubeconfig::read_from(self.kubeconfig()).unwrap();
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap();
        config.default_retry = retry;
        kube::Client::try_from(config).unwrap()
    }

    /// Stops the server with SIGTERM and starts it again on the same data.
    pub fn restart(&mut self) {
        assert!(self.server.terminate());
        let args = Cluster::args(self.dir.path());
        self.server = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
        self.server.wait_for("Server is running");
    }
}

/// Sends one raw request; returns the status code and body.
pub async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (code, String::from_utf8_lossy(&bytes).into_owned())
}

//! Running the real kubectl binaries against a test cluster.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::Cluster;

/// The kubectl versions every kubectl test runs: the oldest, a middle and the newest.
pub const VERSIONS: [u32; 3] = [27, 30, 33];

pub fn kubectl_path(minor: u32) -> String {
    format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}")
}

/// Runs kubectl 1.`minor` with a private discovery cache; bounded in time.
pub fn kubectl(c: &Cluster, minor: u32, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(kubectl_path(minor))
        .args(args)
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", c.dir.path())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("kubectl {args:?} did not finish in 30 s");
}

/// kubectl's stdout, asserting success.
pub fn ok(c: &Cluster, minor: u32, args: &[&str]) -> String {
    let out = kubectl(c, minor, args, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kubectl 1.{minor} {args:?} failed: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// kubectl's stderr, asserting failure.
pub fn fails(c: &Cluster, minor: u32, args: &[&str], stdin: Option<&str>) -> String {
    let out = kubectl(c, minor, args, stdin);
    assert!(
        !out.status.success(),
        "kubectl 1.{minor} {args:?} should fail"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

//! The skiff executable as people run it: help, version, and the clear, harmless failures
//! of `skiff server` on bad datastore input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod support;
use support::{Server, Tmpfs};

fn skiff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
}

/// Runs skiff to completion; every run here is expected to end by itself quickly.
fn run(args: &[&str]) -> Output {
    let mut child = skiff()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run skiff");
    for _ in 0..300 {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("skiff {args:?} did not finish within 30 s");
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Flags for a server that keeps to its data dir: a free port and its own kubeconfig.
fn local(data: &str) -> Vec<String> {
    let kubeconfig = format!("{data}/kubeconfig.yaml");
    [
        "--data-dir",
        data,
        "--https-listen-port",
        "0",
        "--write-kubeconfig",
        &kubeconfig,
    ]
    .map(String::from)
    .to_vec()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn db_path(dir: &Path) -> PathBuf {
    dir.join("server").join("db").join("state.db")
}

#[test]
fn help_lists_the_subcommands_and_version_prints() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("server"), "{text}");
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("skiff {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_bad_endpoint_names_the_flag_and_the_accepted_forms() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = run(&[
        "server",
        "--data-dir",
        data,
        "--datastore-endpoint",
        "mysql://db",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("--datastore-endpoint"), "{err}");
    assert!(
        err.contains("sqlite://PATH") && err.contains("etcd://"),
        "{err}"
    );
    assert!(!db_path(dir.path()).exists(), "nothing was created");
}

#[test]
fn a_corrupt_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(dir.path());
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let garbage: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    let out = run(&["server", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(db.to_str().unwrap()), "{err}");
    assert!(err.contains("not an SQLite database"), "{err}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        garbage,
        "the file is unchanged"
    );
}

#[test]
fn a_database_in_use_is_refused_and_sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut first = Server::start(&strs(&local(data)));
    first.wait_for("Server is running");
    let out = run(&[&["server"][..], &strs(&local(data))].concat());
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("in use by another process"), "{err}");
    assert!(err.contains(db_path(dir.path()).to_str().unwrap()), "{err}");
    assert!(first.terminate(), "a clean stop exits 0");
    assert!(
        first.seen.iter().any(|l| l.contains("Datastore closed")),
        "{:?}",
        first.seen
    );
    // Now the database is free again.
    let mut again = Server::start(&strs(&local(data)));
    again.wait_for("Server is running");
    assert!(again.terminate());
}

#[test]
fn an_unreachable_etcd_is_named_and_retried_until_shutdown() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("etcd://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut server = Server::start(
        &[
            &strs(&local(data))[..],
            &["--datastore-endpoint", &endpoint],
        ]
        .concat(),
    );
    server.wait_for("Cannot reach etcd");
    server.wait_for("Cannot reach etcd");
    assert!(server
        .seen
        .iter()
        .any(|l| l.contains(&format!("127.0.0.1:{port}"))));
    assert!(
        !server.terminate(),
        "giving up on the datastore is a failure"
    );
}

#[test]
fn a_database_on_a_read_only_disk_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(dir.path(), "16m");
    let data = dir.path().to_str().unwrap();
    let mut server = Server::start(&strs(&local(data)));
    server.wait_for("Server is running");
    assert!(server.terminate());
    let before = std::fs::read(db_path(dir.path())).unwrap();
    fs.remount_read_only();
    let out = run(&["server", "--data-dir", data]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(db_path(dir.path()).to_str().unwrap()), "{err}");
    assert!(
        err.contains("Read-only file system") || err.contains("read-only"),
        "{err}"
    );
    assert_eq!(std::fs::read(db_path(dir.path())).unwrap(), before);
}

#[test]
fn a_port_in_use_ends_with_one_clear_message() {
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let kubeconfig = format!("{data}/kubeconfig.yaml");
    let out = run(&[
        "server",
        "--data-dir",
        data,
        "--https-listen-port",
        &port,
        "--write-kubeconfig",
        &kubeconfig,
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("listen on 0.0.0.0:{port}")), "{err}");
    assert!(err.contains("in use"), "{err}");
    assert!(
        !std::path::Path::new(&kubeconfig).exists(),
        "no kubeconfig for a server that is not up"
    );
}

//! The real kubectl binaries (1.27, 1.30 and 1.33) against a real `skiff server`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;
use support::kubectl::{fails, kubectl, kubectl_path, ok, VERSIONS};
use support::Cluster;

const MANIFEST: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  labels: {app: web}
data:
  a: \"1\"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: busybox
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
";

fn write_manifest(dir: &Path) -> String {
    let path = dir.join("manifest.yaml");
    std::fs::write(&path, MANIFEST).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn discovery_answers_every_kubectl() {
    let c = Cluster::start();
    for v in VERSIONS {
        let resources = ok(&c, v, &["api-resources"]);
        for line in [
            "deployments",
            "deploy",
            "apps/v1",
            "Deployment",
            "namespaces",
            "false",
        ] {
            assert!(
                resources.contains(line),
                "1.{v} api-resources lacks {line}:\n{resources}"
            );
        }
        let versions = ok(&c, v, &["api-versions"]);
        assert!(
            versions.contains("apps/v1") && versions.contains("rbac.authorization.k8s.io/v1"),
            "{versions}"
        );
        let version = ok(&c, v, &["version"]);
        assert!(
            version.contains("Server Version") && version.contains("v1.33.0+skiff"),
            "{version}"
        );
        let namespaces = ok(&c, v, &["get", "namespaces"]);
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            assert!(namespaces.contains(ns), "{namespaces}");
        }
    }
}

#[test]
fn apply_get_label_annotate_and_delete_with_every_kubectl() {
    let c = Cluster::start();
    let manifest = write_manifest(c.dir.path());
    for v in VERSIONS {
        let ns = format!("t{v}");
        let out = kubectl(
            &c,
            v,
            &["create", "-f", "-"],
            Some(&format!(
            "{{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{{\"name\":\"{ns}\"}}}}"
        )),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let applied = ok(&c, v, &["apply", "-n", &ns, "-f", &manifest]);
        assert!(applied.contains("deployment.apps/web created"), "{applied}");
        let all = ok(&c, v, &["get", "all", "-n", &ns]);
        assert!(
            all.contains("deployment.apps/web") && all.contains("service/web"),
            "{all}"
        );
        assert!(
            all.contains("READY") && all.contains("UP-TO-DATE") && all.contains("0/2"),
            "{all}"
        );
        let wide = ok(&c, v, &["get", "deploy", "-n", &ns, "-o", "wide"]);
        assert!(
            wide.contains("SELECTOR") && wide.contains("busybox") && wide.contains("app=web"),
            "{wide}"
        );
        let yaml = ok(&c, v, &["get", "cm", "cfg", "-n", &ns, "-o", "yaml"]);
        assert!(
            yaml.contains("resourceVersion:") && yaml.contains("uid:"),
            "{yaml}"
        );
        let json = ok(&c, v, &["get", "svc", "web", "-n", &ns, "-o", "json"]);
        assert!(json.contains("\"kind\": \"Service\""), "{json}");
        let labelled = ok(
            &c,
            v,
            &["get", "cm", "-A", "--show-labels", "-l", "app=web"],
        );
        assert!(
            labelled.contains(&ns) && labelled.contains("app=web"),
            "{labelled}"
        );
        let by_field = ok(
            &c,
            v,
            &[
                "get",
                "cm",
                "-n",
                &ns,
                "--field-selector",
                "metadata.name=cfg",
                "-o",
                "name",
            ],
        );
        assert_eq!(by_field.trim(), "configmap/cfg");
        ok(&c, v, &["label", "cm", "cfg", "-n", &ns, "tier=front"]);
        ok(&c, v, &["annotate", "cm", "cfg", "-n", &ns, "note=hello"]);
        let labels = ok(
            &c,
            v,
            &[
                "get",
                "cm",
                "cfg",
                "-n",
                &ns,
                "-o",
                "jsonpath={.metadata.labels.tier} {.metadata.annotations.note}",
            ],
        );
        assert_eq!(labels, "front hello");
        ok(&c, v, &["delete", "cm", "cfg", "-n", &ns, "--wait"]);
        ok(&c, v, &["delete", "deploy", "-n", &ns, "-l", "app=web"]);
        ok(&c, v, &["delete", "svc", "--all", "-n", &ns]);
        let left = ok(&c, v, &["get", "deploy,svc,cm", "-n", &ns, "-o", "name"]);
        // The root CA is the controller manager's, in every namespace, as on Kubernetes.
        let left: Vec<&str> = left
            .lines()
            .filter(|l| *l != "configmap/kube-root-ca.crt")
            .collect();
        assert!(left.is_empty(), "everything else was deleted: {left:?}");
    }
}

#[test]
fn watch_shows_a_change_as_it_arrives() {
    let c = Cluster::start();
    ok(&c, 30, &["apply", "-f", &write_manifest(c.dir.path())]);
    let mut watch = Command::new(kubectl_path(33))
        .args([
            "get",
            "cm",
            "-w",
            "--request-timeout=20s",
            "--field-selector=metadata.name!=kube-root-ca.crt",
        ])
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", c.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the header and first row");
    assert!(first.contains("NAME") && first.contains("DATA"), "{first}");
    let row = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the existing configmap");
    assert!(row.starts_with("cfg"), "{row}");
    let _ = kubectl(
        &c,
        30,
        &["create", "-f", "-"],
        Some("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"arrives\"}}"),
    );
    let arrived = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the new configmap");
    assert!(arrived.starts_with("arrives"), "{arrived}");
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn errors_read_the_way_kubectl_prints_them() {
    let c = Cluster::start();
    for v in VERSIONS {
        let missing = fails(&c, v, &["get", "cm", "missing"], None);
        assert!(
            missing.contains("Error from server (NotFound): configmaps \"missing\" not found"),
            "{missing}"
        );
        let unknown = fails(&c, v, &["get", "nonsense"], None);
        assert!(
            unknown.contains("the server doesn't have a resource type \"nonsense\""),
            "{unknown}"
        );
        let bad_name = fails(&c, v, &["create", "-f", "-"], Some("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"Bad_Name\"}}"));
        assert!(
            bad_name.contains("is invalid") && bad_name.contains("metadata.name"),
            "{bad_name}"
        );
        let strict = fails(&c, v, &["create", "-f", "-"], Some("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"x\"},\"bogus\":1}"));
        assert!(strict.contains("unknown field \"bogus\""), "{strict}");
        let wrong_ns = fails(
            &c,
            v,
            &["create", "-n", "nowhere", "-f", "-"],
            Some("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"x\"}}"),
        );
        assert!(
            wrong_ns.contains("namespaces \"nowhere\" not found"),
            "{wrong_ns}"
        );
    }
    let twice = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"dup\"}}";
    assert!(kubectl(&c, 30, &["create", "-f", "-"], Some(twice))
        .status
        .success());
    let again = fails(&c, 30, &["create", "-f", "-"], Some(twice));
    assert!(
        again.contains("AlreadyExists") && again.contains("configmaps \"dup\" already exists"),
        "{again}"
    );
}

#[test]
fn a_restart_keeps_every_object_and_resource_version() {
    let mut c = Cluster::start();
    ok(&c, 30, &["apply", "-f", &write_manifest(c.dir.path())]);
    // The kubernetes service follows the API server's port, which a test server picks
    // afresh at each start; every other object stays as it was.
    let get = [
        "get",
        "cm,deploy,svc",
        "--field-selector=metadata.name!=kubernetes",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion},{.metadata.uid} {end}",
    ];
    let before = ok(&c, 30, &get);
    c.restart();
    let after = ok(&c, 30, &get);
    assert_eq!(before, after);
    assert!(before.matches('=').count() >= 3, "{before}");
}

/// A kubeconfig that trusts the cluster's CA and logs in with `token` only.
fn token_kubeconfig(c: &Cluster, token: &str) -> PathBuf {
    let kubeconfig = std::fs::read_to_string(c.kubeconfig()).unwrap();
    let find = |key: &str| {
        kubeconfig
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .unwrap()
            .to_string()
    };
    let (server, ca) = (find("server: "), find("certificate-authority-data: "));
    let path = c.dir.path().join(format!("token-{}.yaml", token.len()));
    std::fs::write(&path, format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: c\ncontexts:\n- context:\n    cluster: c\n    user: u\n  name: c\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: {token}\n"
    )).unwrap();
    path
}

#[test]
fn token_file_users_get_in_and_everyone_else_is_unauthorized() {
    let c = Cluster::start_with(|dir| {
        let tokens = dir.join("tokens.csv");
        std::fs::write(&tokens, "s3cret-token,alice,1001,\"dev\"\n").unwrap();
        vec!["--token-auth-file".into(), tokens.to_str().unwrap().into()]
    });
    for (token, allowed) in [("s3cret-token", true), ("not-a-token", false)] {
        let kubeconfig = token_kubeconfig(&c, token);
        let out = Command::new(kubectl_path(30))
            .args(["get", "ns", "--kubeconfig", kubeconfig.to_str().unwrap()])
            .env("HOME", c.dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), allowed, "{token}: {stderr}");
        if !allowed {
            assert!(
                stderr.contains("Unauthorized") || stderr.contains("must be logged in"),
                "{stderr}"
            );
        }
    }
}

#[test]
fn generator_commands_of_kubectl_1_32_and_later_send_protobuf_and_work() {
    let c = Cluster::start();
    for v in [30, 33] {
        let ns = format!("gen{v}");
        ok(&c, v, &["create", "namespace", &ns]);
        ok(
            &c,
            v,
            &["create", "configmap", "cm", "-n", &ns, "--from-literal=a=b"],
        );
        ok(
            &c,
            v,
            &[
                "create",
                "secret",
                "generic",
                "s",
                "-n",
                &ns,
                "--from-literal=p=q",
            ],
        );
        ok(
            &c,
            v,
            &[
                "create",
                "deployment",
                "d",
                "-n",
                &ns,
                "--image=busybox",
                "--replicas=3",
            ],
        );
        ok(
            &c,
            v,
            &[
                "create",
                "service",
                "clusterip",
                "svc",
                "-n",
                &ns,
                "--tcp=80:8080",
            ],
        );
        let got = ok(
            &c,
            v,
            &[
                "get",
                "cm/cm",
                "secret/s",
                "deploy/d",
                "svc/svc",
                "-n",
                &ns,
                "-o",
                "jsonpath={range .items[*]}{.kind}:{.metadata.name} {end}",
            ],
        );
        assert_eq!(got.trim(), "ConfigMap:cm Secret:s Deployment:d Service:svc");
        let secret = ok(
            &c,
            v,
            &["get", "secret", "s", "-n", &ns, "-o", "jsonpath={.data.p}"],
        );
        assert_eq!(secret, "cQ==");
        let replicas = ok(
            &c,
            v,
            &[
                "get",
                "deploy",
                "d",
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}",
            ],
        );
        assert_eq!(replicas, "3 busybox");
        let ports = ok(&c, v, &["get", "svc", "svc", "-n", &ns]);
        assert!(ports.contains("80/TCP"), "{ports}");
    }
}

#[test]
fn wait_for_delete_returns_when_the_object_goes() {
    let c = Cluster::start();
    let cm = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"doomed\"}}";
    assert!(kubectl(&c, 33, &["create", "-f", "-"], Some(cm))
        .status
        .success());
    let mut wait = Command::new(kubectl_path(33))
        .args(["wait", "--for=delete", "configmap/doomed", "--timeout=30s"])
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", c.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        wait.try_wait().unwrap().is_none(),
        "wait returned before the delete"
    );
    ok(&c, 30, &["delete", "configmap", "doomed", "--wait=false"]);
    for _ in 0..200 {
        if let Some(status) = wait.try_wait().unwrap() {
            let out = wait.wait_with_output().unwrap();
            assert!(status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = wait.kill();
    panic!("kubectl wait --for=delete did not return after the delete");
}

//! Object semantics as the real kubectl binaries (1.27, 1.30, 1.33) exercise them:
//! client-side apply and re-apply, edit, every patch type, scale, set image, rollout,
//! cascading deletes, services and their addresses, server dry runs and diff.

use std::path::Path;

mod support;
use support::kubectl::{fails, kubectl, ok, VERSIONS};
use support::Cluster;

fn deployment(image: &str, replicas: u32, extra_label: bool) -> String {
    let extra = if extra_label {
        "\n    extra: \"yes\""
    } else {
        ""
    };
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web{extra}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: app
        image: {image}
        env:
        - {{name: A, value: \"1\"}}
      - name: side
        image: busybox
"
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn namespace(c: &Cluster, v: u32, name: &str) {
    ok(c, v, &["create", "namespace", name]);
}

fn jsonpath(c: &Cluster, v: u32, ns: &str, what: &str, path: &str) -> String {
    ok(
        c,
        v,
        &["get", "-n", ns, what, "-o", &format!("jsonpath={path}")],
    )
}

#[test]
fn apply_again_prunes_removed_fields_and_an_unchanged_apply_writes_nothing() {
    let c = Cluster::start();
    for v in VERSIONS {
        let ns = format!("apply{v}");
        namespace(&c, v, &ns);
        let first = write(c.dir.path(), "d1.yaml", &deployment("busybox:1", 2, true));
        let out = ok(&c, v, &["apply", "-n", &ns, "-f", &first]);
        assert!(out.contains("deployment.apps/web created"), "{out}");
        let second = write(c.dir.path(), "d2.yaml", &deployment("busybox:2", 3, false));
        let out = ok(&c, v, &["apply", "-n", &ns, "-f", &second]);
        assert!(
            out.contains("deployment.apps/web configured"),
            "1.{v}: {out}"
        );
        let image = jsonpath(
            &c,
            v,
            &ns,
            "deploy/web",
            "{.spec.template.spec.containers[0].image}",
        );
        assert_eq!(image, "busybox:2");
        let labels = jsonpath(&c, v, &ns, "deploy/web", "{.metadata.labels}");
        assert!(
            !labels.contains("extra"),
            "1.{v}: the removed label stays: {labels}"
        );
        assert_eq!(jsonpath(&c, v, &ns, "deploy/web", "{.spec.replicas}"), "3");
        assert_eq!(
            jsonpath(&c, v, &ns, "deploy/web", "{.metadata.generation}"),
            "2"
        );
        let names = jsonpath(
            &c,
            v,
            &ns,
            "deploy/web",
            "{.spec.template.spec.containers[*].name}",
        );
        assert_eq!(names, "app side");
        let rv = jsonpath(&c, v, &ns, "deploy/web", "{.metadata.resourceVersion}");
        let out = ok(&c, v, &["apply", "-n", &ns, "-f", &second]);
        assert!(
            out.contains("deployment.apps/web unchanged"),
            "1.{v}: {out}"
        );
        assert_eq!(
            jsonpath(&c, v, &ns, "deploy/web", "{.metadata.resourceVersion}"),
            rv
        );
    }
}

#[test]
fn edit_patch_scale_set_image_label_and_rollout_change_what_they_should() {
    let c = Cluster::start();
    let editor = write(
        c.dir.path(),
        "editor.sh",
        "#!/bin/sh\nsed -i 's/replicas: 2/replicas: 4/' \"$1\"\n",
    );
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for v in VERSIONS {
        let ns = format!("edit{v}");
        namespace(&c, v, &ns);
        let file = write(c.dir.path(), "d.yaml", &deployment("busybox:1", 2, false));
        ok(&c, v, &["apply", "-n", &ns, "-f", &file]);
        let mut edit = std::process::Command::new(support::kubectl::kubectl_path(v));
        edit.args(["edit", "-n", &ns, "deploy/web"])
            .env("KUBECONFIG", c.kubeconfig())
            .env("HOME", c.dir.path())
            .env("KUBE_EDITOR", &editor);
        let out = edit.output().unwrap();
        assert!(
            out.status.success(),
            "1.{v} edit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(jsonpath(&c, v, &ns, "deploy/web", "{.spec.replicas}"), "4");

        ok(
            &c,
            v,
            &[
                "patch",
                "-n",
                &ns,
                "deploy/web",
                "-p",
                r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","env":[{"name":"B","value":"2"}]}]}}}}"#,
            ],
        );
        let env = jsonpath(
            &c,
            v,
            &ns,
            "deploy/web",
            "{.spec.template.spec.containers[0].env[*].name}",
        );
        assert_eq!(env, "B A", "1.{v}: a strategic patch merges env by name");
        ok(
            &c,
            v,
            &[
                "patch",
                "-n",
                &ns,
                "deploy/web",
                "--type=merge",
                "-p",
                r#"{"metadata":{"annotations":{"m":"1"}}}"#,
            ],
        );
        ok(
            &c,
            v,
            &[
                "patch",
                "-n",
                &ns,
                "deploy/web",
                "--type=json",
                "-p",
                r#"[{"op":"replace","path":"/spec/template/spec/containers/1/image","value":"busybox:9"}]"#,
            ],
        );
        let err = fails(
            &c,
            v,
            &[
                "patch",
                "-n",
                &ns,
                "deploy/web",
                "--type=json",
                "-p",
                r#"[{"op":"test","path":"/spec/replicas","value":99}]"#,
            ],
            None,
        );
        assert!(
            err.contains("testing value /spec/replicas failed") || err.contains("Invalid"),
            "{err}"
        );
        let err = fails(
            &c,
            v,
            &[
                "patch",
                "-n",
                &ns,
                "deploy/web",
                "-p",
                r#"{"spec":{"template":{"spec":{"containers":[{"image":"nokey"}]}}}}"#,
            ],
            None,
        );
        assert!(
            err.contains("does not contain declared merge key: name"),
            "1.{v}: {err}"
        );

        let out = ok(&c, v, &["scale", "-n", &ns, "deploy/web", "--replicas=5"]);
        assert!(out.contains("scaled"), "{out}");
        assert_eq!(jsonpath(&c, v, &ns, "deploy/web", "{.spec.replicas}"), "5");
        ok(
            &c,
            v,
            &["set", "image", "-n", &ns, "deploy/web", "app=busybox:3"],
        );
        assert_eq!(
            jsonpath(
                &c,
                v,
                &ns,
                "deploy/web",
                "{.spec.template.spec.containers[0].image}"
            ),
            "busybox:3"
        );
        ok(&c, v, &["label", "-n", &ns, "deploy/web", "tier=a"]);
        ok(
            &c,
            v,
            &["label", "--overwrite", "-n", &ns, "deploy/web", "tier=b"],
        );
        assert_eq!(
            jsonpath(&c, v, &ns, "deploy/web", "{.metadata.labels.tier}"),
            "b"
        );
        ok(&c, v, &["rollout", "pause", "-n", &ns, "deploy/web"]);
        assert_eq!(jsonpath(&c, v, &ns, "deploy/web", "{.spec.paused}"), "true");
        ok(&c, v, &["rollout", "resume", "-n", &ns, "deploy/web"]);
        assert_eq!(jsonpath(&c, v, &ns, "deploy/web", "{.spec.paused}"), "");
        ok(&c, v, &["rollout", "restart", "-n", &ns, "deploy/web"]);
        let restarted = jsonpath(
            &c,
            v,
            &ns,
            "deploy/web",
            "{.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}",
        );
        assert!(
            !restarted.is_empty(),
            "1.{v}: rollout restart stamps the template"
        );
        let yaml = ok(&c, v, &["get", "-n", &ns, "deploy/web", "-o", "yaml"]);
        assert!(
            !yaml.contains("$setElementOrder") && !yaml.contains("$patch"),
            "{yaml}"
        );
    }
}

#[test]
fn services_cascading_deletes_dry_runs_and_diff() {
    let c = Cluster::start();
    for v in VERSIONS {
        let ns = format!("svc{v}");
        namespace(&c, v, &ns);
        ok(
            &c,
            v,
            &[
                "create",
                "service",
                "clusterip",
                "a",
                "-n",
                &ns,
                "--tcp=80:8080",
            ],
        );
        ok(
            &c,
            v,
            &[
                "create",
                "service",
                "nodeport",
                "b",
                "-n",
                &ns,
                "--tcp=80:8080",
            ],
        );
        ok(
            &c,
            v,
            &[
                "create",
                "service",
                "clusterip",
                "h",
                "-n",
                &ns,
                "--clusterip=None",
            ],
        );
        let ip = jsonpath(&c, v, &ns, "svc/a", "{.spec.clusterIP}");
        assert!(ip.starts_with("10.43."), "{ip}");
        let port = jsonpath(&c, v, &ns, "svc/b", "{.spec.ports[0].nodePort}");
        assert!(
            port.parse::<u16>()
                .is_ok_and(|p| (30000..=32767).contains(&p)),
            "{port}"
        );
        assert_eq!(jsonpath(&c, v, &ns, "svc/h", "{.spec.clusterIP}"), "None");
        let table = ok(&c, v, &["get", "svc", "-n", &ns]);
        assert!(
            table.contains(&ip) && table.contains(&format!("80:{port}/TCP")),
            "{table}"
        );

        // Dry runs store nothing; diff shows what would change.
        let file = write(c.dir.path(), "dry.yaml", &deployment("busybox:1", 1, false));
        let out = ok(
            &c,
            v,
            &["apply", "-n", &ns, "-f", &file, "--dry-run=server"],
        );
        assert!(out.contains("(server dry run)"), "{out}");
        let err = fails(&c, v, &["get", "-n", &ns, "deploy/web"], None);
        assert!(
            err.contains("NotFound") || err.contains("not found"),
            "{err}"
        );
        ok(&c, v, &["apply", "-n", &ns, "-f", &file]);
        let changed = write(
            c.dir.path(),
            "dry2.yaml",
            &deployment("busybox:7", 1, false),
        );
        let diff = kubectl(&c, v, &["diff", "-n", &ns, "-f", &changed], None);
        assert_eq!(
            diff.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&diff.stderr)
        );
        let text = String::from_utf8_lossy(&diff.stdout);
        assert!(
            text.contains("-        image: busybox:1")
                && text.contains("+        image: busybox:7"),
            "{text}"
        );
        assert_eq!(
            jsonpath(
                &c,
                v,
                &ns,
                "deploy/web",
                "{.spec.template.spec.containers[0].image}"
            ),
            "busybox:1"
        );

        // Cascading deletes: kubectl waits until the garbage collector has removed its
        // finalizer, and the object is gone.
        for (name, cascade) in [
            ("fg", "--cascade=foreground"),
            ("orphan", "--cascade=orphan"),
        ] {
            ok(&c, v, &["create", "configmap", name, "-n", &ns]);
            ok(&c, v, &["delete", "configmap", name, "-n", &ns, cascade]);
            let err = fails(&c, v, &["get", "configmap", name, "-n", &ns], None);
            assert!(err.contains("NotFound"), "1.{v}: {err}");
        }
    }
}

#[test]
fn server_side_apply_owns_fields_reports_conflicts_and_forces() {
    let c = Cluster::start();
    for v in VERSIONS {
        let ns = format!("ssa{v}");
        namespace(&c, v, &ns);
        let first = write(c.dir.path(), "s1.yaml", &deployment("busybox:1", 2, true));
        let out = ok(&c, v, &["apply", "--server-side", "-n", &ns, "-f", &first]);
        assert!(
            out.contains("deployment.apps/web serverside-applied"),
            "1.{v}: {out}"
        );
        let managers = ok(
            &c,
            v,
            &[
                "get",
                "-n",
                &ns,
                "deploy/web",
                "-o",
                "jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation};{end}",
                "--show-managed-fields",
            ],
        );
        assert!(managers.contains("kubectl/Apply"), "1.{v}: {managers}");
        // Another manager takes replicas; applying a different value is a conflict.
        ok(
            &c,
            v,
            &[
                "patch",
                "-n",
                &ns,
                "deploy/web",
                "--type=merge",
                "-p",
                r#"{"spec":{"replicas":5}}"#,
            ],
        );
        let err = fails(
            &c,
            v,
            &["apply", "--server-side", "-n", &ns, "-f", &first],
            None,
        );
        assert!(
            err.contains("conflict") && err.contains(".spec.replicas"),
            "1.{v}: {err}"
        );
        assert_eq!(jsonpath(&c, v, &ns, "deploy/web", "{.spec.replicas}"), "5");
        ok(
            &c,
            v,
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-n",
                &ns,
                "-f",
                &first,
            ],
        );
        assert_eq!(jsonpath(&c, v, &ns, "deploy/web", "{.spec.replicas}"), "2");
        // A field the applier no longer sends goes away.
        let second = write(c.dir.path(), "s2.yaml", &deployment("busybox:1", 2, false));
        ok(&c, v, &["apply", "--server-side", "-n", &ns, "-f", &second]);
        let labels = jsonpath(&c, v, &ns, "deploy/web", "{.metadata.labels}");
        assert!(!labels.contains("extra"), "1.{v}: {labels}");
        let rv = jsonpath(&c, v, &ns, "deploy/web", "{.metadata.resourceVersion}");
        ok(&c, v, &["apply", "--server-side", "-n", &ns, "-f", &second]);
        assert_eq!(
            jsonpath(&c, v, &ns, "deploy/web", "{.metadata.resourceVersion}"),
            rv,
            "1.{v}: an unchanged server-side apply writes nothing"
        );
    }
}

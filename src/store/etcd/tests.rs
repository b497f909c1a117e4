//! etcd over TLS with client certificates, as a production cluster runs it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::conformance::bounded;
use crate::store::etcd_process::{EtcdProcess, EtcdTls};
use crate::store::{open, Endpoint, StoreConfig, StoreError, TlsFiles};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA, a serving certificate for 127.0.0.1 and a client certificate, all EC P-256.
fn certificates(dir: &Path) -> EtcdTls {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=skiff-test-ca"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
    openssl(dir, &ca);
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        let subj = format!("/CN={name}");
        let mut req = vec!["req", "-subj", &subj];
        req.extend(ec);
        let (key, csr, crt, extfile) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        req.extend(["-keyout", &key, "-out", &csr]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                &crt,
                "-extfile",
                &extfile,
            ],
        );
    }
    EtcdTls {
        ca_file: dir.join("ca.crt"),
        cert_file: dir.join("server.crt"),
        key_file: dir.join("server.key"),
        client_cert_file: dir.join("client.crt"),
        client_key_file: dir.join("client.key"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_over_tls_with_client_certificates() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let tls = certificates(dir.path());
        let etcd = EtcdProcess::start_tls(dir.path(), tls.clone())
            .await
            .unwrap();
        let endpoint = Endpoint::parse(&etcd.endpoint()).unwrap();
        let config = StoreConfig {
            endpoint: endpoint.clone(),
            tls: TlsFiles {
                ca_file: Some(tls.ca_file.clone()),
                cert_file: Some(tls.client_cert_file.clone()),
                key_file: Some(tls.client_key_file.clone()),
            },
        };
        let store = open(&config, &CancellationToken::new()).await.unwrap();
        let rev = store
            .create("/registry/tls", b"ok".to_vec(), None)
            .await
            .unwrap();
        let kv = store.get("/registry/tls", 0).await.unwrap().1.unwrap();
        assert_eq!((kv.value.as_slice(), kv.mod_revision), (&b"ok"[..], rev));

        // Without a client certificate etcd refuses us; the server keeps retrying until
        // it is told to stop, then says what it was waiting for.
        let no_cert = StoreConfig {
            endpoint,
            tls: TlsFiles {
                ca_file: Some(tls.ca_file.clone()),
                ..TlsFiles::default()
            },
        };
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            stop.cancel();
        });
        match open(&no_cert, &shutdown).await {
            Err(StoreError::Etcd { endpoint, .. }) => {
                assert!(endpoint.starts_with("https://127.0.0.1:"))
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("etcd accepted a client without a certificate"),
        }
    })
    .await;
}

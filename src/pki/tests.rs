use std::net::IpAddr;

use super::*;

#[test]
fn certificates_are_created_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let sans = serving_sans("node1", &[], "10.43.0.1".parse().unwrap(), &[]);
    let (first, origins) = load_or_create(dir.path(), &sans).unwrap();
    assert_eq!(origins, [Origin::Created; 3]);
    let (again, origins) = load_or_create(dir.path(), &sans).unwrap();
    assert_eq!(origins, [Origin::Reused; 3]);
    assert_eq!(first.ca.cert_pem, again.ca.cert_pem);
    assert_eq!(first.serving.cert_pem, again.serving.cert_pem);
    assert_eq!(first.admin.cert_pem, again.admin.cert_pem);
    let mode = std::fs::metadata(dir.path().join("ca.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn a_new_tls_san_reissues_only_the_serving_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ip: IpAddr = "10.43.0.1".parse().unwrap();
    let (first, _) = load_or_create(dir.path(), &serving_sans("n", &[], ip, &[])).unwrap();
    let more = serving_sans(
        "n",
        &[],
        ip,
        &["skiff.example.com".into(), "192.0.2.7".into()],
    );
    let (second, origins) = load_or_create(dir.path(), &more).unwrap();
    assert_eq!(origins, [Origin::Reused, Origin::Created, Origin::Reused]);
    assert_eq!(first.ca.cert_pem, second.ca.cert_pem);
    assert!(covers(&second.serving.cert_pem, &more));
    assert!(!covers(&first.serving.cert_pem, &more));
}

#[test]
fn the_admin_certificate_names_system_admin_in_system_masters() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, _) = load_or_create(dir.path(), &[]).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(pki.admin.cert_pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let cn: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let o: Vec<_> = cert
        .subject()
        .iter_organization()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        (cn, o),
        (
            vec!["system:admin".to_string()],
            vec!["system:masters".to_string()]
        )
    );
}

#[test]
fn a_corrupt_key_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    load_or_create(dir.path(), &[]).unwrap();
    std::fs::write(dir.path().join("ca.key"), "not a key").unwrap();
    let err = load_or_create(dir.path(), &[]).unwrap_err().to_string();
    assert!(err.contains("ca.key"), "{err}");
}

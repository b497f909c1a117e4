//! The cluster's certificates: a CA, the API server's serving certificate and the admin
//! client certificate, kept under `<data-dir>/server/tls/` and reused on restart; and the
//! admin kubeconfig.
//!
//! Certificates are valid for 365 days, as k3s's are. The serving certificate is made again
//! (with the same CA) when the names it must carry change, for example a new `--tls-san`.

mod kubeconfig;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

pub use kubeconfig::write_kubeconfig;

/// How long certificates are valid.
const VALIDITY_DAYS: i64 = 365;

/// Errors of the PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A certificate or key could not be parsed.
    #[error("certificate or key {path} is unreadable: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// A certificate could not be made.
    #[error("create certificate {what}: {source}")]
    Generate {
        /// Which one.
        what: &'static str,
        /// The cause.
        source: rcgen::Error,
    },
}

/// A certificate and its key, as PEM.
#[derive(Clone, Debug)]
pub struct CertPair {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
}

/// The cluster's certificates, loaded or created.
#[derive(Clone, Debug)]
pub struct ClusterPki {
    /// The cluster CA.
    pub ca: CertPair,
    /// The API server's serving certificate.
    pub serving: CertPair,
    /// The admin client certificate (CN `system:admin`, O `system:masters`).
    pub admin: CertPair,
    /// Where the files are.
    pub dir: PathBuf,
}

/// What happened to each certificate at start, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Made now.
    Created,
    /// Read from disk.
    Reused,
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes a file readable only by its owner (keys) or by all (certificates).
fn write(path: &Path, text: &str, private: bool) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |action, source| PkiError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(|e| io("create", e))?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("sync", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("rename", e))
}

fn validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
}

fn generate(what: &'static str) -> impl Fn(rcgen::Error) -> PkiError {
    move |source| PkiError::Generate { what, source }
}

/// Loads the cluster certificates from `dir`, making the missing ones.
///
/// `sans` are the names the serving certificate must carry (hostnames and addresses).
pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<(ClusterPki, [Origin; 3]), PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        action: "create directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let (ca, ca_origin) = load_or_create_ca(dir)?;
    let key = KeyPair::from_pem(&ca.key_pem).map_err(|e| PkiError::Parse {
        path: dir.join("ca.key"),
        message: e.to_string(),
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, key).map_err(|e| PkiError::Parse {
        path: dir.join("ca.crt"),
        message: e.to_string(),
    })?;
    let (serving, serving_origin) = load_or_issue(
        dir,
        "serving",
        "serving",
        &issuer,
        |p| {
            p.distinguished_name.push(DnType::CommonName, "skiff");
            p.subject_alt_names = sans.iter().map(|s| san(s)).collect::<Result<_, _>>()?;
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            Ok(())
        },
        |pem| covers(pem, sans),
    )?;
    let (admin, admin_origin) = load_or_issue(
        dir,
        "client-admin",
        "admin client",
        &issuer,
        |p| {
            p.distinguished_name
                .push(DnType::CommonName, "system:admin");
            p.distinguished_name
                .push(DnType::OrganizationName, "system:masters");
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            Ok(())
        },
        |_| true,
    )?;
    Ok((
        ClusterPki {
            ca,
            serving,
            admin,
            dir: dir.to_path_buf(),
        },
        [ca_origin, serving_origin, admin_origin],
    ))
}

fn load_or_create_ca(dir: &Path) -> Result<(CertPair, Origin), PkiError> {
    let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
    if let (Some(cert_pem), Some(key_pem)) = (read(&cert_path)?, read(&key_path)?) {
        return Ok((CertPair { cert_pem, key_pem }, Origin::Reused));
    }
    let key = KeyPair::generate().map_err(generate("CA key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let cn = format!(
        "skiff-ca@{}",
        time::OffsetDateTime::now_utc().unix_timestamp()
    );
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params);
    params.not_after = params.not_before + time::Duration::days(10 * 365);
    let cert = params.self_signed(&key).map_err(generate("CA"))?;
    save(&cert, &key, &cert_path, &key_path)
}

/// Reads `<name>.crt`/`<name>.key` if present and `still_good` accepts the certificate;
/// otherwise issues a new one from the CA.
fn load_or_issue(
    dir: &Path,
    name: &str,
    what: &'static str,
    issuer: &Issuer<'_, KeyPair>,
    fill: impl Fn(&mut CertificateParams) -> Result<(), rcgen::Error>,
    still_good: impl Fn(&str) -> bool,
) -> Result<(CertPair, Origin), PkiError> {
    let (cert_path, key_path) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    if let (Some(cert_pem), Some(key_pem)) = (read(&cert_path)?, read(&key_path)?) {
        if still_good(&cert_pem) {
            return Ok((CertPair { cert_pem, key_pem }, Origin::Reused));
        }
    }
    let key = KeyPair::generate().map_err(generate(what))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    fill(&mut params).map_err(generate(what))?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params);
    let cert = params.signed_by(&key, issuer).map_err(generate(what))?;
    save(&cert, &key, &cert_path, &key_path)
}

/// Writes a new certificate and its key (key first, owner-only) and returns them.
fn save(
    cert: &rcgen::Certificate,
    key: &KeyPair,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(CertPair, Origin), PkiError> {
    let pair = CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    write(key_path, &pair.key_pem, true)?;
    write(cert_path, &pair.cert_pem, false)?;
    Ok((pair, Origin::Created))
}

fn san(name: &str) -> Result<SanType, rcgen::Error> {
    Ok(match name.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(name.try_into()?),
    })
}

/// Whether a certificate carries every name in `sans` and is not about to expire.
fn covers(pem: &str, sans: &[String]) -> bool {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(pem.as_bytes()) else {
        return false;
    };
    let Ok(cert) = pem.parse_x509() else {
        return false;
    };
    let renew_before = time::OffsetDateTime::now_utc() + time::Duration::days(90);
    if cert.validity().not_after.timestamp() < renew_before.unix_timestamp() {
        return false;
    }
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return sans.is_empty();
    };
    let have: Vec<String> = ext
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                4 => Some(IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                16 => Some(IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    sans.iter().all(|s| {
        let want = s
            .parse::<IpAddr>()
            .map_or_else(|_| s.clone(), |ip| ip.to_string());
        have.contains(&want)
    })
}

/// The names the serving certificate carries: `kubernetes` and its service names, the
/// first service IP, loopback, this host's name and addresses, and every `--tls-san`.
pub fn serving_sans(
    hostname: &str,
    node_ips: &[IpAddr],
    service_ip: IpAddr,
    extra: &[String],
) -> Vec<String> {
    let mut sans: Vec<String> = vec![
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
        "localhost".into(),
        "127.0.0.1".into(),
        service_ip.to_string(),
    ];
    if !hostname.is_empty() {
        sans.push(hostname.to_string());
    }
    sans.extend(node_ips.iter().map(IpAddr::to_string));
    sans.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    sans.retain(|s| seen.insert(s.clone()));
    sans
}

#[cfg(test)]
mod tests;

//! The admin kubeconfig that `kubectl`, Helm and every client library read.

use std::path::Path;

use base64::Engine;

use super::{CertPair, PkiError};

/// Writes a kubeconfig for `server` that trusts `ca_pem` and logs in with `client`, with
/// file mode `mode` (k3s: `--write-kubeconfig-mode`, 0600 by default).
pub fn write_kubeconfig(
    path: &Path,
    mode: u32,
    server: &str,
    ca_pem: &str,
    client: &CertPair,
) -> Result<(), PkiError> {
    use std::os::unix::fs::PermissionsExt;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
        ca = b64(ca_pem),
        cert = b64(&client.cert_pem),
        key = b64(&client.key_pem),
    );
    let io = |action, source| PkiError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io("create directory for", e))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| io("write", e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io("set the mode of", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("write", e))
}

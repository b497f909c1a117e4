//! Parsing of `--datastore-endpoint`: which backend, and where.

use std::path::{Path, PathBuf};

/// Where the datastore lives, as named by `--datastore-endpoint`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `sqlite://PATH`: an SQLite database file.
    Sqlite(PathBuf),
    /// `sled://PATH`: a sled database directory.
    Sled(PathBuf),
    /// `etcd://HOST:PORT[,HOST:PORT…]` (plain) or `etcds://…` / `https://…` (TLS).
    Etcd {
        /// `http://HOST:PORT` or `https://HOST:PORT`, one per member.
        endpoints: Vec<String>,
        /// Whether to use TLS.
        tls: bool,
    },
}

/// Files for TLS to etcd (`--datastore-cafile`, `--datastore-certfile`, `--datastore-keyfile`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed etcd's serving certificate.
    pub ca_file: Option<PathBuf>,
    /// The client certificate presented to etcd.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key.
    pub key_file: Option<PathBuf>,
}

/// The accepted forms, for error messages.
pub const ACCEPTED_FORMS: &str = "sqlite://PATH, sled://PATH, etcd://HOST:PORT[,HOST:PORT...], \
     etcds://HOST:PORT[,...] or https://HOST:PORT[,...] (etcd over TLS), http://HOST:PORT[,...]";

/// A `--datastore-endpoint` that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid --datastore-endpoint {given:?}: {reason}; accepted forms: {ACCEPTED_FORMS}")]
pub struct EndpointError {
    /// What was given.
    pub given: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Endpoint {
    /// The default: `sqlite://<data-dir>/server/db/state.db`.
    pub fn default_for(data_dir: &Path) -> Endpoint {
        Endpoint::Sqlite(data_dir.join("server").join("db").join("state.db"))
    }

    /// Parses an endpoint string.
    pub fn parse(given: &str) -> Result<Endpoint, EndpointError> {
        let err = |reason: &str| EndpointError {
            given: given.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = given
            .split_once("://")
            .ok_or_else(|| err("missing a scheme such as sqlite:// or etcd://"))?;
        match scheme {
            "sqlite" | "sled" => {
                // sqlite://PATH: the path may be absolute (sqlite:///var/...) or relative.
                let path = rest.split('?').next().unwrap_or_default();
                if path.is_empty() {
                    return Err(err("the path is empty"));
                }
                let path = PathBuf::from(path);
                Ok(if scheme == "sqlite" {
                    Endpoint::Sqlite(path)
                } else {
                    Endpoint::Sled(path)
                })
            }
            "etcd" | "etcds" | "http" | "https" => {
                let tls = matches!(scheme, "etcds" | "https");
                let endpoints = parse_members(rest, tls).map_err(|reason| err(&reason))?;
                Ok(Endpoint::Etcd { endpoints, tls })
            }
            other => Err(err(&format!("unknown scheme {other:?}"))),
        }
    }
}

/// Parses `HOST:PORT[,HOST:PORT…]`, also accepting a scheme on later members.
fn parse_members(rest: &str, tls: bool) -> Result<Vec<String>, String> {
    let scheme = if tls { "https" } else { "http" };
    let mut out = Vec::new();
    for member in rest.split(',') {
        let member = member.trim();
        let member = member
            .split_once("://")
            .map_or(member, |(_, hostport)| hostport)
            .trim_end_matches('/');
        if member.is_empty() {
            return Err("an etcd member address is empty".into());
        }
        let (host, port) = member
            .rsplit_once(':')
            .ok_or_else(|| format!("etcd member {member:?} has no port (HOST:PORT)"))?;
        if host.is_empty() {
            return Err(format!("etcd member {member:?} has no host"));
        }
        port.parse::<u16>()
            .map_err(|_| format!("etcd member {member:?} has an invalid port {port:?}"))?;
        out.push(format!("{scheme}://{member}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_endpoint_takes_absolute_and_relative_paths() {
        assert_eq!(
            Endpoint::parse("sqlite:///var/lib/skiff/state.db").unwrap(),
            Endpoint::Sqlite("/var/lib/skiff/state.db".into())
        );
        assert_eq!(
            Endpoint::parse("sqlite://db/state.db?_journal=WAL").unwrap(),
            Endpoint::Sqlite("db/state.db".into())
        );
        assert_eq!(
            Endpoint::parse("sled:///tmp/x").unwrap(),
            Endpoint::Sled("/tmp/x".into())
        );
    }

    #[test]
    fn etcd_endpoint_lists_members_with_scheme() {
        assert_eq!(
            Endpoint::parse("etcd://10.0.0.1:2379,10.0.0.2:2379").unwrap(),
            Endpoint::Etcd {
                endpoints: vec!["http://10.0.0.1:2379".into(), "http://10.0.0.2:2379".into()],
                tls: false
            }
        );
        assert_eq!(
            Endpoint::parse("https://a:2379,https://b:2379").unwrap(),
            Endpoint::Etcd {
                endpoints: vec!["https://a:2379".into(), "https://b:2379".into()],
                tls: true
            }
        );
    }

    #[test]
    fn bad_endpoints_name_the_flag_and_the_forms() {
        for bad in [
            "state.db",
            "mysql://x",
            "sqlite://",
            "etcd://host",
            "etcd://:2379",
            "etcd://h:99999",
            "etcd://a:1,",
        ] {
            let msg = Endpoint::parse(bad).unwrap_err().to_string();
            assert!(msg.contains("--datastore-endpoint"), "{msg}");
            assert!(msg.contains("sqlite://PATH"), "{msg}");
        }
    }

    #[test]
    fn default_endpoint_is_sqlite_under_the_data_dir() {
        assert_eq!(
            Endpoint::default_for(Path::new("/var/lib/skiff")),
            Endpoint::Sqlite("/var/lib/skiff/server/db/state.db".into())
        );
    }
}

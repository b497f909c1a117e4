//! Authentication: client certificates (CN is the user, each O a group) and bearer tokens
//! from a token file (kube-apiserver's `--token-auth-file` format).

use std::collections::HashMap;
use std::path::Path;

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user name.
    pub name: String,
    /// Groups, `system:authenticated` included.
    pub groups: Vec<String>,
}

impl User {
    /// One of skiff's own components, as `system:<component>` in `system:masters` until
    /// authorization gives each its own rights.
    pub fn component(component: &str) -> Self {
        User::new(format!("system:{component}"), vec!["system:masters".into()])
    }

    fn new(name: String, mut groups: Vec<String>) -> Self {
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        User { name, groups }
    }
}

/// The user a verified client certificate names, if it names one.
pub fn user_from_certificate(der: &[u8]) -> Option<User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(User::new(name, groups))
}

/// Bearer tokens and the users they stand for.
#[derive(Clone, Debug, Default)]
pub struct TokenFile {
    tokens: HashMap<String, User>,
}

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("token file {path}: {message}")]
pub struct TokenFileError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl TokenFile {
    /// Reads `token,user,uid[,"group1,group2"]` lines.
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let err = |message: String| TokenFileError {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut tokens = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.splitn(4, ',');
            let (Some(token), Some(user), Some(_uid)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(err(format!(
                    "line {}: expected token,user,uid[,\"groups\"]",
                    i + 1
                )));
            };
            if token.is_empty() || user.is_empty() {
                return Err(err(format!(
                    "line {}: the token and the user may not be empty",
                    i + 1
                )));
            }
            let groups = fields
                .next()
                .map(|g| {
                    g.trim_matches('"')
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            tokens.insert(token.to_string(), User::new(user.to_string(), groups));
        }
        Ok(TokenFile { tokens })
    }

    /// The user an `Authorization` header's bearer token stands for.
    pub fn authenticate(&self, authorization: &str) -> Option<User> {
        let token = authorization.strip_prefix("Bearer ")?.trim();
        self.tokens.get(token).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_read_like_kube_apiserver() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        std::fs::write(
            &path,
            "# users\nsecret1,alice,1,\"dev,ops\"\nsecret2,bob,2\n",
        )
        .unwrap();
        let tokens = TokenFile::load(&path).unwrap();
        let alice = tokens.authenticate("Bearer secret1").unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.groups, ["dev", "ops", "system:authenticated"]);
        assert_eq!(
            tokens.authenticate("Bearer secret2").unwrap().groups,
            ["system:authenticated"]
        );
        assert!(tokens.authenticate("Bearer nope").is_none());
        assert!(tokens.authenticate("Basic secret1").is_none());
        std::fs::write(&path, "justtoken\n").unwrap();
        assert!(TokenFile::load(&path)
            .unwrap_err()
            .to_string()
            .contains("line 1"));
    }
}

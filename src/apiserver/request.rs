//! What a resource request path names, as kube-apiserver's `RequestInfo` reads it.

/// The parts of `/api/v1/namespaces/default/pods/web/status` and the like.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ResourcePath {
    /// "" for the core group.
    pub group: String,
    /// `v1`.
    pub version: String,
    /// The namespace in the path, if any.
    pub namespace: Option<String>,
    /// The plural resource, such as `pods`.
    pub resource: String,
    /// The object's name, if the path names one.
    pub name: Option<String>,
    /// The subresource, such as `status`.
    pub subresource: Option<String>,
}

/// Namespace subresources that follow a namespace's name directly.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Splits a resource path; `None` if it does not name a resource (discovery paths, say).
pub fn parse(path: &str) -> Option<ResourcePath> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        _ => return None,
    };
    let mut rest: Vec<&str> = rest.to_vec();
    if rest.iter().any(|p| p.is_empty()) {
        return None;
    }
    let mut namespace = None;
    if rest[0] == "namespaces" && rest.len() > 1 {
        namespace = Some(rest[1].to_string());
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest.drain(..2);
        } else {
            // The namespace object itself: /namespaces/NAME[/status].
            namespace = None;
        }
    }
    if rest.len() > 3 {
        return None;
    }
    Some(ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        resource: rest[0].to_string(),
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(
        group: &str,
        ns: Option<&str>,
        resource: &str,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> ResourcePath {
        ResourcePath {
            group: group.into(),
            version: "v1".into(),
            namespace: ns.map(Into::into),
            resource: resource.into(),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        }
    }

    #[test]
    fn paths_split_like_kube_apiserver() {
        assert_eq!(
            parse("/api/v1/pods"),
            Some(rp("", None, "pods", None, None))
        );
        assert_eq!(
            parse("/api/v1/namespaces/default/pods"),
            Some(rp("", Some("default"), "pods", None, None))
        );
        assert_eq!(
            parse("/apis/apps/v1/namespaces/d/deployments/web/scale"),
            Some(rp(
                "apps",
                Some("d"),
                "deployments",
                Some("web"),
                Some("scale")
            ))
        );
        assert_eq!(
            parse("/api/v1/namespaces"),
            Some(rp("", None, "namespaces", None, None))
        );
        assert_eq!(
            parse("/api/v1/namespaces/kube-system"),
            Some(rp("", None, "namespaces", Some("kube-system"), None))
        );
        assert_eq!(
            parse("/api/v1/namespaces/x/finalize"),
            Some(rp("", None, "namespaces", Some("x"), Some("finalize")))
        );
        assert_eq!(
            parse("/api/v1/nodes/n1"),
            Some(rp("", None, "nodes", Some("n1"), None))
        );
        assert_eq!(parse("/api/v1"), None);
        assert_eq!(parse("/apis/apps/v1"), None);
        assert_eq!(parse("/api/v1/namespaces/d/pods/a/b/c"), None);
    }
}

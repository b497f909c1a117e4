//! The kinds the API serves, from discovery, for the controllers that work on every kind
//! (the garbage collector, the namespace controller).

use kube::core::ApiResource;
use kube::discovery::{verbs, Discovery, Scope};

/// One kind served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// How to address it.
    pub resource: ApiResource,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
    /// The verbs it supports.
    pub verbs: Vec<String>,
}

impl Served {
    /// Whether it supports every verb of `wanted`.
    pub fn supports(&self, wanted: &[&str]) -> bool {
        wanted.iter().all(|w| self.verbs.iter().any(|v| v == w))
    }

    /// `plural.group`, as upstream names a resource in messages (`pods.` for the core group).
    pub fn group_resource(&self) -> String {
        format!("{}.{}", self.resource.plural, self.resource.group)
    }
}

/// Every kind served, in its group's preferred version.
pub async fn discover(client: &kube::Client) -> Result<Vec<Served>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            let namespaced = caps.scope == Scope::Namespaced;
            out.push(Served {
                resource,
                namespaced,
                verbs: caps.operations.clone(),
            });
        }
    }
    Ok(out)
}

/// The verbs a controller needs to watch a kind.
pub const WATCHABLE: &[&str] = &[verbs::LIST, verbs::WATCH];

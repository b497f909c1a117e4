//! The service account controller: a `default` ServiceAccount in every active namespace,
//! created again if it is deleted, as kube-controller-manager's `serviceaccount-controller`.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use super::{retry_after, Context, Result};

/// The service accounts every namespace gets.
pub const ENSURED: &[&str] = &["default"];

/// Runs the controller until the server stops.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let accounts: Api<ServiceAccount> = Api::all(ctx.client.clone());
    Controller::new(namespaces, watcher::Config::default())
        .watches(accounts, watcher::Config::default(), |sa| {
            let ensured = ENSURED.contains(&sa.metadata.name.as_deref().unwrap_or_default());
            sa.metadata
                .namespace
                .filter(|_| ensured)
                .map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
        .run(reconcile, |_, err, _| retry_after(err), ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

/// Whether objects may be created in the namespace: it is not being deleted.
pub fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

/// The ServiceAccounts to create in `ns`, given which of [`ENSURED`] exist.
pub fn missing(ns: &Namespace, exists: impl Fn(&str) -> bool) -> Vec<ServiceAccount> {
    if !is_active(ns) {
        return Vec::new();
    }
    ENSURED
        .iter()
        .filter(|name| !exists(name))
        .map(|name| ServiceAccount {
            metadata: ObjectMeta {
                name: Some((*name).to_string()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        })
        .collect()
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action> {
    if !is_active(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    let mut existing = Vec::new();
    for sa in ENSURED {
        if api.get_opt(sa).await?.is_some() {
            existing.push(*sa);
        }
    }
    for sa in missing(&ns, |n| existing.contains(&n)) {
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => {
                tracing::info!(namespace = %name, service_account = ?sa.metadata.name, "Service account created.");
            }
            // Created meanwhile, or the namespace began terminating.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ns(terminating: bool) -> Namespace {
        let mut ns = json!({"metadata": {"name": "team"}, "status": {"phase": "Active"}});
        if terminating {
            ns["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            ns["status"]["phase"] = json!("Terminating");
        }
        serde_json::from_value(ns).unwrap()
    }

    #[test]
    fn an_active_namespace_without_default_gets_one() {
        let made = missing(&ns(false), |_| false);
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].metadata.name.as_deref(), Some("default"));
        assert!(missing(&ns(false), |n| n == "default").is_empty());
    }

    #[test]
    fn a_terminating_namespace_gets_nothing() {
        assert!(missing(&ns(true), |_| false).is_empty());
    }
}

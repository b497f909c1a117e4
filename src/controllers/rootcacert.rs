//! The root CA publisher: the `kube-root-ca.crt` ConfigMap, holding the cluster CA as
//! `ca.crt`, in every namespace, restored when it is edited or deleted, as
//! kube-controller-manager's `root-ca-cert-publisher`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use super::serviceaccount::is_active;
use super::{retry_after, Context, Result};

/// The ConfigMap's name.
pub const NAME: &str = "kube-root-ca.crt";
/// The annotation that says what it is for.
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// Upstream's description.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// Runs the publisher until the server stops.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let maps: Api<ConfigMap> = Api::all(ctx.client.clone());
    Controller::new(namespaces, watcher::Config::default())
        .watches(maps, watcher::Config::default(), |cm| {
            let ours = cm.metadata.name.as_deref() == Some(NAME);
            cm.metadata
                .namespace
                .filter(|_| ours)
                .map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
        .run(reconcile, |_, err, _| retry_after(err), ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

/// What to write.
#[derive(Debug, PartialEq)]
pub enum Change {
    /// Nothing: it is as it should be.
    None,
    /// Create it.
    Create(ConfigMap),
    /// Replace it with this.
    Update(ConfigMap),
}

/// Compares the ConfigMap found (if any) with the CA `pem`, as upstream: the data must be
/// exactly `ca.crt` and the description annotation present.
pub fn change(existing: Option<&ConfigMap>, pem: &str) -> Change {
    let data = BTreeMap::from([("ca.crt".to_string(), pem.to_string())]);
    let Some(cm) = existing else {
        return Change::Create(ConfigMap {
            metadata: ObjectMeta {
                name: Some(NAME.into()),
                annotations: Some(BTreeMap::from([(
                    DESCRIPTION_ANNOTATION.to_string(),
                    DESCRIPTION.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        });
    };
    let described = cm
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
        .is_some_and(|d| !d.is_empty());
    if cm.data.as_ref() == Some(&data) && described {
        return Change::None;
    }
    let mut next = cm.clone();
    next.data = Some(data);
    next.binary_data = None;
    next.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
    Change::Update(next)
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action> {
    if !is_active(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let existing = api.get_opt(NAME).await?;
    let written = match change(existing.as_ref(), &ctx.config.root_ca_pem) {
        Change::None => return Ok(Action::await_change()),
        Change::Create(cm) => api.create(&PostParams::default(), &cm).await,
        Change::Update(cm) => api.replace(NAME, &PostParams::default(), &cm).await,
    };
    match written {
        Ok(_) => {
            tracing::info!(namespace = %name, "Root CA ConfigMap published.");
            Ok(Action::await_change())
        }
        // Written meanwhile (a conflict is retried), or the namespace began terminating.
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn a_missing_config_map_is_created_with_the_ca_and_description() {
        let Change::Create(cm) = change(None, PEM) else {
            panic!("created")
        };
        assert_eq!(cm.metadata.name.as_deref(), Some(NAME));
        assert_eq!(cm.data.unwrap()["ca.crt"], PEM);
        assert_eq!(
            cm.metadata.annotations.unwrap()[DESCRIPTION_ANNOTATION],
            DESCRIPTION
        );
    }

    #[test]
    fn an_edited_config_map_is_restored_and_a_correct_one_left_alone() {
        let Change::Create(good) = change(None, PEM) else {
            panic!("created")
        };
        assert_eq!(change(Some(&good), PEM), Change::None);
        let mut edited = good.clone();
        edited
            .data
            .as_mut()
            .unwrap()
            .insert("extra".into(), "x".into());
        let Change::Update(restored) = change(Some(&edited), PEM) else {
            panic!("restored")
        };
        assert_eq!(restored.data, good.data);
        let mut bare = good.clone();
        bare.metadata.annotations = None;
        assert!(matches!(change(Some(&bare), PEM), Change::Update(_)));
    }
}

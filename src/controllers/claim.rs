//! Controller references, as kube-controller-manager's `ControllerRefManager` handles
//! them: a controller owns the objects whose controller reference names its uid, adopts
//! orphans its selector matches, and releases the objects it owns that its selector no
//! longer matches. The ReplicaSet controller claims pods this way, the Deployment
//! controller ReplicaSets.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::json;

/// What a controller does with one object it looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Already ours, and still selected.
    Owned,
    /// An orphan the selector matches: make it ours.
    Adopt,
    /// Ours, but no longer selected: let it go.
    Release,
    /// Someone else's, or not for us.
    Ignore,
}

/// The object's controller reference, if it has one.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// A controller reference to `owner`, blocking the owner's foreground deletion as
/// upstream's `NewControllerRef` does.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Upstream's `ClaimObject`: what the controller `owner_uid` (being deleted or not)
/// does with `obj`, whose labels `selected` or not.
pub fn decide(owner_uid: &str, owner_deleting: bool, obj: &ObjectMeta, selected: bool) -> Claim {
    match controller_of(obj) {
        Some(r) if r.uid != owner_uid => Claim::Ignore,
        Some(_) if selected => Claim::Owned,
        Some(_) if owner_deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None if owner_deleting || !selected || obj.deletion_timestamp.is_some() => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// Makes `owner_ref` the controller of `obj`. The patch names the object's uid and
/// resourceVersion, so it fails rather than adopt an object that changed meanwhile.
pub async fn adopt<K>(api: &Api<K>, obj: &K, owner_ref: &OwnerReference) -> kube::Result<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let meta = obj.meta();
    let mut refs = meta.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner_ref.uid);
    refs.push(owner_ref.clone());
    patch_refs(api, meta, refs).await
}

/// Removes the owner `owner_uid` from `obj`'s references.
pub async fn release<K>(api: &Api<K>, obj: &K, owner_uid: &str) -> kube::Result<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let meta = obj.meta();
    let mut refs = meta.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner_uid);
    patch_refs(api, meta, refs).await
}

async fn patch_refs<K>(
    api: &Api<K>,
    meta: &ObjectMeta,
    refs: Vec<OwnerReference>,
) -> kube::Result<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {
        "ownerReferences": if refs.is_empty() { serde_json::Value::Null } else { json!(refs) },
        "uid": meta.uid, "resourceVersion": meta.resource_version,
    }});
    let name = meta.name.as_deref().unwrap_or_default();
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// Whether an API error says the object is gone.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

/// The message of an API error as Go's `err.Error()` prints a `StatusError`.
pub fn message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(controller_uid: Option<&str>, deleting: bool) -> ObjectMeta {
        ObjectMeta {
            owner_references: controller_uid.map(|uid| {
                vec![OwnerReference {
                    uid: uid.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            deletion_timestamp: deleting.then_some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn claims_follow_the_controller_ref_manager() {
        assert_eq!(
            decide("a", false, &meta(Some("a"), false), true),
            Claim::Owned
        );
        assert_eq!(
            decide("a", false, &meta(Some("a"), false), false),
            Claim::Release
        );
        assert_eq!(
            decide("a", true, &meta(Some("a"), false), false),
            Claim::Ignore
        );
        assert_eq!(
            decide("a", false, &meta(Some("b"), false), true),
            Claim::Ignore
        );
        assert_eq!(decide("a", false, &meta(None, false), true), Claim::Adopt);
        assert_eq!(decide("a", false, &meta(None, false), false), Claim::Ignore);
        assert_eq!(decide("a", true, &meta(None, false), true), Claim::Ignore);
        assert_eq!(decide("a", false, &meta(None, true), true), Claim::Ignore);
    }
}

//! The namespace controller: a namespace being deleted is emptied of every namespaced kind
//! discovery lists (deletecollection, then a list to see what is left), its status
//! conditions say what remains with kube-controller-manager's reasons and messages, and once
//! nothing remains it is finalized through `namespaces/{name}/finalize`, removing the
//! `kubernetes` finalizer; the API server then removes it. As upstream, content that is
//! still terminating (pods within their grace period, objects with finalizers) is waited
//! for by requeueing after an estimate.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;

use super::resources::{discover, Served};
use super::{retry_after, Context, Error, Result};

/// The finalizer this controller owns.
pub const FINALIZER: &str = "kubernetes";
/// How long content with finalizers is given before the next look (upstream: 15 s).
const FINALIZER_ESTIMATE_SECONDS: i64 = 15;

/// Runs the namespace controller until the server stops.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    Controller::new(api, watcher::Config::default())
        .run(reconcile, |_, err, _| retry_after(err), ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

/// What is left of one kind in the namespace after a deletion pass.
#[derive(Debug, Default, PartialEq)]
pub struct Remaining {
    /// Objects still there.
    pub count: usize,
    /// Of those, how many carry each finalizer.
    pub finalizers: BTreeMap<String, usize>,
    /// Seconds to wait before looking again.
    pub estimate: i64,
}

/// What a deletion pass over the whole namespace found.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Why discovery failed, if it did.
    pub discovery_error: Option<String>,
    /// Why some kinds could not be emptied.
    pub content_errors: Vec<String>,
    /// Objects remaining, by `plural.group`.
    pub remaining: BTreeMap<String, usize>,
    /// Objects remaining, by finalizer.
    pub finalizers: BTreeMap<String, usize>,
}

fn condition(type_: &str, status: &str, reason: &str, message: String) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: None,
    }
}

/// The conditions upstream's namespace deleter maintains, each in its failing or its "ok"
/// form, for `outcome`.
pub fn wanted_conditions(outcome: &Outcome) -> Vec<NamespaceCondition> {
    let failing = |t: &str, reason: &str, message: String| condition(t, "True", reason, message);
    let ok = |t: &str, reason: &str, message: &str| condition(t, "False", reason, message.into());
    let discovery = match &outcome.discovery_error {
        Some(e) => failing(
            "NamespaceDeletionDiscoveryFailure",
            "DiscoveryFailed",
            e.clone(),
        ),
        None => ok(
            "NamespaceDeletionDiscoveryFailure",
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
    };
    let parsing = ok(
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    );
    let content = if outcome.content_errors.is_empty() {
        ok(
            "NamespaceDeletionContentFailure",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        )
    } else {
        let mut errors = outcome.content_errors.clone();
        errors.sort();
        failing(
            "NamespaceDeletionContentFailure",
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                errors.len(),
                errors.join(", ")
            ),
        )
    };
    let remaining: Vec<String> = outcome
        .remaining
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} has {n} resource instances"))
        .collect();
    let content_left = if remaining.is_empty() {
        ok(
            "NamespaceContentRemaining",
            "ContentRemoved",
            "All content successfully removed",
        )
    } else {
        failing(
            "NamespaceContentRemaining",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", remaining.join(", ")),
        )
    };
    let finalizers: Vec<String> = outcome
        .finalizers
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(f, n)| format!("{f} in {n} resource instances"))
        .collect();
    let finalizers_left = if finalizers.is_empty() {
        ok(
            "NamespaceFinalizersRemaining",
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished",
        )
    } else {
        failing(
            "NamespaceFinalizersRemaining",
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                finalizers.join(", ")
            ),
        )
    };
    vec![discovery, parsing, content, content_left, finalizers_left]
}

/// The namespace's conditions with `wanted` merged in (a changed status gets a new
/// transition time), or none if nothing would change.
pub fn merge_conditions(
    current: &[NamespaceCondition],
    wanted: Vec<NamespaceCondition>,
    now: &Time,
) -> Option<Vec<NamespaceCondition>> {
    let mut out = current.to_vec();
    let mut changed = false;
    for mut w in wanted {
        match out.iter_mut().find(|c| c.type_ == w.type_) {
            None => {
                w.last_transition_time = Some(now.clone());
                out.push(w);
                changed = true;
            }
            Some(c) if c.status != w.status || c.reason != w.reason || c.message != w.message => {
                if c.status != w.status {
                    c.last_transition_time = Some(now.clone());
                }
                c.status = w.status;
                c.reason = w.reason;
                c.message = w.message;
                changed = true;
            }
            Some(_) => {}
        }
    }
    changed.then_some(out)
}

/// What is left of a kind, from the objects still listed. `estimate` is the grace the
/// caller expects them to need; objects left with neither finalizers nor an estimate are
/// an error, as upstream.
pub fn remaining(
    items: &[DynamicObject],
    estimate: i64,
    gvr: &str,
    namespace: &str,
) -> std::result::Result<Remaining, (Remaining, String)> {
    if items.is_empty() {
        return Ok(Remaining::default());
    }
    let mut finalizers = BTreeMap::new();
    for item in items {
        for f in item.metadata.finalizers.iter().flatten() {
            *finalizers.entry(f.clone()).or_insert(0) += 1;
        }
    }
    let left = Remaining {
        count: items.len(),
        estimate,
        finalizers,
    };
    if estimate > 0 {
        return Ok(left);
    }
    if !left.finalizers.is_empty() {
        return Ok(Remaining {
            estimate: FINALIZER_ESTIMATE_SECONDS,
            ..left
        });
    }
    Err((
        left,
        format!("unexpected items still remain in namespace: {namespace} for gvr: {gvr}"),
    ))
}

/// Upstream's estimate for pods: the longest grace period of a pod not yet finished, if
/// the namespace has been terminating for less than that.
pub fn pod_estimate(pods: &[DynamicObject], seconds_since_deletion: i64) -> i64 {
    let longest = pods
        .iter()
        .filter(|p| {
            !matches!(
                p.data["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            )
        })
        .filter_map(|p| {
            p.metadata
                .deletion_grace_period_seconds
                .or_else(|| p.data["spec"]["terminationGracePeriodSeconds"].as_i64())
        })
        .max()
        .unwrap_or(0);
    if seconds_since_deletion >= longest {
        0
    } else {
        longest - seconds_since_deletion
    }
}

/// The `schema.GroupVersionResource` of a kind as Go prints it.
fn gvr_string(s: &Served) -> String {
    format!(
        "{}/{}, Resource={}",
        s.resource.group, s.resource.version, s.resource.plural
    )
}

fn is_pods(s: &Served) -> bool {
    s.resource.group.is_empty() && s.resource.plural == "pods"
}

/// Deletes every object of one kind in `namespace` and sees what is left.
async fn delete_content(
    client: &kube::Client,
    served: &Served,
    namespace: &str,
    seconds_since_deletion: i64,
) -> std::result::Result<Remaining, (Remaining, String)> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &served.resource);
    let failed = |e: kube::Error| (Remaining::default(), e.to_string());
    let lp = ListParams::default();
    let mut estimate = 0;
    if is_pods(served) {
        let pods = api.list(&lp).await.map_err(failed)?;
        estimate = pod_estimate(&pods.items, seconds_since_deletion);
    }
    let dp = DeleteParams::background();
    if served.supports(&["deletecollection"]) {
        api.delete_collection(&dp, &lp).await.map_err(failed)?;
    } else if served.supports(&["list"]) {
        for item in api.list(&lp).await.map_err(failed)?.items {
            let name = item.metadata.name.unwrap_or_default();
            match api.delete(&name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(failed(e)),
            }
        }
    }
    if !served.supports(&["list"]) {
        return Ok(Remaining::default());
    }
    let left = api.list(&lp).await.map_err(failed)?;
    remaining(&left.items, estimate, &gvr_string(served), namespace)
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action> {
    let Some(deleted_at) = ns.metadata.deletion_timestamp.clone() else {
        return Ok(Action::await_change());
    };
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let since = Timestamp::now().duration_since(deleted_at.0).as_secs();
    let mut outcome = Outcome::default();
    let served = match discover(&ctx.client).await {
        Ok(served) => served,
        Err(err) => {
            outcome.discovery_error = Some(err.to_string());
            update_conditions(&ctx, &ns, &outcome).await?;
            return Err(err.into());
        }
    };
    let mut estimate = 0;
    for s in served
        .iter()
        .filter(|s| s.namespaced && s.supports(&["delete"]))
    {
        let left = match delete_content(&ctx.client, s, &name, since).await {
            Ok(left) => left,
            Err((left, err)) => {
                outcome.content_errors.push(err);
                left
            }
        };
        estimate = estimate.max(left.estimate);
        if left.count > 0 {
            outcome.remaining.insert(s.group_resource(), left.count);
            for (f, n) in left.finalizers {
                *outcome.finalizers.entry(f).or_insert(0) += n;
            }
        }
    }
    update_conditions(&ctx, &ns, &outcome).await?;
    if !outcome.content_errors.is_empty() {
        return Err(Error::Invalid(outcome.content_errors.join(", ")));
    }
    if estimate > 0 {
        tracing::debug!(namespace = %name, estimate, "Some content remains in the namespace.");
        return Ok(Action::requeue(Duration::from_secs(estimate as u64)));
    }
    finalize(&ctx, &ns, &name).await?;
    Ok(Action::await_change())
}

/// Writes the conditions for `outcome` if they differ from the namespace's.
async fn update_conditions(ctx: &Context, ns: &Namespace, outcome: &Outcome) -> Result<()> {
    let current = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let now = Time(Timestamp::now());
    let Some(conditions) = merge_conditions(&current, wanted_conditions(outcome), &now) else {
        return Ok(());
    };
    let name = ns.metadata.name.clone().unwrap_or_default();
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let patch = json!({"status": {"conditions": conditions}});
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes this controller's finalizer through the `finalize` subresource.
async fn finalize(ctx: &Context, ns: &Namespace, name: &str) -> Result<()> {
    let mut next = ns.clone();
    if let Some(spec) = next.spec.as_mut() {
        let kept: Vec<String> = spec
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        spec.finalizers = Some(kept);
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    match api
        .replace_subresource("finalize", name, &PostParams::default(), &next)
        .await
    {
        Ok(_) => {
            tracing::info!(namespace = %name, "Namespace emptied and finalized.");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: serde_json::Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    fn find<'a>(cs: &'a [NamespaceCondition], t: &str) -> &'a NamespaceCondition {
        cs.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn conditions_say_what_remains_in_upstream_words() {
        let outcome = Outcome {
            remaining: BTreeMap::from([
                ("pods.".to_string(), 2),
                ("widgets.example.com".to_string(), 1),
            ]),
            finalizers: BTreeMap::from([("example.com/x".to_string(), 1)]),
            ..Outcome::default()
        };
        let cs = wanted_conditions(&outcome);
        let left = find(&cs, "NamespaceContentRemaining");
        assert_eq!(left.status, "True");
        assert_eq!(left.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            left.message.as_deref(),
            Some("Some resources are remaining: pods. has 2 resource instances, widgets.example.com has 1 resource instances")
        );
        let fin = find(&cs, "NamespaceFinalizersRemaining");
        assert_eq!(
            fin.message.as_deref(),
            Some("Some content in the namespace has finalizers remaining: example.com/x in 1 resource instances")
        );
        let ok = find(&cs, "NamespaceDeletionDiscoveryFailure");
        assert_eq!(
            (ok.status.as_str(), ok.reason.as_deref()),
            ("False", Some("ResourcesDiscovered"))
        );
        let failed = wanted_conditions(&Outcome {
            content_errors: vec!["b".into(), "a".into()],
            ..Outcome::default()
        });
        assert_eq!(
            find(&failed, "NamespaceDeletionContentFailure")
                .message
                .as_deref(),
            Some("Failed to delete all resource types, 2 remaining: a, b")
        );
    }

    #[test]
    fn unchanged_conditions_write_nothing() {
        let now = Time(Timestamp::now());
        let first = merge_conditions(&[], wanted_conditions(&Outcome::default()), &now).unwrap();
        assert_eq!(first.len(), 5);
        assert!(merge_conditions(&first, wanted_conditions(&Outcome::default()), &now).is_none());
        let outcome = Outcome {
            remaining: BTreeMap::from([("pods.".to_string(), 1)]),
            ..Outcome::default()
        };
        let next = merge_conditions(&first, wanted_conditions(&outcome), &now).unwrap();
        assert_eq!(find(&next, "NamespaceContentRemaining").status, "True");
    }

    #[test]
    fn what_is_left_is_waited_for_or_is_an_error() {
        assert_eq!(
            remaining(&[], 0, "/v1, Resource=pods", "t"),
            Ok(Remaining::default())
        );
        let held =
            obj(serde_json::json!({"metadata": {"name": "a", "finalizers": ["example.com/x"]}}));
        let left = remaining(
            std::slice::from_ref(&held),
            0,
            "/v1, Resource=configmaps",
            "t",
        )
        .unwrap();
        assert_eq!((left.count, left.estimate), (1, FINALIZER_ESTIMATE_SECONDS));
        let bare = obj(serde_json::json!({"metadata": {"name": "b"}}));
        let (_, err) = remaining(
            std::slice::from_ref(&bare),
            0,
            "/v1, Resource=configmaps",
            "t",
        )
        .unwrap_err();
        assert_eq!(
            err,
            "unexpected items still remain in namespace: t for gvr: /v1, Resource=configmaps"
        );
        assert_eq!(
            remaining(&[bare], 30, "/v1, Resource=pods", "t")
                .unwrap()
                .estimate,
            30
        );
    }

    #[test]
    fn pods_are_given_their_grace_period_from_the_namespace_deletion() {
        let pods = [
            obj(
                serde_json::json!({"metadata": {"name": "a"}, "spec": {"terminationGracePeriodSeconds": 30}, "status": {"phase": "Running"}}),
            ),
            obj(
                serde_json::json!({"metadata": {"name": "b"}, "spec": {"terminationGracePeriodSeconds": 90}, "status": {"phase": "Succeeded"}}),
            ),
        ];
        assert_eq!(pod_estimate(&pods, 0), 30);
        assert_eq!(pod_estimate(&pods, 10), 20);
        assert_eq!(pod_estimate(&pods, 45), 0);
    }
}

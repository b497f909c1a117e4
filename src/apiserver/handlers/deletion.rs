//! What a DELETE does to one object, decided without the store: delete it now, or mark it
//! deleted (graceful pods, finalizers, the garbage collector's `orphan` and
//! `foregroundDeletion` finalizers), or leave a pending graceful deletion alone. Follows
//! kube-apiserver's `rest.BeforeDelete` and the registry store's deletion of finalizers.

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::apiserver::status::{ApiError, ApiResult, Cause};

/// The finalizer that makes the garbage collector orphan an object's dependents.
pub const ORPHAN: &str = "orphan";
/// The finalizer that makes the garbage collector delete dependents first.
pub const FOREGROUND: &str = "foregroundDeletion";

/// `DeleteOptions.propagationPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Leave dependents, stripped of the owner reference.
    Orphan,
    /// Delete the owner now; the garbage collector deletes dependents after.
    Background,
    /// Delete dependents first, then the owner.
    Foreground,
}

/// DeleteOptions, from the body or the query.
#[derive(Debug, Default)]
pub struct DeleteOptions {
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `gracePeriodSeconds`.
    pub grace: Option<i64>,
    /// `propagationPolicy`.
    pub propagation: Option<Propagation>,
    /// The deprecated `orphanDependents`.
    pub orphan_dependents: Option<bool>,
}

impl DeleteOptions {
    /// Reads options from a DeleteOptions object (`body`) over query parameters (`query`
    /// gives one by name); the body wins where both say something.
    pub fn parse(body: &Value, query: impl Fn(&str) -> Option<String>) -> ApiResult<Self> {
        let text = |field: &str| {
            body.get(field)
                .and_then(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                })
                .or_else(|| query(field))
                .filter(|s| !s.is_empty())
        };
        let grace = match text("gracePeriodSeconds") {
            None => None,
            Some(g) => Some(g.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!("invalid value for gracePeriodSeconds: {g:?}"))
            })?),
        };
        let propagation = match text("propagationPolicy").as_deref() {
            None => None,
            Some("Orphan") => Some(Propagation::Orphan),
            Some("Background") => Some(Propagation::Background),
            Some("Foreground") => Some(Propagation::Foreground),
            Some(other) => {
                return Err(invalid_options(format!(
                    "Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                ), "NotSupported"))
            }
        };
        let orphan_dependents = text("orphanDependents").map(|v| super::go_bool(&v));
        if orphan_dependents.is_some() && propagation.is_some() {
            return Err(invalid_options(
                "Invalid value: \"\": orphanDependents and deletionPropagation cannot be both set"
                    .into(),
                "Invalid",
            ));
        }
        let pre = &body["preconditions"];
        Ok(DeleteOptions {
            uid: pre["uid"].as_str().map(str::to_string),
            resource_version: pre["resourceVersion"].as_str().map(str::to_string),
            grace,
            propagation,
            orphan_dependents,
        })
    }
}

fn invalid_options(message: String, reason: &'static str) -> ApiError {
    let reason = match reason {
        "NotSupported" => "FieldValueNotSupported",
        _ => "FieldValueInvalid",
    };
    ApiError::invalid(
        "meta.k8s.io",
        "DeleteOptions",
        "",
        vec![Cause {
            reason,
            message,
            field: "propagationPolicy".into(),
        }],
    )
}

/// What to do with the object.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// Remove it from the store now.
    Now,
    /// Store this version of it: marked deleted, waiting for a grace period or finalizers.
    Mark(Value),
    /// A graceful deletion is already under way and the request does not shorten it.
    Pending,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// The grace period a pod gets: the request's, else the pod's own, else none; none at all
/// for a pod no node runs or one that has finished.
fn pod_grace(pod: &Value, opts: &DeleteOptions) -> i64 {
    let mut period = opts
        .grace
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(0);
    if pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        period = 0;
    }
    if matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    ) {
        period = 0;
    }
    period.max(0)
}

/// The finalizers the garbage-collection policy of this request leaves on the object.
fn gc_finalizers(obj: &Value, opts: &DeleteOptions) -> Vec<String> {
    let current: Vec<String> = obj["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    let has = |f: &str| current.iter().any(|c| c == f);
    let orphan = match (opts.orphan_dependents, opts.propagation) {
        (Some(o), _) => o,
        (None, Some(p)) => p == Propagation::Orphan,
        (None, None) => has(ORPHAN) && !has(FOREGROUND),
    };
    let foreground = match (opts.orphan_dependents, opts.propagation) {
        (Some(_), _) => false,
        (None, Some(p)) => p == Propagation::Foreground,
        (None, None) => has(FOREGROUND),
    };
    let mut out: Vec<String> = current
        .iter()
        .filter(|f| *f != ORPHAN && *f != FOREGROUND)
        .cloned()
        .collect();
    if orphan {
        out.push(ORPHAN.into());
    }
    if foreground {
        out.push(FOREGROUND.into());
    }
    out
}

fn bump_generation(obj: &mut Value) {
    if let Some(g) = obj["metadata"]["generation"].as_i64().filter(|g| *g > 0) {
        obj["metadata"]["generation"] = json!(g + 1);
    }
}

/// Decides what a DELETE does to `obj` (of `kind`) at `now`.
pub fn plan(kind: &str, obj: &Value, opts: &DeleteOptions, now: OffsetDateTime) -> Plan {
    let meta = &obj["metadata"];
    let stamp = meta["deletionTimestamp"]
        .as_str()
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok());
    let pending_grace = meta["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
    let mut next = obj.clone();
    // The grace period this request asks for, if the object is deleted gracefully.
    let mut graceful = None;
    match stamp {
        Some(at) if pending_grace > 0 => match opts.grace {
            // Only a shorter grace period may replace a pending one.
            Some(g) if g.max(0) < pending_grace => {
                let g = g.max(0);
                let moved =
                    at - time::Duration::seconds(pending_grace) + time::Duration::seconds(g);
                next["metadata"]["deletionTimestamp"] = json!(rfc3339(moved));
                next["metadata"]["deletionGracePeriodSeconds"] = json!(g);
                if g > 0 {
                    return Plan::Mark(next);
                }
            }
            _ => return Plan::Pending,
        },
        Some(_) => {}
        None if kind == "Pod" => {
            let g = pod_grace(obj, opts);
            if g > 0 {
                graceful = Some(g);
            }
        }
        None => {}
    }
    let finalizers = gc_finalizers(obj, opts);
    if !finalizers.is_empty() || meta.get("finalizers").is_some() {
        next["metadata"]["finalizers"] = json!(finalizers);
    }
    if finalizers.is_empty() {
        if let Some(map) = next["metadata"].as_object_mut() {
            map.remove("finalizers");
        }
    }
    if let Some(g) = graceful {
        next["metadata"]["deletionTimestamp"] = json!(rfc3339(now + time::Duration::seconds(g)));
        next["metadata"]["deletionGracePeriodSeconds"] = json!(g);
        bump_generation(&mut next);
        return Plan::Mark(next);
    }
    if finalizers.is_empty() {
        return Plan::Now;
    }
    // Held by finalizers: marked deleted now, with no grace period.
    if stamp.is_none() {
        bump_generation(&mut next);
    }
    if stamp.is_none_or(|at| at > now) {
        next["metadata"]["deletionTimestamp"] = json!(rfc3339(now));
    }
    next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    if next == *obj {
        return Plan::Pending;
    }
    Plan::Mark(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    const NOW: &str = "2026-01-01T00:00:00Z";

    fn opts(grace: Option<i64>, propagation: Option<Propagation>) -> DeleteOptions {
        DeleteOptions {
            grace,
            propagation,
            ..Default::default()
        }
    }

    fn pod(node: &str) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"nodeName": node, "terminationGracePeriodSeconds": 30}})
    }

    #[test]
    fn a_running_pod_is_deleted_gracefully_and_only_a_shorter_grace_replaces_it() {
        let Plan::Mark(marked) = plan("Pod", &pod("n1"), &opts(None, None), at(NOW)) else {
            panic!("a scheduled pod is deleted gracefully")
        };
        assert_eq!(
            marked["metadata"]["deletionTimestamp"],
            "2026-01-01T00:00:30Z"
        );
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
        assert_eq!(
            plan("Pod", &marked, &opts(None, None), at(NOW)),
            Plan::Pending
        );
        assert_eq!(
            plan("Pod", &marked, &opts(Some(60), None), at(NOW)),
            Plan::Pending
        );
        let Plan::Mark(shorter) = plan("Pod", &marked, &opts(Some(5), None), at(NOW)) else {
            panic!("a shorter grace period replaces the pending one")
        };
        assert_eq!(
            shorter["metadata"]["deletionTimestamp"],
            "2026-01-01T00:00:05Z"
        );
        assert_eq!(
            plan("Pod", &marked, &opts(Some(0), None), at(NOW)),
            Plan::Now
        );
    }

    #[test]
    fn unscheduled_finished_or_forced_pods_go_at_once() {
        assert_eq!(plan("Pod", &pod(""), &opts(None, None), at(NOW)), Plan::Now);
        assert_eq!(
            plan("Pod", &pod("n1"), &opts(Some(0), None), at(NOW)),
            Plan::Now
        );
        let mut done = pod("n1");
        done["status"] = json!({"phase": "Succeeded"});
        assert_eq!(plan("Pod", &done, &opts(None, None), at(NOW)), Plan::Now);
    }

    #[test]
    fn propagation_policies_add_the_garbage_collector_finalizers() {
        let cm = json!({"metadata": {"name": "c", "generation": 2}});
        assert_eq!(
            plan("ConfigMap", &cm, &opts(None, None), at(NOW)),
            Plan::Now
        );
        assert_eq!(
            plan(
                "ConfigMap",
                &cm,
                &opts(None, Some(Propagation::Background)),
                at(NOW)
            ),
            Plan::Now
        );
        let Plan::Mark(fg) = plan(
            "Deployment",
            &cm,
            &opts(None, Some(Propagation::Foreground)),
            at(NOW),
        ) else {
            panic!("foreground deletion waits for the garbage collector")
        };
        assert_eq!(fg["metadata"]["finalizers"], json!([FOREGROUND]));
        assert_eq!(fg["metadata"]["deletionTimestamp"], NOW);
        assert_eq!(fg["metadata"]["deletionGracePeriodSeconds"], 0);
        assert_eq!(fg["metadata"]["generation"], 3);
        let Plan::Mark(orphan) = plan(
            "Deployment",
            &cm,
            &opts(None, Some(Propagation::Orphan)),
            at(NOW),
        ) else {
            panic!("orphan deletion waits for the garbage collector")
        };
        assert_eq!(orphan["metadata"]["finalizers"], json!([ORPHAN]));
        // Asking again changes nothing.
        assert_eq!(
            plan("Deployment", &orphan, &opts(None, None), at(NOW)),
            Plan::Pending
        );
    }

    #[test]
    fn finalizers_hold_an_object_and_bad_options_are_refused() {
        let held = json!({"metadata": {"name": "c", "finalizers": ["example.com/x"]}});
        let Plan::Mark(marked) = plan("ConfigMap", &held, &opts(None, None), at(NOW)) else {
            panic!("a finalizer holds the object")
        };
        assert_eq!(marked["metadata"]["finalizers"], json!(["example.com/x"]));
        let err =
            DeleteOptions::parse(&json!({"propagationPolicy": "Sideways"}), |_| None).unwrap_err();
        assert_eq!(err.code, 422);
        let both = json!({"propagationPolicy": "Orphan", "orphanDependents": true});
        assert_eq!(DeleteOptions::parse(&both, |_| None).unwrap_err().code, 422);
        let q = DeleteOptions::parse(&Value::Null, |f| {
            (f == "gracePeriodSeconds").then(|| "0".to_string())
        })
        .unwrap();
        assert_eq!(q.grace, Some(0));
    }
}

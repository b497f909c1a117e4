//! Deployments, ReplicaSets, StatefulSets and DaemonSets (`apps/v1`): their defaults
//! (`pkg/apis/apps/v1/defaults.go`) and the rules of `pkg/apis/apps/validation`.

use serde_json::{json, Value};

use super::errors::{
    child, default_str, forbidden, invalid, nonnegative, not_supported, object_entry, objects_mut,
    required, set_default, str_of, Bad,
};
use super::meta::validate_template_meta;
use super::pod::{validate_enum, validate_pod_spec};
use super::pod_defaults::default_template;
use super::pod_update::normalized;
use super::selector::{check_template_match, go_selector, is_empty, validate_selector};
use crate::apiserver::status::Cause;

/// The workload kinds of `apps/v1`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Workload {
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
}

impl Workload {
    /// The kind named `kind`, if it is one of these.
    pub(super) fn from_kind(kind: &str) -> Option<Workload> {
        match kind {
            "Deployment" => Some(Workload::Deployment),
            "ReplicaSet" => Some(Workload::ReplicaSet),
            "StatefulSet" => Some(Workload::StatefulSet),
            "DaemonSet" => Some(Workload::DaemonSet),
            _ => None,
        }
    }

    /// The word upstream puts in "empty selector is invalid for …".
    fn noun(self) -> &'static str {
        match self {
            Workload::Deployment | Workload::ReplicaSet => "deployment",
            Workload::StatefulSet => "statefulset",
            Workload::DaemonSet => "daemonset",
        }
    }
}

/// Defaults a workload of kind `w` in place, its pod template included.
pub(super) fn default(w: Workload, obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if w != Workload::DaemonSet {
        set_default(spec, "replicas", json!(1));
    }
    if w != Workload::ReplicaSet {
        set_default(spec, "revisionHistoryLimit", json!(10));
    }
    match w {
        Workload::Deployment => {
            set_default(spec, "progressDeadlineSeconds", json!(600));
            if let Some(strategy) = object_entry(spec, "strategy") {
                default_str(strategy, "type", "RollingUpdate");
                if strategy.get("type") == Some(&json!("RollingUpdate")) {
                    if let Some(rolling) = object_entry(strategy, "rollingUpdate") {
                        set_default(rolling, "maxUnavailable", json!("25%"));
                        set_default(rolling, "maxSurge", json!("25%"));
                    }
                }
            }
        }
        Workload::StatefulSet => default_stateful_set(spec),
        Workload::DaemonSet => {
            if let Some(strategy) = object_entry(spec, "updateStrategy") {
                default_str(strategy, "type", "RollingUpdate");
                if strategy.get("type") == Some(&json!("RollingUpdate")) {
                    if let Some(rolling) = object_entry(strategy, "rollingUpdate") {
                        set_default(rolling, "maxUnavailable", json!(1));
                        set_default(rolling, "maxSurge", json!(0));
                    }
                }
            }
        }
        Workload::ReplicaSet => {}
    }
    default_template(spec.get_mut("template"));
}

fn default_stateful_set(spec: &mut serde_json::Map<String, Value>) {
    default_str(spec, "podManagementPolicy", "OrderedReady");
    if let Some(strategy) = object_entry(spec, "updateStrategy") {
        if strategy.get("type").is_none_or(|t| t.is_null() || t == "") {
            strategy.insert("type".into(), json!("RollingUpdate"));
            set_default(strategy, "rollingUpdate", json!({}));
        }
        let rolling_update = strategy.get("type") == Some(&json!("RollingUpdate"));
        let rolling = strategy
            .get_mut("rollingUpdate")
            .and_then(Value::as_object_mut);
        if let (true, Some(rolling)) = (rolling_update, rolling) {
            set_default(rolling, "partition", json!(0));
        }
    }
    if let Some(policy) = object_entry(spec, "persistentVolumeClaimRetentionPolicy") {
        default_str(policy, "whenDeleted", "Retain");
        default_str(policy, "whenScaled", "Retain");
    }
    for claim in objects_mut(spec, "volumeClaimTemplates") {
        if let Some(claim_spec) = object_entry(claim, "spec") {
            default_str(claim_spec, "volumeMode", "Filesystem");
        }
        if let Some(status) = object_entry(claim, "status") {
            default_str(status, "phase", "Pending");
        }
    }
}

/// Checks a new workload of kind `w`.
pub(super) fn validate(w: Workload, obj: &Value, out: &mut Vec<Cause>) {
    let Some(spec) = obj.get("spec") else {
        out.push(required("spec", ""));
        return;
    };
    if w != Workload::DaemonSet {
        nonnegative(spec, "replicas", "spec", out);
    }
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => out.push(required("spec.selector", "")),
        Some(selector) => {
            validate_selector(selector, "spec.selector", out);
            if is_empty(selector) {
                let detail = format!("empty selector is invalid for {}", w.noun());
                let shown = Bad::Raw(go_selector(Some(selector)));
                out.push(invalid("spec.selector", shown, &detail));
            }
        }
    }
    check_template_match(spec, "spec", out);
    validate_template(w, spec.get("template"), out);
    for key in [
        "revisionHistoryLimit",
        "minReadySeconds",
        "progressDeadlineSeconds",
    ] {
        nonnegative(spec, key, "spec", out);
    }
    match w {
        Workload::Deployment => {
            validate_strategy(spec, out);
            validate_progress_deadline(spec, out);
        }
        Workload::StatefulSet => validate_stateful_set(spec, out),
        Workload::DaemonSet => {
            if let Some(strategy) = spec.get("updateStrategy") {
                let allowed = ["OnDelete", "RollingUpdate"];
                validate_enum(strategy, "type", &allowed, "spec.updateStrategy", out);
            }
        }
        Workload::ReplicaSet => {}
    }
}

/// The pod template: metadata, pod spec, and `restartPolicy: Always`.
fn validate_template(w: Workload, template: Option<&Value>, out: &mut Vec<Cause>) {
    let Some(template) = template.filter(|t| !t.is_null()) else {
        out.push(required("spec.template", ""));
        return;
    };
    validate_template_meta(template, "spec.template", out);
    let pod_spec = template.get("spec").cloned().unwrap_or(Value::Null);
    validate_pod_spec(&pod_spec, "spec.template.spec", false, out);
    let policy = str_of(&pod_spec, "restartPolicy");
    if !policy.is_empty() && policy != "Always" {
        let field = "spec.template.spec.restartPolicy";
        out.push(not_supported(field, policy, &["Always"]));
    }
    let field = "spec.template.spec.activeDeadlineSeconds";
    let deadline = pod_spec
        .get("activeDeadlineSeconds")
        .and_then(Value::as_i64);
    match (w, deadline) {
        (_, None) => {}
        (Workload::Deployment | Workload::ReplicaSet, Some(_)) => {
            let detail = "activeDeadlineSeconds in ReplicaSet is not Supported";
            out.push(forbidden(field, detail));
        }
        (_, Some(n)) => out.push(invalid(field, Bad::Int(n), "must not be specified")),
    }
}

/// A StatefulSet's pod management policy and update strategy.
fn validate_stateful_set(spec: &Value, out: &mut Vec<Cause>) {
    match str_of(spec, "podManagementPolicy") {
        "" => out.push(required("spec.podManagementPolicy", "")),
        "OrderedReady" | "Parallel" => {}
        policy => {
            let detail = "must be 'OrderedReady' or 'Parallel'";
            out.push(invalid(
                "spec.podManagementPolicy",
                Bad::Str(policy),
                detail,
            ));
        }
    }
    let strategy = spec.get("updateStrategy").cloned().unwrap_or(Value::Null);
    let rolling = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    let rolling_path = "spec.updateStrategy.rollingUpdate";
    match (str_of(&strategy, "type"), rolling) {
        ("", _) => out.push(required("spec.updateStrategy", "")),
        ("OnDelete", Some(r)) => {
            let detail = "only allowed for updateStrategy 'RollingUpdate'";
            out.push(invalid(rolling_path, Bad::Raw(r.to_string()), detail));
        }
        ("RollingUpdate", Some(r)) => nonnegative(r, "partition", rolling_path, out),
        ("OnDelete" | "RollingUpdate", None) => {}
        _ => {
            let detail = "must be 'RollingUpdate' or 'OnDelete'";
            out.push(invalid(
                "spec.updateStrategy",
                Bad::Raw(strategy.to_string()),
                detail,
            ));
        }
    }
}

/// A Deployment's progress deadline outlasts `minReadySeconds`.
fn validate_progress_deadline(spec: &Value, out: &mut Vec<Cause>) {
    let Some(deadline) = spec.get("progressDeadlineSeconds").and_then(Value::as_i64) else {
        return;
    };
    let min_ready = spec
        .get("minReadySeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if deadline <= min_ready {
        let field = "spec.progressDeadlineSeconds";
        out.push(invalid(
            field,
            Bad::Int(deadline),
            "must be greater than minReadySeconds",
        ));
    }
}

/// A Deployment's strategy: its type, and sane `maxSurge` / `maxUnavailable`.
fn validate_strategy(spec: &Value, out: &mut Vec<Cause>) {
    let Some(strategy) = spec.get("strategy") else {
        return;
    };
    let path = "spec.strategy";
    validate_enum(strategy, "type", &["Recreate", "RollingUpdate"], path, out);
    let rolling = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match (str_of(strategy, "type"), rolling) {
        ("Recreate", Some(_)) => {
            let detail = "may not be specified when strategy `type` is 'Recreate'";
            out.push(forbidden("spec.strategy.rollingUpdate", detail));
        }
        ("RollingUpdate", None) => {
            let detail = "this should be defaulted and never be nil";
            out.push(required("spec.strategy.rollingUpdate", detail));
        }
        ("RollingUpdate", Some(rolling)) => validate_rolling_update(rolling, out),
        _ => {}
    }
}

fn validate_rolling_update(rolling: &Value, out: &mut Vec<Cause>) {
    let path = "spec.strategy.rollingUpdate";
    let unavailable = int_or_percent(
        rolling.get("maxUnavailable"),
        &child(path, "maxUnavailable"),
        out,
    );
    let surge = int_or_percent(rolling.get("maxSurge"), &child(path, "maxSurge"), out);
    if let Some((text, value, true)) = &unavailable {
        if *value > 100 {
            let field = child(path, "maxUnavailable");
            out.push(invalid(
                &field,
                Bad::Raw(text.clone()),
                "must not be greater than 100%",
            ));
        }
    }
    if let (Some((text, 0, _)), Some((_, 0, _))) = (&unavailable, &surge) {
        let field = child(path, "maxUnavailable");
        out.push(invalid(
            &field,
            Bad::Raw(text.clone()),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
}

/// An int-or-percent: (as written, number, is a percent), reporting bad ones.
fn int_or_percent(
    value: Option<&Value>,
    field: &str,
    out: &mut Vec<Cause>,
) -> Option<(String, i64, bool)> {
    let parsed = match value? {
        Value::Number(n) => (n.to_string(), n.as_i64().unwrap_or(0), false),
        Value::String(s) => {
            let Some(n) = s.strip_suffix('%').and_then(|d| d.parse::<i64>().ok()) else {
                let detail = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";
                out.push(invalid(field, Bad::Str(s), detail));
                return None;
            };
            (s.clone(), n, true)
        }
        _ => return None,
    };
    if parsed.1 < 0 {
        let detail = "must be greater than or equal to 0";
        out.push(invalid(field, Bad::Raw(parsed.0.clone()), detail));
    }
    Some(parsed)
}

/// Checks an update: the selector never changes; a StatefulSet changes only some fields.
pub(super) fn validate_update(w: Workload, obj: &Value, old: &Value, out: &mut Vec<Cause>) {
    if w == Workload::StatefulSet {
        validate_stateful_set_update(obj, old, out);
        return;
    }
    let new_selector = obj.pointer("/spec/selector");
    let old_selector = old.pointer("/spec/selector");
    if new_selector.map(normalized) != old_selector.map(normalized) {
        let shown = Bad::Raw(go_selector(new_selector));
        out.push(invalid("spec.selector", shown, "field is immutable"));
    }
}

/// A StatefulSet's spec changes only in the fields upstream lists.
fn validate_stateful_set_update(obj: &Value, old: &Value, out: &mut Vec<Cause>) {
    let mutable = [
        "replicas",
        "ordinals",
        "template",
        "updateStrategy",
        "revisionHistoryLimit",
        "persistentVolumeClaimRetentionPolicy",
        "minReadySeconds",
    ];
    let strip = |v: Option<&Value>| {
        let mut v = v.cloned().unwrap_or(Value::Null);
        if let Some(m) = v.as_object_mut() {
            m.retain(|k, _| !mutable.contains(&k.as_str()));
        }
        normalized(&v)
    };
    if strip(obj.get("spec")) != strip(old.get("spec")) {
        out.push(forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"));
    }
}

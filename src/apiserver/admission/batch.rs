//! Jobs and CronJobs (`batch/v1`): `SetDefaults_Job` and `SetDefaults_CronJob`, the
//! selector and labels the job strategy generates on create, and the rules of
//! `pkg/apis/batch/validation`.

use serde_json::{json, Map, Value};

use super::cron::{schedule_error, time_zone_error};
use super::errors::{
    child, default_str, go_string_map, invalid, nonnegative, not_supported, not_supported_value,
    object_entry, required, set_default, str_of, Bad,
};
use super::meta::validate_template_meta;
use super::pod::{validate_enum, validate_pod_spec};
use super::pod_defaults::default_template;
use super::pod_update::normalized;
use super::selector::{
    check_template_match, go_selector, matches, template_labels, validate_selector,
};
use crate::apiserver::status::Cause;

/// The uid label the job controller selects on.
const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
const LEGACY_CONTROLLER_UID: &str = "controller-uid";
const JOB_NAME: &str = "batch.kubernetes.io/job-name";
const LEGACY_JOB_NAME: &str = "job-name";

/// Defaults a Job in place (`SetDefaults_Job`).
pub(super) fn default_job(obj: &mut Value) {
    let template_labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.is_object())
        .cloned();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let unset = |s: &Map<String, Value>, k: &str| s.get(k).is_none_or(Value::is_null);
    if unset(spec, "completions") && unset(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    let per_index = !unset(spec, "backoffLimitPerIndex");
    set_default(
        spec,
        "backoffLimit",
        json!(if per_index { i32::MAX } else { 6 }),
    );
    default_str(spec, "completionMode", "NonIndexed");
    set_default(spec, "suspend", json!(false));
    let replacement = if unset(spec, "podFailurePolicy") {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    default_str(spec, "podReplacementPolicy", replacement);
    set_default(spec, "manualSelector", json!(false));
    default_template(spec.get_mut("template"));
    if let (Some(labels), Some(meta)) = (template_labels, metadata(obj)) {
        if meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            meta.insert("labels".into(), labels);
        }
    }
}

fn metadata(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    object_entry(obj.as_object_mut()?, "metadata")
}

/// What the job strategy's `PrepareForCreate` adds unless `manualSelector` is true:
/// job-name and controller-uid labels on the template, and a selector on the uid. A Job
/// without labels of its own, or with its template's (upstream shares that map, and
/// defaults it again on every read), gets the template's labels.
pub(super) fn prepare_job_for_create(obj: &mut Value) {
    if obj.pointer("/spec/manualSelector") == Some(&json!(true)) {
        return;
    }
    let name = obj.pointer("/metadata/name").cloned().unwrap_or(json!(""));
    let uid = obj.pointer("/metadata/uid").cloned().unwrap_or(json!(""));
    let labels_shared = {
        let job_labels = obj.pointer("/metadata/labels");
        let empty = job_labels
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty);
        empty || job_labels == obj.pointer("/spec/template/metadata/labels")
    };
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let template_labels = object_entry(spec, "template")
        .and_then(|t| object_entry(t, "metadata"))
        .and_then(|m| object_entry(m, "labels"));
    let Some(labels) = template_labels else {
        return;
    };
    for key in [LEGACY_JOB_NAME, JOB_NAME] {
        labels.entry(key).or_insert_with(|| name.clone());
    }
    for key in [LEGACY_CONTROLLER_UID, CONTROLLER_UID] {
        labels.entry(key).or_insert_with(|| uid.clone());
    }
    let labels = Value::Object(labels.clone());
    if let Some(match_labels) =
        object_entry(spec, "selector").and_then(|s| object_entry(s, "matchLabels"))
    {
        match_labels.entry(CONTROLLER_UID).or_insert(uid);
    }
    if labels_shared {
        if let Some(meta) = metadata(obj) {
            meta.insert("labels".into(), labels);
        }
    }
}

/// Defaults a CronJob in place (`SetDefaults_CronJob` and its pod template).
pub(super) fn default_cron_job(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    default_str(spec, "concurrencyPolicy", "Allow");
    set_default(spec, "suspend", json!(false));
    set_default(spec, "successfulJobsHistoryLimit", json!(3));
    set_default(spec, "failedJobsHistoryLimit", json!(1));
    let template = spec
        .get_mut("jobTemplate")
        .and_then(|t| t.get_mut("spec"))
        .and_then(|s| s.get_mut("template"));
    default_template(template);
}

/// Checks a Job; `create` adds the rules for the selector the server generated.
pub(super) fn validate_job(obj: &Value, create: bool, out: &mut Vec<Cause>) {
    let Some(spec) = obj.get("spec") else {
        out.push(required("spec", ""));
        return;
    };
    if create {
        validate_generated_selector(obj, spec, out);
    }
    validate_job_spec(spec, "spec", out);
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => out.push(required("spec.selector", "")),
        Some(selector) => validate_selector(selector, "spec.selector", out),
    }
    check_template_match(spec, "spec", out);
}

/// Unless `manualSelector`, the template carries the job's uid and name labels and
/// the selector selects them (upstream's `ValidateGeneratedSelector`).
fn validate_generated_selector(obj: &Value, spec: &Value, out: &mut Vec<Cause>) {
    let manual = spec.get("manualSelector") == Some(&json!(true));
    let Some(selector) = spec.get("selector").filter(|s| !s.is_null() && !manual) else {
        return;
    };
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if uid.is_empty() {
        out.push(required("metadata.uid", ""));
    }
    let labels = spec.get("template").and_then(template_labels);
    let mut expected = Map::new();
    for (key, want) in [
        (LEGACY_CONTROLLER_UID, uid),
        (LEGACY_JOB_NAME, name),
        (CONTROLLER_UID, uid),
        (JOB_NAME, name),
    ] {
        let field = format!("spec.template.metadata.labels[{key}]");
        match labels.and_then(|l| l.get(key)).and_then(Value::as_str) {
            None => out.push(required(&field, want)),
            Some(have) if have != want => {
                let shown = Bad::Raw(go_string_map(labels));
                out.push(invalid(&field, shown, &format!("must be '{want}'")));
            }
            Some(_) => {}
        }
        expected.insert(key.to_string(), json!(want));
    }
    if !matches(selector, Some(&expected)) {
        let shown = Bad::Raw(go_selector(Some(selector)));
        out.push(invalid(
            "spec.selector",
            shown,
            "`selector` not auto-generated",
        ));
    }
}

/// What every Job spec is checked for, in a Job or a CronJob's job template.
fn validate_job_spec(spec: &Value, path: &str, out: &mut Vec<Cause>) {
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
    ] {
        nonnegative(spec, key, path, out);
    }
    nonnegative(spec, "ttlSecondsAfterFinished", path, out);
    let mode = str_of(spec, "completionMode");
    if !mode.is_empty() && mode != "NonIndexed" && mode != "Indexed" {
        let field = child(path, "completionMode");
        out.push(not_supported(&field, mode, &["NonIndexed", "Indexed"]));
    }
    if mode == "Indexed" && spec.get("completions").is_none_or(Value::is_null) {
        let detail = "when completion mode is Indexed";
        out.push(required(&child(path, "completions"), detail));
    }
    let template = spec.get("template").cloned().unwrap_or(Value::Null);
    let template_path = child(path, "template");
    validate_template_meta(&template, &template_path, out);
    let pod_spec = template.get("spec").cloned().unwrap_or(Value::Null);
    let pod_path = child(&template_path, "spec");
    validate_pod_spec(&pod_spec, &pod_path, false, out);
    let policy = str_of(&pod_spec, "restartPolicy");
    if policy != "OnFailure" && policy != "Never" {
        let field = child(&pod_path, "restartPolicy");
        out.push(not_supported(&field, policy, &["OnFailure", "Never"]));
    }
}

/// A CronJob's job template: a Job spec whose selector the server will generate.
fn validate_job_template(job_spec: &Value, out: &mut Vec<Cause>) {
    let path = "spec.jobTemplate.spec";
    validate_job_spec(job_spec, path, out);
    if let Some(selector) = job_spec.get("selector").filter(|s| !s.is_null()) {
        let shown = Bad::Raw(go_selector(Some(selector)));
        let field = child(path, "selector");
        out.push(invalid(&field, shown, "`selector` will be auto-generated"));
    }
    if job_spec.get("manualSelector") == Some(&json!(true)) {
        let field = child(path, "manualSelector");
        out.push(not_supported_value(
            &field,
            Bad::Raw("true".into()),
            &["nil", "false"],
        ));
    }
}

/// Checks a Job update: selector, completions, completion mode and (mostly) the
/// template stay as they were.
pub(super) fn validate_job_update(obj: &Value, old: &Value, out: &mut Vec<Cause>) {
    let (Some(spec), Some(old_spec)) = (obj.get("spec"), old.get("spec")) else {
        return;
    };
    let changed = |key: &str| spec.get(key).map(normalized) != old_spec.get(key).map(normalized);
    if changed("completions") {
        let completions = spec.get("completions").and_then(Value::as_i64);
        let shown = || match completions {
            Some(n) => Bad::Int(n),
            None => Bad::Raw("null".into()),
        };
        if str_of(spec, "completionMode") != "Indexed" {
            out.push(invalid("spec.completions", shown(), "field is immutable"));
        } else if completions != spec.get("parallelism").and_then(Value::as_i64) {
            let detail = "can only be modified in tandem with spec.parallelism";
            out.push(invalid("spec.completions", shown(), detail));
        }
    }
    if changed("selector") {
        let shown = Bad::Raw(go_selector(spec.get("selector")));
        out.push(invalid("spec.selector", shown, "field is immutable"));
    }
    if changed("template") && !template_change_allowed(spec, old_spec, old) {
        let shown = Bad::Raw(format!("core.PodTemplateSpec{}", spec["template"]));
        out.push(invalid("spec.template", shown, "field is immutable"));
    }
    if changed("completionMode") {
        let mode = str_of(spec, "completionMode");
        out.push(invalid(
            "spec.completionMode",
            Bad::Str(mode),
            "field is immutable",
        ));
    }
}

/// A suspended Job that never started may change its template's scheduling directives
/// (labels, annotations, node selector, tolerations, affinity, scheduling gates).
fn template_change_allowed(spec: &Value, old_spec: &Value, old: &Value) -> bool {
    let suspended = old_spec.get("suspend") == Some(&json!(true));
    let never_started = old.pointer("/status/startTime").is_none_or(Value::is_null);
    if !suspended || !never_started {
        return false;
    }
    let strip = |s: &Value| {
        let mut t = s.get("template").cloned().unwrap_or(Value::Null);
        if let Some(meta) = t.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("labels");
            meta.remove("annotations");
        }
        if let Some(pod) = t.get_mut("spec").and_then(Value::as_object_mut) {
            for key in ["nodeSelector", "tolerations", "affinity", "schedulingGates"] {
                pod.remove(key);
            }
        }
        normalized(&t)
    };
    strip(spec) == strip(old_spec)
}

/// Checks a CronJob; `old_schedule` is the stored schedule on update.
pub(super) fn validate_cron_job(obj: &Value, old_schedule: Option<&str>, out: &mut Vec<Cause>) {
    let Some(spec) = obj.get("spec") else {
        out.push(required("spec", ""));
        return;
    };
    let schedule = str_of(spec, "schedule");
    let time_zone = spec.get("timeZone").and_then(Value::as_str);
    if schedule.is_empty() {
        out.push(required("spec.schedule", ""));
    } else {
        if let Some(msg) = schedule_error(schedule) {
            out.push(invalid("spec.schedule", Bad::Str(schedule), &msg));
        }
        let tz_allowed = old_schedule.is_some_and(|s| s.contains("TZ"));
        if schedule.contains("TZ") {
            let detail = match (tz_allowed, time_zone) {
                (true, Some(_)) => {
                    Some("cannot use both timeZone field and TZ or CRON_TZ in schedule")
                }
                (false, _) => {
                    Some("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
                }
                _ => None,
            };
            if let Some(detail) = detail {
                out.push(invalid("spec.schedule", Bad::Str(schedule), detail));
            }
        }
    }
    if let Some(zone) = time_zone {
        validate_time_zone(zone, out);
    }
    nonnegative(spec, "startingDeadlineSeconds", "spec", out);
    validate_enum(
        spec,
        "concurrencyPolicy",
        &["Allow", "Forbid", "Replace"],
        "spec",
        out,
    );
    for key in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        nonnegative(spec, key, "spec", out);
    }
    let job_spec = spec
        .pointer("/jobTemplate/spec")
        .cloned()
        .unwrap_or(Value::Null);
    validate_job_template(&job_spec, out);
}

fn validate_time_zone(zone: &str, out: &mut Vec<Cause>) {
    if zone.is_empty() {
        return;
    }
    let detail = if zone.eq_ignore_ascii_case("local") {
        Some(
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                .to_string(),
        )
    } else {
        time_zone_error(zone)
    };
    if let Some(detail) = detail {
        out.push(invalid("spec.timeZone", Bad::Str(zone), &detail));
    }
}

//! Pure defaulting and validation of the built-in kinds, as kube-apiserver does them,
//! on the JSON objects the server stores. Messages, reasons, field paths and the order
//! of causes are upstream's (`field.Error`, Kubernetes 1.33), so kubectl shows the same
//! 422s.
//!
//! The integrator runs, for a create: [`default`], then sets `metadata.uid`, then
//! [`prepare_for_create`], then [`validate_create`]; for an update: [`default`] on the
//! new object, [`prepare_for_update`], then [`validate_update`].
//!
//! Covered:
//! - every kind: label keys and values, annotation keys and their 256 KiB total,
//!   `generateName` (object names are checked by the handlers);
//! - Pod: `SetDefaults_PodSpec`/`_Container`/`_Probe`/volumes, limits copied to
//!   requests, `enableServiceLinks`, host ports under `hostNetwork`, and what the
//!   ServiceAccount, Priority and DefaultTolerationSeconds admission plugins add;
//!   containers and init containers (names, images, ports, env, mounts, pull and
//!   termination-message policies, resources with requests ≤ limits, probes, hooks,
//!   host-port clashes), volumes, restart and DNS policies, tolerations, scheduling
//!   names; the update rule that only images, the deadline, added tolerations, removed
//!   scheduling gates and a negative grace period may change;
//! - Deployment, ReplicaSet, StatefulSet, DaemonSet: their defaults and the pod
//!   template's, selectors (required, valid, matching the template, immutable), the
//!   template's `restartPolicy: Always`, replicas, strategies, and which StatefulSet
//!   fields may change;
//! - Service: defaults, ports, names, protocols, types, session affinity, cluster IPs
//!   and IP families, node ports, traffic policies, and cluster IPs that may not change
//!   once set; [`prepare_for_update`] keeps the allocated IPs and node ports;
//! - Job: defaults, the generated selector and labels ([`prepare_for_create`]) and
//!   their check, counts, `OnFailure`/`Never`, the immutable selector, completions
//!   (Indexed Jobs may scale them with parallelism) and template (a suspended Job that
//!   never ran may change its scheduling directives);
//! - CronJob: defaults, schedule syntax (robfig/cron's standard parser), TZ in the
//!   schedule, the time zone's shape, concurrency policy and the job template;
//! - Namespace, Secret, PersistentVolume(Claim), Endpoints: their defaults.
//!
//! Not covered: object names and namespaces (the handlers check them); security
//! contexts, affinity, topology spread, DNS config, ephemeral containers, resize,
//! pod-level resources, resource claims, volume source details; `ipFamilies` and
//! `ipFamilyPolicy` defaults (the allocator sets them); specs of other kinds; metadata
//! update rules (uid, creationTimestamp…); rounding quantities up to millis.
//!
//! Deliberately different: a quantity that does not parse is a 422 cause here, where
//! kube-apiserver fails decoding with a 400; quantities in messages are shown as
//! written, not in canonical form; time zones are checked by shape (no tz database is
//! read); Go `%#v` dumps of whole structs (pod templates, strategies) are shown as
//! JSON, and the pod-update refusal lists the changed fields as JSON instead of
//! `cmp.Diff` output; the admission-plugin defaults of Pods are applied on every call
//! of [`default`], not only on create.

mod apps;
mod batch;
mod core_defaults;
mod cron;
mod errors;
mod meta;
mod names;
mod pod;
mod pod_container;
mod pod_defaults;
mod pod_parts;
mod pod_update;
mod selector;
mod service;
mod service_rules;
#[cfg(test)]
mod tests;

use serde_json::Value;

use self::apps::Workload;
use crate::apiserver::status::Cause;

/// The group of an `apiVersion`: `""` for `v1`, `apps` for `apps/v1`.
fn group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// Fills in what kube-apiserver defaults, in place. `kind` is e.g. "Pod", "Deployment".
pub fn default(api_version: &str, kind: &str, obj: &mut Value) {
    match (group(api_version), kind) {
        ("", "Pod") => pod_defaults::default_pod(obj),
        ("", "Service") => service::default(obj),
        ("", "Namespace") => core_defaults::default_namespace(obj),
        ("", "Secret") => core_defaults::default_secret(obj),
        ("", "PersistentVolumeClaim") => core_defaults::default_claim(obj),
        ("", "PersistentVolume") => core_defaults::default_volume(obj),
        ("", "Endpoints") => core_defaults::default_endpoints(obj),
        ("apps", kind) => {
            if let Some(w) = Workload::from_kind(kind) {
                apps::default(w, obj);
            }
        }
        ("batch", "Job") => batch::default_job(obj),
        ("batch", "CronJob") => batch::default_cron_job(obj),
        _ => {}
    }
}

/// What the server adds to a new object after defaulting, once `metadata.uid` and
/// `metadata.name` are set: for a Job, the generated selector and template labels.
pub fn prepare_for_create(api_version: &str, kind: &str, obj: &mut Value) {
    if (group(api_version), kind) == ("batch", "Job") {
        batch::prepare_job_for_create(obj);
    }
}

/// What an update keeps from the stored object `old` when the new one leaves it out:
/// a Service's allocated cluster IPs and node ports. Call it after [`default`].
pub fn prepare_for_update(api_version: &str, kind: &str, obj: &mut Value, old: &Value) {
    if (group(api_version), kind) == ("", "Service") {
        service::prepare_for_update(obj, old);
    }
}

/// Problems with a new object; empty when valid.
pub fn validate_create(api_version: &str, kind: &str, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    meta::validate(kind, obj, &mut out);
    match (group(api_version), kind) {
        ("", "Pod") => match obj.get("spec") {
            Some(spec) => pod::validate_pod_spec(spec, "spec", true, &mut out),
            None => out.push(errors::required("spec.containers", "")),
        },
        ("", "Service") => service_rules::validate(obj, &mut out),
        ("apps", kind) => {
            if let Some(w) = Workload::from_kind(kind) {
                apps::validate(w, obj, &mut out);
            }
        }
        ("batch", "Job") => batch::validate_job(obj, true, &mut out),
        ("batch", "CronJob") => batch::validate_cron_job(obj, None, &mut out),
        _ => {}
    }
    out
}

/// Problems with an update from `old` to `obj` (includes the create rules plus immutability).
pub fn validate_update(api_version: &str, kind: &str, obj: &Value, old: &Value) -> Vec<Cause> {
    if (group(api_version), kind) == ("batch", "CronJob") {
        let mut out = Vec::new();
        meta::validate(kind, obj, &mut out);
        let old_schedule = old.pointer("/spec/schedule").and_then(Value::as_str);
        batch::validate_cron_job(obj, old_schedule, &mut out);
        return out;
    }
    if (group(api_version), kind) == ("", "Service") {
        let mut out = Vec::new();
        meta::validate(kind, obj, &mut out);
        service::validate_update(obj, old, &mut out);
        service_rules::validate(obj, &mut out);
        return out;
    }
    if (group(api_version), kind) == ("batch", "Job") {
        let mut out = Vec::new();
        meta::validate(kind, obj, &mut out);
        batch::validate_job(obj, false, &mut out);
        batch::validate_job_update(obj, old, &mut out);
        return out;
    }
    let mut out = validate_create(api_version, kind, obj);
    match (group(api_version), kind) {
        ("", "Pod") => pod_update::validate_pod_spec_update(obj, old, &mut out),
        ("apps", kind) => {
            if let Some(w) = Workload::from_kind(kind) {
                apps::validate_update(w, obj, old, &mut out);
            }
        }
        _ => {}
    }
    out
}

//! Tests of admission, one file a kind, with fixtures built from JSON.

mod apps;
mod batch;
mod containers;
mod cron;
mod meta;
mod pod;
mod service;

use serde_json::{json, Value};

use super::{default, validate_create, validate_update};
use crate::apiserver::status::Cause;

/// A minimal valid container spec.
fn container(name: &str, image: &str) -> Value {
    json!({"name": name, "image": image})
}

/// A Pod with the given spec.
fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": spec})
}

/// A valid, defaulted Pod running `nginx`.
fn nginx_pod() -> Value {
    let mut p = pod(json!({"containers": [container("web", "nginx:1.25")]}));
    default("v1", "Pod", &mut p);
    p
}

/// The causes of creating `obj` after defaulting it.
fn create_causes(api_version: &str, kind: &str, mut obj: Value) -> Vec<Cause> {
    default(api_version, kind, &mut obj);
    validate_create(api_version, kind, &obj)
}

/// The causes of updating `old` to `new`, both defaulted.
fn update_causes(api_version: &str, kind: &str, mut new: Value, mut old: Value) -> Vec<Cause> {
    default(api_version, kind, &mut new);
    default(api_version, kind, &mut old);
    validate_update(api_version, kind, &new, &old)
}

/// `field: message` of each cause, the way kubectl prints them.
fn lines(causes: &[Cause]) -> Vec<String> {
    causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect()
}

/// Asserts that the causes are exactly `want`, in order.
#[track_caller]
fn assert_causes(causes: &[Cause], want: &[&str]) {
    assert_eq!(lines(causes), want);
}

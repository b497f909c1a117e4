//! The subresources that are not the object itself: `scale` (autoscaling/v1 Scale over
//! Deployments, ReplicaSets and StatefulSets), `pods/binding` (the scheduler's decision)
//! and `pods/eviction` (a delete that a PodDisruptionBudget may refuse).

use axum::http::{Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};

use super::deletion::DeleteOptions;
use super::write::{commit_update, delete_with, store_object, Tracking, UpdateOutcome};
use super::{json_response, parse_body, patch, Ctx};
use crate::apiserver::objects::{from_stored, to_stored};
use crate::apiserver::status::{ApiError, ApiResult, Cause};
use crate::k8s::labels::LabelSelector;
use crate::k8s::meta::{labels, meta_str, now_rfc3339};
use crate::k8s::pods::is_ready;
use crate::store::{ListRequest, StoreError};

/// The Scale view of a scalable object.
fn to_scale(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let mut scale_meta = json!({});
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(field) {
            scale_meta[field] = v.clone();
        }
    }
    let selector = LabelSelector::from_object(&obj["spec"]["selector"])
        .map(|s| s.to_string())
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

fn scale_invalid(name: &str, message: String, field: &str) -> ApiError {
    ApiError::invalid(
        "autoscaling",
        "Scale",
        name,
        vec![Cause {
            reason: "FieldValueInvalid",
            message,
            field: field.into(),
        }],
    )
}

/// GET, PUT or PATCH on `…/scale`.
pub async fn scale(ctx: &Ctx, name: &str, method: Method, body: &Bytes) -> ApiResult<Response> {
    let key = ctx.res.key(ctx.namespace(), name);
    if method == Method::GET {
        let (_, obj) = ctx.current(&key, name).await?;
        return Ok(json_response(StatusCode::OK, &to_scale(&obj), &[]));
    }
    let put = match method {
        Method::PUT => Some(parse_body(&ctx.headers, body)?),
        Method::PATCH => None,
        other => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource: {other}"
            )))
        }
    };
    loop {
        let (kv, current) = ctx.current(&key, name).await?;
        let wanted = match &put {
            Some(scale) => scale.clone(),
            None => {
                let mut view = to_scale(&current);
                patch::patch_view(ctx, &mut view, body)?;
                view
            }
        };
        // A PUT is pinned to the version it names; a patch only if it wrote one in (the
        // view it patched carries the current one). Unpinned writes retry on a conflict.
        let (rv, current_rv) = (
            meta_str(&wanted, "resourceVersion"),
            kv.mod_revision.to_string(),
        );
        let pinned = !rv.is_empty() && (put.is_some() || rv != current_rv);
        if pinned && rv != current_rv {
            return Err(ApiError::conflict(ctx.res.group, ctx.res.plural, name));
        }
        if !meta_str(&wanted, "name").is_empty() && meta_str(&wanted, "name") != name {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let replicas = match &wanted["spec"]["replicas"] {
            Value::Null => 0,
            v => v.as_i64().ok_or_else(|| {
                scale_invalid(
                    name,
                    format!("Invalid value: {v}: must be an integer"),
                    "spec.replicas",
                )
            })?,
        };
        if replicas < 0 {
            return Err(scale_invalid(
                name,
                format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                "spec.replicas",
            ));
        }
        let mut next = current.clone();
        next["spec"]["replicas"] = json!(replicas);
        match commit_update(ctx, &key, name, &kv, &current, next, Tracking::Update).await {
            Ok(UpdateOutcome(obj)) => {
                return Ok(json_response(StatusCode::OK, &to_scale(&obj), &[]))
            }
            Err(ApiError { code: 409, .. }) if !pinned => continue,
            Err(e) => return Err(e),
        }
    }
}

fn success(code: StatusCode) -> Response {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code.as_u16()}),
        &[],
    )
}

fn check_body_name(body: &Value, name: &str, what: &str) -> ApiResult<()> {
    let in_body = meta_str(body, "name");
    if in_body != name {
        return Err(ApiError::bad_request(format!(
            "name in URL does not match name in {what} object"
        )));
    }
    Ok(())
}

/// POST `pods/{name}/binding`: sets `spec.nodeName` once, as the scheduler's decision.
pub async fn binding(ctx: &Ctx, name: &str, body: &Bytes) -> ApiResult<Response> {
    let binding = parse_body(&ctx.headers, body)?;
    check_body_name(&binding, name, "Binding")?;
    let target = &binding["target"];
    let node = target["name"].as_str().unwrap_or_default().to_string();
    let mut causes = Vec::new();
    if node.is_empty() {
        causes.push(Cause {
            reason: "FieldValueRequired",
            message: "Required value".into(),
            field: "target.name".into(),
        });
    }
    let kind = target["kind"].as_str().unwrap_or_default();
    if !kind.is_empty() && kind != "Node" {
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            message: format!("Unsupported value: \"{kind}\": supported values: \"Node\""),
            field: "target.kind".into(),
        });
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("", "Binding", name, causes));
    }
    let dry_run = ctx.query.dry_run()?;
    let key = ctx.res.key(ctx.namespace(), name);
    loop {
        let (kv, pod) = ctx.current(&key, name).await?;
        let uid = meta_str(&binding, "uid");
        if !uid.is_empty() && uid != meta_str(&pod, "uid") {
            return Err(ApiError::conflict("", "pods", name).with_message(format!(
                "Operation cannot be fulfilled on pods \"{name}\": the UID in the precondition ({uid}) does not match the UID in record ({})", meta_str(&pod, "uid"))));
        }
        if pod["metadata"].get("deletionTimestamp").is_some() {
            return Err(ApiError::conflict("", "pods", name).with_message(format!(
                "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is being deleted, cannot be assigned to a host"
            )));
        }
        let bound = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        if !bound.is_empty() {
            return Err(ApiError::conflict("", "pods/binding", name).with_message(format!(
                "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{bound}\""
            )));
        }
        let next = bind(&pod, &binding, &node);
        if dry_run {
            return Ok(success(StatusCode::CREATED));
        }
        match store_object(ctx, &key, name, &kv, next).await {
            Ok(_) => return Ok(success(StatusCode::CREATED)),
            Err(ApiError { code: 409, .. }) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The pod bound to `node`: its node name, the binding's annotations, and the condition
/// PodScheduled=True.
fn bind(pod: &Value, binding: &Value, node: &str) -> Value {
    let mut next = pod.clone();
    next["spec"]["nodeName"] = json!(node);
    if let Some(annotations) = binding["metadata"]["annotations"].as_object() {
        for (k, v) in annotations {
            next["metadata"]["annotations"][k] = v.clone();
        }
    }
    let scheduled = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                           "lastTransitionTime": now_rfc3339()});
    let conditions = next["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<Value> = Vec::new();
    let mut replaced = false;
    for c in conditions {
        if c["type"] == "PodScheduled" {
            replaced = true;
            if c["status"] == "True" {
                out.push(c);
            } else {
                out.push(scheduled.clone());
            }
        } else {
            out.push(c);
        }
    }
    if !replaced {
        out.push(scheduled);
    }
    next["status"]["conditions"] = json!(out);
    next
}

fn too_many_requests(pdb: &str, message: String) -> ApiError {
    let mut err = ApiError::too_many_requests(
        "Cannot evict pod as it would violate the pod's disruption budget.",
    );
    err.details.causes.push(Cause {
        reason: "DisruptionBudget",
        message: message.replace("{pdb}", pdb),
        field: String::new(),
    });
    err
}

/// POST `pods/{name}/eviction`: deletes the pod unless a PodDisruptionBudget forbids it.
pub async fn eviction(ctx: &Ctx, name: &str, body: &Bytes) -> ApiResult<Response> {
    let eviction = parse_body(&ctx.headers, body)?;
    check_body_name(&eviction, name, "Eviction")?;
    let opts = DeleteOptions::parse(&eviction["deleteOptions"], |_| None)?;
    let dry_run = ctx.query.dry_run()?;
    let ns = ctx.namespace().unwrap_or_default().to_string();
    let key = ctx.res.key(Some(&ns), name);
    loop {
        let (_, pod) = ctx.current(&key, name).await?;
        let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
        let deleting = pod["metadata"].get("deletionTimestamp").is_some();
        // Pods that are not running, or are already going, ignore budgets.
        let ignore_budgets = deleting || matches!(phase, "Succeeded" | "Failed" | "Pending");
        if !ignore_budgets && !charge_budget(ctx, &ns, &pod, dry_run).await? {
            continue;
        }
        if !dry_run {
            delete_with(ctx, name, &opts).await?;
        }
        return Ok(success(StatusCode::CREATED));
    }
}

/// Takes one disruption from the budget covering `pod`; false if the budget changed
/// meanwhile and the eviction must be tried again.
async fn charge_budget(ctx: &Ctx, ns: &str, pod: &Value, dry_run: bool) -> ApiResult<bool> {
    let store = &ctx.state.store;
    let prefix = format!("/registry/poddisruptionbudgets/{ns}/");
    let page = store
        .list(&ListRequest::prefix(prefix))
        .await
        .map_err(|e| ctx.store_err(e, ""))?;
    let pod_labels = labels(pod);
    let mut matching = Vec::new();
    for kv in &page.kvs {
        let pdb = from_stored(kv)?;
        let selector = LabelSelector::from_object(&pdb["spec"]["selector"]);
        // A PDB without a selector, or with an empty one, selects no pods in policy/v1.
        let selects = pdb["spec"]["selector"].is_object()
            && selector.is_ok_and(|s| !s.is_empty() && s.matches(&pod_labels));
        if selects {
            matching.push((kv.clone(), pdb));
        }
    }
    let (kv, mut pdb) = match matching.len() {
        0 => return Ok(true),
        1 => matching.remove(0),
        _ => {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ))
        }
    };
    let pdb_name = meta_str(&pdb, "name").to_string();
    let status = &pdb["status"];
    if pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow" && !is_ready(pod) {
        return Ok(true);
    }
    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
    if status["observedGeneration"].as_i64().unwrap_or(0) < generation {
        return Err(too_many_requests(
            &pdb_name,
            "The disruption budget {pdb} is still being processed by the server.".into(),
        ));
    }
    let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
    if allowed < 0 {
        return Err(ApiError::forbidden("pdb disruptions allowed is negative"));
    }
    if allowed == 0 {
        let (desired, current) = (
            status["desiredHealthy"].as_i64().unwrap_or(0),
            status["currentHealthy"].as_i64().unwrap_or(0),
        );
        return Err(too_many_requests(
            &pdb_name,
            format!("The disruption budget {{pdb}} needs {desired} healthy pods and has {current} currently"),
        ));
    }
    if dry_run {
        return Ok(true);
    }
    pdb["status"]["disruptionsAllowed"] = json!(allowed - 1);
    pdb["status"]["disruptedPods"][meta_str(pod, "name")] = json!(now_rfc3339());
    match store
        .update(&kv.key, to_stored(&pdb), kv.mod_revision, None)
        .await
    {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict { .. }) => Ok(false),
        Err(e) => Err(ctx.store_err(e, &pdb_name)),
    }
}

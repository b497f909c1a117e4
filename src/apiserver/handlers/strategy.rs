//! Per-kind steps around a write, as kube-apiserver's registry strategies and admission:
//! defaults and validation before an object is stored, addresses for Services, and what
//! is given back after, for a write that did not happen or an object that is gone.

use serde_json::{json, Value};

use super::Ctx;
use crate::apiserver::admission;
use crate::apiserver::objects::from_stored;
use crate::apiserver::resources::Resource;
use crate::apiserver::services::{self, Reserved};
use crate::apiserver::status::{ApiError, ApiResult, Cause};
use crate::k8s::meta::meta_str;

/// What a write reserved before it was stored.
#[derive(Debug, Default)]
pub struct Pending {
    reserved: Reserved,
}

fn is_service(ctx: &Ctx) -> bool {
    ctx.res.group.is_empty() && ctx.res.plural == "services"
}

fn refuse(ctx: &Ctx, obj: &Value, causes: Vec<Cause>) -> ApiResult<()> {
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(
        ctx.res.group,
        ctx.res.kind,
        meta_str(obj, "name"),
        causes,
    ))
}

/// Admission of a new object (its uid already set): kube-apiserver's defaults, what the
/// kind's strategy fills in on create, then validation; 422 with a cause per problem.
pub fn admit_create(ctx: &Ctx, obj: &mut Value) -> ApiResult<()> {
    let api_version = ctx.res.api_version();
    admission::default(&api_version, ctx.res.kind, obj);
    admission::prepare_for_create(&api_version, ctx.res.kind, obj);
    let causes = admission::validate_create(&api_version, ctx.res.kind, obj);
    refuse(ctx, obj, causes)
}

/// The Priority admission plugin: a new pod takes the value and preemption policy of its
/// PriorityClass (or of the global default class), and may not name a priority of its
/// own that differs. The two built-in classes are resolved by the defaults.
const PRIORITY_CLASSES: &str = "/registry/priorityclasses/";

fn priority_classes() -> &'static Resource {
    crate::apiserver::resources::find("scheduling.k8s.io", "v1", "priorityclasses")
        .expect("priorityclasses are a built-in kind")
}

pub async fn admit_pod_priority(ctx: &Ctx, pod: &mut Value) -> ApiResult<()> {
    if !(ctx.res.group.is_empty() && ctx.res.plural == "pods") {
        return Ok(());
    }
    let name = meta_str(pod, "name").to_string();
    let class_name = pod["spec"]["priorityClassName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if class_name.starts_with("system-") {
        return Ok(());
    }
    // From the watch cache, as upstream's Priority plugin reads an informer's lister.
    let classes = ctx.state.caches.get(priority_classes()).await?;
    let class = if class_name.is_empty() {
        classes
            .objects(PRIORITY_CLASSES)
            .iter()
            .map(|c| c.value())
            .find(|c| c["globalDefault"] == json!(true))
    } else {
        let key = format!("{PRIORITY_CLASSES}{class_name}");
        let class = match classes.object(&key) {
            Some(cached) => Some(cached.value()),
            // A class created a moment ago may not be in the cache yet: ask the store.
            None => match ctx.state.store.get(&key, 0).await {
                Ok((_, Some(kv))) => Some(from_stored(&kv)?),
                Ok((_, None)) => None,
                Err(e) => return Err(ctx.store_err(e, &name)),
            },
        };
        Some(class.ok_or_else(|| {
            ApiError::forbidden(format!(
                "pods \"{name}\" is forbidden: no PriorityClass with name {class_name} was found"
            ))
        })?)
    };
    let Some(class) = class else {
        return Ok(());
    };
    let value = class["value"].as_i64().unwrap_or(0);
    if let Some(given) = pod["spec"]["priority"].as_i64() {
        if given != value {
            return Err(ApiError::forbidden(format!(
                "pods \"{name}\" is forbidden: the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
            )));
        }
    }
    pod["spec"]["priority"] = json!(value);
    pod["spec"]["priorityClassName"] = json!(meta_str(&class, "name"));
    if pod["spec"].get("preemptionPolicy").is_none() {
        let policy = class["preemptionPolicy"]
            .as_str()
            .unwrap_or("PreemptLowerPriority");
        pod["spec"]["preemptionPolicy"] = json!(policy);
    }
    Ok(())
}

/// Admission of an update from `current` to `next`. Status writes are checked by the
/// status rules only, which here means none.
pub fn admit_update(ctx: &Ctx, current: &Value, next: &mut Value) -> ApiResult<()> {
    let api_version = ctx.res.api_version();
    admission::default(&api_version, ctx.res.kind, next);
    if ctx.status_only() {
        return Ok(());
    }
    admission::prepare_for_update(&api_version, ctx.res.kind, next, current);
    let causes = admission::validate_update(&api_version, ctx.res.kind, next, current);
    refuse(ctx, next, causes)
}

/// Steps before a create is stored. A dry run reserves nothing.
pub async fn before_create(ctx: &Ctx, obj: &mut Value, dry_run: bool) -> ApiResult<Pending> {
    let mut pending = Pending::default();
    if is_service(ctx) && !dry_run {
        let net = &ctx.state.services;
        pending.reserved = services::allocate(net, ctx.state.store.as_ref(), None, obj).await?;
    }
    Ok(pending)
}

/// Steps before an update from `current` to `next` is stored.
pub async fn before_update(
    ctx: &Ctx,
    current: &Value,
    next: &mut Value,
    dry_run: bool,
) -> ApiResult<Pending> {
    let mut pending = Pending::default();
    if is_service(ctx) && !dry_run && !ctx.status_only() {
        let net = &ctx.state.services;
        pending.reserved =
            services::allocate(net, ctx.state.store.as_ref(), Some(current), next).await?;
    }
    Ok(pending)
}

/// Gives back what a write that did not happen reserved.
pub async fn abandon(ctx: &Ctx, pending: Pending) {
    services::undo(
        &ctx.state.services,
        ctx.state.store.as_ref(),
        pending.reserved,
    )
    .await;
}

/// After an update from `before` to `next` was stored (or, `deleted`, ended the object
/// because its last finalizer went): gives back what is no longer held.
pub async fn after_update(ctx: &Ctx, before: &Value, next: &Value, deleted: bool) {
    if !is_service(ctx) {
        return;
    }
    let (net, store) = (&ctx.state.services, ctx.state.store.as_ref());
    if deleted {
        services::release_unused(net, store, before, None).await;
        services::release_unused(net, store, next, None).await;
    } else {
        services::release_unused(net, store, before, Some(next)).await;
    }
}

/// After an object is deleted from the store.
pub async fn after_delete(ctx: &Ctx, obj: &Value) {
    if is_service(ctx) {
        services::release_unused(&ctx.state.services, ctx.state.store.as_ref(), obj, None).await;
    }
}

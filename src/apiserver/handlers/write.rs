//! create, update, delete and deletecollection.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};

use super::deletion::{self, DeleteOptions, Plan};
use super::{json_response, parse_body, render, strategy, Ctx};
use crate::apiserver::fieldmanager;
use crate::apiserver::objects::{
    decode, from_stored, metadata_mut, set_resource_version, to_stored,
};
use crate::apiserver::status::{ApiError, ApiResult, Cause};
use crate::k8s::meta::{
    dns1123_label_error, dns1123_subdomain_error, generate_name, labels, meta_str, now_rfc3339,
};
use crate::store::{KeyValue, ListRequest, StoreError};

/// Events expire after an hour, as with kube-apiserver's default `--event-ttl`.
const EVENT_TTL: Duration = Duration::from_secs(3600);
/// Namespaces that exist from the first start and may not be deleted.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Checks that the body is of the kind and version the path serves; a body that leaves them
/// out takes the path's, as kube-apiserver's decoder does.
fn check_type(ctx: &Ctx, obj: &mut Value) -> ApiResult<()> {
    let want = ctx.res.api_version();
    let map = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    let api_version = map
        .entry("apiVersion")
        .or_insert_with(|| json!(want))
        .as_str()
        .unwrap_or_default()
        .to_string();
    let kind = map
        .entry("kind")
        .or_insert_with(|| json!(ctx.res.kind))
        .as_str()
        .unwrap_or_default()
        .to_string();
    if api_version != want {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({want})"
        )));
    }
    if kind != ctx.res.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            ctx.res.kind
        )));
    }
    Ok(())
}

/// Makes the body's namespace agree with the path's.
pub(super) fn check_namespace(ctx: &Ctx, obj: &mut Value) -> ApiResult<()> {
    let body_ns = meta_str(obj, "namespace").to_string();
    let meta =
        metadata_mut(obj).ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
    match ctx.namespace() {
        Some(ns) => {
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            meta.insert("namespace".into(), json!(ns));
        }
        None if ctx.res.namespaced => return Err(ApiError::no_route()),
        None => {
            meta.remove("namespace");
        }
    }
    Ok(())
}

fn check_name(ctx: &Ctx, name: &str) -> ApiResult<()> {
    let label_only = matches!(ctx.res.plural, "namespaces" | "services");
    let problem = if label_only {
        dns1123_label_error(name)
    } else {
        dns1123_subdomain_error(name)
    };
    match problem {
        Some(message) => Err(ApiError::invalid(
            ctx.res.group,
            ctx.res.kind,
            name,
            vec![Cause {
                reason: "FieldValueInvalid",
                message: format!("Invalid value: \"{name}\": {message}"),
                field: "metadata.name".into(),
            }],
        )),
        None => Ok(()),
    }
}

/// The namespace must exist, and must not be terminating, for objects to be created in it.
fn namespaces_resource() -> &'static crate::apiserver::resources::Resource {
    crate::apiserver::resources::find("", "v1", "namespaces").expect("namespaces are built in")
}

async fn check_namespace_exists(ctx: &Ctx, name: &str) -> ApiResult<()> {
    let Some(ns) = ctx.namespace() else {
        return Ok(());
    };
    let key = format!("/registry/namespaces/{ns}");
    // The watch cache first, as upstream's NamespaceLifecycle reads its lister; a namespace
    // it does not have yet (created a moment ago) is looked up in the store.
    let namespaces = ctx.state.caches.get(namespaces_resource()).await?;
    let namespace = match namespaces.object(&key) {
        Some(cached) => cached.value(),
        None => {
            let (_, kv) = ctx
                .state
                .store
                .get(&key, 0)
                .await
                .map_err(|e| ctx.store_err(e, ns))?;
            let kv = kv.ok_or_else(|| ApiError::not_found("", "namespaces", ns))?;
            from_stored(&kv)?
        }
    };
    if namespace["status"]["phase"] == "Terminating" {
        return Err(ApiError::forbidden(format!(
            "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            ctx.res.plural,
        )));
    }
    Ok(())
}

fn ttl(ctx: &Ctx) -> Option<Duration> {
    (ctx.res.plural == "events").then_some(EVENT_TTL)
}

/// Whether something still has to finish with the object before it goes: metadata
/// finalizers, or for a namespace its spec finalizers (emptied by `finalize`).
fn has_finalizers(obj: &Value) -> bool {
    let nonempty = |v: &Value| v.as_array().is_some_and(|f| !f.is_empty());
    nonempty(&obj["metadata"]["finalizers"]) || nonempty(&obj["spec"]["finalizers"])
}

/// Fields the server sets on create.
pub fn prepare_create(ctx_generation: bool, has_status: bool, kind: &str, obj: &mut Value) {
    if let Some(meta) = metadata_mut(obj) {
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(field);
        }
        if ctx_generation {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
    }
    // Status is the system's to write, through the status subresource; a kubelet
    // registers its Node with the status in one create, and a new pod starts Pending.
    if has_status && kind != "Node" {
        if let Some(map) = obj.as_object_mut() {
            map.remove("status");
        }
    }
    if kind == "Pod" {
        let qos = crate::k8s::pods::qos_class(obj);
        obj["status"] = json!({"phase": "Pending", "qosClass": qos});
    }
    if kind == "Namespace" {
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
        obj["status"] = json!({"phase": "Active"});
    }
}

/// Who owns the fields a write changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracking {
    /// The request's field manager, with operation Update.
    Update,
    /// Already recorded (a server-side apply).
    Recorded,
}

/// `POST` to a collection.
pub async fn create(ctx: &Ctx, body: &Bytes) -> ApiResult<Response> {
    let mut input = parse_body(&ctx.headers, body)?;
    check_type(ctx, &mut input)?;
    let (obj, warnings) = decode(ctx.res, input, ctx.validation()?)?;
    insert(ctx, obj, &warnings, Tracking::Update).await
}

/// Stores a new object, decoded and checked against its type.
pub async fn insert(
    ctx: &Ctx,
    mut obj: Value,
    warnings: &[String],
    tracking: Tracking,
) -> ApiResult<Response> {
    let dry_run = ctx.query.dry_run()?;
    check_namespace(ctx, &mut obj)?;
    let mut name = meta_str(&obj, "name").to_string();
    let generated = name.is_empty();
    if generated {
        let base = meta_str(&obj, "generateName").to_string();
        if base.is_empty() {
            return Err(ApiError::invalid(
                ctx.res.group,
                ctx.res.kind,
                "",
                vec![Cause {
                    reason: "FieldValueRequired",
                    message: "Required value: name or generateName is required".into(),
                    field: "metadata.name".into(),
                }],
            ));
        }
        name = generate_name(&base);
    }
    check_name(ctx, &name)?;
    check_namespace_exists(ctx, &name).await?;
    if let Some(meta) = metadata_mut(&mut obj) {
        meta.insert("name".into(), json!(name));
    }
    prepare_create(
        ctx.res.generation,
        ctx.res.has_status(),
        ctx.res.kind,
        &mut obj,
    );
    strategy::admit_pod_priority(ctx, &mut obj).await?;
    strategy::admit_create(ctx, &mut obj)?;
    if tracking == Tracking::Update {
        let manager = ctx.field_manager()?;
        let (api_version, time) = (ctx.res.api_version(), now_rfc3339());
        fieldmanager::on_create(&mut obj, &manager_of(ctx, &manager, &api_version, &time));
    }
    let pending = strategy::before_create(ctx, &mut obj, dry_run).await?;
    if dry_run {
        return Ok(json_response(StatusCode::CREATED, &obj, warnings));
    }
    let key = ctx.res.key(ctx.namespace(), &name);
    let created = ctx
        .state
        .store
        .create(&key, to_stored(&obj), ttl(ctx))
        .await;
    let rev = match created {
        Ok(rev) => rev,
        Err(e) => {
            strategy::abandon(ctx, pending).await;
            return Err(ctx.store_err(e, &name));
        }
    };
    set_resource_version(&mut obj, rev);
    Ok(json_response(StatusCode::CREATED, &obj, warnings))
}

/// The field manager of a write, as the field management code takes it.
fn manager_of<'a>(
    ctx: &'a Ctx,
    name: &'a str,
    api_version: &'a str,
    time: &'a str,
) -> fieldmanager::Manager<'a> {
    fieldmanager::Manager {
        name,
        api_version,
        subresource: ctx.path.subresource.as_deref(),
        time,
    }
}

/// Whether two objects differ in anything but their resourceVersion.
fn same_object(a: &Value, b: &Value) -> bool {
    to_stored(a) == to_stored(b)
}

/// `PUT` an object.
pub async fn update(ctx: &Ctx, name: &str, body: &Bytes) -> ApiResult<Response> {
    let mut input = parse_body(&ctx.headers, body)?;
    check_type(ctx, &mut input)?;
    let (mut obj, warnings) = decode(ctx.res, input, ctx.validation()?)?;
    check_namespace(ctx, &mut obj)?;
    let body_name = meta_str(&obj, "name").to_string();
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let wanted_rv = meta_str(&obj, "resourceVersion").to_string();
    let key = ctx.res.key(ctx.namespace(), name);
    loop {
        let (kv, current) = ctx.current(&key, name).await?;
        if !wanted_rv.is_empty() && wanted_rv != kv.mod_revision.to_string() {
            return Err(ApiError::conflict(ctx.res.group, ctx.res.plural, name));
        }
        let next = obj.clone();
        match commit_update(ctx, &key, name, &kv, &current, next, Tracking::Update).await {
            Err(ApiError { code: 409, .. }) if wanted_rv.is_empty() => continue,
            Err(e) => return Err(e),
            Ok(UpdateOutcome(written)) => {
                return Ok(json_response(StatusCode::OK, &written, &warnings))
            }
        }
    }
}

/// The object an update left stored.
pub struct UpdateOutcome(pub Value);

/// Stores `next` over `current` (read at `kv`), keeping what the server owns and
/// recording who changed which fields; a no-op writes nothing and keeps the
/// resourceVersion.
pub async fn commit_update(
    ctx: &Ctx,
    key: &str,
    name: &str,
    kv: &KeyValue,
    current: &Value,
    next: Value,
    tracking: Tracking,
) -> ApiResult<UpdateOutcome> {
    let dry_run = ctx.query.dry_run()?;
    let mut next = merge_update(ctx, current, next);
    strategy::admit_update(ctx, current, &mut next)?;
    if tracking == Tracking::Update {
        let manager = ctx.field_manager()?;
        let (api_version, time) = (ctx.res.api_version(), now_rfc3339());
        fieldmanager::on_update(
            current,
            &mut next,
            &manager_of(ctx, &manager, &api_version, &time),
        );
    }
    let pending = strategy::before_update(ctx, current, &mut next, dry_run).await?;
    if dry_run {
        return Ok(UpdateOutcome(next));
    }
    if same_object(&next, current) {
        strategy::abandon(ctx, pending).await;
        return Ok(UpdateOutcome(current.clone()));
    }
    match write_or_finalize(ctx, key, name, kv, current, next).await {
        Ok((written, deleted)) => {
            strategy::after_update(ctx, current, &written, deleted).await;
            Ok(UpdateOutcome(written))
        }
        Err(e) => {
            strategy::abandon(ctx, pending).await;
            Err(e)
        }
    }
}

/// The object an update stores: the body, with what the server owns kept from `current`.
fn merge_update(ctx: &Ctx, current: &Value, mut next: Value) -> Value {
    let status_only = ctx.status_only();
    if status_only {
        // As upstream's status strategies: the status subresource takes the status and
        // the metadata, and keeps everything else (the spec) as it was.
        keep_all_but_metadata_and_status(current, &mut next);
        let kept: &[&str] = match (ctx.res.group, ctx.res.plural) {
            ("apps", "deployments") => &["labels"],
            // Old kubelets corrupted owner references through pods/status.
            ("", "pods") => &["ownerReferences"],
            _ => &[],
        };
        keep_metadata(current, &mut next, kept);
    }
    if ctx.path.subresource.as_deref() == Some("finalize") {
        // Finalize takes the namespace's spec finalizers and nothing else.
        let mut out = current.clone();
        out["spec"]["finalizers"] = next["spec"]["finalizers"].take();
        if out["spec"]["finalizers"].is_null() {
            if let Some(spec) = out["spec"].as_object_mut() {
                spec.remove("finalizers");
            }
        }
        return out;
    }
    keep_metadata(
        current,
        &mut next,
        &[
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ],
    );
    if ctx.res.has_status() && !status_only {
        match current.get("status") {
            Some(status) => next["status"] = status.clone(),
            None => {
                if let Some(map) = next.as_object_mut() {
                    map.remove("status");
                }
            }
        }
    }
    if ctx.res.generation && current.get("spec") != next.get("spec") {
        let generation = current["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        next["metadata"]["generation"] = json!(generation);
    }
    next
}

/// Sets `fields` of `next`'s metadata as they are in `current` (absent if absent there).
fn keep_metadata(current: &Value, next: &mut Value, fields: &[&str]) {
    for field in fields {
        let kept = current["metadata"].get(*field).cloned();
        if let Some(meta) = metadata_mut(next) {
            match kept {
                Some(v) => meta.insert((*field).into(), v),
                None => meta.remove(*field),
            };
        }
    }
}

/// Sets every top-level field of `next` but its metadata, status and type as it is in
/// `current`.
fn keep_all_but_metadata_and_status(current: &Value, next: &mut Value) {
    let own = |k: &str| matches!(k, "metadata" | "status" | "apiVersion" | "kind");
    let Some(out) = next.as_object_mut() else {
        return;
    };
    out.retain(|k, _| own(k));
    if let Some(current) = current.as_object() {
        for (k, v) in current.iter().filter(|(k, _)| !own(k)) {
            out.insert(k.clone(), v.clone());
        }
    }
}

/// Stores `next` over the version read at `kv` as it is, for subresources that write
/// both spec and status (a binding).
pub async fn store_object(
    ctx: &Ctx,
    key: &str,
    name: &str,
    kv: &KeyValue,
    mut next: Value,
) -> ApiResult<Value> {
    store_over(ctx, key, name, kv, &mut next).await?;
    Ok(next)
}

/// Stores an update; an object being deleted whose last finalizer went is deleted instead
/// (the flag says so).
async fn write_or_finalize(
    ctx: &Ctx,
    key: &str,
    name: &str,
    kv: &KeyValue,
    current: &Value,
    mut next: Value,
) -> ApiResult<(Value, bool)> {
    if should_delete_during_update(current, &next) {
        let (rev, _) = ctx
            .state
            .store
            .delete(key, Some(kv.mod_revision))
            .await
            .map_err(|e| ctx.store_err(e, name))?;
        set_resource_version(&mut next, rev);
        return Ok((next, true));
    }
    store_over(ctx, key, name, kv, &mut next).await?;
    Ok((next, false))
}

/// Whether an update that removes the last finalizer ends the object, as upstream's
/// `ShouldDeleteDuringUpdate`: only once its grace period is over (0). A pod deleted with
/// a grace period stays, terminating, until its kubelet deletes it with grace 0.
fn should_delete_during_update(current: &Value, next: &Value) -> bool {
    let meta = &current["metadata"];
    meta.get("deletionTimestamp").is_some_and(|t| !t.is_null())
        && meta["deletionGracePeriodSeconds"].as_i64() == Some(0)
        && has_finalizers(current)
        && !has_finalizers(next)
}

/// Writes `next` over the version read at `kv` and gives it its new resourceVersion.
async fn store_over(
    ctx: &Ctx,
    key: &str,
    name: &str,
    kv: &KeyValue,
    next: &mut Value,
) -> ApiResult<()> {
    let written = ctx
        .state
        .store
        .update(key, to_stored(next), kv.mod_revision, ttl(ctx))
        .await
        .map_err(|e| ctx.store_err(e, name))?;
    set_resource_version(next, written.mod_revision);
    Ok(())
}

fn delete_options(ctx: &Ctx, body: &Bytes) -> ApiResult<DeleteOptions> {
    let opts = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        parse_body(&ctx.headers, body)?
    };
    DeleteOptions::parse(&opts, |name| ctx.query.get(name).map(str::to_string))
}

/// `DELETE` an object.
pub async fn delete(ctx: &Ctx, name: &str, body: &Bytes) -> ApiResult<Response> {
    let opts = delete_options(ctx, body)?;
    let obj = delete_with(ctx, name, &opts).await?;
    Ok(json_response(StatusCode::OK, &obj, &[]))
}

/// Deletes (or marks deleted) the object `name` with `opts`, and returns it as it was
/// last stored.
pub async fn delete_with(ctx: &Ctx, name: &str, opts: &DeleteOptions) -> ApiResult<Value> {
    let dry_run = ctx.query.dry_run()?;
    if ctx.res.plural == "namespaces" && SYSTEM_NAMESPACES[..3].contains(&name) {
        return Err(ApiError::forbidden(format!(
            "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
        )));
    }
    let key = ctx.res.key(ctx.namespace(), name);
    loop {
        let (kv, obj) = ctx.current(&key, name).await?;
        check_preconditions(ctx, name, &obj, opts)?;
        match delete_one(ctx, &key, name, &kv, obj, opts, dry_run).await {
            Err(ApiError { code: 409, .. }) if opts.resource_version.is_none() => continue,
            other => return other,
        }
    }
}

fn check_preconditions(ctx: &Ctx, name: &str, obj: &Value, opts: &DeleteOptions) -> ApiResult<()> {
    if let Some(uid) = &opts.uid {
        let have = meta_str(obj, "uid");
        if uid != have {
            return Err(
                ApiError::conflict(ctx.res.group, ctx.res.plural, name).with_message(format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                )),
            );
        }
    }
    if let Some(rv) = &opts.resource_version {
        let have = meta_str(obj, "resourceVersion");
        if rv != have {
            return Err(ApiError::conflict(ctx.res.group, ctx.res.plural, name).with_message(format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {have}"
            )));
        }
    }
    Ok(())
}

/// Deletes now, or marks the object deleted and leaves the rest to the kubelet (a
/// graceful pod) or to whoever owns its finalizers.
async fn delete_one(
    ctx: &Ctx,
    key: &str,
    name: &str,
    kv: &KeyValue,
    obj: Value,
    opts: &DeleteOptions,
    dry_run: bool,
) -> ApiResult<Value> {
    let plan = if ctx.res.plural == "namespaces" {
        namespace_plan(&obj, opts)
    } else {
        deletion::plan(ctx.res.kind, &obj, opts, time::OffsetDateTime::now_utc())
    };
    let mut next = match plan {
        Plan::Pending => return Ok(obj),
        Plan::Mark(next) => next,
        Plan::Now if dry_run => return Ok(obj),
        Plan::Now => {
            return match ctx.state.store.delete(key, Some(kv.mod_revision)).await {
                Ok(_) => {
                    strategy::after_delete(ctx, &obj).await;
                    Ok(obj)
                }
                Err(StoreError::NotFound { .. }) => Err(ctx.not_found(name)),
                Err(e) => Err(ctx.store_err(e, name)),
            }
        }
    };
    if dry_run {
        return Ok(next);
    }
    store_over(ctx, key, name, kv, &mut next).await?;
    Ok(next)
}

/// A namespace is never deleted at once: it turns Terminating and the namespace
/// controller empties it, then finalizes it.
fn namespace_plan(ns: &Value, opts: &DeleteOptions) -> Plan {
    let mut held = ns.clone();
    if let Some(map) = held["metadata"].as_object_mut() {
        map.remove("deletionTimestamp");
    }
    let mut next = match deletion::plan("Namespace", &held, opts, time::OffsetDateTime::now_utc()) {
        Plan::Mark(next) => next,
        _ => held,
    };
    if let Some(at) = ns["metadata"].get("deletionTimestamp") {
        next["metadata"]["deletionTimestamp"] = at.clone();
    } else {
        next["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
    }
    next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    next["status"]["phase"] = json!("Terminating");
    if next == *ns {
        Plan::Pending
    } else {
        Plan::Mark(next)
    }
}

/// `DELETE` a collection: every object the selectors match.
pub async fn delete_collection(ctx: &Ctx, body: &Bytes) -> ApiResult<Response> {
    if ctx.res.plural == "namespaces" {
        // kube-apiserver has no deletecollection for namespaces either.
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource: deletecollection namespaces",
        ));
    }
    let dry_run = ctx.query.dry_run()?;
    let opts = delete_options(ctx, body)?;
    let labels_sel = ctx.labels()?;
    let fields_sel = ctx.fields()?;
    let prefix = ctx.res.collection_key(ctx.namespace());
    let page = ctx
        .state
        .store
        .list(&ListRequest::prefix(prefix))
        .await
        .map_err(|e| ctx.store_err(e, ""))?;
    let mut deleted = Vec::new();
    for kv in &page.kvs {
        let obj = from_stored(kv)?;
        if !labels_sel.matches(&labels(&obj)) || !fields_sel.matches(&obj) {
            continue;
        }
        let name = meta_str(&obj, "name").to_string();
        check_preconditions(ctx, &name, &obj, &opts)?;
        match delete_one(ctx, &kv.key, &name, kv, obj, &opts, dry_run).await {
            Ok(obj) => deleted.push(obj),
            // Changed or gone meanwhile: the next deletecollection takes it.
            Err(ApiError {
                code: 404 | 409, ..
            }) => {}
            Err(e) => return Err(e),
        }
    }
    let meta = json!({"resourceVersion": page.revision.to_string()});
    Ok(json_response(
        StatusCode::OK,
        &render(ctx, &deleted, Some(meta), false),
        &[],
    ))
}

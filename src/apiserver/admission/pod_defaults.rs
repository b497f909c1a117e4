//! Pod defaulting: core/v1 `SetDefaults_PodSpec`, `SetDefaults_Container` and friends for
//! every pod spec (Pods and the templates of workloads), plus what only a created Pod
//! gets (`SetDefaults_Pod` and the ServiceAccount, Priority and DefaultTolerationSeconds
//! admission plugins).

use serde_json::{json, Map, Value};

use super::errors::{default_str, object_entry, objects_mut, set_default};

/// Mode 0644, which upstream sets on secret, configMap, downwardAPI and projected volumes.
const DEFAULT_MODE: i64 = 420;

/// Defaults a Pod in place.
pub(super) fn default_pod(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    default_pod_spec(spec);
    for key in ["containers", "initContainers"] {
        for container in objects_mut(spec, key) {
            requests_from_limits(container);
        }
    }
    set_default(spec, "enableServiceLinks", Value::Bool(true));
    if spec.get("hostNetwork") == Some(&Value::Bool(true)) {
        for key in ["containers", "initContainers"] {
            for container in objects_mut(spec, key) {
                host_ports_from_container_ports(container);
            }
        }
    }
    admit_pod(spec);
}

/// Defaults the pod template at `template` (`spec.template` of workloads).
pub(super) fn default_template(template: Option<&mut Value>) {
    let Some(template) = template.and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(spec) = object_entry(template, "spec") {
        default_pod_spec(spec);
    }
}

/// `SetDefaults_PodSpec` and the defaults of everything a pod spec holds.
pub(super) fn default_pod_spec(spec: &mut Map<String, Value>) {
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    default_str(spec, "schedulerName", "default-scheduler");
    service_account_alias(spec);
    for key in ["containers", "initContainers"] {
        for container in objects_mut(spec, key) {
            default_container(container);
        }
    }
    for volume in objects_mut(spec, "volumes") {
        default_volume(volume);
    }
}

/// `serviceAccount` is the deprecated twin of `serviceAccountName`; v1 fills each from
/// the other.
fn service_account_alias(spec: &mut Map<String, Value>) {
    let name = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let old = spec
        .get("serviceAccount")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty() && !old.is_empty() {
        spec.insert("serviceAccountName".into(), Value::String(old));
    } else if !name.is_empty() && old.is_empty() {
        spec.insert("serviceAccount".into(), Value::String(name));
    }
}

/// `SetDefaults_Container`, ports, probes, lifecycle hooks and env field references.
fn default_container(c: &mut Map<String, Value>) {
    if c.get("imagePullPolicy")
        .is_none_or(|v| v.is_null() || v == "")
    {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = if image_tag(image) == "latest" {
            "Always"
        } else {
            "IfNotPresent"
        };
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    set_default(c, "resources", json!({}));
    for port in objects_mut(c, "ports") {
        default_str(port, "protocol", "TCP");
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = c.get_mut(key).and_then(Value::as_object_mut) {
            default_probe(probe);
        }
    }
    if let Some(lifecycle) = c.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for key in ["postStart", "preStop"] {
            if let Some(handler) = lifecycle.get_mut(key).and_then(Value::as_object_mut) {
                default_http_get(handler);
            }
        }
    }
    for env in objects_mut(c, "env") {
        let field_ref = env
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .and_then(Value::as_object_mut);
        if let Some(field_ref) = field_ref {
            default_str(field_ref, "apiVersion", "v1");
        }
    }
}

/// The tag `ParseImageName` finds: `latest` when there is neither tag nor digest.
fn image_tag(image: &str) -> &str {
    if image.contains('@') {
        return "";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag,
        None => "latest",
    }
}

/// `SetDefaults_Probe`.
fn default_probe(probe: &mut Map<String, Value>) {
    for (key, value) in [
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ] {
        if probe.get(key).is_none_or(|v| v.is_null() || v == 0) {
            probe.insert(key.into(), json!(value));
        }
    }
    default_http_get(probe);
}

/// `SetDefaults_HTTPGetAction` on the handler's `httpGet`, if it has one.
fn default_http_get(handler: &mut Map<String, Value>) {
    if let Some(http) = handler.get_mut("httpGet").and_then(Value::as_object_mut) {
        default_str(http, "path", "/");
        default_str(http, "scheme", "HTTP");
    }
}

/// A volume with no source is an emptyDir; file modes default to 0644.
fn default_volume(volume: &mut Map<String, Value>) {
    let has_source = volume.iter().any(|(k, v)| k != "name" && !v.is_null());
    if !has_source {
        volume.insert("emptyDir".into(), json!({}));
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(source) = volume.get_mut(key).and_then(Value::as_object_mut) {
            set_default(source, "defaultMode", json!(DEFAULT_MODE));
        }
    }
    if let Some(items) = volume
        .get_mut("downwardAPI")
        .and_then(|d| d.get_mut("items"))
        .and_then(Value::as_array_mut)
    {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(field_ref) = item.get_mut("fieldRef").and_then(Value::as_object_mut) {
                default_str(field_ref, "apiVersion", "v1");
            }
        }
    }
    let sources = volume
        .get_mut("projected")
        .and_then(|p| p.get_mut("sources"))
        .and_then(Value::as_array_mut);
    for source in sources.into_iter().flatten() {
        let token = source
            .get_mut("serviceAccountToken")
            .and_then(Value::as_object_mut);
        if let Some(token) = token {
            set_default(token, "expirationSeconds", json!(3600));
        }
    }
    if let Some(host_path) = volume.get_mut("hostPath").and_then(Value::as_object_mut) {
        set_default(host_path, "type", json!(""));
    }
}

/// `SetDefaults_Pod`: a resource with a limit and no request requests its limit.
fn requests_from_limits(container: &mut Map<String, Value>) {
    let Some(limits) = container
        .get("resources")
        .and_then(|r| r.get("limits"))
        .and_then(Value::as_object)
        .cloned()
    else {
        return;
    };
    let Some(resources) = object_entry(container, "resources") else {
        return;
    };
    let Some(requests) = object_entry(resources, "requests") else {
        return;
    };
    for (name, amount) in limits {
        requests.entry(name).or_insert(amount);
    }
}

/// With `hostNetwork`, a port's `hostPort` defaults to its `containerPort`.
fn host_ports_from_container_ports(container: &mut Map<String, Value>) {
    for port in objects_mut(container, "ports") {
        let unset = port.get("hostPort").is_none_or(|v| v.is_null() || v == 0);
        if let (true, Some(number)) = (unset, port.get("containerPort").cloned()) {
            port.insert("hostPort".into(), number);
        }
    }
}

/// What admission plugins add to a created Pod: the default service account, the
/// priority of its class, and five minutes' tolerance of not-ready and unreachable nodes.
fn admit_pod(spec: &mut Map<String, Value>) {
    default_str(spec, "serviceAccountName", "default");
    default_str(spec, "serviceAccount", "default");
    let class = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let priority = match class {
        "" => Some(0),
        "system-cluster-critical" => Some(2_000_000_000),
        "system-node-critical" => Some(2_000_001_000),
        _ => None,
    };
    if let Some(priority) = priority {
        set_default(spec, "priority", json!(priority));
        default_str(spec, "preemptionPolicy", "PreemptLowerPriority");
    }
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        add_toleration(spec, key);
    }
}

/// Appends `key:NoExecute` tolerated for 300 s, unless a toleration already covers it.
fn add_toleration(spec: &mut Map<String, Value>, key: &str) {
    set_default(spec, "tolerations", json!([]));
    let Some(list) = spec.get_mut("tolerations").and_then(Value::as_array_mut) else {
        return;
    };
    let covered = list.iter().any(|t| {
        let t_key = t.get("key").and_then(Value::as_str).unwrap_or("");
        let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
        let exists = t.get("operator").and_then(Value::as_str) == Some("Exists");
        (t_key == key || (t_key.is_empty() && exists))
            && (effect.is_empty() || effect == "NoExecute")
    });
    if !covered {
        list.push(json!({
            "key": key,
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::image_tag;

    #[test]
    fn image_tags_are_found_after_the_last_slash() {
        assert_eq!(image_tag("nginx"), "latest");
        assert_eq!(image_tag("nginx:1.25"), "1.25");
        assert_eq!(image_tag("registry:5000/app"), "latest");
        assert_eq!(image_tag("registry:5000/app:v2"), "v2");
        assert_eq!(image_tag("app@sha256:abc"), "");
        assert_eq!(image_tag("app:latest"), "latest");
    }
}

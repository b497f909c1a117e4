//! Fixture builders for the scheduler's tests: `pod("web").cpu("500m").on_node("n1")`,
//! `node("n1").cpu("2").label("zone", "a")`. They edit JSON and convert once, so each
//! method is one line.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use super::cycle::CycleState;
use super::snapshot::{NodeInfo, Snapshot};

/// A pod named `name` in `default` with one container `c` (image `busybox`), no
/// requests.
pub fn pod(name: &str) -> PodBuilder {
    PodBuilder(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
}

/// A node named `name` with 4 cpus, 8Gi of memory, room for 110 pods and the
/// `kubernetes.io/hostname` label.
pub fn node(name: &str) -> NodeBuilder {
    NodeBuilder(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
    }))
}

/// Builds a pod fixture.
#[derive(Clone)]
pub struct PodBuilder(Value);

fn push(v: &mut Value, item: Value) {
    if !v.is_array() {
        *v = json!([]);
    }
    if let Value::Array(a) = v {
        a.push(item);
    }
}

fn selector(labels: &[(&str, &str)]) -> Value {
    let m: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({ "matchLabels": m })
}

impl PodBuilder {
    /// Sets the namespace.
    pub fn ns(mut self, ns: &str) -> Self {
        self.0["metadata"]["namespace"] = json!(ns);
        self
    }
    /// Requests `q` of `resource` in the first container.
    pub fn request(mut self, resource: &str, q: &str) -> Self {
        self.0["spec"]["containers"][0]["resources"]["requests"][resource] = json!(q);
        self
    }
    /// Requests cpu in the first container.
    pub fn cpu(self, q: &str) -> Self {
        self.request("cpu", q)
    }
    /// Requests memory in the first container.
    pub fn memory(self, q: &str) -> Self {
        self.request("memory", q)
    }
    /// Adds a container with these cpu and memory requests.
    pub fn container(mut self, cpu: &str, memory: &str) -> Self {
        let n = self.0["spec"]["containers"].as_array().map_or(0, Vec::len);
        let c = json!({"name": format!("c{n}"), "image": "busybox", "resources": {"requests": {"cpu": cpu, "memory": memory}}});
        push(&mut self.0["spec"]["containers"], c);
        self
    }
    fn init(mut self, cpu: &str, memory: &str, sidecar: bool) -> Self {
        let n = self.0["spec"]["initContainers"]
            .as_array()
            .map_or(0, Vec::len);
        let mut c = json!({"name": format!("i{n}"), "image": "busybox", "resources": {"requests": {"cpu": cpu, "memory": memory}}});
        if sidecar {
            c["restartPolicy"] = json!("Always");
        }
        push(&mut self.0["spec"]["initContainers"], c);
        self
    }
    /// Adds an init container.
    pub fn init_container(self, cpu: &str, memory: &str) -> Self {
        self.init(cpu, memory, false)
    }
    /// Adds a sidecar (an init container with `restartPolicy: Always`).
    pub fn sidecar(self, cpu: &str, memory: &str) -> Self {
        self.init(cpu, memory, true)
    }
    /// Sets the pod overhead.
    pub fn overhead(mut self, cpu: &str, memory: &str) -> Self {
        self.0["spec"]["overhead"] = json!({"cpu": cpu, "memory": memory});
        self
    }
    /// Binds the pod to `node`.
    pub fn on_node(mut self, node: &str) -> Self {
        self.0["spec"]["nodeName"] = json!(node);
        self
    }
    /// Adds a label.
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0["metadata"]["labels"][k] = json!(v);
        self
    }
    /// Sets `spec.priority`.
    pub fn priority(mut self, p: i32) -> Self {
        self.0["spec"]["priority"] = json!(p);
        self
    }
    /// Sets `spec.preemptionPolicy: Never`.
    pub fn never_preempt(mut self) -> Self {
        self.0["spec"]["preemptionPolicy"] = json!("Never");
        self
    }
    /// Sets `status.startTime`.
    pub fn started(mut self, rfc3339: &str) -> Self {
        self.0["status"]["startTime"] = json!(rfc3339);
        self
    }
    /// Sets `status.phase`.
    pub fn phase(mut self, phase: &str) -> Self {
        self.0["status"]["phase"] = json!(phase);
        self
    }
    /// Sets the first container's image.
    pub fn image(mut self, image: &str) -> Self {
        self.0["spec"]["containers"][0]["image"] = json!(image);
        self
    }
    /// Binds host `port` (TCP, every address) in the first container.
    pub fn host_port(self, port: i32) -> Self {
        self.host_port_on("", port)
    }
    /// Binds host `port` on `ip` in the first container.
    pub fn host_port_on(mut self, ip: &str, port: i32) -> Self {
        let p = json!({"containerPort": port, "hostPort": port, "hostIP": ip});
        push(&mut self.0["spec"]["containers"][0]["ports"], p);
        self
    }
    /// Adds a toleration; empty strings leave fields unset.
    pub fn toleration(mut self, key: &str, operator: &str, value: &str, effect: &str) -> Self {
        let mut t = json!({});
        for (field, v) in [
            ("key", key),
            ("operator", operator),
            ("value", value),
            ("effect", effect),
        ] {
            if !v.is_empty() {
                t[field] = json!(v);
            }
        }
        push(&mut self.0["spec"]["tolerations"], t);
        self
    }
    /// Adds a `nodeSelector` entry.
    pub fn node_selector(mut self, k: &str, v: &str) -> Self {
        self.0["spec"]["nodeSelector"][k] = json!(v);
        self
    }
    /// Adds a required node selector term (terms are ORed), given as JSON.
    pub fn required_node_term(mut self, term: Value) -> Self {
        let na = &mut self.0["spec"]["affinity"]["nodeAffinity"];
        push(
            &mut na["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"],
            term,
        );
        self
    }
    /// Adds a preferred node selector term with its weight.
    pub fn preferred_node_term(mut self, weight: i32, term: Value) -> Self {
        let na = &mut self.0["spec"]["affinity"]["nodeAffinity"];
        push(
            &mut na["preferredDuringSchedulingIgnoredDuringExecution"],
            json!({"weight": weight, "preference": term}),
        );
        self
    }
    fn pod_term(
        mut self,
        kind: &str,
        topology_key: &str,
        labels: &[(&str, &str)],
        weight: Option<i32>,
    ) -> Self {
        let term = json!({"topologyKey": topology_key, "labelSelector": selector(labels)});
        let a = &mut self.0["spec"]["affinity"][kind];
        match weight {
            None => push(
                &mut a["requiredDuringSchedulingIgnoredDuringExecution"],
                term,
            ),
            Some(w) => push(
                &mut a["preferredDuringSchedulingIgnoredDuringExecution"],
                json!({"weight": w, "podAffinityTerm": term}),
            ),
        }
        self
    }
    /// Requires pods labelled `labels` in the same `topology_key` domain.
    pub fn affinity(self, topology_key: &str, labels: &[(&str, &str)]) -> Self {
        self.pod_term("podAffinity", topology_key, labels, None)
    }
    /// Forbids pods labelled `labels` in the same `topology_key` domain.
    pub fn anti_affinity(self, topology_key: &str, labels: &[(&str, &str)]) -> Self {
        self.pod_term("podAntiAffinity", topology_key, labels, None)
    }
    /// Prefers pods labelled `labels` in the same domain.
    pub fn preferred_affinity(
        self,
        weight: i32,
        topology_key: &str,
        labels: &[(&str, &str)],
    ) -> Self {
        self.pod_term("podAffinity", topology_key, labels, Some(weight))
    }
    /// Prefers no pods labelled `labels` in the same domain.
    pub fn preferred_anti_affinity(
        self,
        weight: i32,
        topology_key: &str,
        labels: &[(&str, &str)],
    ) -> Self {
        self.pod_term("podAntiAffinity", topology_key, labels, Some(weight))
    }
    /// Adds a topology spread constraint over pods labelled `labels`.
    pub fn spread(
        mut self,
        max_skew: i32,
        topology_key: &str,
        when: &str,
        labels: &[(&str, &str)],
    ) -> Self {
        let c = json!({"maxSkew": max_skew, "topologyKey": topology_key,
                       "whenUnsatisfiable": when, "labelSelector": selector(labels)});
        push(&mut self.0["spec"]["topologySpreadConstraints"], c);
        self
    }
    /// Sets field `pointer` (whose parent exists) inside the pod to `v`.
    pub fn set(mut self, pointer: &str, v: Value) -> Self {
        let (parent, field) = pointer.rsplit_once('/').expect("pointer has a parent");
        match self.0.pointer_mut(parent) {
            Some(Value::Object(m)) => {
                m.insert(field.to_string(), v);
            }
            _ => panic!("no object at {parent} in fixture"),
        }
        self
    }
    /// The pod.
    pub fn build(self) -> Pod {
        serde_json::from_value(self.0).expect("fixture pod is valid")
    }
}

impl From<PodBuilder> for Arc<Pod> {
    fn from(b: PodBuilder) -> Self {
        Arc::new(b.build())
    }
}

/// Builds a node fixture.
#[derive(Clone)]
pub struct NodeBuilder(Value);

impl NodeBuilder {
    /// Sets allocatable `resource`.
    pub fn allocatable(mut self, resource: &str, q: &str) -> Self {
        self.0["status"]["allocatable"][resource] = json!(q);
        self
    }
    /// Sets allocatable cpu.
    pub fn cpu(self, q: &str) -> Self {
        self.allocatable("cpu", q)
    }
    /// Sets allocatable memory.
    pub fn memory(self, q: &str) -> Self {
        self.allocatable("memory", q)
    }
    /// Sets how many pods the node admits.
    pub fn pods(self, n: i64) -> Self {
        self.allocatable("pods", &n.to_string())
    }
    /// Adds a label.
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0["metadata"]["labels"][k] = json!(v);
        self
    }
    /// Adds a taint (`value` empty for none).
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let mut t = json!({"key": key, "effect": effect});
        if !value.is_empty() {
            t["value"] = json!(value);
        }
        push(&mut self.0["spec"]["taints"], t);
        self
    }
    /// Cordons the node.
    pub fn unschedulable(mut self) -> Self {
        self.0["spec"]["unschedulable"] = json!(true);
        self
    }
    /// Reports an image of `size` bytes on the node.
    pub fn image(mut self, name: &str, size: i64) -> Self {
        push(
            &mut self.0["status"]["images"],
            json!({"names": [name], "sizeBytes": size}),
        );
        self
    }
    /// The node.
    pub fn build(self) -> Node {
        serde_json::from_value(self.0).expect("fixture node is valid")
    }
}

impl From<NodeBuilder> for Arc<Node> {
    fn from(b: NodeBuilder) -> Self {
        Arc::new(b.build())
    }
}

/// A snapshot of these nodes and pods.
pub fn snapshot(nodes: Vec<NodeBuilder>, pods: Vec<PodBuilder>) -> Snapshot {
    Snapshot::new(nodes, pods)
}

/// The cycle state for scheduling `pod` over `snapshot`.
pub fn cycle(pod: PodBuilder, snapshot: &Snapshot) -> CycleState {
    CycleState::new(&pod.build(), snapshot)
}

/// The node called `name`, which the test put there.
pub fn info<'a>(snapshot: &'a Snapshot, name: &str) -> &'a NodeInfo {
    snapshot.node(name).expect("fixture node exists")
}

/// A node selector term with one match expression.
pub fn expr(key: &str, operator: &str, values: &[&str]) -> Value {
    json!({"matchExpressions": [{"key": key, "operator": operator, "values": values}]})
}

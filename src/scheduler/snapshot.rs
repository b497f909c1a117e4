//! The scheduler's view of the cluster: one [`NodeInfo`] per node with the pods bound
//! to it and what they request, as upstream's `framework.NodeInfo` and cache snapshot.
//! The runtime builds it from its reflectors and records its own bindings with
//! [`Snapshot::assume`] until the watch confirms them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use super::podinfo::{HostPort, PodInfo, NO_LABELS};
use super::resources::{allowed_pods, Resources};

/// One node and the pods that count against it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// The node.
    pub node: Arc<Node>,
    /// `metadata.name`.
    pub name: String,
    /// Pods bound (or assumed) to it, terminal ones excluded.
    pub pods: Vec<Arc<PodInfo>>,
    /// The sum of their requests.
    pub requested: Resources,
    /// The sum of their cpu requests with the 100m default, for scoring.
    pub non_zero_milli_cpu: i64,
    /// The sum of their memory requests with the 200Mi default, for scoring.
    pub non_zero_memory: i64,
    /// `status.allocatable`.
    pub allocatable: Resources,
    /// `status.allocatable.pods`.
    pub allowed_pods: i64,
    /// Host ports their containers bind.
    pub used_ports: Vec<HostPort>,
    /// Sizes of the images on the node (`status.images`), by every name they carry.
    pub image_sizes: Arc<HashMap<String, i64>>,
    /// How many of its pods have any pod (anti-)affinity term.
    pub pods_with_affinity: usize,
    /// How many of its pods have a required pod anti-affinity term.
    pub pods_with_required_anti_affinity: usize,
}

impl NodeInfo {
    /// A node with no pods yet.
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let status = node.status.as_ref();
        let allocatable_list = status.and_then(|s| s.allocatable.as_ref());
        let mut image_sizes = HashMap::new();
        for image in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for name in image.names.iter().flatten() {
                image_sizes.insert(name.clone(), image.size_bytes.unwrap_or(0));
            }
        }
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            allocatable: allocatable_list
                .map(Resources::from_list)
                .unwrap_or_default(),
            allowed_pods: allowed_pods(allocatable_list),
            image_sizes: Arc::new(image_sizes),
            pods: Vec::new(),
            requested: Resources::default(),
            non_zero_milli_cpu: 0,
            non_zero_memory: 0,
            used_ports: Vec::new(),
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 0,
            node,
        }
    }

    /// The node's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.node.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
    }

    /// The node's taints.
    pub fn taints(&self) -> &[Taint] {
        self.node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or(&[])
    }

    /// Counts `pod` against the node.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests.requests);
        self.non_zero_milli_cpu += pod.requests.non_zero_milli_cpu;
        self.non_zero_memory += pod.requests.non_zero_memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if pod.has_affinity() {
            self.pods_with_affinity += 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.pods.push(pod);
    }

    /// Stops counting the pod `namespace/name`; returns it if it was there.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
        let i = self
            .pods
            .iter()
            .position(|p| p.namespace == namespace && p.name == name)?;
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests.requests);
        self.non_zero_milli_cpu -= pod.requests.non_zero_milli_cpu;
        self.non_zero_memory -= pod.requests.non_zero_memory;
        for port in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(j);
            }
        }
        if pod.has_affinity() {
            self.pods_with_affinity -= 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        Some(pod)
    }
}

/// Every node with its pods, plus indexes the plugins share.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    nodes: Vec<NodeInfo>,
    by_name: HashMap<String, usize>,
    pod_nodes: HashMap<(String, String), usize>,
    image_node_counts: HashMap<String, usize>,
}

impl Snapshot {
    /// A snapshot of `nodes` with `pods` counted on the node their `spec.nodeName`
    /// names; pods not yet bound, bound to an unknown node, or terminal
    /// (`Succeeded`/`Failed`) do not count.
    pub fn new<N, P>(
        nodes: impl IntoIterator<Item = N>,
        pods: impl IntoIterator<Item = P>,
    ) -> Snapshot
    where
        N: Into<Arc<Node>>,
        P: Into<Arc<Pod>>,
    {
        let mut s = Snapshot::default();
        for node in nodes {
            s.set_node(node);
        }
        for pod in pods {
            s.add_pod(pod);
        }
        s
    }

    /// Every node, in a stable order.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.by_name.get(name).map(|&i| &self.nodes[i])
    }

    /// How many nodes have an image of this name.
    pub fn image_node_count(&self, image: &str) -> usize {
        self.image_node_counts.get(image).copied().unwrap_or(0)
    }

    /// The node a pod counts on, if any.
    pub fn node_of(&self, namespace: &str, name: &str) -> Option<&str> {
        let key = (namespace.to_string(), name.to_string());
        self.pod_nodes
            .get(&key)
            .map(|&i| self.nodes[i].name.as_str())
    }

    /// Adds a node, or replaces its object (labels, taints, allocatable, images)
    /// keeping the pods counted on it.
    pub fn set_node(&mut self, node: impl Into<Arc<Node>>) {
        let info = NodeInfo::new(node.into());
        self.count_images(&info, 1);
        match self.by_name.get(&info.name) {
            Some(&i) => {
                let previous = std::mem::replace(&mut self.nodes[i], info);
                self.count_images(&previous, -1);
                for pod in previous.pods {
                    self.nodes[i].add_pod(pod);
                }
            }
            None => {
                self.by_name.insert(info.name.clone(), self.nodes.len());
                self.nodes.push(info);
            }
        }
    }

    /// Removes a node; the pods counted on it stop counting.
    pub fn remove_node(&mut self, name: &str) -> bool {
        let Some(i) = self.by_name.remove(name) else {
            return false;
        };
        let removed = self.nodes.swap_remove(i);
        self.count_images(&removed, -1);
        for pod in &removed.pods {
            self.pod_nodes
                .remove(&(pod.namespace.clone(), pod.name.clone()));
        }
        if let Some(moved) = self.nodes.get(i) {
            self.by_name.insert(moved.name.clone(), i);
            for pod in &moved.pods {
                self.pod_nodes
                    .insert((pod.namespace.clone(), pod.name.clone()), i);
            }
        }
        true
    }

    fn count_images(&mut self, info: &NodeInfo, delta: isize) {
        for name in info.image_sizes.keys() {
            let count = self.image_node_counts.entry(name.clone()).or_default();
            *count = count.saturating_add_signed(delta);
            if *count == 0 {
                self.image_node_counts.remove(name);
            }
        }
    }

    /// Counts a pod from the watch on its node (as [`Snapshot::new`] does); a pod
    /// already counted is replaced. Returns whether it now counts: a pod bound to a
    /// node the snapshot does not have yet is not kept (upstream keeps it aside), so
    /// the runtime adds nodes before their pods.
    pub fn add_pod(&mut self, pod: impl Into<Arc<Pod>>) -> bool {
        let pod = pod.into();
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        self.remove_pod(ns, name);
        if is_terminal(&pod) {
            return false;
        }
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let Some(&i) = node.and_then(|n| self.by_name.get(n)) else {
            return false;
        };
        let info = PodInfo::new(pod);
        self.pod_nodes
            .insert((info.namespace.clone(), info.name.clone()), i);
        self.nodes[i].add_pod(Arc::new(info));
        true
    }

    /// Stops counting a pod (deleted, or terminal); returns whether it counted.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) -> bool {
        let key = (namespace.to_string(), name.to_string());
        match self.pod_nodes.remove(&key) {
            Some(i) => self.nodes[i].remove_pod(namespace, name).is_some(),
            None => false,
        }
    }

    /// Counts `pod` on `node` as if bound, before the watch shows the binding. Returns
    /// false when the node is unknown.
    pub fn assume(&mut self, pod: &Pod, node: &str) -> bool {
        if !self.by_name.contains_key(node) {
            return false;
        }
        let mut bound = pod.clone();
        bound.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
        self.add_pod(bound)
    }

    /// Undoes [`Snapshot::assume`] (the binding failed).
    pub fn forget(&mut self, namespace: &str, name: &str) -> bool {
        self.remove_pod(namespace, name)
    }
}

/// Whether the pod has finished (`Succeeded` or `Failed`) and holds nothing any more.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

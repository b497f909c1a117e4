//! What the scheduler derives from a pod once, so that no filter or score re-reads the
//! pod spec per node: requests, host ports, tolerations and parsed affinity terms.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, Toleration};

use super::resources::PodRequests;
use crate::k8s::labels::LabelSelector;

/// Labels of an object that has none.
pub static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// A host port a container binds: (host IP, protocol, port), IP `0.0.0.0` when unset
/// and protocol `TCP` when unset, as upstream normalises them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// The host IP, `0.0.0.0` for all addresses.
    pub ip: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The port number.
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports cannot both be bound on one node: same protocol and port,
    /// and the same IP or either side on every address.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A pod (anti-)affinity term, parsed.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    /// Namespaces the term looks in (the pod's own when the term names none).
    pub namespaces: Vec<String>,
    /// Whether an empty `namespaceSelector` (`{}`) makes it look in every namespace.
    pub all_namespaces: bool,
    /// The selector; `None` (absent or invalid) selects no pod, as upstream.
    pub selector: Option<LabelSelector>,
    /// The node label that defines the topology domain.
    pub topology_key: String,
}

impl AffinityTerm {
    fn parse(term: &PodAffinityTerm, own_namespace: &str) -> AffinityTerm {
        let selector = term
            .label_selector
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| LabelSelector::from_object(&v).ok());
        let mut namespaces = term.namespaces.clone().unwrap_or_default();
        let all_namespaces = term.namespace_selector.as_ref().is_some_and(|s| {
            s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        });
        if namespaces.is_empty() && term.namespace_selector.is_none() {
            namespaces.push(own_namespace.to_string());
        }
        AffinityTerm {
            namespaces,
            all_namespaces,
            selector,
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether the term selects `pod`.
    pub fn matches(&self, pod: &PodInfo) -> bool {
        let Some(selector) = self.selector.as_ref() else {
            return false;
        };
        (self.all_namespaces || self.namespaces.contains(&pod.namespace))
            && selector.matches(pod.labels())
    }
}

/// A preferred affinity term and its weight.
#[derive(Clone, Debug)]
pub struct WeightedTerm {
    /// The term's weight (1..=100).
    pub weight: i64,
    /// The term.
    pub term: AffinityTerm,
}

/// A pod and everything the scheduler derives from it once.
#[derive(Clone, Debug)]
pub struct PodInfo {
    /// The pod itself.
    pub pod: Arc<Pod>,
    /// `metadata.namespace` (`default` when unset).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// Its requests.
    pub requests: PodRequests,
    /// Host ports of its containers.
    pub host_ports: Vec<HostPort>,
    /// Required pod affinity terms.
    pub required_affinity: Vec<AffinityTerm>,
    /// Required pod anti-affinity terms.
    pub required_anti_affinity: Vec<AffinityTerm>,
    /// Preferred pod affinity terms.
    pub preferred_affinity: Vec<WeightedTerm>,
    /// Preferred pod anti-affinity terms.
    pub preferred_anti_affinity: Vec<WeightedTerm>,
}

impl PodInfo {
    /// Derives everything from `pod`.
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let affinity = spec.and_then(|s| s.affinity.as_ref());
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::parse(t, &namespace))
                .collect()
        };
        let preferred =
            |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
                terms
                    .into_iter()
                    .flatten()
                    .map(|t| WeightedTerm {
                        weight: i64::from(t.weight),
                        term: AffinityTerm::parse(&t.pod_affinity_term, &namespace),
                    })
                    .collect::<Vec<_>>()
            };
        PodInfo {
            requests: PodRequests::of(&pod),
            host_ports: host_ports(&pod),
            required_affinity: required(pa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity: required(paa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: preferred(pa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity: preferred(paa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            namespace,
            name,
            pod,
        }
    }

    /// The pod's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
    }

    /// The pod's tolerations.
    pub fn tolerations(&self) -> &[Toleration] {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or(&[])
    }

    /// Whether it has any pod affinity or anti-affinity term, required or preferred.
    pub fn has_affinity(&self) -> bool {
        !(self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }

    /// Whether it is being deleted.
    pub fn is_terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }
}

/// Host ports of a pod's (regular) containers, as upstream's `getContainerPorts`.
fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| HostPort {
            ip: p
                .host_ip
                .clone()
                .filter(|ip| !ip.is_empty())
                .unwrap_or_else(|| "0.0.0.0".to_string()),
            protocol: p
                .protocol
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "TCP".to_string()),
            port: p.host_port.unwrap_or(0),
        })
        .collect()
}

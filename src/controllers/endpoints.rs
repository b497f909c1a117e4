//! The Endpoints controller: for every Service with a selector, an Endpoints object of
//! the same name listing the matching pods' addresses (ready ones in `addresses`, the
//! others in `notReadyAddresses`) grouped by the ports they serve, as upstream's
//! `pkg/controller/endpoint`. The `default/kubernetes` Service is the API server's.
//!
//! The desired object is a pure function of the Service and the pods
//! ([`desired_subsets`], [`plan`]); the task around it watches Services, Pods and
//! Endpoints, syncs each namespace touched, and writes only what differs. The helpers
//! the EndpointSlice controller shares (which pods count, named ports) live here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::ResourceExt;

use super::dirty;
use super::{Context, Result};

/// The annotation telling when the change that produced these endpoints happened.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// The label marking the objects of a headless Service.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// Whether the Service is the API server's own (`default/kubernetes`).
pub fn is_api_service(svc: &Service) -> bool {
    svc.metadata.namespace.as_deref() == Some("default")
        && svc.metadata.name.as_deref() == Some("kubernetes")
}

/// The Service's selector, if this controller manages its endpoints.
pub fn managed_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    if is_api_service(svc) {
        return None;
    }
    svc.spec.as_ref()?.selector.as_ref()
}

/// Whether the pod's labels satisfy a Service selector.
pub fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The pod's IPv4 address, if it has one.
pub fn pod_ipv4(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let listed = status.pod_ips.iter().flatten().map(|p| p.ip.as_str());
    status
        .pod_ip
        .as_deref()
        .into_iter()
        .chain(listed)
        .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_string)
}

/// Upstream's `ShouldPodBeInEndpoints`: not terminal, with an address, and not being
/// deleted unless `include_terminating`.
pub fn counts_as_endpoint(pod: &Pod, include_terminating: bool) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) || pod_ipv4(pod).is_none() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// Upstream's `FindPort`: the port number a Service port reaches on this pod; a named
/// targetPort must name a container port of the same protocol.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            // Sidecars (init containers that keep running) count, as upstream.
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// Upstream's `ShouldSetHostname`: the pod names a hostname and this Service as its subdomain.
pub fn hostname_for(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace)
        .then(|| hostname.to_string())
}

/// Whether the Service is headless (`clusterIP: None`).
pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The reference to the pod an endpoint stands for.
pub fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The time of the latest change among the Service and its pods, for the
/// trigger-time annotation: a pod's Ready transition, else its creation.
pub fn trigger_time(svc: &Service, pods: &[&Pod]) -> Option<String> {
    let ready_change = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .and_then(|c| c.last_transition_time.clone())
    };
    let pod_times = pods
        .iter()
        .filter_map(|p| ready_change(p).or_else(|| p.metadata.creation_timestamp.clone()));
    svc.metadata
        .creation_timestamp
        .clone()
        .into_iter()
        .chain(pod_times)
        .max()
        .map(|t| t.0.to_string())
}

/// The labels of the Service's endpoint objects: the Service's own, and the headless mark.
pub fn endpoint_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.remove(HEADLESS_LABEL);
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

fn endpoint_port(port: &ServicePort, number: i32) -> EndpointPort {
    EndpointPort {
        name: port.name.clone().filter(|n| !n.is_empty()),
        port: number,
        protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
        app_protocol: port.app_protocol.clone(),
    }
}

/// Sort key of an endpoint port.
fn port_key(p: &EndpointPort) -> (String, i32, String) {
    let name = p.name.clone().unwrap_or_default();
    (name, p.port, p.protocol.clone().unwrap_or_default())
}

/// The subsets of the Service's Endpoints: each selected pod that counts, with each
/// port it serves, grouped by port set (upstream's `RepackSubsets`) and sorted.
pub fn desired_subsets(svc: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let Some(selector) = managed_selector(svc) else {
        return Vec::new();
    };
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    let ports = spec.ports.unwrap_or_default();
    // (ip, pod name) → (address, ready, ports)
    let mut addrs: BTreeMap<(String, String), (EndpointAddress, bool, Vec<EndpointPort>)> =
        BTreeMap::new();
    for pod in pods.iter().filter(|p| selects(selector, p)) {
        if !counts_as_endpoint(pod, publish) {
            continue;
        }
        let Some(ip) = pod_ipv4(pod) else { continue };
        let address = EndpointAddress {
            ip: ip.clone(),
            hostname: hostname_for(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
        };
        let served: Vec<EndpointPort> = ports
            .iter()
            .filter_map(|p| find_port(pod, p).map(|n| endpoint_port(p, n)))
            .collect();
        // A headless Service without ports still lists its pods.
        if served.is_empty() && !(ports.is_empty() && is_headless(svc)) {
            continue;
        }
        let ready = publish || pod_ready(pod);
        addrs.insert((ip, pod.name_any()), (address, ready, served));
    }
    let mut groups: BTreeMap<Vec<(String, i32, String)>, EndpointSubset> = BTreeMap::new();
    for (address, ready, mut served) in addrs.into_values() {
        served.sort_by_key(port_key);
        let key = served.iter().map(port_key).collect();
        let subset = groups.entry(key).or_insert_with(|| EndpointSubset {
            ports: (!served.is_empty()).then_some(served),
            ..Default::default()
        });
        let list = if ready {
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        list.get_or_insert_with(Vec::new).push(address);
    }
    groups.into_values().collect()
}

/// What the Endpoints of a Service need.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Nothing: they are as they should be.
    Keep,
    /// Create them.
    Create(Box<Endpoints>),
    /// Replace them (the object carries the current resourceVersion).
    Update(Box<Endpoints>),
}

/// The write, if any, that makes `current` the Endpoints of `svc` with `pods` (all the
/// pods of its namespace), stamped with the time of the change that asked for it.
pub fn plan(svc: &Service, pods: &[&Pod], current: Option<&Endpoints>) -> Plan {
    let subsets = desired_subsets(svc, pods);
    let labels = endpoint_labels(svc);
    if let Some(cur) = current {
        let cur_subsets = cur.subsets.clone().unwrap_or_default();
        let cur_labels = cur.metadata.labels.clone().unwrap_or_default();
        if cur_subsets == subsets && cur_labels == labels {
            return Plan::Keep;
        }
    }
    let selected: Vec<&Pod> = match managed_selector(svc) {
        Some(sel) => pods.iter().copied().filter(|p| selects(sel, p)).collect(),
        None => Vec::new(),
    };
    let mut annotations = current
        .and_then(|c| c.metadata.annotations.clone())
        .unwrap_or_default();
    match trigger_time(svc, &selected) {
        Some(t) => annotations.insert(TRIGGER_TIME_ANNOTATION.into(), t),
        None => annotations.remove(TRIGGER_TIME_ANNOTATION),
    };
    let endpoints = Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            resource_version: current.and_then(|c| c.metadata.resource_version.clone()),
            ..current.map(|c| c.metadata.clone()).unwrap_or_default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    };
    match current {
        Some(_) => Plan::Update(Box::new(endpoints)),
        None => Plan::Create(Box::new(endpoints)),
    }
}

/// Runs the controller until it fails.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let client = ctx.client.clone();
    let (services, svc_writer) = reflector::store::<Service>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (endpoints, ep_writer) = reflector::store::<Endpoints>();
    let marks = futures::stream::select_all([
        dirty::marks(Api::<Service>::all(client.clone()), svc_writer, 0, |o| {
            o.namespace()
        }),
        dirty::marks(Api::<Pod>::all(client.clone()), pod_writer, 1, |o| {
            o.namespace()
        }),
        dirty::marks(Api::<Endpoints>::all(client.clone()), ep_writer, 2, |o| {
            o.namespace()
        }),
    ]);
    let all_namespaces = {
        let (services, endpoints) = (services.clone(), endpoints.clone());
        move || namespaces(&services, &endpoints)
    };
    dirty::drive(marks.boxed(), 3, all_namespaces, |ns| {
        let (ctx, services, pods) = (ctx.clone(), services.clone(), pods.clone());
        async move { sync_namespace(&ctx, &ns, &services, &pods).await }
    })
    .await
}

fn namespaces(services: &Store<Service>, endpoints: &Store<Endpoints>) -> Vec<String> {
    let mut all = BTreeSet::new();
    all.extend(services.state().iter().filter_map(|s| s.namespace()));
    all.extend(endpoints.state().iter().filter_map(|e| e.namespace()));
    all.into_iter().collect()
}

/// Brings every Endpoints object of one namespace in line with its Services and pods.
async fn sync_namespace(
    ctx: &Context,
    ns: &str,
    services: &Store<Service>,
    pods: &Store<Pod>,
) -> Result<()> {
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
    let current: BTreeMap<String, Endpoints> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|e| (e.name_any(), e))
        .collect();
    let ns_pods = pods.state_filter(|p| p.metadata.namespace.as_deref() == Some(ns));
    let ns_pods: Vec<&Pod> = ns_pods.iter().map(|p| p.as_ref()).collect();
    let ns_services = services.state_filter(|s| s.metadata.namespace.as_deref() == Some(ns));
    let mut first_error = None;
    for svc in &ns_services {
        let name = svc.name_any();
        if managed_selector(svc).is_none() {
            continue;
        }
        let outcome = match plan(svc, &ns_pods, current.get(&name)) {
            Plan::Keep => Ok(()),
            Plan::Create(ep) => api.create(&PostParams::default(), &ep).await.map(drop),
            Plan::Update(ep) => api
                .replace(&name, &PostParams::default(), &ep)
                .await
                .map(drop),
        };
        match outcome {
            Ok(()) => {}
            Err(err) => first_error = first_error.or(Some(err)),
        }
    }
    // Endpoints this controller wrote (they carry the trigger time) for a Service that is
    // gone; upstream deletes them too. Endpoints someone else wrote for a Service still to
    // be created are left alone.
    for (name, ep) in &current {
        let owner_exists = ns_services.iter().any(|s| &s.name_any() == name);
        let ours = ep.annotations().contains_key(TRIGGER_TIME_ANNOTATION);
        if !owner_exists && ours {
            tracing::debug!(namespace = ns, name = %name, "Deleting Endpoints of a deleted Service.");
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(err) => first_error = first_error.or(Some(err)),
            }
        }
    }
    first_error.map_or(Ok(()), |e| Err(e.into()))
}

#[cfg(test)]
#[path = "endpoints/tests.rs"]
pub(crate) mod tests;

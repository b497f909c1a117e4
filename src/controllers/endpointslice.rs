//! The EndpointSlice controller: for every Service with a selector, `discovery.k8s.io/v1`
//! EndpointSlices (IPv4, at most 100 endpoints each) of the matching pods with their
//! ready / serving / terminating conditions, node and zone, as upstream's
//! `pkg/controller/endpointslice`. A Service without endpoints keeps one empty slice, as
//! upstream's placeholder.
//!
//! [`desired`] is a pure function of the Service, its namespace's pods and the nodes'
//! zones; [`plan`] matches it against the slices there are and writes only the
//! difference: an identical slice is kept, a changed one updated in place, the rest
//! created or deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::ResourceExt;

use super::dirty::{self, Mark};
use super::endpoints::{
    counts_as_endpoint, endpoint_labels, find_port, hostname_for, managed_selector, pod_ipv4,
    pod_ready, selects, target_ref, trigger_time, TRIGGER_TIME_ANNOTATION,
};
use super::{Context, Result};

/// The label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming the controller that manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's name in [`MANAGED_BY_LABEL`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// The node label giving its zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Endpoints per slice at most (kube-controller-manager's `--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// The content of one slice: its ports and endpoints, both in a canonical order.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    /// The ports every endpoint of the slice serves.
    pub ports: Vec<EndpointPort>,
    /// The endpoints, sorted by address and pod.
    pub endpoints: Vec<Endpoint>,
}

fn port_key(p: &EndpointPort) -> (String, i32, String) {
    let name = p.name.clone().unwrap_or_default();
    (
        name,
        p.port.unwrap_or(0),
        p.protocol.clone().unwrap_or_default(),
    )
}

fn endpoint_key(e: &Endpoint) -> (Vec<String>, String) {
    let pod = e.target_ref.as_ref().and_then(|r| r.name.clone());
    (e.addresses.clone(), pod.unwrap_or_default())
}

/// The slices `svc` should have, given its namespace's pods and each node's zone.
pub fn desired(svc: &Service, pods: &[&Pod], zones: &HashMap<String, String>) -> Vec<Content> {
    let Some(selector) = managed_selector(svc) else {
        return Vec::new();
    };
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    let ports = spec.ports.unwrap_or_default();
    let mut groups: BTreeMap<Vec<(String, i32, String)>, Content> = BTreeMap::new();
    for pod in pods.iter().filter(|p| selects(selector, p)) {
        if !counts_as_endpoint(pod, true) {
            continue;
        }
        let Some(ip) = pod_ipv4(pod) else { continue };
        let mut served: Vec<EndpointPort> = ports
            .iter()
            .filter_map(|p| {
                let number = find_port(pod, p)?;
                Some(EndpointPort {
                    name: Some(p.name.clone().unwrap_or_default()),
                    port: Some(number),
                    protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: p.app_protocol.clone(),
                })
            })
            .collect();
        served.sort_by_key(port_key);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let serving = pod_ready(pod);
        let ready = publish || (serving && !terminating);
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let endpoint = Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname_for(pod, svc),
            zone: node.as_ref().and_then(|n| zones.get(n).cloned()),
            node_name: node,
            target_ref: Some(target_ref(pod)),
            ..Default::default()
        };
        let key = served.iter().map(port_key).collect();
        groups
            .entry(key)
            .or_insert_with(|| Content {
                ports: served,
                endpoints: Vec::new(),
            })
            .endpoints
            .push(endpoint);
    }
    let mut slices = Vec::new();
    for mut group in groups.into_values() {
        group.endpoints.sort_by_key(endpoint_key);
        for chunk in group.endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            slices.push(Content {
                ports: group.ports.clone(),
                endpoints: chunk.to_vec(),
            });
        }
    }
    if slices.is_empty() {
        // Upstream's placeholder: a Service always has a slice.
        slices.push(Content {
            ports: Vec::new(),
            endpoints: Vec::new(),
        });
    }
    slices
}

/// The labels of the Service's slices.
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = endpoint_labels(svc);
    labels.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    labels
}

fn owner(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.name_any(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn content_of(slice: &EndpointSlice) -> Content {
    let mut ports = slice.ports.clone().unwrap_or_default();
    ports.sort_by_key(port_key);
    let mut endpoints = slice.endpoints.clone();
    endpoints.sort_by_key(endpoint_key);
    Content { ports, endpoints }
}

/// One write to the slices of a Service.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Create this slice (named by generateName).
    Create(Box<EndpointSlice>),
    /// Replace a slice (the object carries its name and resourceVersion).
    Update(Box<EndpointSlice>),
    /// Delete the slice of this name.
    Delete(String),
}

/// The writes that turn `current` (the slices this controller manages for `svc`) into
/// the desired ones; none when they already match.
pub fn plan(
    svc: &Service,
    pods: &[&Pod],
    zones: &HashMap<String, String>,
    current: &[&EndpointSlice],
) -> Vec<Op> {
    let wanted = desired(svc, pods, zones);
    let labels = slice_labels(svc);
    let owner = owner(svc);
    let fits = |s: &EndpointSlice| {
        s.metadata.labels.as_ref() == Some(&labels)
            && s.metadata.owner_references.as_deref() == Some(std::slice::from_ref(&owner))
            && s.address_type == "IPv4"
    };
    // Slices already right are kept as they are.
    let mut unused: Vec<&EndpointSlice> = Vec::new();
    let mut missing = wanted.clone();
    for slice in current {
        let content = content_of(slice);
        match missing.iter().position(|c| *c == content) {
            Some(i) if fits(slice) => {
                missing.remove(i);
            }
            _ => unused.push(slice),
        }
    }
    unused.sort_by_key(|s| s.name_any());
    let selected: Vec<&Pod> = match managed_selector(svc) {
        Some(sel) => pods.iter().copied().filter(|p| selects(sel, p)).collect(),
        None => Vec::new(),
    };
    let trigger = trigger_time(svc, &selected);
    let mut ops = Vec::new();
    let mut reuse = unused.into_iter();
    for content in missing {
        let base = reuse.next();
        let mut annotations = base
            .and_then(|s| s.metadata.annotations.clone())
            .unwrap_or_default();
        if let Some(t) = &trigger {
            annotations.insert(TRIGGER_TIME_ANNOTATION.into(), t.clone());
        }
        let metadata = ObjectMeta {
            generate_name: Some(format!("{}-", svc.name_any())),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels.clone()),
            annotations: Some(annotations),
            owner_references: Some(vec![owner.clone()]),
            ..base.map(|s| s.metadata.clone()).unwrap_or_default()
        };
        let slice = EndpointSlice {
            metadata,
            address_type: "IPv4".into(),
            endpoints: content.endpoints,
            ports: Some(content.ports),
        };
        ops.push(match base {
            Some(_) => Op::Update(Box::new(slice)),
            None => Op::Create(Box::new(slice)),
        });
    }
    ops.extend(reuse.map(|s| Op::Delete(s.name_any())));
    ops
}

/// Runs the controller until it fails.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let client = ctx.client.clone();
    let (services, svc_writer) = reflector::store::<Service>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (nodes, node_writer) = reflector::store::<Node>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let marks = futures::stream::select_all([
        dirty::marks(Api::<Service>::all(client.clone()), svc_writer, 0, |o| {
            o.namespace()
        }),
        dirty::marks(Api::<Pod>::all(client.clone()), pod_writer, 1, |o| {
            o.namespace()
        }),
        dirty::marks(
            Api::all(client.clone()),
            slice_writer,
            2,
            |o: &EndpointSlice| o.namespace(),
        ),
        // A node's zone is in every slice of its pods.
        dirty::marks(Api::<Node>::all(client.clone()), node_writer, 3, |_| None)
            .map(|m| match m {
                Mark::Key(_) => Mark::All,
                other => other,
            })
            .boxed(),
    ]);
    let all_namespaces = {
        let (services, slices) = (services.clone(), slices.clone());
        move || {
            let mut all = BTreeSet::new();
            all.extend(services.state().iter().filter_map(|s| s.namespace()));
            all.extend(slices.state().iter().filter_map(|s| s.namespace()));
            all.into_iter().collect()
        }
    };
    dirty::drive(marks.boxed(), 4, all_namespaces, |ns| {
        let (ctx, services, pods, nodes) =
            (ctx.clone(), services.clone(), pods.clone(), nodes.clone());
        async move { sync_namespace(&ctx, &ns, &services, &pods, &nodes).await }
    })
    .await
}

/// Brings the slices of one namespace in line with its Services and pods.
async fn sync_namespace(
    ctx: &Context,
    ns: &str,
    services: &Store<Service>,
    pods: &Store<Pod>,
    nodes: &Store<Node>,
) -> Result<()> {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let managed = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={CONTROLLER_NAME}"));
    let current = api.list(&managed).await?.items;
    let zones: HashMap<String, String> = nodes
        .state()
        .iter()
        .filter_map(|n| Some((n.name_any(), n.labels().get(ZONE_LABEL)?.clone())))
        .collect();
    let ns_pods = pods.state_filter(|p| p.metadata.namespace.as_deref() == Some(ns));
    let ns_pods: Vec<&Pod> = ns_pods.iter().map(|p| p.as_ref()).collect();
    let ns_services = services.state_filter(|s| s.metadata.namespace.as_deref() == Some(ns));
    let mut by_service: BTreeMap<String, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in &current {
        if let Some(svc) = slice.labels().get(SERVICE_NAME_LABEL) {
            by_service.entry(svc.clone()).or_default().push(slice);
        }
    }
    let mut ops = Vec::new();
    for svc in &ns_services {
        let mine = by_service.remove(&svc.name_any()).unwrap_or_default();
        let external_name =
            svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
        if managed_selector(svc).is_none() || external_name {
            // Upstream removes its slices of a Service that no longer selects pods.
            ops.extend(mine.iter().map(|s| Op::Delete(s.name_any())));
            continue;
        }
        ops.extend(plan(svc, &ns_pods, &zones, &mine));
    }
    // Slices of Services that are gone (the garbage collector would remove them too).
    for slice in by_service.into_values().flatten() {
        ops.push(Op::Delete(slice.name_any()));
    }
    let mut first_error = None;
    for op in ops {
        let outcome = match &op {
            Op::Create(s) => api.create(&PostParams::default(), s).await.map(drop),
            Op::Update(s) => api
                .replace(&s.name_any(), &PostParams::default(), s)
                .await
                .map(drop),
            Op::Delete(name) => match api.delete(name, &DeleteParams::default()).await {
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                other => other.map(drop),
            },
        };
        if let Err(err) = outcome {
            first_error = first_error.or(Some(err));
        }
    }
    first_error.map_or(Ok(()), |e| Err(e.into()))
}

#[cfg(test)]
#[path = "endpointslice/tests.rs"]
mod tests;

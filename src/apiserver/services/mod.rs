//! What the API server does for Services beyond storing them: ClusterIPs and NodePorts
//! handed out from their ranges and given back on delete, a repair loop that finds
//! reservations nobody holds, and the `kubernetes` service that points at the API server.

pub mod alloc;
pub mod kubernetes;
pub mod repair;

use serde_json::{json, Value};

use self::alloc::{AllocError, IpRange, PortRange};
use crate::apiserver::status::{ApiError, ApiResult, Cause};
use crate::k8s::cidr::Ipv4Cidr;
use crate::k8s::meta::meta_str;
use crate::store::Backend;

/// The service network: the ClusterIP range and the NodePort range.
pub struct ServiceNetwork {
    /// ClusterIPs.
    pub ips: IpRange,
    /// NodePorts.
    pub ports: PortRange,
}

impl ServiceNetwork {
    /// A network from `--service-cidr` and `--service-node-port-range`.
    pub fn new(cidr: Ipv4Cidr, first_port: u16, last_port: u16) -> Self {
        ServiceNetwork {
            ips: IpRange(cidr),
            ports: PortRange {
                first: first_port,
                last: last_port,
            },
        }
    }

    /// The address of the `kubernetes` service: the first of the range.
    pub fn api_service_ip(&self) -> String {
        self.ips.0.nth(1).map(|a| a.to_string()).unwrap_or_default()
    }
}

impl Default for ServiceNetwork {
    fn default() -> Self {
        ServiceNetwork::new("10.43.0.0/16".parse().expect("a valid CIDR"), 30000, 32767)
    }
}

/// Values reserved for one write; given back if the write does not happen.
#[derive(Debug, Default)]
pub struct Reserved {
    ips: Vec<String>,
    ports: Vec<String>,
}

/// The owner a Service's reservations name: `namespace/name`.
pub fn owner(svc: &Value) -> String {
    format!("{}/{}", meta_str(svc, "namespace"), meta_str(svc, "name"))
}

fn svc_type(svc: &Value) -> &str {
    svc["spec"]["type"].as_str().unwrap_or("ClusterIP")
}

/// Whether a Service of this shape has a ClusterIP at all.
fn wants_cluster_ip(svc: &Value) -> bool {
    svc_type(svc) != "ExternalName"
}

fn wants_node_ports(svc: &Value) -> bool {
    match svc_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => svc["spec"]["allocateLoadBalancerNodePorts"] != json!(false),
        _ => false,
    }
}

/// The ClusterIP a Service holds, if it holds a real one (not `None`).
pub fn cluster_ip(svc: &Value) -> Option<&str> {
    svc["spec"]["clusterIP"]
        .as_str()
        .filter(|ip| !ip.is_empty() && *ip != "None")
}

/// Every NodePort a Service holds, health-check port included.
pub fn node_ports(svc: &Value) -> Vec<String> {
    let mut out: Vec<String> = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_i64())
        .filter(|p| *p > 0)
        .map(|p| p.to_string())
        .collect();
    if let Some(p) = svc["spec"]["healthCheckNodePort"]
        .as_i64()
        .filter(|p| *p > 0)
    {
        out.push(p.to_string());
    }
    out.sort();
    out.dedup();
    out
}

fn alloc_error(svc: &Value, field: String, value: &str, err: AllocError) -> ApiError {
    match err {
        AllocError::Store(e) => ApiError::internal(format!("failed to allocate {value}: {e}")),
        AllocError::Full if field.starts_with("spec.clusterIPs") => {
            ApiError::internal("failed to allocate a serviceIP: range is full")
        }
        AllocError::Full => ApiError::internal("failed to allocate a nodePort: range is full"),
        err => {
            let message = if field.starts_with("spec.clusterIPs") {
                format!("Invalid value: \"{value}\": failed to allocate IP {value}: {err}")
            } else {
                format!("Invalid value: {value}: {err}")
            };
            ApiError::invalid(
                "",
                "Service",
                meta_str(svc, "name"),
                vec![Cause {
                    reason: "FieldValueInvalid",
                    message,
                    field,
                }],
            )
        }
    }
}

/// Gives back what `reserved` holds.
pub async fn undo(net: &ServiceNetwork, store: &dyn Backend, reserved: Reserved) {
    for ip in reserved.ips {
        alloc::release(store, &net.ips, &ip).await;
    }
    for port in reserved.ports {
        alloc::release(store, &net.ports, &port).await;
    }
}

/// Reserves the ClusterIP and NodePorts a Service being created or updated needs, and
/// writes the allocated values into it. `old` is the stored Service on update: values it
/// holds that the new one leaves out are carried over, as kube-apiserver does.
pub async fn allocate(
    net: &ServiceNetwork,
    store: &dyn Backend,
    old: Option<&Value>,
    svc: &mut Value,
) -> ApiResult<Reserved> {
    let mut reserved = Reserved::default();
    let outcome = allocate_into(net, store, old, svc, &mut reserved).await;
    match outcome {
        Ok(()) => Ok(reserved),
        Err(e) => {
            undo(net, store, reserved).await;
            Err(e)
        }
    }
}

async fn allocate_into(
    net: &ServiceNetwork,
    store: &dyn Backend,
    old: Option<&Value>,
    svc: &mut Value,
    reserved: &mut Reserved,
) -> ApiResult<()> {
    let who = owner(svc);
    let old_ip = old.and_then(cluster_ip).map(str::to_string);
    if wants_cluster_ip(svc) {
        let mut ip = svc["spec"]["clusterIP"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if ip.is_empty() {
            ip = svc["spec"]["clusterIPs"][0]
                .as_str()
                .unwrap_or_default()
                .to_string();
        }
        if ip.is_empty() {
            ip = old_ip.clone().unwrap_or_default();
        }
        if ip.is_empty() {
            ip = alloc::allocate(store, &net.ips, &who)
                .await
                .map_err(|e| alloc_error(svc, "spec.clusterIPs[0]".into(), "", e))?;
            reserved.ips.push(ip.clone());
        } else if ip != "None" && old_ip.as_deref() != Some(ip.as_str()) {
            alloc::reserve(store, &net.ips, &ip, &who)
                .await
                .map_err(|e| alloc_error(svc, "spec.clusterIPs[0]".into(), &ip, e))?;
            reserved.ips.push(ip.clone());
        }
        let spec = &mut svc["spec"];
        spec["clusterIP"] = json!(ip);
        spec["clusterIPs"] = json!([ip]);
        if ip != "None" || spec.get("ipFamilies").is_none() {
            spec["ipFamilies"] = json!(["IPv4"]);
        }
        if spec.get("ipFamilyPolicy").is_none() {
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
    }
    if !wants_cluster_ip(svc) {
        // An ExternalName Service has no address; what a former type held goes back.
        if let Some(spec) = svc["spec"].as_object_mut() {
            for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                spec.remove(field);
            }
        }
    }
    if wants_node_ports(svc) {
        allocate_node_ports(net, store, old, svc, &who, reserved).await?;
    } else if let Some(ports) = svc["spec"]["ports"].as_array_mut() {
        for p in ports {
            if let Some(map) = p.as_object_mut() {
                map.remove("nodePort");
            }
        }
    }
    Ok(())
}

async fn allocate_node_ports(
    net: &ServiceNetwork,
    store: &dyn Backend,
    old: Option<&Value>,
    svc: &mut Value,
    who: &str,
    reserved: &mut Reserved,
) -> ApiResult<()> {
    let held: Vec<String> = old.map(node_ports).unwrap_or_default();
    let old_ports: Vec<Value> = old
        .and_then(|o| o["spec"]["ports"].as_array().cloned())
        .unwrap_or_default();
    let count = svc["spec"]["ports"].as_array().map_or(0, Vec::len);
    for i in 0..count {
        let port = svc["spec"]["ports"][i].clone();
        let mut node_port = port["nodePort"].as_i64().unwrap_or(0);
        if node_port == 0 {
            // Carried over from the stored Service, or shared with a port of the same
            // number under another protocol.
            let same = |p: &&Value| p["port"] == port["port"] && p["nodePort"].as_i64().is_some();
            let earlier: Vec<Value> =
                svc["spec"]["ports"].as_array().unwrap_or(&Vec::new())[..i].to_vec();
            node_port = old_ports
                .iter()
                .filter(|p| p["protocol"] == port["protocol"])
                .find(same)
                .or_else(|| earlier.iter().find(same))
                .and_then(|p| p["nodePort"].as_i64())
                .unwrap_or(0);
        }
        let text = node_port.to_string();
        let field = format!("spec.ports[{i}].nodePort");
        if node_port == 0 {
            let got = alloc::allocate(store, &net.ports, who)
                .await
                .map_err(|e| alloc_error(svc, field, "", e))?;
            node_port = got.parse().unwrap_or(0);
            reserved.ports.push(got);
        } else if !held.contains(&text) && !reserved.ports.contains(&text) {
            alloc::reserve(store, &net.ports, &text, who)
                .await
                .map_err(|e| alloc_error(svc, field, &text, e))?;
            reserved.ports.push(text);
        }
        svc["spec"]["ports"][i]["nodePort"] = json!(node_port);
    }
    Ok(())
}

/// Gives back what `old` held and `new` no longer does (`new` = None: the Service is gone).
pub async fn release_unused(
    net: &ServiceNetwork,
    store: &dyn Backend,
    old: &Value,
    new: Option<&Value>,
) {
    let new_ip = new.and_then(cluster_ip);
    if let Some(ip) = cluster_ip(old) {
        if new_ip != Some(ip) {
            alloc::release(store, &net.ips, ip).await;
        }
    }
    let kept = new.map(node_ports).unwrap_or_default();
    for port in node_ports(old) {
        if !kept.contains(&port) {
            alloc::release(store, &net.ports, &port).await;
        }
    }
}

//! Server-side tables (`meta.k8s.io/v1` Table) with kube-apiserver's columns, which is what
//! `kubectl get` prints.

use serde_json::{json, Value};

mod more;

use more::more_cells;

use super::resources::{Columns, Resource};
use crate::k8s::meta::{age, human_duration, meta_str, seconds_since};

/// A column: name, type, and whether only `-o wide` shows it.
type Col = (&'static str, &'static str, bool);

const NAME: Col = ("Name", "string", false);
const AGE: Col = ("Age", "string", false);

fn columns(c: Columns) -> Vec<Col> {
    let s = |n| (n, "string", false);
    let w = |n| (n, "string", true);
    match c {
        Columns::Default => vec![NAME, AGE],
        Columns::Pod => vec![
            NAME,
            s("Ready"),
            s("Status"),
            s("Restarts"),
            AGE,
            w("IP"),
            w("Node"),
            w("Nominated Node"),
            w("Readiness Gates"),
        ],
        Columns::Deployment => vec![
            NAME,
            s("Ready"),
            s("Up-to-date"),
            s("Available"),
            AGE,
            w("Containers"),
            w("Images"),
            w("Selector"),
        ],
        Columns::ReplicaSet => vec![
            NAME,
            s("Desired"),
            s("Current"),
            s("Ready"),
            AGE,
            w("Containers"),
            w("Images"),
            w("Selector"),
        ],
        Columns::StatefulSet => vec![NAME, s("Ready"), AGE, w("Containers"), w("Images")],
        Columns::DaemonSet => vec![
            NAME,
            s("Desired"),
            s("Current"),
            s("Ready"),
            s("Up-to-date"),
            s("Available"),
            s("Node Selector"),
            AGE,
            w("Containers"),
            w("Images"),
            w("Selector"),
        ],
        Columns::Service => vec![
            NAME,
            s("Type"),
            s("Cluster-IP"),
            s("External-IP"),
            s("Port(s)"),
            AGE,
            w("Selector"),
        ],
        Columns::Node => vec![
            NAME,
            s("Status"),
            s("Roles"),
            AGE,
            s("Version"),
            w("Internal-IP"),
            w("External-IP"),
            w("OS-Image"),
            w("Kernel-Version"),
            w("Container-Runtime"),
        ],
        Columns::Namespace => vec![NAME, s("Status"), AGE],
        Columns::ConfigMap => vec![NAME, s("Data"), AGE],
        Columns::Secret => vec![NAME, s("Type"), s("Data"), AGE],
        Columns::Event => vec![
            s("Last Seen"),
            s("Type"),
            s("Reason"),
            s("Object"),
            w("Subobject"),
            w("Source"),
            s("Message"),
            w("First Seen"),
            w("Count"),
            w("Name"),
        ],
        Columns::Job => vec![
            NAME,
            s("Status"),
            s("Completions"),
            s("Duration"),
            AGE,
            w("Containers"),
            w("Images"),
            w("Selector"),
        ],
        Columns::CronJob => vec![
            NAME,
            s("Schedule"),
            s("Timezone"),
            s("Suspend"),
            s("Active"),
            s("Last Schedule"),
            AGE,
            w("Containers"),
            w("Images"),
            w("Selector"),
        ],
        Columns::Endpoints => vec![NAME, s("Endpoints"), AGE],
        Columns::PersistentVolumeClaim => vec![
            NAME,
            s("Status"),
            s("Volume"),
            s("Capacity"),
            s("Access Modes"),
            s("StorageClass"),
            s("VolumeAttributesClass"),
            AGE,
            w("VolumeMode"),
        ],
        Columns::PersistentVolume => vec![
            NAME,
            s("Capacity"),
            s("Access Modes"),
            s("Reclaim Policy"),
            s("Status"),
            s("Claim"),
            s("StorageClass"),
            s("VolumeAttributesClass"),
            s("Reason"),
            AGE,
            w("VolumeMode"),
        ],
        Columns::ServiceAccount => vec![NAME, s("Secrets"), AGE],
        Columns::ResourceQuota => vec![NAME, AGE, s("Request"), s("Limit")],
        Columns::CreatedAt => vec![NAME, s("Created At")],
        Columns::ControllerRevision => vec![NAME, s("Controller"), s("Revision"), AGE],
        Columns::Lease => vec![NAME, s("Holder"), AGE],
        Columns::EndpointSlice => vec![NAME, s("AddressType"), s("Ports"), s("Endpoints"), AGE],
        Columns::EventsV1 => vec![
            s("Last Seen"),
            s("Type"),
            s("Reason"),
            s("Object"),
            s("Message"),
        ],
        Columns::Binding => vec![
            NAME,
            s("Role"),
            AGE,
            w("Users"),
            w("Groups"),
            w("ServiceAccounts"),
        ],
        Columns::Ingress => vec![NAME, s("Class"), s("Hosts"), s("Address"), s("Ports"), AGE],
        Columns::IngressClass => vec![NAME, s("Controller"), s("Parameters"), AGE],
        Columns::NetworkPolicy => vec![NAME, s("Pod-Selector"), AGE],
        Columns::PodDisruptionBudget => vec![
            NAME,
            s("Min Available"),
            s("Max Unavailable"),
            s("Allowed Disruptions"),
            AGE,
        ],
        Columns::PriorityClass => vec![
            NAME,
            s("Value"),
            s("Global-Default"),
            AGE,
            w("PreemptionPolicy"),
        ],
        Columns::StorageClass => vec![
            NAME,
            s("Provisioner"),
            s("ReclaimPolicy"),
            s("VolumeBindingMode"),
            s("AllowVolumeExpansion"),
            AGE,
        ],
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn or_none(s: String) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}

fn list_of(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// `a=b,c=d` from a map of strings.
fn selector(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn containers_images(spec: &Value) -> (String, String) {
    let cs = list_of(&spec["containers"]);
    let names = cs
        .iter()
        .map(|c| text(&c["name"]))
        .collect::<Vec<_>>()
        .join(",");
    let images = cs
        .iter()
        .map(|c| text(&c["image"]))
        .collect::<Vec<_>>()
        .join(",");
    (names, images)
}

fn pod_status(o: &Value) -> String {
    if o["metadata"].get("deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    let st = &o["status"];
    let mut reason = text(&st["reason"]);
    if reason.is_empty() {
        reason = text(&st["phase"]);
    }
    if reason.is_empty() {
        reason = "Pending".into();
    }
    for c in list_of(&st["containerStatuses"]).iter().rev() {
        if let Some(r) = c["state"]["waiting"]["reason"]
            .as_str()
            .filter(|r| !r.is_empty())
        {
            reason = r.into();
        } else if let Some(r) = c["state"]["terminated"]["reason"]
            .as_str()
            .filter(|r| !r.is_empty())
        {
            reason = r.into();
        }
    }
    reason
}

fn service_ports(spec: &Value) -> String {
    let ports: Vec<String> = list_of(&spec["ports"])
        .iter()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p
                .get("nodePort")
                .and_then(Value::as_i64)
                .filter(|np| *np != 0)
            {
                Some(np) => format!("{}:{np}/{proto}", int(&p["port"])),
                None => format!("{}/{proto}", int(&p["port"])),
            }
        })
        .collect();
    or_none(ports.join(","))
}

fn external_ip(o: &Value) -> String {
    let spec = &o["spec"];
    let mut ips: Vec<String> = list_of(&spec["externalIPs"]).iter().map(text).collect();
    match spec["type"].as_str().unwrap_or("ClusterIP") {
        "LoadBalancer" => {
            for ing in list_of(&o["status"]["loadBalancer"]["ingress"]) {
                ips.push(text(if ing.get("ip").is_some() {
                    &ing["ip"]
                } else {
                    &ing["hostname"]
                }));
            }
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => text(&spec["externalName"]),
        _ => or_none(ips.join(",")),
    }
}

fn node_status(o: &Value) -> String {
    let ready = list_of(&o["status"]["conditions"])
        .iter()
        .find(|c| c["type"] == "Ready");
    let mut s = match ready.map(|c| text(&c["status"])) {
        Some(st) if st == "True" => "Ready".to_string(),
        Some(st) if st == "False" => "NotReady".to_string(),
        _ => "Unknown".to_string(),
    };
    if o["spec"]["unschedulable"] == true {
        s.push_str(",SchedulingDisabled");
    }
    s
}

fn node_address(o: &Value, kind: &str) -> String {
    let found = list_of(&o["status"]["addresses"])
        .iter()
        .find(|a| a["type"] == kind);
    or_none(found.map(|a| text(&a["address"])).unwrap_or_default())
}

fn node_roles(o: &Value) -> String {
    let roles: Vec<String> = o["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.keys()
                .filter_map(|k| {
                    k.strip_prefix("node-role.kubernetes.io/")
                        .map(str::to_string)
                })
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default();
    or_none(roles.join(","))
}

fn since(v: &Value) -> String {
    v.as_str()
        .and_then(seconds_since)
        .map_or_else(|| "<unknown>".into(), human_duration)
}

fn cells(c: Columns, o: &Value) -> Vec<Value> {
    let name = json!(meta_str(o, "name"));
    let (spec, st) = (&o["spec"], &o["status"]);
    let a = json!(age(o));
    let j = |s: String| json!(s);
    match c {
        Columns::Default => vec![name, a],
        Columns::Pod => {
            let cs = list_of(&st["containerStatuses"]);
            let total = list_of(&spec["containers"]).len();
            let ready = cs.iter().filter(|c| c["ready"] == true).count();
            let restarts: i64 = cs.iter().map(|c| int(&c["restartCount"])).sum();
            let gates = list_of(&spec["readinessGates"]);
            vec![
                name,
                j(format!("{ready}/{total}")),
                j(pod_status(o)),
                j(restarts.to_string()),
                a,
                j(or_none(text(&st["podIP"]))),
                j(or_none(text(&spec["nodeName"]))),
                j(or_none(text(&st["nominatedNodeName"]))),
                j(if gates.is_empty() {
                    "<none>".into()
                } else {
                    format!("0/{}", gates.len())
                }),
            ]
        }
        Columns::Deployment | Columns::ReplicaSet | Columns::StatefulSet | Columns::DaemonSet => {
            let (names, images) = containers_images(&spec["template"]["spec"]);
            let sel = selector(&spec["selector"]["matchLabels"]);
            let desired = spec.get("replicas").map_or(1, int);
            match c {
                Columns::Deployment => vec![
                    name,
                    j(format!("{}/{desired}", int(&st["readyReplicas"]))),
                    json!(int(&st["updatedReplicas"])),
                    json!(int(&st["availableReplicas"])),
                    a,
                    j(names),
                    j(images),
                    j(sel),
                ],
                Columns::ReplicaSet => vec![
                    name,
                    json!(desired),
                    json!(int(&st["replicas"])),
                    json!(int(&st["readyReplicas"])),
                    a,
                    j(names),
                    j(images),
                    j(sel),
                ],
                Columns::StatefulSet => vec![
                    name,
                    j(format!("{}/{desired}", int(&st["readyReplicas"]))),
                    a,
                    j(names),
                    j(images),
                ],
                _ => vec![
                    name,
                    json!(int(&st["desiredNumberScheduled"])),
                    json!(int(&st["currentNumberScheduled"])),
                    json!(int(&st["numberReady"])),
                    json!(int(&st["updatedNumberScheduled"])),
                    json!(int(&st["numberAvailable"])),
                    j(or_none(selector(&spec["template"]["spec"]["nodeSelector"]))),
                    a,
                    j(names),
                    j(images),
                    j(sel),
                ],
            }
        }
        Columns::Service => vec![
            name,
            j(spec["type"].as_str().unwrap_or("ClusterIP").into()),
            j(or_none(text(&spec["clusterIP"]))),
            j(external_ip(o)),
            j(service_ports(spec)),
            a,
            j(or_none(selector(&spec["selector"]))),
        ],
        Columns::Node => {
            let info = &st["nodeInfo"];
            vec![
                name,
                j(node_status(o)),
                j(node_roles(o)),
                a,
                j(text(&info["kubeletVersion"])),
                j(node_address(o, "InternalIP")),
                j(node_address(o, "ExternalIP")),
                j(or_none(text(&info["osImage"]))),
                j(or_none(text(&info["kernelVersion"]))),
                j(or_none(text(&info["containerRuntimeVersion"]))),
            ]
        }
        Columns::Namespace => vec![name, j(st["phase"].as_str().unwrap_or("Active").into()), a],
        Columns::ConfigMap => {
            let n = o["data"].as_object().map_or(0, |m| m.len())
                + o["binaryData"].as_object().map_or(0, |m| m.len());
            vec![name, json!(n), a]
        }
        Columns::Secret => vec![
            name,
            j(o["type"].as_str().unwrap_or("Opaque").into()),
            json!(o["data"].as_object().map_or(0, |m| m.len())),
            a,
        ],
        Columns::Event => {
            let obj = &o["involvedObject"];
            let last = if o["lastTimestamp"].is_string() {
                &o["lastTimestamp"]
            } else {
                &o["eventTime"]
            };
            vec![
                j(since(last)),
                j(text(&o["type"])),
                j(text(&o["reason"])),
                j(format!(
                    "{}/{}",
                    text(&obj["kind"]).to_lowercase(),
                    text(&obj["name"])
                )),
                j(text(&obj["fieldPath"])),
                j(text(&o["source"]["component"])),
                j(text(&o["message"])),
                j(since(&o["firstTimestamp"])),
                json!(o["count"].as_i64().unwrap_or(1)),
                name,
            ]
        }
        Columns::Job => {
            let (names, images) = containers_images(&spec["template"]["spec"]);
            let done = list_of(&st["conditions"]).iter().find(|c| {
                c["status"] == "True" && (c["type"] == "Complete" || c["type"] == "Failed")
            });
            let status = done.map_or_else(|| "Running".to_string(), |c| text(&c["type"]));
            let completions = spec.get("completions").map_or(1, int);
            vec![
                name,
                j(status),
                j(format!("{}/{completions}", int(&st["succeeded"]))),
                j(since(&st["startTime"])),
                a,
                j(names),
                j(images),
                j(selector(&spec["selector"]["matchLabels"])),
            ]
        }
        Columns::CronJob => {
            let (names, images) =
                containers_images(&spec["jobTemplate"]["spec"]["template"]["spec"]);
            vec![
                name,
                j(text(&spec["schedule"])),
                j(or_none(text(&spec["timeZone"]))),
                j(if spec["suspend"] == true {
                    "True".into()
                } else {
                    "False".into()
                }),
                json!(list_of(&st["active"]).len()),
                j(if st["lastScheduleTime"].is_string() {
                    since(&st["lastScheduleTime"])
                } else {
                    "<none>".into()
                }),
                a,
                j(names),
                j(images),
                j("<none>".into()),
            ]
        }
        Columns::Endpoints => {
            let eps: Vec<String> = list_of(&o["subsets"])
                .iter()
                .flat_map(|s| {
                    let ports: Vec<i64> = list_of(&s["ports"])
                        .iter()
                        .map(|p| int(&p["port"]))
                        .collect();
                    list_of(&s["addresses"])
                        .iter()
                        .flat_map(move |ad| {
                            let ip = text(&ad["ip"]);
                            if ports.is_empty() {
                                vec![ip]
                            } else {
                                ports.iter().map(|p| format!("{ip}:{p}")).collect()
                            }
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            vec![name, j(or_none(eps.join(","))), a]
        }
        Columns::PersistentVolumeClaim => vec![
            name,
            j(text(&st["phase"])),
            j(text(&spec["volumeName"])),
            j(text(&st["capacity"]["storage"])),
            j(list_of(&st["accessModes"])
                .iter()
                .map(text)
                .collect::<Vec<_>>()
                .join(",")),
            j(or_none(text(&spec["storageClassName"]))),
            j("<unset>".into()),
            a,
            j(spec["volumeMode"].as_str().unwrap_or("Filesystem").into()),
        ],
        other => more_cells(other, o, name, a),
    }
}

/// A Table of `items`; column definitions only when `with_columns` (watch events after the
/// first omit them).
pub fn table(
    res: &Resource,
    items: &[Value],
    list_meta: Option<Value>,
    with_columns: bool,
) -> Value {
    let defs: Vec<Value> = if with_columns {
        columns(res.columns)
            .into_iter()
            .map(|(name, ty, wide)| {
                json!({"name": name, "type": ty, "format": if name == "Name" { "name" } else { "" },
                       "description": "", "priority": if wide { 1 } else { 0 }})
            })
            .collect()
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            json!({"cells": cells(res.columns, o),
                   "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                              "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({}))}})
        })
        .collect();
    let meta = list_meta.unwrap_or_else(|| {
        json!({"resourceVersion": items.first().map(|o| meta_str(o, "resourceVersion")).unwrap_or_default()})
    });
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
           "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::find;

    #[test]
    fn every_row_has_one_cell_per_column() {
        let pod = json!({"metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.42.0.5",
                       "containerStatuses": [{"ready": true, "restartCount": 2, "state": {"running": {}}}]}});
        for r in crate::apiserver::resources::RESOURCES {
            let t = table(r, std::slice::from_ref(&pod), None, true);
            assert_eq!(
                t["rows"][0]["cells"].as_array().unwrap().len(),
                t["columnDefinitions"].as_array().unwrap().len(),
                "{}",
                r.plural
            );
        }
        let t = table(find("", "v1", "pods").unwrap(), &[pod], None, true);
        let cells: Vec<String> = t["rows"][0]["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(text)
            .collect();
        assert_eq!(&cells[..4], ["web", "1/1", "Running", "2"]);
        assert_eq!(cells[6], "n1");
    }

    #[test]
    fn service_ports_and_external_ips_read_like_kubectl() {
        let svc = json!({"spec": {"type": "NodePort", "clusterIP": "10.43.0.9",
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
        assert_eq!(service_ports(&svc["spec"]), "80:30080/TCP,53/UDP");
        assert_eq!(external_ip(&svc), "<none>");
        let lb = json!({"spec": {"type": "LoadBalancer"}});
        assert_eq!(external_ip(&lb), "<pending>");
    }
}

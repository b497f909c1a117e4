//! Cells of the kinds whose columns are not about workloads: storage, RBAC, networking,
//! policy, scheduling, leases, endpoint slices and events.k8s.io events.

use serde_json::{json, Value};

use super::{int, list_of, or_none, since, text};
use crate::apiserver::resources::Columns;

/// `metav1.FormatLabelSelector`: `<none>` for nothing, else `k=v,k in (a,b)`.
fn label_selector(sel: &Value) -> String {
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", text(v))).collect())
        .unwrap_or_default();
    for e in list_of(&sel["matchExpressions"]) {
        let values = list_of(&e["values"])
            .iter()
            .map(text)
            .collect::<Vec<_>>()
            .join(",");
        let key = text(&e["key"]);
        parts.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key,
            _ => format!("!{key}"),
        });
    }
    or_none(parts.join(","))
}

fn subjects(o: &Value, kind: &str) -> String {
    list_of(&o["subjects"])
        .iter()
        .filter(|s| s["kind"] == kind)
        .map(|s| match kind {
            "ServiceAccount" => format!("{}/{}", text(&s["namespace"]), text(&s["name"])),
            _ => text(&s["name"]),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn joined(v: &Value) -> String {
    list_of(v).iter().map(text).collect::<Vec<_>>().join(",")
}

fn or_default(v: &Value, default: &str) -> String {
    v.as_str().unwrap_or(default).to_string()
}

fn ref_name(r: &Value) -> String {
    if r.is_object() {
        format!("{}/{}", text(&r["kind"]), text(&r["name"]))
    } else {
        "<none>".into()
    }
}

/// Cells of the kinds whose columns are not about workloads.
pub(super) fn more_cells(c: Columns, o: &Value, name: Value, a: Value) -> Vec<Value> {
    let (spec, st) = (&o["spec"], &o["status"]);
    let j = |s: String| json!(s);
    match c {
        Columns::PersistentVolume => {
            let claim = &spec["claimRef"];
            let claim = if claim.is_object() {
                format!("{}/{}", text(&claim["namespace"]), text(&claim["name"]))
            } else {
                String::new()
            };
            vec![
                name,
                j(text(&spec["capacity"]["storage"])),
                j(joined(&spec["accessModes"])),
                j(or_default(&spec["persistentVolumeReclaimPolicy"], "Retain")),
                j(text(&st["phase"])),
                j(claim),
                j(text(&spec["storageClassName"])),
                j("<unset>".into()),
                j(text(&st["reason"])),
                a,
                j(or_default(&spec["volumeMode"], "Filesystem")),
            ]
        }
        Columns::ServiceAccount => vec![name, json!(list_of(&o["secrets"]).len()), a],
        Columns::ResourceQuota => {
            let hard = st["hard"].as_object().cloned().unwrap_or_default();
            let usage = |limits: bool| {
                hard.iter()
                    .filter(|(k, _)| k.starts_with("limits.") == limits)
                    .map(|(k, v)| {
                        let used = text(&st["used"][k.as_str()]);
                        format!(
                            "{k}: {}/{}",
                            if used.is_empty() { "0".into() } else { used },
                            text(v)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![name, a, j(usage(false)), j(usage(true))]
        }
        Columns::CreatedAt => vec![name, j(text(&o["metadata"]["creationTimestamp"]))],
        Columns::ControllerRevision => {
            let owner = list_of(&o["metadata"]["ownerReferences"])
                .iter()
                .find(|r| r["controller"] == true)
                .map_or_else(
                    || "<none>".into(),
                    |r| format!("{}/{}", text(&r["kind"]).to_lowercase(), text(&r["name"])),
                );
            vec![name, j(owner), json!(int(&o["revision"])), a]
        }
        Columns::Lease => vec![name, j(text(&spec["holderIdentity"])), a],
        Columns::EndpointSlice => {
            let ports: Vec<String> = list_of(&o["ports"])
                .iter()
                .map(|p| int(&p["port"]).to_string())
                .collect();
            let addrs: Vec<String> = list_of(&o["endpoints"])
                .iter()
                .flat_map(|e| list_of(&e["addresses"]).iter().map(text))
                .collect();
            let or_unset = |v: Vec<String>| {
                if v.is_empty() {
                    "<unset>".to_string()
                } else {
                    v.join(",")
                }
            };
            vec![
                name,
                j(text(&o["addressType"])),
                j(or_unset(ports)),
                j(or_unset(addrs)),
                a,
            ]
        }
        Columns::EventsV1 => {
            let r = &o["regarding"];
            vec![
                j(since(&o["eventTime"])),
                j(text(&o["type"])),
                j(text(&o["reason"])),
                j(format!(
                    "{}/{}",
                    text(&r["kind"]).to_lowercase(),
                    text(&r["name"])
                )),
                j(text(&o["note"])),
            ]
        }
        Columns::Binding => vec![
            name,
            j(ref_name(&o["roleRef"])),
            a,
            j(subjects(o, "User")),
            j(subjects(o, "Group")),
            j(subjects(o, "ServiceAccount")),
        ],
        Columns::Ingress => {
            let hosts: Vec<String> = list_of(&spec["rules"])
                .iter()
                .map(|r| text(&r["host"]))
                .filter(|h| !h.is_empty())
                .collect();
            let addrs: Vec<String> = list_of(&st["loadBalancer"]["ingress"])
                .iter()
                .map(|i| {
                    text(if i.get("ip").is_some() {
                        &i["ip"]
                    } else {
                        &i["hostname"]
                    })
                })
                .collect();
            let ports = if list_of(&spec["tls"]).is_empty() {
                "80"
            } else {
                "80, 443"
            };
            vec![
                name,
                j(or_none(text(&spec["ingressClassName"]))),
                j(if hosts.is_empty() {
                    "*".into()
                } else {
                    hosts.join(",")
                }),
                j(addrs.join(",")),
                j(ports.into()),
                a,
            ]
        }
        Columns::IngressClass => vec![
            name,
            j(text(&spec["controller"])),
            j(ref_name(&spec["parameters"])),
            a,
        ],
        Columns::NetworkPolicy => vec![name, j(label_selector(&spec["podSelector"])), a],
        Columns::PodDisruptionBudget => {
            let or_na = |v: &Value| {
                if v.is_null() {
                    "N/A".to_string()
                } else {
                    text(v)
                }
            };
            vec![
                name,
                j(or_na(&spec["minAvailable"])),
                j(or_na(&spec["maxUnavailable"])),
                json!(int(&st["disruptionsAllowed"])),
                a,
            ]
        }
        Columns::PriorityClass => vec![
            name,
            json!(int(&o["value"])),
            j((o["globalDefault"] == true).to_string()),
            a,
            j(or_default(&o["preemptionPolicy"], "PreemptLowerPriority")),
        ],
        Columns::StorageClass => vec![
            name,
            j(text(&o["provisioner"])),
            j(or_default(&o["reclaimPolicy"], "Delete")),
            j(or_default(&o["volumeBindingMode"], "Immediate")),
            j((o["allowVolumeExpansion"] == true).to_string()),
            a,
        ],
        _ => vec![name, a],
    }
}

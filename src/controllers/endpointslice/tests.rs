use serde_json::json;

use super::*;
use crate::controllers::endpoints::tests::{pod, service};

fn zones() -> HashMap<String, String> {
    HashMap::from([("n1".to_string(), "zone-a".to_string())])
}

fn web() -> Service {
    service(json!({"selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}))
}

fn created(ops: Vec<Op>) -> Vec<EndpointSlice> {
    ops.into_iter()
        .map(|op| match op {
            Op::Create(s) => {
                let mut s = *s;
                s.metadata.name = Some(format!("web-{}", s.endpoints.len()));
                s
            }
            other => panic!("expected a create, got {other:?}"),
        })
        .collect()
}

#[test]
fn conditions_node_zone_and_labels_follow_upstream() {
    let svc = web();
    let (a, b) = (pod("a", "10.42.0.2", true), pod("b", "10.42.0.3", false));
    let slices = created(plan(&svc, &[&a, &b], &zones(), &[]));
    assert_eq!(slices.len(), 1);
    let s = &slices[0];
    assert_eq!(s.address_type, "IPv4");
    assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
    let labels = s.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[SERVICE_NAME_LABEL], "web");
    assert_eq!(labels[MANAGED_BY_LABEL], CONTROLLER_NAME);
    let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Service", "svc-uid")
    );
    let ports = s.ports.as_ref().unwrap();
    assert_eq!(ports[0].port, Some(8080));
    let a_ep = &s.endpoints[0];
    assert_eq!(a_ep.addresses, ["10.42.0.2"]);
    assert_eq!(a_ep.zone.as_deref(), Some("zone-a"));
    assert_eq!(a_ep.node_name.as_deref(), Some("n1"));
    let c = a_ep.conditions.as_ref().unwrap();
    assert_eq!(
        (c.ready, c.serving, c.terminating),
        (Some(true), Some(true), Some(false))
    );
    let c = s.endpoints[1].conditions.as_ref().unwrap();
    assert_eq!((c.ready, c.serving), (Some(false), Some(false)));
}

#[test]
fn a_terminating_ready_pod_is_serving_but_not_ready() {
    let mut v = serde_json::to_value(pod("a", "10.42.0.2", true)).unwrap();
    v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:01:00Z");
    let a: Pod = serde_json::from_value(v).unwrap();
    let slices = desired(&web(), &[&a], &zones());
    let c = slices[0].endpoints[0].conditions.clone().unwrap();
    assert_eq!(
        (c.ready, c.serving, c.terminating),
        (Some(false), Some(true), Some(true))
    );
}

#[test]
fn slices_hold_at_most_a_hundred_endpoints() {
    let pods: Vec<Pod> = (0..250)
        .map(|i| {
            pod(
                &format!("p{i}"),
                &format!("10.42.{}.{}", i / 200, i % 200 + 1),
                true,
            )
        })
        .collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let sizes: Vec<usize> = desired(&web(), &refs, &zones())
        .iter()
        .map(|c| c.endpoints.len())
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
}

#[test]
fn a_service_without_endpoints_keeps_one_empty_slice() {
    let slices = desired(&web(), &[], &zones());
    assert_eq!(slices.len(), 1);
    assert!(slices[0].endpoints.is_empty() && slices[0].ports.is_empty());
}

#[test]
fn matching_slices_are_kept_changed_ones_updated_extra_ones_deleted() {
    let svc = web();
    let (a, b) = (pod("a", "10.42.0.2", true), pod("b", "10.42.0.3", true));
    let slices = created(plan(&svc, &[&a], &zones(), &[]));
    let current: Vec<&EndpointSlice> = slices.iter().collect();
    assert!(plan(&svc, &[&a], &zones(), &current).is_empty());
    let ops = plan(&svc, &[&a, &b], &zones(), &current);
    assert!(matches!(&ops[..], [Op::Update(s)] if s.endpoints.len() == 2));
    let mut extra = slices[0].clone();
    extra.metadata.name = Some("web-extra".into());
    let current = vec![&slices[0], &extra];
    assert_eq!(
        plan(&svc, &[&a], &zones(), &current),
        [Op::Delete("web-extra".into())]
    );
}

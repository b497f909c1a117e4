use serde_json::json;

use super::*;

pub(crate) fn service(spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid",
                     "labels": {"app": "web"}, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": spec,
    }))
    .unwrap()
}

/// A pod labelled app=web with container port `http` 8080, at `ip` (none if empty).
pub(crate) fn pod(name: &str, ip: &str, ready: bool) -> Pod {
    let status = if ready { "True" } else { "False" };
    let mut pod = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"),
                     "labels": {"app": "web"}, "creationTimestamp": "2026-01-01T00:00:01Z"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
                 "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": status,
                   "lastTransitionTime": "2026-01-01T00:00:05Z"}]},
    });
    if !ip.is_empty() {
        pod["status"]["podIP"] = json!(ip);
    }
    serde_json::from_value(pod).unwrap()
}

fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
    list.iter().flatten().map(|a| a.ip.as_str()).collect()
}

#[test]
fn ready_and_not_ready_pods_go_to_their_lists_and_pods_without_ip_are_left_out() {
    let svc = service(json!({"selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}));
    let (a, b, c) = (
        pod("a", "10.42.0.2", true),
        pod("b", "10.42.0.3", false),
        pod("c", "", true),
    );
    let subsets = desired_subsets(&svc, &[&a, &b, &c]);
    assert_eq!(subsets.len(), 1);
    assert_eq!(ips(&subsets[0].addresses), ["10.42.0.2"]);
    assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.42.0.3"]);
    let port = &subsets[0].ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
    let addr = &subsets[0].addresses.as_ref().unwrap()[0];
    assert_eq!(addr.node_name.as_deref(), Some("n1"));
    assert_eq!(addr.target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
}

#[test]
fn publish_not_ready_addresses_lists_every_pod_as_ready() {
    let svc = service(
        json!({"selector": {"app": "web"}, "publishNotReadyAddresses": true,
        "ports": [{"port": 80, "targetPort": 8080}]}),
    );
    let b = pod("b", "10.42.0.3", false);
    let subsets = desired_subsets(&svc, &[&b]);
    assert_eq!(ips(&subsets[0].addresses), ["10.42.0.3"]);
    assert!(subsets[0].not_ready_addresses.is_none());
}

#[test]
fn a_pod_without_the_named_port_is_left_out_of_that_port() {
    let svc = service(json!({"selector": {"app": "web"}, "ports": [
        {"name": "http", "port": 80, "targetPort": "http"},
        {"name": "metrics", "port": 9090, "targetPort": 9090}]}));
    let a = pod("a", "10.42.0.2", true);
    let mut other: serde_json::Value = serde_json::to_value(pod("b", "10.42.0.3", true)).unwrap();
    other["spec"]["containers"][0]["ports"][0]["name"] = json!("web");
    let b: Pod = serde_json::from_value(other).unwrap();
    let subsets = desired_subsets(&svc, &[&a, &b]);
    // a serves both ports, b only the numeric one: two port sets.
    assert_eq!(subsets.len(), 2);
    let by_ports: Vec<(usize, Vec<&str>)> = subsets
        .iter()
        .map(|s| (s.ports.as_ref().unwrap().len(), ips(&s.addresses)))
        .collect();
    assert!(by_ports.contains(&(2, vec!["10.42.0.2"])));
    assert!(by_ports.contains(&(1, vec!["10.42.0.3"])));
}

#[test]
fn hostname_is_set_when_the_subdomain_names_the_service() {
    let svc = service(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
    let mut v = serde_json::to_value(pod("a", "10.42.0.2", true)).unwrap();
    v["spec"]["hostname"] = json!("a-host");
    v["spec"]["subdomain"] = json!("web");
    let a: Pod = serde_json::from_value(v).unwrap();
    let subsets = desired_subsets(&svc, &[&a]);
    let addr = &subsets[0].addresses.as_ref().unwrap()[0];
    assert_eq!(addr.hostname.as_deref(), Some("a-host"));
    // Headless without ports still lists the pod, and the objects carry the headless label.
    assert!(subsets[0].ports.is_none());
    assert_eq!(
        endpoint_labels(&svc).get(HEADLESS_LABEL),
        Some(&String::new())
    );
}

#[test]
fn terminal_terminating_and_unselected_pods_are_left_out() {
    let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
    let mut done = serde_json::to_value(pod("a", "10.42.0.2", true)).unwrap();
    done["status"]["phase"] = json!("Succeeded");
    let done: Pod = serde_json::from_value(done).unwrap();
    let mut going = serde_json::to_value(pod("b", "10.42.0.3", true)).unwrap();
    going["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:01:00Z");
    let going: Pod = serde_json::from_value(going).unwrap();
    let mut other = serde_json::to_value(pod("c", "10.42.0.4", true)).unwrap();
    other["metadata"]["labels"] = json!({"app": "db"});
    let other: Pod = serde_json::from_value(other).unwrap();
    assert!(desired_subsets(&svc, &[&done, &going, &other]).is_empty());
}

#[test]
fn plan_writes_only_when_something_changed() {
    let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
    let a = pod("a", "10.42.0.2", true);
    let Plan::Create(created) = plan(&svc, &[&a], None) else {
        panic!("expected a create");
    };
    assert_eq!(
        created
            .annotations()
            .get(TRIGGER_TIME_ANNOTATION)
            .map(String::as_str),
        Some("2026-01-01T00:00:05Z")
    );
    assert_eq!(plan(&svc, &[&a], Some(&created)), Plan::Keep);
    let b = pod("b", "10.42.0.3", true);
    assert!(matches!(
        plan(&svc, &[&a, &b], Some(&created)),
        Plan::Update(_)
    ));
}

#[test]
fn services_without_selector_and_the_api_service_are_not_managed() {
    let svc = service(json!({"ports": [{"port": 80}]}));
    assert!(managed_selector(&svc).is_none());
    let mut api: Service = service(json!({"selector": {"app": "web"}}));
    api.metadata.name = Some("kubernetes".into());
    assert!(managed_selector(&api).is_none());
}

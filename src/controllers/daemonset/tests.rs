use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use super::plan::{self, node_fit, target_node, Fit, World, REVISION_HASH_LABEL};
use super::revision::{self, compute_hash, new_pod, RevisionStep};

fn ds(spec: Value) -> DaemonSet {
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": "agent"}});
    if spec.get("template").is_none() {
        spec["template"] = json!({"metadata": {"labels": {"app": "agent"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    }
    serde_json::from_value(json!({
        "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

fn node(name: &str, labels: Value, taints: Value) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
                                  "spec": {"taints": taints}}))
    .unwrap()
}

fn nodes(names: &[&str]) -> Vec<Node> {
    names
        .iter()
        .map(|n| node(n, json!({}), json!([])))
        .collect()
}

/// A pod of the set on `node`, made at second `age`, with `hash`, Ready or not.
fn pod(name: &str, node: &str, hash: &str, ready: bool, age: i64) -> Pod {
    let created = format!("2026-01-01T00:00:{age:02}Z");
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "agent", REVISION_HASH_LABEL: hash},
                     "creationTimestamp": created,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                                          "uid": "ds-uid", "controller": true}]},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running",
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
    }))
    .unwrap()
}

fn plan_for(ds: &DaemonSet, nodes: &[Node], pods: &[Pod]) -> plan::Plan {
    let hash = compute_hash(ds);
    plan::plan(&World {
        ds,
        hash: &hash,
        nodes,
        pods,
        now: 1_800_000_000,
    })
}

#[test]
fn every_node_without_a_pod_gets_one_and_extra_pods_go() {
    let set = ds(json!({}));
    let hash = compute_hash(&set);
    let pods = vec![
        pod("a-1", "a", &hash, true, 1),
        pod("a-2", "a", &hash, true, 2),
        pod("gone-1", "gone", &hash, true, 1),
    ];
    let p = plan_for(&set, &nodes(&["a", "b", "c"]), &pods);
    assert_eq!(p.create, vec!["b", "c"]);
    // The newer duplicate goes; a pod on a missing node is left to the pod GC.
    assert_eq!(p.delete, vec!["a-2"]);
}

#[test]
fn node_selector_affinity_and_taints_decide_where_pods_run() {
    let spec = plan::with_daemon_tolerations(
        &serde_json::from_value(json!({"containers": [], "nodeSelector": {"role": "edge"}}))
            .unwrap(),
    );
    let edge = node("e", json!({"role": "edge"}), json!([]));
    let core = node("c", json!({"role": "core"}), json!([]));
    assert!(node_fit(&spec, &edge).should_run);
    assert_eq!(
        node_fit(&spec, &core),
        Fit {
            should_run: false,
            should_continue: false
        }
    );

    let plain =
        plan::with_daemon_tolerations(&serde_json::from_value(json!({"containers": []})).unwrap());
    let no_schedule = node(
        "n",
        json!({}),
        json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
    );
    assert_eq!(
        node_fit(&plain, &no_schedule),
        Fit {
            should_run: false,
            should_continue: true
        }
    );
    let no_execute = node(
        "n",
        json!({}),
        json!([{"key": "dedicated", "effect": "NoExecute"}]),
    );
    assert_eq!(
        node_fit(&plain, &no_execute),
        Fit {
            should_run: false,
            should_continue: false
        }
    );
    // The daemon tolerations: cordoned, not-ready and pressured nodes still run it.
    let cordoned = node(
        "n",
        json!({}),
        json!([
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
        {"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"}]),
    );
    assert!(node_fit(&plain, &cordoned).should_run);
    let no_network = node(
        "n",
        json!({}),
        json!([{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]),
    );
    assert!(!node_fit(&plain, &no_network).should_run);
    let host = plan::with_daemon_tolerations(
        &serde_json::from_value(json!({"containers": [], "hostNetwork": true})).unwrap(),
    );
    assert!(node_fit(&host, &no_network).should_run);
    // A toleration of the pod's own lets it in.
    let tolerant = plan::with_daemon_tolerations(
        &serde_json::from_value(json!({"containers": [],
        "tolerations": [{"key": "dedicated", "operator": "Exists"}]}))
        .unwrap(),
    );
    assert!(node_fit(&tolerant, &no_execute).should_run);

    let affinity = plan::with_daemon_tolerations(&serde_json::from_value(json!({"containers": [],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "role", "operator": "In", "values": ["core"]}]}]}}}})).unwrap());
    assert!(node_fit(&affinity, &core).should_run);
    assert!(!node_fit(&affinity, &edge).should_continue);
}

#[test]
fn pods_on_nodes_no_longer_eligible_are_deleted() {
    let set = ds(
        json!({"template": {"metadata": {"labels": {"app": "agent"}},
        "spec": {"nodeSelector": {"role": "edge"}, "containers": [{"name": "c", "image": "busybox"}]}}}),
    );
    let hash = compute_hash(&set);
    let ns = vec![
        node("a", json!({"role": "edge"}), json!([])),
        node("b", json!({}), json!([])),
    ];
    let pods = vec![
        pod("a-1", "a", &hash, true, 1),
        pod("b-1", "b", &hash, true, 1),
    ];
    let p = plan_for(&set, &ns, &pods);
    assert!(p.create.is_empty());
    assert_eq!(p.delete, vec!["b-1"]);
}

#[test]
fn the_pod_is_pinned_to_its_node_by_match_fields_with_the_daemon_tolerations() {
    let set = ds(
        json!({"template": {"metadata": {"labels": {"app": "agent"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}],
                 "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                     {"matchExpressions": [{"key": "role", "operator": "In", "values": ["core"]}]}]}}}}}}),
    );
    let hash = compute_hash(&set);
    let p = new_pod(&set, &hash, "n1");
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["metadata"]["generateName"], "agent-");
    assert_eq!(v["metadata"]["labels"][REVISION_HASH_LABEL], hash);
    assert_eq!(v["metadata"]["labels"]["pod-template-generation"], "1");
    assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "ds-uid");
    assert_eq!(
        v["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
        json!({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]})
    );
    let tolerations = v["spec"]["tolerations"].as_array().unwrap();
    assert_eq!(tolerations.len(), 6);
    assert!(tolerations
        .iter()
        .all(|t| t["operator"] == "Exists" && t.get("tolerationSeconds").is_none()));
    assert_eq!(target_node(&p).as_deref(), Some("n1"));
}

#[test]
fn rolling_update_replaces_old_pods_within_max_unavailable() {
    let set = ds(
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}}),
    );
    let pods = vec![
        pod("a-old", "a", "old", true, 1),
        pod("b-old", "b", "old", true, 1),
        pod("c-old", "c", "old", false, 1),
    ];
    // The unready old pod goes at once and uses up the budget.
    let p = plan_for(&set, &nodes(&["a", "b", "c"]), &pods);
    assert_eq!(p.delete, vec!["c-old"]);
    let hash = compute_hash(&set);
    let pods = vec![
        pod("a-old", "a", "old", true, 1),
        pod("b-old", "b", "old", true, 1),
        pod("c-new", "c", &hash, true, 3),
    ];
    assert_eq!(
        plan_for(&set, &nodes(&["a", "b", "c"]), &pods).delete,
        vec!["a-old"]
    );
    // A new pod not yet ready blocks further deletions.
    let pods = vec![
        pod("a-old", "a", "old", true, 1),
        pod("b-old", "b", "old", true, 1),
        pod("c-new", "c", &hash, false, 3),
    ];
    assert!(plan_for(&set, &nodes(&["a", "b", "c"]), &pods)
        .delete
        .is_empty());
    // A node whose old pod is gone and whose new one is being created counts.
    let pods = vec![
        pod("b-old", "b", "old", true, 1),
        pod("c-old", "c", "old", true, 1),
    ];
    let p = plan_for(&set, &nodes(&["a", "b", "c"]), &pods);
    assert_eq!((p.create, p.delete), (vec!["a".to_string()], vec![]));
    // OnDelete leaves old pods alone.
    let on_delete = ds(json!({"updateStrategy": {"type": "OnDelete"}}));
    let pods = vec![pod("a-old", "a", "old", true, 1)];
    assert_eq!(
        plan_for(&on_delete, &nodes(&["a"]), &pods),
        plan::Plan::default()
    );
}

#[test]
fn rolling_update_with_surge_starts_the_new_pod_before_the_old_goes() {
    let set = ds(json!({"updateStrategy": {"type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}));
    let hash = compute_hash(&set);
    let pods = vec![
        pod("a-old", "a", "old", true, 1),
        pod("b-old", "b", "old", true, 1),
    ];
    let p = plan_for(&set, &nodes(&["a", "b"]), &pods);
    assert_eq!((p.create, p.delete), (vec!["a".to_string()], vec![]));
    // Surging on a: b waits; once a's new pod is available, a's old one goes.
    let pods = vec![
        pod("a-old", "a", "old", true, 1),
        pod("a-new", "a", &hash, false, 5),
        pod("b-old", "b", "old", true, 1),
    ];
    assert_eq!(
        plan_for(&set, &nodes(&["a", "b"]), &pods),
        plan::Plan::default()
    );
    let pods = vec![
        pod("a-old", "a", "old", true, 1),
        pod("a-new", "a", &hash, true, 5),
        pod("b-old", "b", "old", true, 1),
    ];
    let p = plan_for(&set, &nodes(&["a", "b"]), &pods);
    assert_eq!(p.delete, vec!["a-old"]);
    assert_eq!(p.create, vec!["b"]);
}

#[test]
fn status_counts_desired_current_ready_updated_and_misscheduled() {
    let set = ds(
        json!({"template": {"metadata": {"labels": {"app": "agent"}},
        "spec": {"nodeSelector": {"role": "edge"}, "containers": [{"name": "c", "image": "busybox"}]}}}),
    );
    let hash = compute_hash(&set);
    let ns = vec![
        node("a", json!({"role": "edge"}), json!([])),
        node("b", json!({"role": "edge"}), json!([])),
        node("c", json!({"role": "edge"}), json!([])),
        node("d", json!({}), json!([])),
    ];
    let pods = vec![
        pod("a-1", "a", &hash, true, 1),
        pod("b-1", "b", "old", false, 1),
        pod("d-1", "d", &hash, true, 1),
    ];
    let st = plan::status(&World {
        ds: &set,
        hash: &hash,
        nodes: &ns,
        pods: &pods,
        now: 0,
    });
    assert_eq!(st.desired_number_scheduled, 3);
    assert_eq!(st.current_number_scheduled, 2);
    assert_eq!(st.number_misscheduled, 1);
    assert_eq!(st.number_ready, 1);
    assert_eq!(st.number_available, Some(1));
    assert_eq!(st.number_unavailable, Some(2));
    assert_eq!(st.updated_number_scheduled, Some(1));
    assert_eq!(st.observed_generation, Some(1));
}

#[test]
fn revisions_are_created_renumbered_and_pruned_beyond_the_history_limit() {
    let set = ds(json!({"revisionHistoryLimit": 1}));
    let hash = compute_hash(&set);
    let RevisionStep::Create(current) = revision::revision_step(&set, &hash, &[]) else {
        panic!("created")
    };
    let current = *current;
    assert_eq!(current.metadata.name, Some(format!("agent-{hash}")));
    assert_eq!(current.revision, 1);
    assert_eq!(
        current.data.as_ref().unwrap().0["spec"]["template"]["$patch"],
        "replace"
    );
    let other = ds(
        json!({"template": {"metadata": {"labels": {"app": "agent"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}),
    );
    let other_hash = compute_hash(&other);
    assert_ne!(hash, other_hash);
    let mut older = revision::new_revision(&other, &other_hash, 2);
    let mut oldest = revision::new_revision(&other, "x", 1);
    oldest.metadata.name = Some("agent-x".into());
    assert_eq!(
        revision::revision_step(&set, &hash, &[current.clone(), older.clone()]),
        RevisionStep::Renumber(format!("agent-{hash}"), 3)
    );
    let mut renumbered = current.clone();
    renumbered.revision = 3;
    assert_eq!(
        revision::revision_step(&set, &hash, &[renumbered.clone(), older.clone()]),
        RevisionStep::Current
    );
    // Two old revisions, limit 1: the oldest unused goes; one a pod uses stays.
    let revs = [renumbered, older.clone(), oldest.clone()];
    assert_eq!(
        revision::revisions_to_prune(&set, &hash, &revs, &[]),
        vec!["agent-x"]
    );
    let using = [pod("p", "a", "x", true, 1)];
    assert!(revision::revisions_to_prune(&set, &hash, &revs, &using).is_empty());
    // Same name, other template: a collision.
    older.metadata.name = Some(format!("agent-{hash}"));
    assert_eq!(
        revision::revision_step(&set, &hash, &[older]),
        RevisionStep::Collision
    );
}

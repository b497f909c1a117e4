use serde_json::json;

use super::*;

fn pdb(spec: serde_json::Value, status: serde_json::Value) -> PodDisruptionBudget {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "generation": 2},
        "spec": spec, "status": status,
    }))
    .unwrap()
}

fn pod(name: &str, ready: bool) -> Pod {
    let status = if ready { "True" } else { "False" };
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "status": {"conditions": [{"type": "Ready", "status": status}]},
    }))
    .unwrap()
}

fn now() -> Timestamp {
    "2026-01-01T00:10:00Z".parse().unwrap()
}

#[test]
fn min_available_int_counts_the_selected_pods() {
    let p = pdb(
        json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}),
        json!({}),
    );
    let (a, b, c) = (pod("a", true), pod("b", true), pod("c", true));
    let mut other = pod("d", true);
    other.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
    let pods = selected(&p, &[&a, &b, &c, &other]);
    assert_eq!(pods.len(), 3);
    assert!(!needs_scale(&p));
    let (expected, desired) = expectations(&p, 3, 0).unwrap();
    let status = compute(&p, &pods, expected, desired, now());
    assert_eq!(
        (
            status.current_healthy,
            status.desired_healthy,
            status.expected_pods,
            status.disruptions_allowed
        ),
        (3, 2, 3, 1)
    );
    assert_eq!(status.observed_generation, Some(2));
    let cond = &status.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (
            cond.type_.as_str(),
            cond.status.as_str(),
            cond.reason.as_str()
        ),
        (CONDITION, "True", "SufficientPods")
    );
}

#[test]
fn too_few_ready_pods_allow_no_disruption() {
    let p = pdb(
        json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}),
        json!({}),
    );
    let (a, b) = (pod("a", true), pod("b", false));
    let status = compute(&p, &[&a, &b], 2, 2, now());
    assert_eq!((status.current_healthy, status.disruptions_allowed), (1, 0));
    assert_eq!(status.conditions.unwrap()[0].reason, "InsufficientPods");
}

#[test]
fn percentages_and_max_unavailable_scale_from_the_controllers() {
    let max = pdb(
        json!({"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}}),
        json!({}),
    );
    assert!(needs_scale(&max));
    // 50% of 3 rounds up to 2 unavailable, so 1 must stay.
    assert_eq!(expectations(&max, 2, 3).unwrap(), (3, 1));
    let min = pdb(
        json!({"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}}),
        json!({}),
    );
    assert_eq!(expectations(&min, 2, 3).unwrap(), (3, 2));
    let one = pdb(
        json!({"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}),
        json!({}),
    );
    assert_eq!(expectations(&one, 3, 3).unwrap(), (3, 2));
    assert!(scaled(&IntOrString::String("x%".into()), 3).is_err());
}

#[test]
fn disrupted_pods_do_not_count_and_expire() {
    let p = pdb(
        json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}),
        json!({"disruptedPods": {"a": "2026-01-01T00:09:00Z", "b": "2026-01-01T00:00:00Z", "gone": "2026-01-01T00:09:00Z"}}),
    );
    let (a, b) = (pod("a", true), pod("b", true));
    let status = compute(&p, &[&a, &b], 2, 1, now());
    // a is still expected to go; b's entry is older than two minutes; gone is gone.
    let kept: Vec<&String> = status.disrupted_pods.as_ref().unwrap().keys().collect();
    assert_eq!(kept, ["a"]);
    assert_eq!((status.current_healthy, status.disruptions_allowed), (1, 0));
}

#[test]
fn an_empty_selector_selects_nothing_and_unchanged_status_is_not_written() {
    let p = pdb(json!({"minAvailable": 1, "selector": {}}), json!({}));
    let a = pod("a", true);
    assert!(selected(&p, &[&a]).is_empty());
    let p = pdb(
        json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}),
        json!({}),
    );
    let status = compute(&p, &[&a], 1, 1, now());
    let mut written = p.clone();
    written.status = Some(status);
    let again = compute(&written, &[&a], 1, 1, now());
    assert!(plan(&written, again).is_none());
    assert!(plan(&p, compute(&p, &[&a], 1, 1, now())).is_some());
}

use serde_json::json;

use super::*;

fn node(ready: Option<&str>, taints: serde_json::Value) -> Node {
    let conditions = match ready {
        Some(s) => json!([{"type": "Ready", "status": s, "reason": "KubeletReady",
                           "lastHeartbeatTime": "2026-01-01T00:00:00Z"}]),
        None => json!([]),
    };
    serde_json::from_value(json!({
        "metadata": {"name": "n1", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"taints": taints},
        "status": {"conditions": conditions},
    }))
    .unwrap()
}

fn now() -> Time {
    Time("2026-01-01T00:05:00Z".parse().unwrap())
}

fn keys(taints: &[Taint]) -> Vec<(String, String)> {
    taints
        .iter()
        .map(|t| (t.key.clone(), t.effect.clone()))
        .collect()
}

#[test]
fn a_silent_node_gets_every_condition_unknown_once() {
    let n = node(Some("True"), json!([]));
    let conditions = stale_conditions(&n, &now()).unwrap();
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "Unknown");
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    let memory = conditions
        .iter()
        .find(|c| c.type_ == "MemoryPressure")
        .unwrap();
    assert_eq!(memory.reason.as_deref(), Some("NodeStatusNeverUpdated"));
    let mut n = n;
    n.status.as_mut().unwrap().conditions = Some(conditions);
    assert!(stale_conditions(&n, &now()).is_none());
}

#[test]
fn ready_unknown_taints_unreachable_and_false_taints_not_ready() {
    let taints = desired_taints(&node(Some("Unknown"), json!([])), &now()).unwrap();
    assert_eq!(
        keys(&taints),
        [
            (UNREACHABLE.to_string(), "NoExecute".to_string()),
            (UNREACHABLE.to_string(), "NoSchedule".to_string())
        ]
    );
    assert!(taints[0].time_added.is_some());
    let taints = desired_taints(&node(Some("False"), json!([])), &now()).unwrap();
    assert_eq!(
        keys(&taints)[0],
        (NOT_READY.to_string(), "NoExecute".to_string())
    );
}

#[test]
fn taints_go_when_the_node_is_back_and_others_stay() {
    let n = node(
        Some("True"),
        json!([{"key": UNREACHABLE, "effect": "NoExecute"}, {"key": "own", "effect": "NoSchedule"}]),
    );
    let taints = desired_taints(&n, &now()).unwrap();
    assert_eq!(
        keys(&taints),
        [("own".to_string(), "NoSchedule".to_string())]
    );
    assert!(desired_taints(
        &node(
            Some("True"),
            json!([{"key": "own", "effect": "NoSchedule"}])
        ),
        &now()
    )
    .is_none());
    let tainted = node(
        Some("Unknown"),
        json!([{"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2026-01-01T00:01:00Z"},
               {"key": UNREACHABLE, "effect": "NoSchedule"}]),
    );
    assert!(desired_taints(&tainted, &now()).is_none());
}

fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        toleration_seconds: seconds,
        value: None,
    }
}

#[test]
fn toleration_time_is_the_least_of_the_matching_tolerations() {
    let taints = desired_taints(&node(Some("Unknown"), json!([])), &now()).unwrap();
    assert_eq!(toleration_time(&taints, &[]), Tolerance::None);
    assert_eq!(
        toleration_time(
            &taints,
            &[
                toleration(UNREACHABLE, Some(300)),
                toleration(UNREACHABLE, Some(2))
            ]
        ),
        Tolerance::For(Duration::from_secs(2))
    );
    assert_eq!(
        toleration_time(&taints, &[toleration(UNREACHABLE, None)]),
        Tolerance::Forever
    );
    assert_eq!(
        toleration_time(&taints, &[toleration(NOT_READY, Some(5))]),
        Tolerance::None
    );
    assert_eq!(toleration_time(&[], &[]), Tolerance::Forever);
}

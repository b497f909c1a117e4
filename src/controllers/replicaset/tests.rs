//! The ReplicaSet controller's decisions, without the API.

use super::plan::*;
use crate::k8s::labels::LabelSelector;

const NOW: i128 = 1_000_000 * 1_000_000_000;
const S: i128 = 1_000_000_000;

fn pod(name: &str) -> PodFacts {
    PodFacts {
        name: name.into(),
        uid: name.into(),
        node: "n1".into(),
        phase: "Running".into(),
        ready: true,
        ready_since: Some(NOW - 1000 * S),
        created: Some(NOW - 1000 * S),
        active: true,
        ..PodFacts::default()
    }
}

fn first_victim(pods: &[PodFacts]) -> String {
    let refs: Vec<&PodFacts> = pods.iter().collect();
    pods_to_delete(&refs, &refs, 1, NOW)[0].name.clone()
}

#[test]
fn the_least_valuable_pod_is_deleted_first() {
    let unassigned = PodFacts {
        node: String::new(),
        ..pod("unassigned")
    };
    let pending = PodFacts {
        phase: "Pending".into(),
        ..pod("pending")
    };
    let unknown = PodFacts {
        phase: "Unknown".into(),
        ..pod("unknown")
    };
    let not_ready = PodFacts {
        ready: false,
        ready_since: None,
        ..pod("not-ready")
    };
    let cheap = PodFacts {
        deletion_cost: -5,
        ..pod("cheap")
    };
    let young = PodFacts {
        ready_since: Some(NOW - 10 * S),
        ..pod("young")
    };
    let restarts = PodFacts {
        restarts: 4,
        ..pod("restarts")
    };
    let newer = PodFacts {
        created: Some(NOW - 10 * S),
        ..pod("newer")
    };
    // Each pod is less valuable than all that follow it.
    let order = [
        unassigned,
        pending,
        unknown,
        not_ready,
        cheap,
        young,
        restarts,
        newer,
        pod("old"),
    ];
    for i in 0..order.len() - 1 {
        assert_eq!(
            first_victim(&order[i..]),
            order[i].name,
            "from {}",
            order[i].name
        );
        let mut reversed: Vec<_> = order[i..].to_vec();
        reversed.reverse();
        assert_eq!(
            first_victim(&reversed),
            order[i].name,
            "reversed, from {}",
            order[i].name
        );
    }
}

#[test]
fn pods_doubled_up_on_a_node_go_before_pods_alone() {
    let alone = PodFacts {
        node: "n2".into(),
        ..pod("alone")
    };
    let (a, b) = (
        pod("a"),
        PodFacts {
            created: Some(NOW - 2000 * S),
            ..pod("b")
        },
    );
    let pods = [alone.clone(), a.clone(), b.clone()];
    let refs: Vec<&PodFacts> = pods.iter().collect();
    let victims = pods_to_delete(&refs, &refs, 2, NOW);
    let names: Vec<_> = victims.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn pods_of_about_the_same_age_are_told_apart_by_uid_not_by_time() {
    // 1000 s and 1100 s ago fall in the same power-of-two bucket (2^39 ns ≈ 550 s .. 1100 s).
    let a = PodFacts {
        uid: "b".into(),
        created: Some(NOW - 1000 * S),
        ..pod("newer")
    };
    let b = PodFacts {
        uid: "a".into(),
        created: Some(NOW - 1050 * S),
        ..pod("older")
    };
    assert_eq!(first_victim(&[a.clone(), b.clone()]), "older");
    let c = PodFacts {
        created: Some(NOW - 100_000 * S),
        ..pod("much-older")
    };
    assert_eq!(first_victim(&[c, a]), "newer");
}

#[test]
fn creations_start_slow_and_double() {
    assert_eq!(slow_start_batches(0), Vec::<usize>::new());
    assert_eq!(slow_start_batches(1), [1]);
    assert_eq!(slow_start_batches(5), [1, 2, 2]);
    assert_eq!(slow_start_batches(10), [1, 2, 4, 3]);
    assert_eq!(slow_start_batches(500).iter().sum::<usize>(), 500);
}

#[test]
fn availability_waits_min_ready_seconds() {
    let p = PodFacts {
        ready_since: Some(NOW - 10 * S),
        ..pod("p")
    };
    assert!(p.available(0, NOW));
    assert!(p.available(9, NOW));
    assert!(!p.available(10, NOW));
    assert!(!PodFacts { ready: false, ..p }.available(0, NOW));
}

#[test]
fn status_counts_pods_and_reports_a_failed_create_once() {
    let template = LabelSelector::parse("app=web,tier=front").unwrap();
    let mut labeled = pod("labeled");
    labeled.labels = [("app", "web"), ("tier", "front")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let not_ready = PodFacts {
        ready: false,
        ..pod("not-ready")
    };
    let young = PodFacts {
        ready_since: Some(NOW - S),
        ..pod("young")
    };
    let pods = [&labeled, &not_ready, &young];
    let t = k8s_openapi::jiff::Timestamp::UNIX_EPOCH;
    let failure = Failure {
        reason: "FailedCreate",
        message: "quota".into(),
    };
    let s = status(
        None,
        Some(3),
        &pods,
        &template,
        5,
        Some(failure.clone()),
        NOW,
        t,
    );
    assert_eq!(
        (
            s.replicas,
            s.fully_labeled_replicas,
            s.ready_replicas,
            s.available_replicas,
            s.observed_generation
        ),
        (3, Some(1), Some(2), Some(1), Some(3))
    );
    let cond = &s.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (
            cond.type_.as_str(),
            cond.reason.as_deref(),
            cond.message.as_deref()
        ),
        ("ReplicaFailure", Some("FailedCreate"), Some("quota"))
    );
    // A second failure keeps the first condition; a success removes it.
    let again = status(
        Some(&s),
        Some(3),
        &pods,
        &template,
        5,
        Some(Failure {
            message: "other".into(),
            ..failure
        }),
        NOW,
        t,
    );
    assert!(!status_differs(Some(&s), &again));
    let ok = status(Some(&s), Some(3), &pods, &template, 5, None, NOW, t);
    assert!(ok.conditions.is_none());
    assert!(status_differs(Some(&s), &ok));
}

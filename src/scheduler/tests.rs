//! Whole decisions: resource accounting, the snapshot, candidate pods, the
//! unschedulable message word for word, preemption, and a placement loop.

use k8s_openapi::api::core::v1::Pod;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;

use super::resources::PodRequests;
use super::testing::{node, pod, snapshot};
use super::*;

fn requests(p: testing::PodBuilder) -> PodRequests {
    PodRequests::of(&p.build())
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn bound_to(d: &Decision) -> &str {
    match d {
        Decision::Bind { node } => node,
        Decision::Unschedulable(e) => panic!("unschedulable: {e}"),
    }
}

fn fit_error(d: Decision) -> FitError {
    match d {
        Decision::Unschedulable(e) => e,
        Decision::Bind { node } => panic!("bound to {node}"),
    }
}

#[test]
fn pod_requests_sum_containers() {
    let r = requests(
        pod("p")
            .cpu("250m")
            .memory("64Mi")
            .container("250m", "64Mi"),
    );
    assert_eq!(r.requests.milli_cpu, 500);
    assert_eq!(r.requests.memory, 128 * 1024 * 1024);
}

#[test]
fn init_container_larger_than_containers_sets_the_request() {
    let r = requests(
        pod("p")
            .cpu("100m")
            .memory("64Mi")
            .init_container("1", "32Mi"),
    );
    assert_eq!(r.requests.milli_cpu, 1000);
    assert_eq!(r.requests.memory, 64 * 1024 * 1024);
}

#[test]
fn sidecars_add_to_containers_and_to_later_init_containers() {
    let r = requests(
        pod("p")
            .cpu("100m")
            .memory("10Mi")
            .sidecar("200m", "20Mi")
            .init_container("250m", "5Mi"),
    );
    // containers + sidecar = 300m / 30Mi; init after sidecar = 450m / 25Mi.
    assert_eq!(r.requests.milli_cpu, 450);
    assert_eq!(r.requests.memory, 30 * 1024 * 1024);
}

#[test]
fn overhead_adds_to_requests_and_non_zero_requests() {
    let r = requests(pod("p").cpu("100m").overhead("50m", "10Mi"));
    assert_eq!(r.requests.milli_cpu, 150);
    assert_eq!(r.requests.memory, 10 * 1024 * 1024);
    assert_eq!(r.non_zero_memory, (200 + 10) * 1024 * 1024);
}

#[test]
fn non_zero_defaults_apply_to_missing_not_explicit_zero() {
    let r = requests(pod("p").cpu("0"));
    assert_eq!(r.non_zero_milli_cpu, 0);
    assert_eq!(r.non_zero_memory, 200 * 1024 * 1024);
}

#[test]
fn snapshot_counts_bound_pods_and_skips_terminal_ones() {
    let s = snapshot(
        vec![node("n1")],
        vec![
            pod("a").cpu("1").on_node("n1"),
            pod("b").cpu("1").on_node("n1").phase("Failed"),
            pod("c").cpu("1"),
            pod("d").cpu("1").on_node("ghost"),
        ],
    );
    let n = s.node("n1").expect("n1");
    assert_eq!(n.pods.len(), 1);
    assert_eq!(n.requested.milli_cpu, 1000);
}

#[test]
fn assume_counts_the_pod_and_forget_undoes_it() {
    let mut s = snapshot(vec![node("n1")], vec![]);
    assert!(s.assume(&pod("a").cpu("1").host_port(80).build(), "n1"));
    assert_eq!(s.node_of("default", "a"), Some("n1"));
    assert_eq!(s.node("n1").map(|n| n.requested.milli_cpu), Some(1000));
    assert!(s.forget("default", "a"));
    let n = s.node("n1").expect("n1");
    assert_eq!(
        (n.pods.len(), n.requested.milli_cpu, n.used_ports.len()),
        (0, 0, 0)
    );
    assert!(!s.assume(&pod("a").build(), "ghost"));
}

#[test]
fn node_updates_keep_pods_and_removal_drops_them() {
    let mut s = snapshot(
        vec![node("n1").image("nginx:1", 10), node("n2"), node("n3")],
        vec![
            pod("a").cpu("1").on_node("n1"),
            pod("c").cpu("1").on_node("n3"),
        ],
    );
    s.set_node(node("n1").cpu("8").label("zone", "a"));
    let n1 = s.node("n1").expect("n1");
    assert_eq!(
        (
            n1.pods.len(),
            n1.allocatable.milli_cpu,
            n1.requested.milli_cpu
        ),
        (1, 8000, 1000)
    );
    assert_eq!(s.image_node_count("nginx:1"), 0);
    assert!(s.remove_node("n1"));
    assert_eq!(s.node_of("default", "a"), None);
    assert_eq!(s.node_of("default", "c"), Some("n3"));
    assert!(s.remove_pod("default", "c"));
    assert_eq!(s.node("n3").map(|n| n.pods.len()), Some(0));
}

#[test]
fn preemption_removes_a_lower_priority_pod_whose_anti_affinity_blocks() {
    let s = snapshot(
        vec![node("n1")],
        vec![pod("loner")
            .priority(1)
            .anti_affinity("kubernetes.io/hostname", &[("app", "web")])
            .on_node("n1")],
    );
    let p = pod("web").label("app", "web").priority(10).build();
    let found = preempt(&p, &s, pod_priority).expect("room");
    assert_eq!(
        found.victims,
        [("default".to_string(), "loner".to_string())]
    );
}

#[test]
fn only_pending_default_scheduler_pods_are_candidates() {
    assert!(is_schedulable_candidate(&pod("p").build()));
    let other = pod("p").set("/spec/schedulerName", json!("custom"));
    let gated = pod("p").set("/spec/schedulingGates", json!([{"name": "wait"}]));
    let deleting = pod("p").set("/metadata/deletionTimestamp", json!("2024-01-01T00:00:00Z"));
    for p in [
        pod("p").on_node("n1"),
        other,
        gated,
        deleting,
        pod("p").phase("Succeeded"),
    ] {
        assert!(!is_schedulable_candidate(&p.build()));
    }
    let named = pod("p").set("/spec/schedulerName", json!("default-scheduler"));
    assert!(is_schedulable_candidate(&named.build()));
}

#[test]
fn priority_defaults_to_zero() {
    assert_eq!(pod_priority(&pod("p").build()), 0);
    assert_eq!(pod_priority(&pod("p").priority(1000).build()), 1000);
}

#[test]
fn schedule_binds_to_the_only_feasible_node() {
    let s = snapshot(vec![node("n1").cpu("1"), node("n2").cpu("4")], vec![]);
    assert_eq!(
        bound_to(&schedule(&pod("p").cpu("2").build(), &s, &mut rng())),
        "n2"
    );
}

#[test]
fn schedule_prefers_the_least_allocated_node() {
    let s = snapshot(
        vec![node("n1"), node("n2"), node("n3")],
        vec![
            pod("a").cpu("3").on_node("n1"),
            pod("b").cpu("2").on_node("n3"),
        ],
    );
    assert_eq!(
        bound_to(&schedule(&pod("p").cpu("1").build(), &s, &mut rng())),
        "n2"
    );
}

#[test]
fn ties_are_broken_at_random_among_the_best() {
    let s = snapshot(vec![node("n1"), node("n2"), node("n3")], vec![]);
    let p = pod("p").build();
    let mut r = rng();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        seen.insert(bound_to(&schedule(&p, &s, &mut r)).to_string());
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[test]
fn unschedulable_message_matches_upstream_word_for_word() {
    let s = snapshot(
        vec![
            node("n1").cpu("2").label("disk", "ssd"),
            node("n2").label("disk", "hdd"),
            node("n3"),
        ],
        vec![pod("busy").cpu("1500m").on_node("n1")],
    );
    let p = pod("p").cpu("1").node_selector("disk", "ssd").build();
    let e = fit_error(schedule(&p, &s, &mut rng()));
    assert_eq!(
        e.to_string(),
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node \
         affinity/selector. preemption: 0/3 nodes are available: 1 No preemption victims \
         found for incoming pod, 2 Preemption is not helpful for scheduling."
    );
    assert_eq!(e.preemption, None);
}

#[test]
fn unschedulable_message_for_untolerated_taints_and_never_preempting_pods() {
    let s = snapshot(
        vec![node("n1").taint("node.kubernetes.io/not-ready", "", "NoSchedule")],
        vec![],
    );
    let e = fit_error(schedule(&pod("p").never_preempt().build(), &s, &mut rng()));
    assert_eq!(
        e.to_string(),
        "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. \
         preemption: not eligible due to preemptionPolicy=Never."
    );
}

#[test]
fn reasons_are_sorted_as_strings_with_their_counts() {
    let nodes = (0..12).map(|i| {
        let n = node(&format!("n{i}"));
        if i < 2 {
            n.cpu("1")
        } else {
            n.taint("x", "", "NoSchedule")
        }
    });
    let s = snapshot(nodes.collect(), vec![]);
    let e = fit_error(schedule(&pod("p").cpu("2").build(), &s, &mut rng()));
    assert!(
        e.to_string().starts_with(
            "0/12 nodes are available: 10 node(s) had untolerated taint {x: }, 2 Insufficient cpu."
        ),
        "{e}"
    );
}

#[test]
fn no_nodes_gives_upstreams_error() {
    let s = snapshot(vec![], vec![]);
    let e = fit_error(schedule(&pod("p").build(), &s, &mut rng()));
    assert_eq!(e.to_string(), "no nodes available to schedule pods");
}

#[test]
fn preemption_picks_the_lowest_priority_victims() {
    let s = snapshot(
        vec![node("n1").cpu("2"), node("n2").cpu("2")],
        vec![
            pod("a1").cpu("1").priority(10).on_node("n1"),
            pod("a2").cpu("1").priority(10).on_node("n1"),
            pod("b1").cpu("1").priority(5).on_node("n2"),
            pod("b2").cpu("1").priority(50).on_node("n2"),
        ],
    );
    let p = pod("p").cpu("1").priority(100).build();
    let found = preempt(&p, &s, pod_priority).expect("room by preemption");
    assert_eq!(found.node, "n2");
    assert_eq!(found.victims, [("default".to_string(), "b1".to_string())]);
}

#[test]
fn preemption_takes_the_fewest_victims_needed() {
    let s = snapshot(
        vec![node("n1").cpu("3")],
        vec![
            pod("small").cpu("1").priority(1).on_node("n1"),
            pod("big")
                .cpu("2")
                .priority(1)
                .on_node("n1")
                .started("2024-01-01T00:00:00Z"),
        ],
    );
    let found = preempt(&pod("p").cpu("2").priority(10).build(), &s, pod_priority).expect("room");
    assert_eq!(found.victims, [("default".to_string(), "big".to_string())]);
}

#[test]
fn preemption_never_evicts_equal_or_higher_priority() {
    let s = snapshot(
        vec![node("n1").cpu("2")],
        vec![
            pod("same").cpu("1").priority(10).on_node("n1"),
            pod("higher").cpu("1").priority(20).on_node("n1"),
        ],
    );
    let p = pod("p").cpu("1").priority(10).build();
    assert_eq!(preempt(&p, &s, pod_priority), None);
    let e = fit_error(schedule(&p, &s, &mut rng()));
    assert!(
        e.to_string()
            .ends_with("1 No preemption victims found for incoming pod."),
        "{e}"
    );
}

#[test]
fn preemption_uses_the_given_priorities() {
    let s = snapshot(
        vec![node("n1").cpu("1")],
        vec![pod("low").cpu("1").on_node("n1")],
    );
    let p = pod("p").cpu("1").label("tier", "critical").build();
    let by_label = |p: &Pod| {
        let critical = p
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key("tier"));
        if critical {
            1000
        } else {
            0
        }
    };
    let found = preempt(&p, &s, by_label).expect("room");
    assert_eq!(found.victims, [("default".to_string(), "low".to_string())]);
    let d = schedule_with(&p, &s, &mut rng(), by_label);
    let e = fit_error(d);
    assert_eq!(
        e.to_string(),
        "0/1 nodes are available: 1 Insufficient cpu."
    );
    assert!(e.preemption.is_some());
}

#[test]
fn preemption_respects_never_policy() {
    let s = snapshot(
        vec![node("n1").cpu("1")],
        vec![pod("low").cpu("1").on_node("n1")],
    );
    let p = pod("p").cpu("1").priority(100).never_preempt().build();
    assert_eq!(preempt(&p, &s, pod_priority), None);
}

#[test]
fn preemption_prefers_the_node_whose_victims_started_last() {
    let s = snapshot(
        vec![node("n1").cpu("1"), node("n2").cpu("1")],
        vec![
            pod("old")
                .cpu("1")
                .on_node("n1")
                .started("2024-01-01T00:00:00Z"),
            pod("new")
                .cpu("1")
                .on_node("n2")
                .started("2024-06-01T00:00:00Z"),
        ],
    );
    let found = preempt(&pod("p").cpu("1").priority(1).build(), &s, pod_priority).expect("room");
    assert_eq!(found.node, "n2");
}

#[test]
fn placement_loop_never_overcommits_a_node() {
    let nodes = (0..100).map(|i| node(&format!("n{i}")).cpu("8").memory("16Gi").pods(20));
    let mut s = snapshot(nodes.collect(), vec![]);
    let mut r = rng();
    let mut bound = 0;
    for i in 0..1000 {
        let cpu = ["100m", "250m", "500m", "1"][i % 4];
        let mem = ["128Mi", "512Mi", "1Gi"][i % 3];
        let p = pod(&format!("p{i}")).cpu(cpu).memory(mem).build();
        if let Decision::Bind { node } = schedule(&p, &s, &mut r) {
            assert!(s.assume(&p, &node));
            bound += 1;
        }
    }
    assert!(bound > 900, "bound {bound}");
    for n in s.nodes() {
        assert!(
            n.requested.milli_cpu <= n.allocatable.milli_cpu,
            "{}",
            n.name
        );
        assert!(n.requested.memory <= n.allocatable.memory, "{}", n.name);
        assert!(n.pods.len() as i64 <= n.allowed_pods, "{}", n.name);
    }
}

#[test]
fn node_sampling_finds_as_many_feasible_nodes_as_upstream() {
    let adaptive = NodeSampling::adaptive();
    assert_eq!(adaptive.feasible_to_find(50), 50);
    assert_eq!(adaptive.feasible_to_find(1000), 420);
    assert_eq!(adaptive.feasible_to_find(5000), 500);
    assert_eq!(adaptive.feasible_to_find(10_000), 500);
    assert_eq!(adaptive.feasible_to_find(1500), 570);
    assert_eq!(NodeSampling::all().feasible_to_find(5000), 5000);
}

#[test]
fn sampled_cycles_resume_where_the_last_one_stopped() {
    let nodes = (0..1000).map(|i| node(&format!("n{i:04}")));
    let s = snapshot(nodes.collect(), vec![]);
    let mut sampling = NodeSampling {
        percentage: 10,
        next_start: 0,
    };
    let d = schedule_sampled(
        &pod("p").build(),
        &s,
        &mut rng(),
        pod_priority,
        &mut sampling,
    );
    assert_eq!(sampling.next_start, 100);
    let first: usize = bound_to(&d)[1..].parse().expect("index");
    assert!(first < 100, "{first}");
    schedule_sampled(
        &pod("q").build(),
        &s,
        &mut rng(),
        pod_priority,
        &mut sampling,
    );
    assert_eq!(sampling.next_start, 200);
}

/// A rough throughput figure: `cargo test --lib scheduler -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput_over_five_thousand_nodes() {
    let nodes = (0..5000).map(|i| {
        node(&format!("n{i}"))
            .cpu("16")
            .memory("64Gi")
            .label("topology.kubernetes.io/zone", ["a", "b", "c"][i % 3])
    });
    let mut s = snapshot(nodes.collect(), vec![]);
    let mut r = rng();
    let mut sampling = NodeSampling::adaptive();
    let started = std::time::Instant::now();
    for i in 0..2000 {
        let p = pod(&format!("p{i}"))
            .cpu("100m")
            .memory("128Mi")
            .label("app", "web")
            .build();
        if let Decision::Bind { node } =
            schedule_sampled(&p, &s, &mut r, pod_priority, &mut sampling)
        {
            s.assume(&p, &node);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "2000 pods over 5000 nodes: {secs:.2}s, {:.0} pods/s",
        2000.0 / secs
    );
}

//! Each score plugin's normalized scores on small clusters, checked against upstream's
//! arithmetic.

use super::*;
use crate::scheduler::testing::{cycle, expr, node, pod, snapshot, NodeBuilder, PodBuilder};

/// Scores `p` with `plugin` over every node of a snapshot of `nodes` and `pods`.
fn run(plugin: Score, p: PodBuilder, nodes: Vec<NodeBuilder>, pods: Vec<PodBuilder>) -> Vec<i64> {
    let s = snapshot(nodes, pods);
    let c = cycle(p, &s);
    let all: Vec<&NodeInfo> = s.nodes().iter().collect();
    plugin(&c, &all, &s)
}

#[test]
fn least_allocated_averages_free_cpu_and_memory_shares() {
    let nodes = vec![
        node("n1").cpu("4").memory("8Gi"),
        node("n2").cpu("4").memory("8Gi"),
    ];
    let pods = vec![pod("a").cpu("2").memory("4Gi").on_node("n2")];
    let scores = run(
        least_allocated::scores,
        pod("p").cpu("1").memory("2Gi"),
        nodes,
        pods,
    );
    // n1: (4000-1000)/4000 = 75 for both; n2: (4000-3000)/4000 = 25 for both.
    assert_eq!(scores, [75, 25]);
}

#[test]
fn least_allocated_counts_missing_requests_as_100m_and_200mi() {
    let nodes = vec![node("n1").cpu("1").memory("1000Mi")];
    let scores = run(least_allocated::scores, pod("p"), nodes, vec![]);
    // cpu (1000-100)/1000 = 90, memory (1000-200)/1000 = 80.
    assert_eq!(scores, [85]);
}

#[test]
fn balanced_allocation_prefers_equal_cpu_and_memory_shares() {
    let nodes = vec![
        node("n1").cpu("4").memory("8Gi"),
        node("n2").cpu("4").memory("8Gi"),
    ];
    let pods = vec![pod("a").cpu("1").on_node("n2")];
    let scores = run(
        balanced_allocation::scores,
        pod("p").cpu("1").memory("2Gi"),
        nodes,
        pods,
    );
    // n1: shares .25/.25 -> 100; n2: .5/.25 -> (1 - .125) * 100 = 87.
    assert_eq!(scores, [100, 87]);
}

#[test]
fn balanced_allocation_skips_best_effort_pods() {
    let nodes = vec![node("n1"), node("n2")];
    let pods = vec![pod("a").cpu("1").on_node("n2")];
    assert_eq!(
        run(balanced_allocation::scores, pod("p"), nodes, pods),
        [0, 0]
    );
}

#[test]
fn node_affinity_score_scales_matching_weights_to_100() {
    let nodes = vec![
        node("n1").label("disk", "ssd").label("zone", "a"),
        node("n2").label("disk", "ssd"),
        node("n3"),
    ];
    let p = pod("p")
        .preferred_node_term(30, expr("disk", "In", &["ssd"]))
        .preferred_node_term(10, expr("zone", "Exists", &[]));
    assert_eq!(run(node_affinity::scores, p, nodes, vec![]), [100, 75, 0]);
}

#[test]
fn node_affinity_score_is_zero_without_preferences() {
    assert_eq!(
        run(
            node_affinity::scores,
            pod("p"),
            vec![node("n1"), node("n2")],
            vec![]
        ),
        [0, 0]
    );
}

#[test]
fn taint_score_favours_nodes_with_fewer_untolerated_soft_taints() {
    let nodes = vec![
        node("n1"),
        node("n2").taint("a", "", "PreferNoSchedule"),
        node("n3")
            .taint("a", "", "PreferNoSchedule")
            .taint("b", "", "PreferNoSchedule"),
        node("n4").taint("b", "", "PreferNoSchedule"),
    ];
    let p = pod("p").toleration("b", "Exists", "", "PreferNoSchedule");
    assert_eq!(
        run(taint_toleration::scores, p, nodes, vec![]),
        [100, 0, 0, 100]
    );
}

#[test]
fn taint_score_is_100_everywhere_without_soft_taints() {
    assert_eq!(
        run(
            taint_toleration::scores,
            pod("p"),
            vec![node("n1"), node("n2")],
            vec![]
        ),
        [100, 100]
    );
}

fn zones() -> Vec<NodeBuilder> {
    vec![
        node("n1").label("zone", "a"),
        node("n2").label("zone", "a"),
        node("n3").label("zone", "b"),
    ]
}

#[test]
fn preferred_pod_affinity_favours_the_domain_of_matching_pods() {
    let pods = vec![pod("db").label("app", "db").on_node("n1")];
    let p = pod("web").preferred_affinity(50, "zone", &[("app", "db")]);
    assert_eq!(
        run(inter_pod_affinity::scores, p, zones(), pods),
        [100, 100, 0]
    );
}

#[test]
fn preferred_pod_anti_affinity_avoids_the_domain_of_matching_pods() {
    let pods = vec![pod("web-1").label("app", "web").on_node("n3")];
    let p = pod("web-2").preferred_anti_affinity(50, "zone", &[("app", "web")]);
    assert_eq!(
        run(inter_pod_affinity::scores, p, zones(), pods),
        [100, 100, 0]
    );
}

#[test]
fn existing_pods_preferred_affinity_attracts_the_pod_symmetrically() {
    let pods = vec![pod("cache")
        .preferred_affinity(10, "zone", &[("app", "web")])
        .on_node("n3")];
    let p = pod("web").label("app", "web");
    assert_eq!(
        run(inter_pod_affinity::scores, p, zones(), pods),
        [0, 0, 100]
    );
}

#[test]
fn schedule_anyway_spread_favours_emptier_domains() {
    let pods = vec![
        pod("a").label("app", "web").on_node("n1"),
        pod("b").label("app", "web").on_node("n2"),
    ];
    let p = pod("c")
        .label("app", "web")
        .spread(1, "zone", "ScheduleAnyway", &[("app", "web")]);
    let scores = run(pod_topology_spread::scores, p, zones(), pods);
    assert_eq!(scores[0], scores[1]);
    assert!(scores[2] > scores[0], "{scores:?}");
    assert_eq!(scores[2], 100);
}

#[test]
fn spread_score_ignores_nodes_without_the_topology_label() {
    let nodes = vec![node("n1").label("zone", "a"), node("bare")];
    let p = pod("c")
        .label("app", "web")
        .spread(1, "zone", "ScheduleAnyway", &[("app", "web")]);
    assert_eq!(run(pod_topology_spread::scores, p, nodes, vec![]), [100, 0]);
}

#[test]
fn image_locality_favours_nodes_holding_large_images() {
    let mb = 1024 * 1024;
    let nodes = vec![
        node("n1").image("nginx:1.27", 500 * mb),
        node("n2").image("nginx:1.27", 500 * mb),
        node("n3"),
    ];
    let scores = run(
        image_locality::scores,
        pod("p").image("nginx:1.27"),
        nodes,
        vec![],
    );
    // 500MB * 2/3 spread = 333MB; (333 - 23) / (1000 - 23) * 100 = 31.
    assert_eq!(scores, [31, 31, 0]);
}

#[test]
fn image_names_without_tag_mean_latest() {
    assert_eq!(
        image_locality::normalized_image_name("nginx"),
        "nginx:latest"
    );
    assert_eq!(
        image_locality::normalized_image_name("reg:5000/nginx"),
        "reg:5000/nginx:latest"
    );
    assert_eq!(
        image_locality::normalized_image_name("nginx:1.2"),
        "nginx:1.2"
    );
}

#[test]
fn weighted_total_lets_a_soft_taint_outweigh_free_capacity() {
    let nodes = vec![node("n1").taint("a", "", "PreferNoSchedule"), node("n2")];
    let pods = vec![pod("x").cpu("3").memory("6Gi").on_node("n2")];
    let s = snapshot(nodes, pods);
    let c = cycle(pod("p").cpu("100m"), &s);
    let all: Vec<&NodeInfo> = s.nodes().iter().collect();
    let totals = total(&c, &all, &s);
    assert!(totals[1] > totals[0], "{totals:?}");
}

#[test]
fn inter_pod_affinity_normalization_truncates_like_upstreams_floats() {
    let nodes = vec![
        node("n1").label("zone", "a"),
        node("n2").label("zone", "b"),
        node("n3").label("zone", "c"),
    ];
    let pods = vec![
        pod("x").label("app", "x").on_node("n1"),
        pod("y").label("app", "y").on_node("n2"),
    ];
    let p = pod("p")
        .preferred_affinity(29, "zone", &[("app", "x")])
        .preferred_affinity(100, "zone", &[("app", "y")]);
    // 100 * (29 / 100) is 28.999… in floating point, so upstream gives 28, not 29.
    assert_eq!(
        run(inter_pod_affinity::scores, p, nodes, pods),
        [28, 100, 0]
    );
}

//! Each filter plugin with a node it accepts and one it rejects, in upstream's words.

use serde_json::json;

use super::*;
use crate::scheduler::testing::{cycle, expr, info, node, pod, snapshot, NodeBuilder, PodBuilder};

/// Runs `filter` for `p` on node `n` of a snapshot of `nodes` and `pods`.
fn run(
    filter: Filter,
    p: PodBuilder,
    nodes: Vec<NodeBuilder>,
    pods: Vec<PodBuilder>,
    n: &str,
) -> Result<(), Reason> {
    let s = snapshot(nodes, pods);
    filter(&cycle(p, &s), info(&s, n), &s)
}

fn messages(r: Result<(), Reason>) -> Vec<String> {
    r.err()
        .map(|r| r.messages.iter().map(|m| m.to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn cordoned_node_rejects_pod_without_toleration() {
    let r = run(
        node_unschedulable::filter,
        pod("p"),
        vec![node("n1").unschedulable()],
        vec![],
        "n1",
    );
    assert_eq!(r, Err(Reason::unresolvable("node(s) were unschedulable")));
}

#[test]
fn cordoned_node_accepts_pod_tolerating_unschedulable_taint() {
    let p = pod("p").toleration(
        "node.kubernetes.io/unschedulable",
        "Exists",
        "",
        "NoSchedule",
    );
    assert!(run(
        node_unschedulable::filter,
        p,
        vec![node("n1").unschedulable()],
        vec![],
        "n1"
    )
    .is_ok());
}

#[test]
fn pod_naming_another_node_is_rejected_elsewhere() {
    let nodes = vec![node("n1"), node("n2")];
    let p = pod("p").on_node("n2");
    let r = run(node_name::filter, p.clone(), nodes.clone(), vec![], "n1");
    assert_eq!(
        messages(r),
        ["node(s) didn't match the requested node name"]
    );
    assert!(run(node_name::filter, p, nodes, vec![], "n2").is_ok());
}

#[test]
fn node_selector_must_match_every_label() {
    let nodes = vec![
        node("n1").label("disk", "ssd"),
        node("n2").label("disk", "hdd"),
    ];
    let p = pod("p").node_selector("disk", "ssd");
    assert!(run(
        node_affinity::filter,
        p.clone(),
        nodes.clone(),
        vec![],
        "n1"
    )
    .is_ok());
    let r = run(node_affinity::filter, p, nodes, vec![], "n2");
    assert_eq!(
        r,
        Err(Reason::unresolvable(
            "node(s) didn't match Pod's node affinity/selector"
        ))
    );
}

#[test]
fn required_node_affinity_operators_match_as_upstream() {
    let n = || vec![node("n1").label("zone", "a").label("cores", "8")];
    let cases = [
        (expr("zone", "In", &["a", "b"]), true),
        (expr("zone", "In", &["b"]), false),
        (expr("zone", "NotIn", &["b"]), true),
        (expr("zone", "NotIn", &["a"]), false),
        (expr("missing", "NotIn", &["a"]), true),
        (expr("zone", "Exists", &[]), true),
        (expr("missing", "Exists", &[]), false),
        (expr("missing", "DoesNotExist", &[]), true),
        (expr("zone", "DoesNotExist", &[]), false),
        (expr("cores", "Gt", &["4"]), true),
        (expr("cores", "Gt", &["8"]), false),
        (expr("cores", "Lt", &["16"]), true),
        (expr("zone", "Lt", &["16"]), false),
        (
            json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}),
            true,
        ),
        (
            json!({"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}),
            false,
        ),
        (json!({}), false),
    ];
    for (term, fits) in cases {
        let p = pod("p").required_node_term(term.clone());
        let r = run(node_affinity::filter, p, n(), vec![], "n1");
        assert_eq!(r.is_ok(), fits, "term {term}");
    }
}

#[test]
fn required_node_affinity_terms_are_ored() {
    let p = pod("p")
        .required_node_term(expr("zone", "In", &["b"]))
        .required_node_term(expr("zone", "In", &["a"]));
    assert!(run(
        node_affinity::filter,
        p,
        vec![node("n1").label("zone", "a")],
        vec![],
        "n1"
    )
    .is_ok());
}

#[test]
fn untolerated_no_schedule_taint_is_named_in_the_reason() {
    let n = vec![node("n1").taint("node.kubernetes.io/not-ready", "", "NoSchedule")];
    let r = run(taint_toleration::filter, pod("p"), n, vec![], "n1");
    assert_eq!(
        r,
        Err(Reason::unresolvable(
            "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
        ))
    );
}

#[test]
fn taint_value_appears_after_the_key() {
    let n = vec![node("n1").taint("dedicated", "gpu", "NoExecute")];
    let r = run(taint_toleration::filter, pod("p"), n, vec![], "n1");
    assert_eq!(
        messages(r),
        ["node(s) had untolerated taint {dedicated: gpu}"]
    );
}

#[test]
fn tolerations_match_as_upstream() {
    let n = || vec![node("n1").taint("dedicated", "gpu", "NoSchedule")];
    let cases = [
        (
            pod("p").toleration("dedicated", "Equal", "gpu", "NoSchedule"),
            true,
        ),
        (
            pod("p").toleration("dedicated", "", "gpu", "NoSchedule"),
            true,
        ),
        (
            pod("p").toleration("dedicated", "Equal", "cpu", "NoSchedule"),
            false,
        ),
        (
            pod("p").toleration("dedicated", "Exists", "", "NoSchedule"),
            true,
        ),
        (pod("p").toleration("dedicated", "Exists", "", ""), true),
        (
            pod("p").toleration("dedicated", "Exists", "", "NoExecute"),
            false,
        ),
        (pod("p").toleration("", "Exists", "", ""), true),
        (pod("p").toleration("other", "Exists", "", ""), false),
    ];
    for (i, (p, fits)) in cases.into_iter().enumerate() {
        assert_eq!(
            run(taint_toleration::filter, p, n(), vec![], "n1").is_ok(),
            fits,
            "case {i}"
        );
    }
}

#[test]
fn prefer_no_schedule_taint_does_not_filter() {
    let n = vec![node("n1").taint("soft", "", "PreferNoSchedule")];
    assert!(run(taint_toleration::filter, pod("p"), n, vec![], "n1").is_ok());
}

#[test]
fn pod_fits_in_what_is_left_of_allocatable() {
    let n = vec![node("n1").cpu("2")];
    let used = vec![pod("a").cpu("1500m").on_node("n1")];
    assert!(run(
        node_resources_fit::filter,
        pod("p").cpu("500m"),
        n.clone(),
        used.clone(),
        "n1"
    )
    .is_ok());
    let r = run(
        node_resources_fit::filter,
        pod("p").cpu("501m"),
        n,
        used,
        "n1",
    );
    assert_eq!(r, Err(Reason::unschedulable("Insufficient cpu")));
}

#[test]
fn every_short_resource_is_a_reason_in_upstream_order() {
    let n = vec![node("n1")
        .cpu("1")
        .memory("1Gi")
        .pods(1)
        .allocatable("example.com/gpu", "1")];
    let used = vec![pod("a").on_node("n1")];
    let p = pod("p")
        .cpu("2")
        .memory("2Gi")
        .request("ephemeral-storage", "1Gi")
        .request("example.com/gpu", "2");
    let r = run(node_resources_fit::filter, p, n, used, "n1");
    assert_eq!(
        messages(r.clone()),
        [
            "Too many pods",
            "Insufficient cpu",
            "Insufficient memory",
            "Insufficient ephemeral-storage",
            "Insufficient example.com/gpu"
        ]
    );
    assert_eq!(r.map_err(|r| r.code), Err(Code::Unresolvable));
}

#[test]
fn request_within_allocatable_but_not_free_is_resolvable() {
    let n = vec![node("n1").cpu("2")];
    let used = vec![pod("a").cpu("2").on_node("n1")];
    let r = run(node_resources_fit::filter, pod("p").cpu("1"), n, used, "n1");
    assert_eq!(r.map_err(|r| r.code), Err(Code::Unschedulable));
}

#[test]
fn terminal_pods_free_their_resources() {
    let n = vec![node("n1").cpu("1")];
    let used = vec![pod("done").cpu("1").on_node("n1").phase("Succeeded")];
    assert!(run(node_resources_fit::filter, pod("p").cpu("1"), n, used, "n1").is_ok());
}

#[test]
fn host_port_in_use_is_rejected() {
    let n = || vec![node("n1")];
    let used = || vec![pod("a").host_port(8080).on_node("n1")];
    let r = run(
        node_ports::filter,
        pod("p").host_port(8080),
        n(),
        used(),
        "n1",
    );
    assert_eq!(
        messages(r),
        ["node(s) didn't have free ports for the requested pod ports"]
    );
    assert!(run(
        node_ports::filter,
        pod("p").host_port(8081),
        n(),
        used(),
        "n1"
    )
    .is_ok());
}

#[test]
fn host_ports_on_distinct_ips_do_not_conflict_but_all_addresses_do() {
    let n = || vec![node("n1")];
    let used = || vec![pod("a").host_port_on("10.0.0.1", 80).on_node("n1")];
    assert!(run(
        node_ports::filter,
        pod("p").host_port_on("10.0.0.2", 80),
        n(),
        used(),
        "n1"
    )
    .is_ok());
    assert!(run(
        node_ports::filter,
        pod("p").host_port(80),
        n(),
        used(),
        "n1"
    )
    .is_err());
}

fn zones() -> Vec<NodeBuilder> {
    vec![
        node("n1").label("zone", "a"),
        node("n2").label("zone", "a"),
        node("n3").label("zone", "b"),
    ]
}

#[test]
fn pod_affinity_needs_a_matching_pod_in_the_domain() {
    let pods = || vec![pod("db").label("app", "db").on_node("n1")];
    let p = || pod("web").affinity("zone", &[("app", "db")]);
    assert!(run(inter_pod_affinity::filter, p(), zones(), pods(), "n2").is_ok());
    let r = run(inter_pod_affinity::filter, p(), zones(), pods(), "n3");
    assert_eq!(
        r,
        Err(Reason::unresolvable(
            "node(s) didn't match pod affinity rules"
        ))
    );
}

#[test]
fn first_pod_with_affinity_to_itself_may_go_anywhere() {
    let p = pod("web")
        .label("app", "web")
        .affinity("zone", &[("app", "web")]);
    assert!(run(inter_pod_affinity::filter, p, zones(), vec![], "n3").is_ok());
}

#[test]
fn pod_anti_affinity_rejects_domains_with_matching_pods() {
    let pods = || vec![pod("web-1").label("app", "web").on_node("n1")];
    let p = || {
        pod("web-2")
            .label("app", "web")
            .anti_affinity("zone", &[("app", "web")])
    };
    let r = run(inter_pod_affinity::filter, p(), zones(), pods(), "n2");
    assert_eq!(
        r,
        Err(Reason::unschedulable(
            "node(s) didn't match pod anti-affinity rules"
        ))
    );
    assert!(run(inter_pod_affinity::filter, p(), zones(), pods(), "n3").is_ok());
}

#[test]
fn existing_pods_anti_affinity_is_honoured() {
    let pods = || {
        vec![pod("loner")
            .anti_affinity("kubernetes.io/hostname", &[("app", "web")])
            .on_node("n1")]
    };
    let r = run(
        inter_pod_affinity::filter,
        pod("web").label("app", "web"),
        zones(),
        pods(),
        "n1",
    );
    assert_eq!(
        messages(r),
        ["node(s) didn't satisfy existing pods anti-affinity rules"]
    );
    assert!(run(
        inter_pod_affinity::filter,
        pod("web").label("app", "web"),
        zones(),
        pods(),
        "n2"
    )
    .is_ok());
}

#[test]
fn affinity_terms_look_in_the_pods_own_namespace_only() {
    let pods = vec![pod("db").ns("other").label("app", "db").on_node("n1")];
    let p = pod("web").affinity("zone", &[("app", "db")]);
    assert!(run(inter_pod_affinity::filter, p, zones(), pods, "n1").is_err());
}

#[test]
fn topology_spread_rejects_domains_over_max_skew() {
    let pods = || vec![pod("a").label("app", "web").on_node("n1")];
    let p = || {
        pod("b")
            .label("app", "web")
            .spread(1, "zone", "DoNotSchedule", &[("app", "web")])
    };
    let r = run(pod_topology_spread::filter, p(), zones(), pods(), "n2");
    assert_eq!(
        r,
        Err(Reason::unschedulable(
            "node(s) didn't match pod topology spread constraints"
        ))
    );
    assert!(run(pod_topology_spread::filter, p(), zones(), pods(), "n3").is_ok());
}

#[test]
fn topology_spread_needs_the_topology_label() {
    let nodes = vec![node("n1").label("zone", "a"), node("bare")];
    let p = pod("b").spread(1, "zone", "DoNotSchedule", &[("app", "web")]);
    let r = run(pod_topology_spread::filter, p, nodes, vec![], "bare");
    assert_eq!(
        r,
        Err(Reason::unresolvable(
            "node(s) didn't match pod topology spread constraints (missing required label)"
        ))
    );
}

#[test]
fn topology_spread_min_domains_counts_missing_domains_as_empty() {
    let pods = vec![pod("a").label("app", "web").on_node("n3")];
    let p = pod("b")
        .label("app", "web")
        .spread(1, "zone", "DoNotSchedule", &[("app", "web")])
        .set("/spec/topologySpreadConstraints/0/minDomains", json!(3));
    // Zone b already holds one pod; with fewer than 3 zones the minimum is 0, so a
    // second pod in b would make skew 2.
    assert!(run(pod_topology_spread::filter, p, zones(), pods, "n3").is_err());
}

#[test]
fn schedule_anyway_constraints_do_not_filter() {
    let pods = vec![pod("a").label("app", "web").on_node("n1")];
    let p = pod("b")
        .label("app", "web")
        .spread(1, "zone", "ScheduleAnyway", &[("app", "web")]);
    assert!(run(pod_topology_spread::filter, p, zones(), pods, "n2").is_ok());
}

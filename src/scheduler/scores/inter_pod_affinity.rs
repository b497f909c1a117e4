//! InterPodAffinity scoring: each domain earns the weights of the pod's preferred
//! affinity terms matching pods there (anti-affinity subtracts), plus, symmetrically,
//! the weights of existing pods' preferred terms (and 1 for each required affinity
//! term, upstream's `hardPodAffinityWeight`) that match the pod. Scaled min..max to
//! 0..=100.

use std::collections::HashMap;

use super::MAX_NODE_SCORE;
use crate::scheduler::cycle::CycleState;
use crate::scheduler::podinfo::{PodInfo, WeightedTerm};
use crate::scheduler::snapshot::{NodeInfo, Snapshot};

/// upstream's default `hardPodAffinityWeight`.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Scores by topology key, then value, so a node is scored in O(keys).
type Domains = HashMap<String, HashMap<String, i64>>;

fn add(domains: &mut Domains, key: &str, node: &NodeInfo, weight: i64) {
    if let Some(value) = node.labels().get(key) {
        let values = domains.entry(key.to_string()).or_default();
        *values.entry(value.clone()).or_default() += weight;
    }
}

fn add_weighted(
    domains: &mut Domains,
    terms: &[WeightedTerm],
    target: &PodInfo,
    node: &NodeInfo,
    sign: i64,
) {
    for t in terms {
        if t.term.matches(target) {
            add(domains, &t.term.topology_key, node, sign * t.weight);
        }
    }
}

/// The score of every topology domain (upstream's PreScore).
fn domain_scores(pod: &PodInfo, snapshot: &Snapshot) -> Domains {
    let mut domains = Domains::new();
    let own = !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
    for node in snapshot.nodes() {
        if !own && node.pods_with_affinity == 0 {
            continue;
        }
        for existing in &node.pods {
            add_weighted(&mut domains, &pod.preferred_affinity, existing, node, 1);
            add_weighted(
                &mut domains,
                &pod.preferred_anti_affinity,
                existing,
                node,
                -1,
            );
            for term in &existing.required_affinity {
                if term.matches(pod) {
                    add(
                        &mut domains,
                        &term.topology_key,
                        node,
                        HARD_POD_AFFINITY_WEIGHT,
                    );
                }
            }
            add_weighted(&mut domains, &existing.preferred_affinity, pod, node, 1);
            add_weighted(
                &mut domains,
                &existing.preferred_anti_affinity,
                pod,
                node,
                -1,
            );
        }
    }
    domains
}

/// Scores every feasible node.
pub fn scores(cycle: &CycleState, feasible: &[&NodeInfo], snapshot: &Snapshot) -> Vec<i64> {
    let domains = domain_scores(&cycle.pod, snapshot);
    if domains.is_empty() {
        return vec![0; feasible.len()];
    }
    let raw: Vec<i64> = feasible
        .iter()
        .map(|n| {
            let labels = n.labels();
            domains
                .iter()
                .filter_map(|(k, values)| values.get(labels.get(k)?))
                .sum()
        })
        .collect();
    let min = raw.iter().copied().min().unwrap_or(0);
    let max = raw.iter().copied().max().unwrap_or(0);
    let diff = max - min;
    raw.into_iter()
        .map(|s| {
            // Upstream divides in floating point before scaling; so do we, to truncate
            // the same way.
            if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((s - min) as f64 / diff as f64)) as i64
            } else {
                0
            }
        })
        .collect()
}

//! PodTopologySpread scoring for `ScheduleAnyway` constraints: the fewer matching pods
//! in a node's domain (weighted by the log of the number of domains), the better; nodes
//! lacking a topology label score 0.

use std::collections::{HashMap, HashSet};

use super::MAX_NODE_SCORE;
use crate::scheduler::cycle::CycleState;
use crate::scheduler::filters::pod_topology_spread::{constraints, has_all_keys, Constraint};
use crate::scheduler::snapshot::{NodeInfo, Snapshot};

const HOSTNAME: &str = "kubernetes.io/hostname";

/// Scores every feasible node.
pub fn scores(cycle: &CycleState, feasible: &[&NodeInfo], snapshot: &Snapshot) -> Vec<i64> {
    let pod = &cycle.pod;
    let soft = constraints(pod, "ScheduleAnyway");
    if soft.is_empty() || feasible.is_empty() {
        return vec![0; feasible.len()];
    }
    let ignored: Vec<bool> = feasible.iter().map(|n| !has_all_keys(&soft, n)).collect();
    let counted = ignored.iter().filter(|i| !**i).count();
    let mut per_value: Vec<HashMap<String, i64>> = Vec::with_capacity(soft.len());
    let mut weights = Vec::with_capacity(soft.len());
    for c in &soft {
        let domains: HashSet<&String> = feasible
            .iter()
            .zip(&ignored)
            .filter(|(_, ign)| !**ign)
            .filter_map(|(n, _)| n.labels().get(&c.topology_key))
            .collect();
        let size = if c.topology_key == HOSTNAME {
            counted
        } else {
            domains.len()
        };
        weights.push(((size + 2) as f64).ln());
        per_value.push(if c.topology_key == HOSTNAME {
            HashMap::new()
        } else {
            count_domains(cycle, c, &soft, &domains, snapshot)
        });
    }
    let raw: Vec<i64> = feasible
        .iter()
        .map(|n| {
            let mut score = 0.0;
            for (i, c) in soft.iter().enumerate() {
                let Some(value) = n.labels().get(&c.topology_key) else {
                    continue;
                };
                let count = if c.topology_key == HOSTNAME {
                    n.pods.iter().filter(|p| c.counts(pod, p)).count() as i64
                } else {
                    per_value[i].get(value).copied().unwrap_or(0)
                };
                score += count as f64 * weights[i] + (c.max_skew - 1) as f64;
            }
            score.round() as i64
        })
        .collect();
    normalize(raw, &ignored)
}

/// Matching pods per domain over every eligible node of the cluster, for the domains
/// the feasible nodes are in.
fn count_domains(
    cycle: &CycleState,
    c: &Constraint,
    all: &[Constraint],
    domains: &HashSet<&String>,
    snapshot: &Snapshot,
) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    for node in snapshot.nodes() {
        if !has_all_keys(all, node) || !c.node_eligible(&cycle.pod, node) {
            continue;
        }
        let Some(value) = node.labels().get(&c.topology_key) else {
            continue;
        };
        if !domains.contains(value) {
            continue;
        }
        let n = node.pods.iter().filter(|p| c.counts(&cycle.pod, p)).count() as i64;
        *out.entry(value.clone()).or_insert(0) += n;
    }
    out
}

/// Upstream's NormalizeScore: `100 * (max + min - score) / max`, ignored nodes 0.
fn normalize(raw: Vec<i64>, ignored: &[bool]) -> Vec<i64> {
    let kept = || {
        raw.iter()
            .zip(ignored)
            .filter(|(_, i)| !**i)
            .map(|(s, _)| *s)
    };
    let min = kept().min().unwrap_or(0);
    let max = kept().max().unwrap_or(0);
    raw.iter()
        .zip(ignored)
        .map(|(&s, &ign)| {
            if ign {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - s) / max
            }
        })
        .collect()
}

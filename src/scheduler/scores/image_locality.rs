//! ImageLocality: prefers nodes that already hold the pod's images, weighing each image
//! by its size and by how many nodes have it (to avoid piling pods onto one node), then
//! clamping between 23MB and 1000MB per container, as upstream.

use super::MAX_NODE_SCORE;
use crate::scheduler::cycle::CycleState;
use crate::scheduler::snapshot::{NodeInfo, Snapshot};

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// An image name as nodes report it: `:latest` added when no tag is given.
pub fn normalized_image_name(image: &str) -> String {
    let colon = image.rfind(':');
    let slash = image.rfind('/');
    if colon.map(|c| c as isize).unwrap_or(-1) <= slash.map(|s| s as isize).unwrap_or(-1) {
        format!("{image}:latest")
    } else {
        image.to_string()
    }
}

/// Scores every feasible node.
pub fn scores(cycle: &CycleState, feasible: &[&NodeInfo], snapshot: &Snapshot) -> Vec<i64> {
    let Some(spec) = cycle.pod.pod.spec.as_ref() else {
        return vec![0; feasible.len()];
    };
    let images: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .filter_map(|c| c.image.as_deref())
        .map(normalized_image_name)
        .collect();
    let containers = spec.containers.len() + spec.init_containers.as_ref().map_or(0, Vec::len);
    let total_nodes = snapshot.nodes().len().max(1) as f64;
    feasible
        .iter()
        .map(|n| {
            let sum: i64 = images
                .iter()
                .filter_map(|image| {
                    let size = *n.image_sizes.get(image)?;
                    let spread = snapshot.image_node_count(image) as f64 / total_nodes;
                    Some((size as f64 * spread) as i64)
                })
                .sum();
            priority(sum, containers as i64)
        })
        .collect()
}

fn priority(sum: i64, containers: i64) -> i64 {
    let max = MAX_CONTAINER_THRESHOLD * containers.max(1);
    let sum = sum.clamp(MIN_THRESHOLD, max.max(MIN_THRESHOLD));
    if max <= MIN_THRESHOLD {
        return 0;
    }
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

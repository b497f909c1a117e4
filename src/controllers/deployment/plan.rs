//! The Deployment controller's decisions, pure: how far to scale each ReplicaSet in a
//! rolling update, in proportion when the Deployment is scaled mid-rollout, which old
//! ReplicaSets to delete, and the status with its Available and Progressing conditions.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::jiff::Timestamp;

use super::util::{self, desired, rs_actual, rs_available, rs_replicas};

/// A ReplicaSet to scale to a size.
pub type Scale = (String, i32);

fn name(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}

/// Upstream's `NewRSNewReplicas`: how big the new ReplicaSet may be now, given the
/// replicas of every ReplicaSet (`all`, the new one included).
pub fn new_rs_new_replicas(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: &ReplicaSet,
) -> Result<i32, String> {
    match util::strategy(d) {
        "RollingUpdate" => {
            let (surge, _) = util::fenceposts(d)?;
            let current: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
            let max_total = desired(d) + surge;
            if current >= max_total {
                return Ok(rs_replicas(new_rs));
            }
            let up = (max_total - current).min(desired(d) - rs_replicas(new_rs));
            Ok(rs_replicas(new_rs) + up)
        }
        "Recreate" => Ok(desired(d)),
        other => Err(format!("deployment type {other} isn't supported")),
    }
}

/// One step of a rolling update (upstream's `rolloutRolling` before the status): scale
/// the new ReplicaSet up (or down to the replicas), or else scale old ones down as far
/// as availability allows, unhealthy replicas first.
pub fn rolling_step(
    d: &Deployment,
    new_rs: &ReplicaSet,
    old: &[&ReplicaSet],
) -> Result<Vec<Scale>, String> {
    let mut all: Vec<&ReplicaSet> = old.to_vec();
    all.push(new_rs);
    if rs_replicas(new_rs) > desired(d) {
        return Ok(vec![(name(new_rs), desired(d))]);
    }
    if rs_replicas(new_rs) < desired(d) {
        let size = new_rs_new_replicas(d, &all, new_rs)?;
        if size != rs_replicas(new_rs) {
            return Ok(vec![(name(new_rs), size)]);
        }
    }
    // reconcileOldReplicaSets.
    let mut old: Vec<(&ReplicaSet, i32)> = old
        .iter()
        .filter(|rs| rs_replicas(rs) > 0)
        .map(|rs| (*rs, rs_replicas(rs)))
        .collect();
    if old.iter().map(|(_, n)| n).sum::<i32>() == 0 {
        return Ok(Vec::new());
    }
    old.sort_by(|(a, _), (b, _)| util::by_creation(a, b));
    let all_pods: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let min_available = desired(d) - util::max_unavailable(d);
    let new_unavailable = rs_replicas(new_rs) - rs_available(new_rs);
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Ok(Vec::new());
    }
    // cleanupUnhealthyReplicas.
    let mut cleaned = 0;
    for (rs, size) in old.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = *size - rs_available(rs);
        if *size == 0 || unhealthy <= 0 {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(unhealthy);
        *size -= down;
        cleaned += down;
    }
    // scaleDownOldReplicaSetsForRollingUpdate.
    let available: i32 = all.iter().map(|rs| rs_available(rs)).sum();
    if available > min_available {
        let budget = available - min_available;
        let mut done = 0;
        for (_, size) in old.iter_mut() {
            if done >= budget {
                break;
            }
            if *size == 0 {
                continue;
            }
            let down = (*size).min(budget - done);
            *size -= down;
            done += down;
        }
    }
    Ok(old
        .into_iter()
        .filter(|(rs, size)| *size != rs_replicas(rs))
        .map(|(rs, size)| (name(rs), size))
        .collect())
}

/// Upstream's `IsSaturated`: the ReplicaSet has, and had desired, all the replicas.
pub fn is_saturated(d: &Deployment, rs: &ReplicaSet) -> bool {
    util::desired_annotation(rs) == Some(desired(d))
        && rs_replicas(rs) == desired(d)
        && rs_available(rs) == desired(d)
}

/// Upstream's `scale`: the sizes after the Deployment's replicas changed. One active
/// ReplicaSet (or none: the newest) takes them all; a saturated new one leaves the old
/// at zero; during a rolling update every active ReplicaSet gets its proportion of the
/// change, larger ones first, leftovers to the largest. Each entry is to be applied even
/// when the size is the same, as the replicas annotations may need to follow.
pub fn proportional(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old: &[&ReplicaSet],
) -> Vec<Scale> {
    let mut old_sorted = old.to_vec();
    old_sorted.sort_by(|a, b| util::by_creation(b, a));
    let active: Vec<&ReplicaSet> = old_sorted
        .iter()
        .copied()
        .chain(new_rs)
        .filter(|rs| rs_replicas(rs) > 0)
        .collect();
    match active.len() {
        0 => {
            let latest = new_rs.or(old_sorted.first().copied());
            return latest
                .filter(|rs| rs_replicas(rs) != desired(d))
                .map(|rs| vec![(name(rs), desired(d))])
                .unwrap_or_default();
        }
        1 => {
            let rs = active[0];
            return if rs_replicas(rs) == desired(d) {
                Vec::new()
            } else {
                vec![(name(rs), desired(d))]
            };
        }
        _ => {}
    }
    if new_rs.is_some_and(|rs| is_saturated(d, rs)) {
        return old
            .iter()
            .filter(|rs| rs_replicas(rs) > 0)
            .map(|rs| (name(rs), 0))
            .collect();
    }
    if !util::is_rolling(d) {
        return Vec::new();
    }
    let mut all = active;
    let total: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let allowed = if desired(d) > 0 {
        desired(d) + util::max_surge(d)
    } else {
        0
    };
    let to_add = allowed - total;
    if to_add > 0 {
        // Larger first; among equals the newer first.
        all.sort_by(|a, b| {
            rs_replicas(b)
                .cmp(&rs_replicas(a))
                .then_with(|| util::by_creation(b, a))
        });
    } else if to_add < 0 {
        // Larger first; among equals the older first.
        all.sort_by(|a, b| {
            rs_replicas(b)
                .cmp(&rs_replicas(a))
                .then_with(|| util::by_creation(a, b))
        });
    }
    let mut added = 0;
    let mut sizes: Vec<Scale> = Vec::new();
    for rs in &all {
        let proportion = if to_add != 0 {
            proportion(d, rs, to_add, added)
        } else {
            0
        };
        added += proportion;
        sizes.push((name(rs), rs_replicas(rs) + proportion));
    }
    if to_add != 0 {
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
    }
    sizes
}

/// Upstream's `GetProportion`: the share of `to_add` for `rs`, never beyond what is left.
fn proportion(d: &Deployment, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(d, rs);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Upstream's `getReplicaSetFraction`.
fn fraction(d: &Deployment, rs: &ReplicaSet) -> i32 {
    if desired(d) == 0 {
        return -rs_replicas(rs);
    }
    let max_now = desired(d) + util::max_surge(d);
    let annotated = rs
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(util::MAX_REPLICAS))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(rs_replicas(rs)) * f64::from(max_now) / f64::from(annotated);
    size.round() as i32 - rs_replicas(rs)
}

/// Upstream's `cleanupDeployment`: the old ReplicaSets beyond revisionHistoryLimit,
/// lowest revision first, that are empty, settled and not being deleted.
pub fn cleanup(d: &Deployment, old: &[&ReplicaSet]) -> Vec<String> {
    let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
        return Vec::new();
    };
    let mut alive: Vec<&ReplicaSet> = old
        .iter()
        .copied()
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .collect();
    let diff = alive.len() as i64 - i64::from(limit);
    if diff <= 0 {
        return Vec::new();
    }
    alive.sort_by(|a, b| {
        util::revision(a)
            .cmp(&util::revision(b))
            .then_with(|| util::by_creation(a, b))
    });
    alive
        .into_iter()
        .take(diff as usize)
        .filter(|rs| {
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            rs_actual(rs) == 0
                && rs_replicas(rs) == 0
                && rs.metadata.generation.unwrap_or(0) <= observed
        })
        .map(name)
        .collect()
}

/// Upstream's `calculateStatus`: counts over every ReplicaSet, and Available.
pub fn status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let available: i32 = all.iter().map(|rs| rs_available(rs)).sum();
    let total: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let current = d.status.clone().unwrap_or_default();
    let mut s = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(all.iter().map(|rs| rs_actual(rs)).sum()),
        updated_replicas: Some(new_rs.map_or(0, rs_actual)),
        ready_replicas: Some(
            all.iter()
                .map(|rs| {
                    rs.status
                        .as_ref()
                        .and_then(|s| s.ready_replicas)
                        .unwrap_or(0)
                })
                .sum(),
        ),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: current.collision_count,
        conditions: current.conditions.clone(),
        terminating_replicas: None,
    };
    let cond = if available >= desired(d) - util::max_unavailable(d) {
        util::new_condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        util::new_condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    util::set_condition(&mut s, cond);
    s
}

/// Upstream's `HasProgressDeadline`.
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

/// Upstream's `DeploymentComplete`.
pub fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let n = desired(d);
    s.updated_replicas.unwrap_or(0) == n
        && s.replicas.unwrap_or(0) == n
        && s.available_replicas.unwrap_or(0) == n
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

fn progressing(d: &Deployment, s: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    n(s.updated_replicas) > n(old.updated_replicas)
        || n(s.replicas) - n(s.updated_replicas) < n(old.replicas) - n(old.updated_replicas)
        || n(s.ready_replicas) > n(old.ready_replicas)
        || n(s.available_replicas) > n(old.available_replicas)
}

fn timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    let (Some(deadline), Some(cond)) = (progress_deadline(d), util::condition(s, "Progressing"))
    else {
        return false;
    };
    match cond.reason.as_deref() {
        Some("NewReplicaSetAvailable") => false,
        Some("ProgressDeadlineExceeded") => true,
        _ => cond
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0.as_second() + i64::from(deadline) < now.as_second()),
    }
}

/// Upstream's `syncRolloutStatus` without the write: the status with the Progressing
/// condition estimated and the ReplicaFailure of the ReplicaSets (`failure`) carried.
pub fn rollout_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    failure: Option<DeploymentCondition>,
    now: Timestamp,
) -> DeploymentStatus {
    let mut s = status(d, all, new_rs, now);
    if progress_deadline(d).is_none() {
        util::remove_condition(&mut s, "Progressing");
    }
    let current = d
        .status
        .as_ref()
        .and_then(|st| util::condition(st, "Progressing"))
        .cloned();
    let was_complete = s.replicas == s.updated_replicas
        && current
            .as_ref()
            .is_some_and(|c| c.reason.as_deref() == Some("NewReplicaSetAvailable"));
    if progress_deadline(d).is_some() && !was_complete {
        let who = match new_rs {
            Some(rs) => format!("ReplicaSet {:?}", name(rs)),
            None => format!(
                "Deployment {:?}",
                d.metadata.name.as_deref().unwrap_or_default()
            ),
        };
        if complete(d, &s) {
            let c = util::new_condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                format!("{who} has successfully progressed."),
                now,
            );
            util::set_condition(&mut s, c);
        } else if progressing(d, &s) {
            let mut c = util::new_condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                format!("{who} is progressing."),
                now,
            );
            if let Some(cur) = &current {
                if cur.status == "True" {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                util::remove_condition(&mut s, "Progressing");
            }
            util::set_condition(&mut s, c);
        } else if timed_out(d, &s, now) {
            let c = util::new_condition(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                format!("{who} has timed out progressing."),
                now,
            );
            util::set_condition(&mut s, c);
        }
    }
    match failure {
        Some(c) => util::set_condition(&mut s, c),
        None => util::remove_condition(&mut s, "ReplicaFailure"),
    }
    s
}

/// Upstream's `requeueStuckDeployment`: when to look again for a deadline passing.
pub fn requeue_stuck(d: &Deployment, next: &DeploymentStatus, now: Timestamp) -> Option<Duration> {
    let deadline = progress_deadline(d)?;
    let cond = d
        .status
        .as_ref()
        .and_then(|s| util::condition(s, "Progressing"))?;
    if complete(d, next) || cond.reason.as_deref() == Some("ProgressDeadlineExceeded") {
        return None;
    }
    let updated = cond.last_update_time.as_ref()?.0.as_second();
    let after = updated + i64::from(deadline) - now.as_second();
    Some(if after < 1 {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(after as u64 + 1)
    })
}

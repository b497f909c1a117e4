//! The DaemonSet controller's decisions, pure: which nodes should run a daemon pod
//! (upstream's `NodeShouldRunDaemonPod`), which pods to create and delete (`manage` and
//! `rollingUpdate`), and the status the set reports (`updateDaemonSetStatus`).

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, Toleration};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::scheduler::filters::node_affinity::spec_matches_required;
use crate::scheduler::filters::taint_toleration::tolerates;

/// The label naming the ControllerRevision a pod was made from.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// The deprecated label carrying the set's generation when the pod was made.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// Whether a node should run the daemon pod, and whether a pod already there may stay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fit {
    /// A pod should be created there if none is.
    pub should_run: bool,
    /// A pod there may keep running (an untolerated `NoSchedule` taint alone keeps it).
    pub should_continue: bool,
}

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    }
}

/// The tolerations upstream adds to every daemon pod (`AddOrUpdateDaemonPodTolerations`):
/// not-ready and unreachable `NoExecute` with no time limit, the pressure conditions and
/// unschedulable `NoSchedule`, and network-unavailable for host-network pods.
pub fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut out = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        out.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    out
}

/// `spec` with the daemon tolerations added: one equal in key, operator, value and
/// effect replaces the pod's own (the daemon's has no time limit), others are appended.
pub fn with_daemon_tolerations(spec: &PodSpec) -> PodSpec {
    let mut spec = spec.clone();
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for added in daemon_tolerations(spec.host_network.unwrap_or(false)) {
        let same = |t: &Toleration| {
            t.key == added.key
                && t.operator.as_deref().unwrap_or("Equal") == "Exists"
                && t.value.as_deref().unwrap_or("").is_empty()
                && t.effect == added.effect
        };
        match tolerations.iter_mut().find(|t| same(t)) {
            Some(existing) => *existing = added,
            None => tolerations.push(added),
        }
    }
    spec
}

/// Upstream's `NodeShouldRunDaemonPod` for a pod spec that already has the daemon
/// tolerations: the node selector and required node affinity must match, every
/// `NoSchedule` and `NoExecute` taint must be tolerated; an untolerated `NoSchedule`
/// taint alone still lets a pod already there stay.
pub fn node_fit(spec: &PodSpec, node: &Node) -> Fit {
    const NO: Fit = Fit {
        should_run: false,
        should_continue: false,
    };
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    if spec.node_name.as_deref().is_some_and(|n| n != name)
        || !spec_matches_required(spec, name, labels)
    {
        return NO;
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    let untolerated = |effect: &str| {
        node.spec
            .iter()
            .flat_map(|s| s.taints.iter().flatten())
            .any(|taint| taint.effect == effect && !tolerations.iter().any(|t| tolerates(t, taint)))
    };
    if untolerated("NoExecute") {
        return NO;
    }
    Fit {
        should_run: !untolerated("NoSchedule"),
        should_continue: true,
    }
}

/// The node a daemon pod is for: its `nodeName`, else the single node its required
/// affinity names by `metadata.name` (upstream's `GetTargetNodeName`).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|r| {
            let values = r.values.as_deref().unwrap_or(&[]);
            (r.key == "metadata.name" && r.operator == "In" && values.len() == 1)
                .then(|| values[0].clone())
        })
    })
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// Whether the pod is Ready.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Since when the pod has been Ready (the epoch when the condition has no time).
fn ready_since(pod: &Pod) -> Option<i64> {
    let cond = pod
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(
        cond.last_transition_time
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
    )
}

/// Whether the pod has been Ready for `min_ready` seconds at `now` (unix seconds).
pub fn is_available(pod: &Pod, min_ready: i64, now: i64) -> bool {
    ready_since(pod).is_some_and(|since| min_ready <= 0 || since + min_ready <= now)
}

/// Whether the pod was made from the current template: its revision hash label, else
/// (pods of old controllers) its template generation.
pub fn is_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    match label(pod, REVISION_HASH_LABEL) {
        Some(h) => h == hash,
        None => {
            let gen = label(pod, TEMPLATE_GENERATION_LABEL);
            generation.is_some_and(|g| gen == Some(g.to_string().as_str()))
        }
    }
}

/// What the set, its nodes and its pods look like to the planner.
pub struct World<'a> {
    /// The set.
    pub ds: &'a DaemonSet,
    /// The hash of its current template.
    pub hash: &'a str,
    /// Every node.
    pub nodes: &'a [Node],
    /// The pods the set owns.
    pub pods: &'a [Pod],
    /// Now, in unix seconds.
    pub now: i64,
}

/// What to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Nodes to create a daemon pod for.
    pub create: Vec<String>,
    /// Pods to delete, by name.
    pub delete: Vec<String>,
    /// Failed pods among those deleted, with their node, for a warning event.
    pub failed: Vec<(String, String)>,
}

/// One node as the planner sees it.
struct Slot<'a> {
    name: String,
    fit: Fit,
    /// Pods not being deleted, oldest first.
    live: Vec<&'a Pod>,
    /// Whether any pod for the node is being deleted.
    terminating: bool,
}

fn created(pod: &Pod) -> (Option<i64>, &str) {
    let at = pod.metadata.creation_timestamp.as_ref();
    (
        at.map(|t| t.0.as_second()),
        pod.metadata.name.as_deref().unwrap_or_default(),
    )
}

impl World<'_> {
    fn spec(&self) -> PodSpec {
        let template = self.ds.spec.as_ref().and_then(|s| s.template.spec.clone());
        with_daemon_tolerations(&template.unwrap_or_default())
    }

    fn min_ready(&self) -> i64 {
        self.ds
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .map_or(0, i64::from)
    }

    fn available(&self, pod: &Pod) -> bool {
        is_available(pod, self.min_ready(), self.now)
    }

    fn updated(&self, pod: &Pod) -> bool {
        is_updated(pod, self.hash, self.ds.metadata.generation)
    }

    /// Every node, sorted by name, with its fit and its pods.
    fn slots(&self) -> Vec<Slot<'_>> {
        let spec = self.spec();
        let mut slots: Vec<Slot> = self
            .nodes
            .iter()
            .map(|n| Slot {
                name: n.metadata.name.clone().unwrap_or_default(),
                fit: node_fit(&spec, n),
                live: Vec::new(),
                terminating: false,
            })
            .collect();
        slots.sort_by(|a, b| a.name.cmp(&b.name));
        for pod in self.pods {
            let Some(node) = target_node(pod) else {
                continue;
            };
            if let Ok(i) = slots.binary_search_by(|s| s.name.as_str().cmp(&node)) {
                if pod.metadata.deletion_timestamp.is_some() {
                    slots[i].terminating = true;
                } else {
                    slots[i].live.push(pod);
                }
            }
        }
        for slot in &mut slots {
            slot.live.sort_by_key(|p| created(p));
        }
        slots
    }

    /// Surge allowed during a rolling update (0 with OnDelete).
    fn max_surge_and_unavailable(&self, desired: i32) -> Option<(i32, i32)> {
        let strategy = self.ds.spec.as_ref()?.update_strategy.as_ref();
        if strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
            return None;
        }
        let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
        let surge = scaled(rolling.and_then(|r| r.max_surge.as_ref()), desired, 0);
        let unavailable = scaled(rolling.and_then(|r| r.max_unavailable.as_ref()), desired, 1);
        // Upstream: both zero would block the update, so one may be unavailable.
        Some((
            surge,
            if surge == 0 && unavailable == 0 {
                1
            } else {
                unavailable
            },
        ))
    }
}

/// An int-or-percent of `total`, percentages rounded up as upstream, `default` if unset.
pub fn scaled(value: Option<&IntOrString>, total: i32, default: i32) -> i32 {
    match value {
        None => default,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => match s.strip_suffix('%').map(str::parse::<i64>) {
            Some(Ok(p)) => ((p * i64::from(total) + 99) / 100) as i32,
            _ => default,
        },
    }
}

/// The creates and deletes that bring the pods in line with the nodes (upstream's
/// `manage`), then the rolling update's next step.
pub fn plan(world: &World) -> Plan {
    let slots = world.slots();
    let mut plan = Plan::default();
    let budget = {
        let desired = slots.iter().filter(|s| s.fit.should_run).count() as i32;
        world.max_surge_and_unavailable(desired)
    };
    let surge = budget.is_some_and(|(s, _)| s > 0);
    let mut settled = HashSet::new();
    for slot in &slots {
        let before = (plan.create.len(), plan.delete.len());
        manage_node(world, slot, surge, &mut plan);
        if (plan.create.len(), plan.delete.len()) == before {
            settled.insert(slot.name.as_str());
        }
    }
    if let Some((max_surge, max_unavailable)) = budget {
        let eligible = slots.iter().filter(|s| s.fit.should_continue);
        let (ready, changing): (Vec<&Slot>, Vec<&Slot>) =
            eligible.partition(|s| settled.contains(s.name.as_str()));
        if max_surge > 0 {
            roll_with_surge(world, ready.into_iter(), max_surge, &mut plan);
        } else {
            // A node whose pod the manage step is creating or deleting is unavailable.
            let budget = max_unavailable - changing.len() as i32;
            roll_without_surge(world, ready.into_iter(), budget, &mut plan);
        }
    }
    plan
}

fn manage_node(world: &World, slot: &Slot, surge: bool, plan: &mut Plan) {
    let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
    if !slot.fit.should_continue {
        plan.delete.extend(slot.live.iter().map(|p| name(p)));
        return;
    }
    if slot.fit.should_run && slot.live.is_empty() && !slot.terminating {
        plan.create.push(slot.name.clone());
        return;
    }
    let (failed, running): (Vec<&Pod>, Vec<&Pod>) =
        slot.live.iter().partition(|p| phase(p) == "Failed");
    for pod in failed {
        plan.delete.push(name(pod));
        plan.failed.push((name(pod), slot.name.clone()));
    }
    if !surge {
        // More than one: all but the oldest go.
        plan.delete.extend(running.iter().skip(1).map(|p| name(p)));
        return;
    }
    // With surge, the oldest updated pod and the oldest old one may both stay.
    let (mut new, mut old) = (None, None);
    for pod in running {
        let keep = if world.updated(pod) {
            &mut new
        } else {
            &mut old
        };
        if keep.is_none() {
            *keep = Some(pod);
        } else {
            plan.delete.push(name(pod));
        }
    }
    if let (Some(new), Some(old)) = (new, old) {
        if world.available(new) {
            plan.delete.push(name(old));
        }
    }
}

/// The one updated and the one old pod on a settled node (manage leaves at most one of
/// each, and only one without surge).
fn split<'a>(world: &World, slot: &Slot<'a>) -> (Option<&'a Pod>, Option<&'a Pod>) {
    let new = slot.live.iter().find(|p| world.updated(p)).copied();
    let old = slot.live.iter().find(|p| !world.updated(p)).copied();
    (new, old)
}

/// maxSurge 0: old pods are deleted (the manage step then creates their replacement)
/// while at most `max_unavailable` nodes lack an available pod; unavailable old pods go
/// at once.
fn roll_without_surge<'a>(
    world: &World,
    slots: impl Iterator<Item = &'a Slot<'a>>,
    max_unavailable: i32,
    plan: &mut Plan,
) {
    let mut unavailable = 0;
    let mut candidates = Vec::new();
    for slot in slots {
        match split(world, slot) {
            (Some(new), None) => unavailable += i32::from(!world.available(new)),
            (None, Some(old)) if !world.available(old) => {
                unavailable += 1;
                plan.delete
                    .push(old.metadata.name.clone().unwrap_or_default());
            }
            (None, Some(old)) => candidates.push(old.metadata.name.clone().unwrap_or_default()),
            _ => unavailable += 1,
        }
    }
    let room = (max_unavailable - unavailable).max(0) as usize;
    plan.delete.extend(candidates.into_iter().take(room));
}

/// maxSurge > 0: a new pod is created beside the old one on up to `max_surge` nodes at
/// once (at once where the old one is unavailable); the old one goes when the new one is
/// available.
fn roll_with_surge<'a>(
    world: &World,
    slots: impl Iterator<Item = &'a Slot<'a>>,
    max_surge: i32,
    plan: &mut Plan,
) {
    let mut surging = 0;
    let mut candidates = Vec::new();
    for slot in slots {
        match split(world, slot) {
            (None, Some(old)) if !world.available(old) => plan.create.push(slot.name.clone()),
            (None, Some(_)) => candidates.push(slot.name.clone()),
            // The manage step deletes the old pod once the new one is available.
            (Some(new), Some(_)) => surging += i32::from(!world.available(new)),
            _ => {}
        }
    }
    let room = (max_surge - surging).max(0) as usize;
    plan.create.extend(candidates.into_iter().take(room));
}

/// The status the set should report (upstream's `updateDaemonSetStatus`), keeping the
/// collision count.
pub fn status(world: &World) -> DaemonSetStatus {
    let mut st = DaemonSetStatus {
        observed_generation: world.ds.metadata.generation,
        collision_count: world.ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: world.ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..DaemonSetStatus::default()
    };
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    for slot in world.slots() {
        let scheduled = !slot.live.is_empty();
        if slot.fit.should_run {
            st.desired_number_scheduled += 1;
            if let Some(oldest) = slot.live.first() {
                st.current_number_scheduled += 1;
                ready += i32::from(is_ready(oldest));
                available += i32::from(is_ready(oldest) && world.available(oldest));
                updated += i32::from(slot.live.iter().any(|p| world.updated(p)));
            }
        } else if scheduled {
            st.number_misscheduled += 1;
        }
    }
    st.number_ready = ready;
    st.number_available = Some(available).filter(|n| *n > 0);
    st.updated_number_scheduled = Some(updated).filter(|n| *n > 0);
    st.number_unavailable = Some(st.desired_number_scheduled - available).filter(|n| *n > 0);
    st
}

/// Whether some pod is Ready but not yet available, so the set must be looked at again
/// once `minReadySeconds` have passed.
pub fn awaits_availability(world: &World) -> bool {
    world
        .pods
        .iter()
        .any(|p| is_ready(p) && !world.available(p))
}

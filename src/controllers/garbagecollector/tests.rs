//! The garbage collector's decisions and graph, without the API.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::PropagationPolicy;

use super::decide::{attempt_to_delete, deleting_dependents, orphan, Op, OwnerState};
use super::graph::{Graph, Identity, Node, FOREGROUND, ORPHAN};

fn id(kind: &str, name: &str, uid: &str) -> Identity {
    Identity {
        api_version: if kind == "ReplicaSet" {
            "apps/v1"
        } else {
            "v1"
        }
        .into(),
        kind: kind.into(),
        plural: format!("{}s", kind.to_lowercase()),
        namespace: Some("default".into()),
        name: name.into(),
        uid: uid.into(),
    }
}

fn owner_ref(kind: &str, name: &str, uid: &str, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: if kind == "ReplicaSet" {
            "apps/v1"
        } else {
            "v1"
        }
        .into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(block),
    }
}

fn node(identity: Identity, owners: Vec<OwnerReference>) -> Node {
    Node {
        identity,
        resource_version: "7".into(),
        owners,
        deleting: false,
        finalizers: Vec::new(),
    }
}

fn pod(name: &str, owners: Vec<OwnerReference>) -> Node {
    node(id("Pod", name, &format!("uid-{name}")), owners)
}

fn deleting(mut n: Node, finalizer: &str) -> Node {
    n.deleting = true;
    n.finalizers.push(finalizer.into());
    n
}

#[test]
fn a_dependent_whose_only_owner_is_gone_is_deleted_in_the_background() {
    let p = pod("web-1", vec![owner_ref("ReplicaSet", "web", "rs1", true)]);
    assert_eq!(
        attempt_to_delete(&p, &[OwnerState::Absent], false, false),
        vec![Op::Delete {
            target: p.identity.clone(),
            propagation: PropagationPolicy::Background
        }]
    );
    // Its own finalizers choose how its dependents go.
    let mut held = p.clone();
    held.finalizers.push(ORPHAN.into());
    assert!(matches!(
        &attempt_to_delete(&held, &[OwnerState::Absent], false, false)[..],
        [Op::Delete {
            propagation: PropagationPolicy::Orphan,
            ..
        }]
    ));
}

#[test]
fn a_dependent_with_a_live_owner_stays_and_loses_only_its_dangling_references() {
    let p = pod(
        "web-1",
        vec![
            owner_ref("ReplicaSet", "web", "rs1", true),
            owner_ref("ConfigMap", "cfg", "cm1", false),
        ],
    );
    assert!(attempt_to_delete(
        &p,
        &[OwnerState::Present, OwnerState::Present],
        false,
        false
    )
    .is_empty());
    let ops = attempt_to_delete(&p, &[OwnerState::Present, OwnerState::Absent], false, false);
    assert_eq!(
        ops,
        vec![Op::SetOwners {
            target: p.identity.clone(),
            resource_version: "7".into(),
            owners: vec![owner_ref("ReplicaSet", "web", "rs1", true)],
        }]
    );
}

#[test]
fn dependents_of_a_foreground_deletion_go_and_their_own_dependents_first() {
    let leaf = pod("web-1", vec![owner_ref("ReplicaSet", "web", "rs1", true)]);
    assert!(matches!(
        &attempt_to_delete(&leaf, &[OwnerState::DeletingDependents], false, false)[..],
        [Op::Delete {
            propagation: PropagationPolicy::Background,
            ..
        }]
    ));
    let middle = node(
        id("ReplicaSet", "web", "rs1"),
        vec![owner_ref("Deployment", "web", "d1", true)],
    );
    assert!(matches!(
        &attempt_to_delete(&middle, &[OwnerState::DeletingDependents], true, false)[..],
        [Op::Delete {
            propagation: PropagationPolicy::Foreground,
            ..
        }]
    ));
}

#[test]
fn a_cycle_of_blocking_references_is_broken_before_the_foreground_deletion() {
    let middle = node(
        id("ReplicaSet", "web", "rs1"),
        vec![owner_ref("Deployment", "web", "d1", true)],
    );
    let ops = attempt_to_delete(&middle, &[OwnerState::DeletingDependents], true, true);
    let Op::SetOwners { owners, .. } = &ops[0] else {
        panic!("the references are unblocked first: {ops:?}")
    };
    assert_eq!(owners[0].block_owner_deletion, Some(false));
    assert!(matches!(
        ops[1],
        Op::Delete {
            propagation: PropagationPolicy::Foreground,
            ..
        }
    ));
}

#[test]
fn an_object_being_deleted_or_without_owners_is_left_alone() {
    let gone = deleting(
        pod("a", vec![owner_ref("ReplicaSet", "web", "rs1", true)]),
        "example.com/x",
    );
    assert!(attempt_to_delete(&gone, &[OwnerState::Absent], false, false).is_empty());
    assert!(attempt_to_delete(&pod("b", vec![]), &[], false, false).is_empty());
}

#[test]
fn a_foreground_owner_keeps_its_finalizer_while_a_blocking_dependent_remains() {
    let owner = deleting(node(id("ReplicaSet", "web", "rs1"), vec![]), FOREGROUND);
    let blocking = pod("web-1", vec![owner_ref("ReplicaSet", "web", "rs1", true)]);
    let loose = pod("web-2", vec![owner_ref("ReplicaSet", "web", "rs1", false)]);
    assert!(deleting_dependents(&owner, &[&blocking, &loose]).is_empty());
    assert_eq!(
        deleting_dependents(&owner, &[&loose]),
        vec![Op::SetFinalizers {
            target: owner.identity.clone(),
            resource_version: "7".into(),
            finalizers: vec![],
        }]
    );
}

#[test]
fn orphaning_strips_the_reference_from_every_dependent_then_the_finalizer() {
    let mut owner = deleting(node(id("ReplicaSet", "web", "rs1"), vec![]), ORPHAN);
    owner.finalizers.insert(0, "example.com/keep".into());
    let a = pod(
        "web-1",
        vec![
            owner_ref("ReplicaSet", "web", "rs1", true),
            owner_ref("ConfigMap", "c", "cm1", false),
        ],
    );
    let b = pod("web-2", vec![owner_ref("ReplicaSet", "web", "rs1", true)]);
    let ops = orphan(&owner, &[&a, &b]);
    assert_eq!(ops.len(), 3);
    assert_eq!(
        ops[0],
        Op::SetOwners {
            target: a.identity.clone(),
            resource_version: "7".into(),
            owners: vec![owner_ref("ConfigMap", "c", "cm1", false)],
        }
    );
    assert!(matches!(&ops[1], Op::SetOwners { owners, .. } if owners.is_empty()));
    assert_eq!(
        ops[2],
        Op::SetFinalizers {
            target: owner.identity.clone(),
            resource_version: "7".into(),
            finalizers: vec!["example.com/keep".into()],
        }
    );
}

#[test]
fn the_graph_says_whom_to_look_at_again() {
    let mut g = Graph::default();
    let rs = node(id("ReplicaSet", "web", "rs1"), vec![]);
    let p = pod("web-1", vec![owner_ref("ReplicaSet", "web", "rs1", true)]);
    assert!(
        g.observe(rs.clone()).is_empty(),
        "no owners, nothing to check"
    );
    assert_eq!(g.observe(p.clone()), vec!["uid-web-1".to_string()]);
    assert!(
        g.observe(p.clone()).is_empty(),
        "an unchanged object is not rechecked"
    );
    assert_eq!(g.dependents_of("rs1").len(), 1);
    // The owner starts a foreground deletion: it and its dependents are looked at.
    let mut work = g.observe(deleting(rs.clone(), FOREGROUND));
    work.sort();
    assert_eq!(work, vec!["rs1".to_string(), "uid-web-1".to_string()]);
    // The dependent goes: the owner waiting for it is looked at again.
    assert_eq!(g.forget("uid-web-1"), vec!["rs1".to_string()]);
    assert!(g.dependents_of("rs1").is_empty());
    // A dependent whose owner goes is looked at again.
    g.observe(p.clone());
    assert_eq!(g.forget("rs1"), vec!["uid-web-1".to_string()]);
    assert_eq!(g.uids_of("v1", "pods"), vec!["uid-web-1".to_string()]);
}

#[test]
fn an_owner_marked_for_orphaning_is_looked_at() {
    let mut g = Graph::default();
    let rs = node(id("ReplicaSet", "web", "rs1"), vec![]);
    g.observe(rs.clone());
    assert_eq!(g.observe(deleting(rs, ORPHAN)), vec!["rs1".to_string()]);
}

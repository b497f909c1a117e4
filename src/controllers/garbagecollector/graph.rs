//! The garbage collector's view of the cluster: every object of every kind it watches, by
//! uid, with its owner references, and the reverse index from an owner's uid to the
//! objects that name it (upstream's `uidToNode` and each node's `dependents`). Recording
//! an observation answers which objects must be looked at again.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// The finalizer that makes the garbage collector orphan an object's dependents.
pub const ORPHAN: &str = "orphan";
/// The finalizer that makes the garbage collector delete an object's dependents first.
pub const FOREGROUND: &str = "foregroundDeletion";

/// Which object: enough to address it through the API and to match owner references.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// `apps/v1`, `v1`, …
    pub api_version: String,
    /// `ReplicaSet`, …
    pub kind: String,
    /// `replicasets`, …
    pub plural: String,
    /// Its namespace; none for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
}

impl Identity {
    /// The API group of its kind ("" for the core group).
    pub fn group(&self) -> &str {
        group_of(&self.api_version)
    }

    /// `kind/namespace/name`, for logs.
    pub fn key(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{ns}/{}", self.kind, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }
}

/// The group part of an `apiVersion`.
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// An object as the garbage collector keeps it: its metadata only.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Which object.
    pub identity: Identity,
    /// The version last seen, a precondition of the patches written to it.
    pub resource_version: String,
    /// `metadata.ownerReferences`.
    pub owners: Vec<OwnerReference>,
    /// Whether it has a deletionTimestamp.
    pub deleting: bool,
    /// `metadata.finalizers`.
    pub finalizers: Vec<String>,
}

impl Node {
    /// Whether it carries `finalizer`.
    pub fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    /// Being deleted in the foreground: waiting for its dependents to go first.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }

    /// Being deleted with its dependents orphaned.
    pub fn orphaning(&self) -> bool {
        self.deleting && self.has_finalizer(ORPHAN)
    }

    /// Whether this object names `owner` (by uid) with blockOwnerDeletion set.
    pub fn blocks(&self, owner: &str) -> bool {
        self.owners
            .iter()
            .any(|r| r.uid == owner && r.block_owner_deletion == Some(true))
    }
}

/// Every object watched, and who owns whom.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    /// Owner uid to the uids of the objects that name it; an owner need not be known.
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    /// The object with `uid`, if it is known.
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The known objects that name `uid` as an owner.
    pub fn dependents_of(&self, uid: &str) -> Vec<&Node> {
        let mut out: Vec<&Node> = self
            .dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d))
            .collect();
        out.sort_by_key(|a| a.identity.key());
        out
    }

    /// The uids of the known objects of one resource (`apiVersion`, plural).
    pub fn uids_of(&self, api_version: &str, plural: &str) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.identity.api_version == api_version && n.identity.plural == plural)
            .map(|n| n.identity.uid.clone())
            .collect()
    }

    /// Records an object as seen now; returns the uids to look at again.
    pub fn observe(&mut self, node: Node) -> Vec<String> {
        let uid = node.identity.uid.clone();
        let old = self.nodes.insert(uid.clone(), node);
        let new = &self.nodes[&uid];
        let mut work = Vec::new();
        let owners_changed = old.as_ref().is_none_or(|o| o.owners != new.owners);
        if owners_changed {
            let before: Vec<OwnerReference> =
                old.as_ref().map(|o| o.owners.clone()).unwrap_or_default();
            let after = new.owners.clone();
            for r in &before {
                if !after.iter().any(|a| a.uid == r.uid) {
                    if let Some(set) = self.dependents.get_mut(&r.uid) {
                        set.remove(&uid);
                        if set.is_empty() {
                            self.dependents.remove(&r.uid);
                        }
                    }
                }
            }
            for r in &after {
                self.dependents
                    .entry(r.uid.clone())
                    .or_default()
                    .insert(uid.clone());
            }
            let new = &self.nodes[&uid];
            if !new.owners.is_empty() {
                work.push(uid.clone());
            }
            // An owner waiting for its dependents may be waiting for no one now.
            for r in before.iter().chain(&after) {
                if self
                    .nodes
                    .get(&r.uid)
                    .is_some_and(Node::deleting_dependents)
                {
                    work.push(r.uid.clone());
                }
            }
        }
        let new = &self.nodes[&uid];
        let was = |f: fn(&Node) -> bool| old.as_ref().is_some_and(f);
        if (new.orphaning() && !was(Node::orphaning))
            || (new.deleting_dependents() && !was(Node::deleting_dependents))
        {
            work.push(uid.clone());
        }
        if new.deleting_dependents() && !was(Node::deleting_dependents) {
            work.extend(self.dependents.get(&uid).into_iter().flatten().cloned());
        }
        work
    }

    /// Records that the object with `uid` is gone; returns the uids to look at again: its
    /// dependents, which may have lost their last owner, and its owners that wait for it.
    pub fn forget(&mut self, uid: &str) -> Vec<String> {
        let Some(old) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        let mut work: Vec<String> = self
            .dependents
            .get(uid)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        for r in &old.owners {
            if let Some(set) = self.dependents.get_mut(&r.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&r.uid);
                }
            }
            if self
                .nodes
                .get(&r.uid)
                .is_some_and(Node::deleting_dependents)
            {
                work.push(r.uid.clone());
            }
        }
        work
    }
}

//! Node IPAM: every Node gets `spec.podCIDR` and `spec.podCIDRs`, one block of the
//! cluster CIDR each (`--node-cidr-mask-size`, /24 by default), as upstream's range
//! allocator (`pkg/controller/nodeipam/ipam/range_allocator.go`).
//!
//! The blocks nodes already have are marked used before anything is handed out, so the
//! allocation is the same after a restart; a deleted node's block is free again. When
//! the range is full a node gets the event `CIDRNotAvailable` and waits.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::ResourceExt;
use serde_json::json;
use tokio::sync::Mutex;

use super::dirty;
use super::{Context, Error, Result};
use crate::k8s::cidr::Ipv4Cidr;

/// The blocks of one size within a range, and which are taken (upstream's `CidrSet`).
#[derive(Debug, Clone)]
pub struct CidrSet {
    range: Ipv4Cidr,
    mask: u8,
    used: Vec<bool>,
    /// Where the next search starts, so a released block is not handed out at once.
    next: usize,
}

impl CidrSet {
    /// The /`mask` blocks of `range`; `None` when `mask` is shorter than the range's
    /// prefix or makes more than 2^16 blocks (upstream's limit).
    pub fn new(range: Ipv4Cidr, mask: u8) -> Option<Self> {
        if mask < range.prefix() || mask > 32 || mask - range.prefix() > 16 {
            return None;
        }
        let count = 1usize << (mask - range.prefix());
        Some(CidrSet {
            range,
            mask,
            used: vec![false; count],
            next: 0,
        })
    }

    fn block(&self, index: usize) -> Option<Ipv4Cidr> {
        let step = 1u64 << (32 - self.mask);
        Ipv4Cidr::new(self.range.nth(index as u64 * step)?, self.mask)
    }

    fn index_of(&self, cidr: Ipv4Cidr) -> Option<usize> {
        let base: Ipv4Addr = cidr.nth(0)?;
        if cidr.prefix() != self.mask {
            return None;
        }
        let offset = self.range.offset_of(base)?;
        Some((offset >> (32 - self.mask)) as usize)
    }

    /// Takes the next free block.
    pub fn allocate(&mut self) -> Option<Ipv4Cidr> {
        let n = self.used.len();
        let index = (0..n)
            .map(|i| (self.next + i) % n)
            .find(|i| !self.used[*i])?;
        self.used[index] = true;
        self.next = (index + 1) % n;
        self.block(index)
    }

    /// Marks a block taken; false when it is not one of this set's blocks.
    pub fn occupy(&mut self, cidr: Ipv4Cidr) -> bool {
        match self.index_of(cidr) {
            Some(i) => {
                self.used[i] = true;
                true
            }
            None => false,
        }
    }

    /// Frees a block.
    pub fn release(&mut self, cidr: Ipv4Cidr) {
        if let Some(i) = self.index_of(cidr) {
            self.used[i] = false;
        }
    }
}

/// The allocator's memory: the set, and the block each node holds.
#[derive(Debug)]
pub struct Allocator {
    set: CidrSet,
    held: HashMap<String, Ipv4Cidr>,
    /// Nodes told the range is full, so the event is not repeated each retry.
    starved: HashSet<String>,
    primed: bool,
}

/// What to do for one node.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing to write.
    Nothing,
    /// Write this block into the node's spec.
    Assign(Ipv4Cidr),
    /// The range is full: tell the node (the first time) and retry later.
    Full {
        /// Whether the event is still to be recorded.
        notify: bool,
    },
}

fn node_cidr(node: &Node) -> Option<Ipv4Cidr> {
    let spec = node.spec.as_ref()?;
    let first = spec
        .pod_cidrs
        .iter()
        .flatten()
        .next()
        .or(spec.pod_cidr.as_ref())?;
    first.parse().ok()
}

impl Allocator {
    /// An allocator of `mask` blocks of `range`.
    pub fn new(range: Ipv4Cidr, mask: u8) -> Option<Self> {
        Some(Allocator {
            set: CidrSet::new(range, mask)?,
            held: HashMap::new(),
            starved: HashSet::new(),
            primed: false,
        })
    }

    /// Marks the blocks all `nodes` already hold as taken (done once, before the first
    /// allocation, so that a restart hands out nothing twice).
    pub fn prime<'a>(&mut self, nodes: impl IntoIterator<Item = &'a Node>) {
        if self.primed {
            return;
        }
        self.primed = true;
        for node in nodes {
            if let Some(cidr) = node_cidr(node) {
                if self.set.occupy(cidr) {
                    self.held.insert(node.name_any(), cidr);
                }
            }
        }
    }

    /// The step for node `name`, as now seen (`None`: deleted).
    pub fn step(&mut self, name: &str, node: Option<&Node>) -> Step {
        let Some(node) = node else {
            self.starved.remove(name);
            if let Some(cidr) = self.held.remove(name) {
                self.set.release(cidr);
            }
            return Step::Nothing;
        };
        if let Some(cidr) = node_cidr(node) {
            self.starved.remove(name);
            if let Some(old) = self.held.insert(name.to_string(), cidr) {
                if old != cidr {
                    self.set.release(old);
                }
            }
            self.set.occupy(cidr);
            return Step::Nothing;
        }
        // Written before but not seen yet: write the same block again.
        if let Some(cidr) = self.held.get(name) {
            return Step::Assign(*cidr);
        }
        match self.set.allocate() {
            Some(cidr) => {
                self.starved.remove(name);
                self.held.insert(name.to_string(), cidr);
                Step::Assign(cidr)
            }
            None => Step::Full {
                notify: self.starved.insert(name.to_string()),
            },
        }
    }

    /// Gives back a block whose write failed.
    pub fn undo(&mut self, name: &str, cidr: Ipv4Cidr) {
        if self.held.get(name) == Some(&cidr) {
            self.held.remove(name);
            self.set.release(cidr);
        }
    }
}

/// Runs the controller until it fails.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let config = &ctx.config;
    let allocator =
        Allocator::new(config.cluster_cidr, config.node_cidr_mask_size).ok_or_else(|| {
            Error::Invalid(format!(
                "cannot cut {} into /{} blocks",
                config.cluster_cidr, config.node_cidr_mask_size
            ))
        })?;
    let allocator = Arc::new(Mutex::new(allocator));
    let (nodes, writer) = reflector::store::<Node>();
    let api: Api<Node> = Api::all(ctx.client.clone());
    let marks = dirty::marks(api.clone(), writer, 0, |n: &Node| Some(n.name_any()));
    let all = {
        let nodes = nodes.clone();
        move || nodes.state().iter().map(|n| n.name_any()).collect()
    };
    dirty::drive(marks.boxed(), 1, all, |name| {
        let (ctx, nodes, allocator) = (ctx.clone(), nodes.clone(), allocator.clone());
        async move { sync_node(&ctx, &name, &nodes, &allocator).await }
    })
    .await
}

async fn sync_node(
    ctx: &Context,
    name: &str,
    nodes: &Store<Node>,
    allocator: &Mutex<Allocator>,
) -> Result<()> {
    let node = nodes.get(&ObjectRef::new(name));
    let step = {
        let mut allocator = allocator.lock().await;
        let all = nodes.state();
        allocator.prime(all.iter().map(|n| n.as_ref()));
        allocator.step(name, node.as_deref())
    };
    match step {
        Step::Nothing => Ok(()),
        Step::Full { notify } => {
            if let (true, Some(node)) = (notify, &node) {
                tracing::warn!(node = name, range = %ctx.config.cluster_cidr, "No pod CIDR is left for the node.");
                ctx.events.record(
                    node.as_ref(),
                    "Normal",
                    "CIDRNotAvailable",
                    format!("Node {name} status is now: CIDRNotAvailable"),
                );
            }
            Err(Error::Invalid(format!("no pod CIDR left for node {name}")))
        }
        Step::Assign(cidr) => {
            let api: Api<Node> = Api::all(ctx.client.clone());
            let patch =
                json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(node = name, cidr = %cidr, "Pod CIDR assigned.");
                    Ok(())
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    allocator.lock().await.undo(name, cidr);
                    Ok(())
                }
                Err(err) => {
                    allocator.lock().await.undo(name, cidr);
                    Err(err.into())
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "nodeipam/tests.rs"]
mod tests;

//! NodeResourcesFit: the pod's requests must fit in the node's allocatable minus what
//! its pods already request, and the node must admit one more pod.

use std::borrow::Cow;

use super::{Code, CycleState, Reason};
use crate::scheduler::snapshot::{NodeInfo, Snapshot};

/// Rejects a node without room for the pod, with one reason per short resource in
/// upstream's order (pods, cpu, memory, ephemeral-storage, then extended resources by
/// name). The rejection is unresolvable when a request exceeds the node's whole
/// allocatable, as upstream.
pub fn filter(cycle: &CycleState, node: &NodeInfo, _: &Snapshot) -> Result<(), Reason> {
    let want = &cycle.pod.requests.requests;
    let have = &node.allocatable;
    let used = &node.requested;
    let mut messages: Vec<Cow<'static, str>> = Vec::new();
    let mut unresolvable = false;
    if node.pods.len() as i64 + 1 > node.allowed_pods {
        messages.push("Too many pods".into());
    }
    let mut check = |want: i64, have: i64, used: i64, message: Cow<'static, str>| {
        if want > 0 && want > have.saturating_sub(used) {
            unresolvable |= want > have;
            messages.push(message);
        }
    };
    check(
        want.milli_cpu,
        have.milli_cpu,
        used.milli_cpu,
        "Insufficient cpu".into(),
    );
    check(
        want.memory,
        have.memory,
        used.memory,
        "Insufficient memory".into(),
    );
    check(
        want.ephemeral_storage,
        have.ephemeral_storage,
        used.ephemeral_storage,
        "Insufficient ephemeral-storage".into(),
    );
    for (name, &amount) in &want.scalars {
        if amount > have.scalar(name).saturating_sub(used.scalar(name)) {
            check(
                amount,
                have.scalar(name),
                used.scalar(name),
                format!("Insufficient {name}").into(),
            );
        }
    }
    if messages.is_empty() {
        return Ok(());
    }
    let code = if unresolvable {
        Code::Unresolvable
    } else {
        Code::Unschedulable
    };
    Err(Reason { code, messages })
}

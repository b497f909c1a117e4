//! TaintToleration: a pod must tolerate every `NoSchedule` and `NoExecute` taint of a
//! node. Also the toleration matching shared with other plugins.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use super::{CycleState, Reason};
use crate::scheduler::snapshot::{NodeInfo, Snapshot};

/// Whether `toleration` tolerates `taint`, as upstream's `ToleratesTaint`: an empty
/// effect matches every effect, an empty key (with `Exists`) every key; `Equal` (the
/// default) needs equal values, `Exists` ignores them.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    tolerates_parts(
        toleration,
        &taint.key,
        taint.value.as_deref().unwrap_or(""),
        &taint.effect,
    )
}

/// [`tolerates`] for a taint given by its parts, so callers need not build one.
pub fn tolerates_parts(toleration: &Toleration, key: &str, value: &str, effect: &str) -> bool {
    let own_effect = toleration.effect.as_deref().unwrap_or("");
    if !own_effect.is_empty() && own_effect != effect {
        return false;
    }
    let own_key = toleration.key.as_deref().unwrap_or("");
    if !own_key.is_empty() && own_key != key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => toleration.value.as_deref().unwrap_or("") == value,
        "Exists" => true,
        _ => false,
    }
}

/// The first taint with one of `effects` that no toleration tolerates.
pub fn first_untolerated<'a>(
    tolerations: &[Toleration],
    taints: &'a [Taint],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints.iter().find(|taint| {
        effects.contains(&taint.effect.as_str()) && !tolerations.iter().any(|t| tolerates(t, taint))
    })
}

/// Rejects a node with a `NoSchedule` or `NoExecute` taint the pod does not tolerate,
/// naming the taint as upstream does.
pub fn filter(cycle: &CycleState, node: &NodeInfo, _: &Snapshot) -> Result<(), Reason> {
    match first_untolerated(
        cycle.pod.tolerations(),
        node.taints(),
        &["NoSchedule", "NoExecute"],
    ) {
        None => Ok(()),
        Some(taint) => Err(Reason::unresolvable(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint.key,
            taint.value.as_deref().unwrap_or("")
        ))),
    }
}

//! The strategic merge patch view of the schema: which lists merge, by which key, and where
//! `$retainKeys` belongs.
//!
//! Kubernetes declares these with Go struct tags (`patchStrategy:"merge"`,
//! `patchMergeKey:"name"`), next to, and mostly agreeing with, the server-side apply list
//! types the generated [`super::schema`] carries. The rule: an SSA `set` is an SMP merge
//! list of primitives, an SSA `map` list is an SMP merge list keyed by its first key, and
//! every other list is replaced whole. [`OVERRIDES`] keeps by hand the fields where the
//! struct tags say otherwise (checked against k8s.io/api's `types.go` files).

use super::Strategy;
use PatchStrategy::{Default as Plain, MergeKey, Replace};

/// How a field behaves in a strategic merge patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchStrategy {
    /// No `patchStrategy`: maps merge key by key, lists and scalars are replaced.
    Default,
    /// `patchStrategy:"merge"` on a list of primitives: merged as a set.
    MergeSet,
    /// `patchStrategy:"merge"` with `patchMergeKey`: a list of maps merged by this key.
    MergeKey(&'static str),
    /// `patchStrategy:"replace"`: the value is replaced whole, even a map.
    Replace,
}

/// A field's strategic merge patch metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchMeta {
    /// The struct type of the value (or list element, or map value), if known.
    pub child: Option<&'static str>,
    /// How it merges.
    pub strategy: PatchStrategy,
    /// `patchStrategy` includes `retainKeys`: clients send `$retainKeys` for it. The server
    /// honours a `$retainKeys` directive wherever it finds one, so this is informational.
    pub retain_keys: bool,
}

impl PatchMeta {
    /// A field of no known type: merged as in a JSON merge patch.
    pub const UNKNOWN: PatchMeta = PatchMeta {
        child: None,
        strategy: PatchStrategy::Default,
        retain_keys: false,
    };
}

/// (type, JSON field, strategy, retainKeys) where the Go struct tags differ from the rule.
pub static OVERRIDES: &[(&str, &str, PatchStrategy, bool)] = &[
    // `patchStrategy:"retainKeys"`: switching the strategy type clears the old one's fields.
    ("apps.v1.DeploymentSpec", "strategy", Plain, true),
    // `patchStrategy:"merge,retainKeys" patchMergeKey:"name"`: a volume switched from
    // emptyDir to configMap loses its emptyDir.
    ("core.v1.PodSpec", "volumes", MergeKey("name"), true),
    // `patchStrategy:"merge,retainKeys" patchMergeKey:"name"`.
    ("core.v1.PodSpec", "resourceClaims", MergeKey("name"), true),
    // `patchStrategy:"merge,retainKeys" patchMergeKey:"name"`.
    (
        "core.v1.PodStatus",
        "resourceClaimStatuses",
        MergeKey("name"),
        true,
    ),
    // `patchStrategy:"replace"`: a PDB's selector is replaced whole, never merged.
    (
        "policy.v1.PodDisruptionBudgetSpec",
        "selector",
        Replace,
        false,
    ),
    // SSA map keyed by name, but no patchStrategy: replaced.
    ("core.v1.ResourceRequirements", "claims", Plain, false),
    // SSA map keyed by resourceID, but no patchStrategy: replaced.
    ("core.v1.ResourceStatus", "resources", Plain, false),
    // k8s-openapi keys it by metadata.name; Kubernetes has it atomic with no patchStrategy.
    (
        "apps.v1.StatefulSetSpec",
        "volumeClaimTemplates",
        Plain,
        false,
    ),
    // SSA sets without patchStrategy: replaced.
    (
        "batch.v1.PodFailurePolicyOnExitCodesRequirement",
        "values",
        Plain,
        false,
    ),
    ("batch.v1.UncountedTerminatedPods", "failed", Plain, false),
    (
        "batch.v1.UncountedTerminatedPods",
        "succeeded",
        Plain,
        false,
    ),
    ("discovery.v1.Endpoint", "addresses", Plain, false),
];

/// The strategic merge patch metadata of a field of `type_name`, or
/// [`PatchMeta::UNKNOWN`] for an unknown type or field.
pub fn patch_meta(type_name: Option<&str>, json_field: &str) -> PatchMeta {
    let Some(type_name) = type_name else {
        return PatchMeta::UNKNOWN;
    };
    let Some(field) = super::field(type_name, json_field) else {
        return PatchMeta::UNKNOWN;
    };
    let by_rule = match field.strategy {
        Strategy::ListSet => PatchStrategy::MergeSet,
        Strategy::ListMap(keys) => keys.first().map_or(Plain, |key| MergeKey(key)),
        _ => Plain,
    };
    let found = OVERRIDES
        .iter()
        .find(|(t, f, _, _)| *t == type_name && *f == json_field);
    let (strategy, retain_keys) = found.map_or((by_rule, false), |(_, _, s, r)| (*s, *r));
    PatchMeta {
        child: field.child,
        strategy,
        retain_keys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_override_names_a_field_of_the_schema() {
        for (type_name, field, _, _) in OVERRIDES {
            assert!(
                super::super::field(type_name, field).is_some(),
                "{type_name}.{field}"
            );
        }
    }

    #[test]
    fn map_lists_merge_by_their_first_key() {
        let ports = patch_meta(Some("core.v1.Container"), "ports");
        assert_eq!(ports.strategy, MergeKey("containerPort"));
        assert_eq!(ports.child, Some("core.v1.ContainerPort"));
        let ports = patch_meta(Some("core.v1.ServiceSpec"), "ports");
        assert_eq!(ports.strategy, MergeKey("port"));
        let spread = patch_meta(Some("core.v1.PodSpec"), "topologySpreadConstraints");
        assert_eq!(spread.strategy, MergeKey("topologyKey"));
    }

    #[test]
    fn sets_merge_and_atomic_lists_are_replaced() {
        let finalizers = patch_meta(Some("meta.v1.ObjectMeta"), "finalizers");
        assert_eq!(finalizers.strategy, PatchStrategy::MergeSet);
        let cidrs = patch_meta(Some("core.v1.NodeSpec"), "podCIDRs");
        assert_eq!(cidrs.strategy, PatchStrategy::MergeSet);
        for (t, f) in [
            ("core.v1.PodSpec", "tolerations"),
            ("core.v1.Container", "args"),
            ("core.v1.NodeSpec", "taints"),
            ("discovery.v1.Endpoint", "addresses"),
        ] {
            assert_eq!(patch_meta(Some(t), f).strategy, Plain, "{t}.{f}");
        }
    }

    #[test]
    fn retain_keys_only_where_go_tags_say_so() {
        assert!(patch_meta(Some("core.v1.PodSpec"), "volumes").retain_keys);
        assert!(patch_meta(Some("apps.v1.DeploymentSpec"), "strategy").retain_keys);
        assert!(!patch_meta(Some("apps.v1.DaemonSetSpec"), "updateStrategy").retain_keys);
        assert!(!patch_meta(Some("apps.v1.StatefulSetSpec"), "updateStrategy").retain_keys);
    }
}

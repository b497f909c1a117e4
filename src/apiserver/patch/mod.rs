//! Strategic merge patch (`application/strategic-merge-patch+json`) and the schema it needs:
//! for each built-in struct type, how its lists and maps merge.
//!
//! [`schema`] is generated from the k8s-openapi crate (`scripts/gen-merge-schema.py`) and
//! holds the server-side apply view: list types (`atomic`, `set`, `map` with all its keys)
//! and map types. [`smp`] turns that into the strategic merge patch view, with the few
//! fields where Kubernetes' Go struct tags (`patchStrategy`, `patchMergeKey`) differ kept by
//! hand. [`strategic`] is the patch algorithm itself; it is pure and works on JSON values.

pub mod json;
#[rustfmt::skip]
mod schema;
pub mod smp;
pub mod strategic;

pub use strategic::{strategic_merge, SmpError};

/// How a field merges, as the k8s-openapi crate's `impl DeepMerge` (and so server-side
/// apply's list and map types) has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// A scalar (string, number, bool, or a type that serializes as one: quantities,
    /// times, int-or-string); replaced whole.
    Scalar,
    /// A struct of the field's `child` type; merged field by field.
    Struct,
    /// `listType=atomic`: a list replaced whole.
    ListAtomic,
    /// `listType=set`: a list of primitives, merged as a set.
    ListSet,
    /// `listType=map`: a list of structs of the field's `child` type, identified by these
    /// key fields (JSON names; a nested key is dotted, as `metadata.name`).
    ListMap(&'static [&'static str]),
    /// `mapType=atomic`: a map replaced whole.
    MapAtomic,
    /// `mapType=granular`: a map merged key by key; values of the `child` type, if any.
    MapGranular,
}

/// One field of a struct type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The JSON name.
    pub name: &'static str,
    /// The struct type the field, its list elements or its map values hold, if any.
    pub child: Option<&'static str>,
    /// How it merges.
    pub strategy: Strategy,
}

/// The fields of a struct type (as `core.v1.PodSpec`), sorted by JSON name.
pub fn fields(type_name: &str) -> Option<&'static [Field]> {
    let i = schema::TYPES
        .binary_search_by(|(name, _)| (*name).cmp(type_name))
        .ok()?;
    Some(schema::TYPES[i].1)
}

/// One field of a struct type, by JSON name.
pub fn field(type_name: &str, json_field: &str) -> Option<&'static Field> {
    let fields = fields(type_name)?;
    let i = fields.binary_search_by(|f| f.name.cmp(json_field)).ok()?;
    Some(&fields[i])
}

/// The struct type of a served kind: `("apps/v1", "Deployment")` is `apps.v1.Deployment`.
pub fn root_type(api_version: &str, kind: &str) -> Option<&'static str> {
    let i = schema::ROOTS
        .binary_search_by(|(v, k, _)| (*v, *k).cmp(&(api_version, kind)))
        .ok()?;
    Some(schema::ROOTS[i].2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_tables_are_sorted_for_binary_search() {
        assert!(schema::TYPES.windows(2).all(|w| w[0].0 < w[1].0));
        for (name, fields) in schema::TYPES {
            assert!(fields.windows(2).all(|w| w[0].name < w[1].name), "{name}");
        }
        assert!(schema::ROOTS
            .windows(2)
            .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
    }

    #[test]
    fn every_child_type_is_in_the_schema() {
        for (name, fields) in schema::TYPES {
            for f in *fields {
                if let Some(child) = f.child {
                    assert!(self::fields(child).is_some(), "{name}.{}", f.name);
                }
            }
        }
    }

    #[test]
    fn root_type_names_the_served_kinds() {
        assert_eq!(
            root_type("apps/v1", "Deployment"),
            Some("apps.v1.Deployment")
        );
        assert_eq!(root_type("v1", "Pod"), Some("core.v1.Pod"));
        assert_eq!(root_type("v1", "Deployment"), None);
        assert_eq!(root_type("example.com/v1", "Widget"), None);
    }

    #[test]
    fn field_gives_child_type_and_list_keys() {
        let containers = field("core.v1.PodSpec", "containers").unwrap();
        assert_eq!(containers.child, Some("core.v1.Container"));
        assert_eq!(containers.strategy, Strategy::ListMap(&["name"]));
        let finalizers = field("meta.v1.ObjectMeta", "finalizers").unwrap();
        assert_eq!(finalizers.strategy, Strategy::ListSet);
        let tolerations = field("core.v1.PodSpec", "tolerations").unwrap();
        assert_eq!(tolerations.strategy, Strategy::ListAtomic);
        let metadata = field("apps.v1.Deployment", "metadata").unwrap();
        assert_eq!(metadata.strategy, Strategy::Struct);
        assert_eq!(metadata.child, Some("meta.v1.ObjectMeta"));
        assert!(field("core.v1.PodSpec", "noSuchField").is_none());
    }
}

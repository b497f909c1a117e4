//! The schema view of an object for field management: which field set an object has,
//! how two objects differ as field sets, and lookup and removal by path.

use serde_json::{Map, Value};

use super::fieldset::{path_string, FieldSet, Path, PathElement};
use crate::apiserver::patch::{field, Field, Strategy};

/// Where a value sits, which tells how to read it.
#[derive(Clone, Copy, Debug)]
pub enum Slot {
    /// A field of a struct type in the schema.
    Schema(&'static Field),
    /// A value of this struct type (a list-map item or a map value).
    Type(&'static str),
    /// Not in the schema: objects are granular maps, everything else a leaf.
    Unknown,
}

/// How a value is walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Scalars, atomic lists and atomic maps: owned whole.
    Leaf,
    /// A struct of this type, field by field.
    Struct(&'static str),
    /// A granular map, key by key; values of the struct type, if any.
    Map(Option<&'static str>),
    /// A list map with these keys, of items of the struct type, if any.
    ListMap(&'static [&'static str], Option<&'static str>),
    /// A list of primitives, as a set.
    ListSet,
}

/// The full SSA keys where k8s-openapi carries only the first one, by item type.
fn full_keys(item_type: Option<&str>) -> Option<&'static [&'static str]> {
    match item_type? {
        "core.v1.ContainerPort" => Some(&["containerPort", "protocol"]),
        "core.v1.ServicePort" => Some(&["port", "protocol"]),
        "core.v1.TopologySpreadConstraint" => Some(&["topologyKey", "whenUnsatisfiable"]),
        _ => None,
    }
}

/// Struct types marked `+structType=atomic` upstream, which k8s-openapi does not carry:
/// owned and replaced whole (so a Deployment's manager owns `f:selector`, not its labels).
const ATOMIC_STRUCTS: &[&str] = &[
    "core.v1.ConfigMapKeySelector",
    "core.v1.LocalObjectReference",
    "core.v1.NodeSelector",
    "core.v1.ObjectFieldSelector",
    "core.v1.ObjectReference",
    "core.v1.ResourceFieldSelector",
    "core.v1.SecretKeySelector",
    "core.v1.TypedLocalObjectReference",
    "meta.v1.LabelSelector",
];

/// The struct type of a kind not in the schema: every field unknown but `metadata`.
const UNKNOWN_ROOT: &str = "unknown.Root";

/// The slot of the root object of a kind: its struct type, or an unknown root whose
/// `metadata` is still an ObjectMeta.
pub fn root_slot(obj: &Value) -> Slot {
    let text = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or_default();
    let root = crate::apiserver::patch::root_type(text("apiVersion"), text("kind"));
    Slot::Type(root.unwrap_or(UNKNOWN_ROOT))
}

/// The shape of `v` in `slot`; a value of an unexpected JSON type is a leaf.
pub fn shape(slot: Slot, v: &Value) -> Shape {
    let wanted = match slot {
        Slot::Type(t) => Shape::Struct(t),
        Slot::Unknown => Shape::Map(None),
        Slot::Schema(f) => match (f.strategy, f.child) {
            (Strategy::Struct, Some(t)) => Shape::Struct(t),
            (Strategy::Struct, None) => Shape::Map(None),
            (Strategy::MapGranular, child) => Shape::Map(child),
            (Strategy::ListSet, _) => Shape::ListSet,
            (Strategy::ListMap(keys), child) => {
                Shape::ListMap(full_keys(child).unwrap_or(keys), child)
            }
            _ => Shape::Leaf,
        },
    };
    match (wanted, v) {
        (Shape::Struct(t), _) if ATOMIC_STRUCTS.contains(&t) => Shape::Leaf,
        (Shape::Struct(_) | Shape::Map(_), Value::Object(_)) => wanted,
        (Shape::ListMap(..) | Shape::ListSet, Value::Array(_)) => wanted,
        _ => Shape::Leaf,
    }
}

/// The slot of a field or map entry `key` of a value of `shape`.
pub fn child_slot(shape: Shape, key: &str) -> Slot {
    match shape {
        Shape::Struct(UNKNOWN_ROOT) if key == "metadata" => Slot::Type("meta.v1.ObjectMeta"),
        Shape::Struct(t) => field(t, key).map_or(Slot::Unknown, Slot::Schema),
        Shape::Map(Some(t)) => Slot::Type(t),
        _ => Slot::Unknown,
    }
}

/// The slot of an item of a list of `shape`.
pub fn item_slot(shape: Shape) -> Slot {
    match shape {
        Shape::ListMap(_, Some(t)) => Slot::Type(t),
        _ => Slot::Unknown,
    }
}

/// Fields that are never owned: identity and bookkeeping, set by the server.
fn never_owned(path: &[PathElement], key: &str) -> bool {
    match path {
        [] => matches!(key, "apiVersion" | "kind"),
        [PathElement::Field(m)] if m == "metadata" => matches!(
            key,
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "managedFields"
                | "selfLink"
        ),
        _ => false,
    }
}

/// The path element of a list-map item: its key fields (a missing `protocol` is TCP).
pub fn item_element(item: &Value, keys: &[&str]) -> Result<PathElement, String> {
    let mut fields = Map::new();
    for key in keys {
        let found = key.split('.').try_fold(item, |v, part| v.get(part));
        match found {
            Some(v) if !v.is_null() => {
                fields.insert((*key).to_string(), v.clone());
            }
            _ if *key == "protocol" => {
                fields.insert("protocol".into(), Value::from("TCP"));
            }
            _ => return Err(format!("associative list with keys has an element that omits key field {key:?} (and doesn't have default value)")),
        }
    }
    Ok(PathElement::key(fields))
}

/// The elements of a list's items; `strict` refuses an item without its keys, otherwise
/// such an item is named by its index.
fn elements(
    shape: Shape,
    items: &[Value],
    strict: bool,
    path: &Path,
) -> Result<Vec<PathElement>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match shape {
            Shape::ListMap(keys, _) => match item_element(item, keys) {
                Ok(pe) => Ok(pe),
                Err(e) if strict => Err(format!("{}: element {i}: {e}", path_string(path))),
                Err(_) => Ok(PathElement::Index(i)),
            },
            _ => Ok(PathElement::value(item)),
        })
        .collect()
}

/// The fields of `obj`: its leaves, list-map items and their fields, set members, and
/// map entries; `strict` refuses list-map items without their keys (apply configs).
pub fn set_from_object(obj: &Value, slot: Slot, strict: bool) -> Result<FieldSet, String> {
    let mut out = FieldSet::new();
    let mode = Mode {
        strict,
        maps: false,
    };
    walk(obj, slot, &mut Vec::new(), &mut out, mode)?;
    Ok(out)
}

/// How [`walk`] collects fields.
#[derive(Clone, Copy)]
struct Mode {
    /// Refuse list-map items without their keys.
    strict: bool,
    /// Granular maps are members too, as a diff's added maps are upstream.
    maps: bool,
}

fn walk(
    v: &Value,
    slot: Slot,
    path: &mut Path,
    out: &mut FieldSet,
    mode: Mode,
) -> Result<(), String> {
    let (sh, strict) = (shape(slot, v), mode.strict);
    match (sh, v) {
        (Shape::Struct(_) | Shape::Map(_), Value::Object(map)) => {
            if map.is_empty() || (mode.maps && matches!(sh, Shape::Map(_))) {
                out.insert(path);
            }
            for (k, child) in map {
                if never_owned(path, k) {
                    continue;
                }
                path.push(PathElement::Field(k.clone()));
                walk(child, child_slot(sh, k), path, out, mode)?;
                path.pop();
            }
        }
        (Shape::ListMap(..) | Shape::ListSet, Value::Array(items)) => {
            if items.is_empty() {
                out.insert(path);
            }
            let pes = elements(sh, items, strict, path)?;
            for (pe, item) in pes.into_iter().zip(items) {
                path.push(pe);
                out.insert(path);
                if matches!(sh, Shape::ListMap(..)) {
                    walk(item, item_slot(sh), path, out, mode)?;
                }
                path.pop();
            }
        }
        _ => out.insert(path),
    }
    Ok(())
}

/// How a new object differs from an old one, as field sets.
#[derive(Debug, Default)]
pub struct Diff {
    /// Fields added or modified (a new granular map or list item is a member too).
    pub changed: FieldSet,
    /// Fields that were removed.
    pub removed: FieldSet,
}

/// Compares two objects in `slot`.
pub fn diff(old: &Value, new: &Value, slot: Slot) -> Diff {
    let mut d = Diff::default();
    diff_at(Some(old), Some(new), slot, &mut Vec::new(), &mut d);
    d
}

fn all_of(v: &Value, slot: Slot, path: &mut Path) -> FieldSet {
    let mut set = FieldSet::new();
    let mode = Mode {
        strict: false,
        maps: true,
    };
    // Not strict: an item without its keys is named by its index, so this cannot fail.
    let _ = walk(v, slot, path, &mut set, mode);
    set
}

fn diff_at(old: Option<&Value>, new: Option<&Value>, slot: Slot, path: &mut Path, d: &mut Diff) {
    let (o, n) = match (old, new) {
        (None, None) => return,
        (None, Some(n)) => {
            d.changed = d.changed.union(&all_of(n, slot, path));
            return;
        }
        (Some(o), None) => {
            d.removed = d.removed.union(&all_of(o, slot, path));
            d.removed.insert(path);
            return;
        }
        (Some(o), Some(n)) => (o, n),
    };
    let (so, sn) = (shape(slot, o), shape(slot, n));
    if so != sn {
        d.removed = d.removed.union(&all_of(o, slot, path));
        d.changed = d.changed.union(&all_of(n, slot, path));
        return;
    }
    match (sn, o, n) {
        (Shape::Struct(_) | Shape::Map(_), Value::Object(om), Value::Object(nm)) => {
            let keys: std::collections::BTreeSet<&String> = om.keys().chain(nm.keys()).collect();
            for k in keys {
                if never_owned(path, k) {
                    continue;
                }
                path.push(PathElement::Field(k.clone()));
                diff_at(om.get(k), nm.get(k), child_slot(sn, k), path, d);
                path.pop();
            }
        }
        (Shape::ListMap(..) | Shape::ListSet, Value::Array(oi), Value::Array(ni)) => {
            diff_list(sn, oi, ni, path, d);
        }
        _ if o != n => d.changed.insert(path),
        _ => {}
    }
}

fn diff_list(sh: Shape, old: &[Value], new: &[Value], path: &mut Path, d: &mut Diff) {
    let ope = elements(sh, old, false, path).unwrap_or_default();
    let npe = elements(sh, new, false, path).unwrap_or_default();
    let slot = item_slot(sh);
    for (pe, item) in npe.iter().zip(new) {
        path.push(pe.clone());
        match ope.iter().position(|p| p == pe) {
            Some(i) if matches!(sh, Shape::ListMap(..)) => {
                diff_at(Some(&old[i]), Some(item), slot, path, d)
            }
            Some(_) => {}
            None => {
                d.changed.insert(path);
                if matches!(sh, Shape::ListMap(..)) {
                    d.changed = d.changed.union(&all_of(item, slot, path));
                }
            }
        }
        path.pop();
    }
    for (pe, item) in ope.iter().zip(old) {
        if !npe.contains(pe) {
            path.push(pe.clone());
            d.removed.insert(path);
            if matches!(sh, Shape::ListMap(..)) {
                d.removed = d.removed.union(&all_of(item, slot, path));
            }
            path.pop();
        }
    }
}

/// Where one path element leads inside a value: the map key or list index, and its slot.
fn locate(v: &Value, slot: Slot, pe: &PathElement) -> Option<(Result<String, usize>, Slot)> {
    let sh = shape(slot, v);
    match (pe, v) {
        (PathElement::Field(k), Value::Object(_)) => Some((Ok(k.clone()), child_slot(sh, k))),
        (PathElement::Index(i), Value::Array(items)) => {
            (*i < items.len()).then_some((Err(*i), item_slot(sh)))
        }
        (PathElement::Key(_), Value::Array(items)) => {
            let Shape::ListMap(keys, _) = sh else {
                return None;
            };
            let i = items
                .iter()
                .position(|it| item_element(it, keys).as_ref() == Ok(pe))?;
            Some((Err(i), item_slot(sh)))
        }
        (PathElement::Value(_), Value::Array(items)) => {
            let i = items.iter().position(|it| PathElement::value(it) == *pe)?;
            Some((Err(i), Slot::Unknown))
        }
        _ => None,
    }
}

/// The value at `path`, if any.
pub fn lookup<'v>(v: &'v Value, slot: Slot, path: &[PathElement]) -> Option<&'v Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(v);
    };
    let (at, child) = locate(v, slot, first)?;
    let next = match at {
        Ok(k) => v.get(k)?,
        Err(i) => v.get(i)?,
    };
    lookup(next, child, rest)
}

/// Removes the value at `path`; whether there was one.
pub fn remove(v: &mut Value, slot: Slot, path: &[PathElement]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let Some((at, child)) = locate(v, slot, first) else {
        return false;
    };
    match (at, v) {
        (Ok(k), Value::Object(map)) if rest.is_empty() => map.remove(&k).is_some(),
        (Err(i), Value::Array(items)) if rest.is_empty() => {
            items.remove(i);
            true
        }
        (Ok(k), Value::Object(map)) => map.get_mut(&k).is_some_and(|n| remove(n, child, rest)),
        (Err(i), Value::Array(items)) => items.get_mut(i).is_some_and(|n| remove(n, child, rest)),
        _ => false,
    }
}

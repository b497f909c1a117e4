//! Server-side apply's merge of an applied configuration into the live object, and the
//! pruning of fields the applier stopped applying.

use serde_json::Value;

use super::extract::{child_slot, item_element, item_slot, lookup, remove, shape, Shape, Slot};
use super::fieldset::{FieldSet, PathElement};

/// Merges `config` into `live` by the schema: structs and granular maps field by field,
/// list maps item by item (by their keys), sets by union; the rest is replaced.
pub fn merge(live: &Value, config: &Value, slot: Slot) -> Value {
    let sh = shape(slot, config);
    if shape(slot, live) != sh {
        return config.clone();
    }
    match (sh, live, config) {
        (Shape::Struct(_) | Shape::Map(_), Value::Object(lm), Value::Object(cm)) => {
            let mut out = lm.clone();
            for (k, cv) in cm {
                if cv.is_null() {
                    out.remove(k);
                    continue;
                }
                let merged = match lm.get(k) {
                    Some(lv) => merge(lv, cv, child_slot(sh, k)),
                    None => cv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Shape::ListMap(keys, _), Value::Array(li), Value::Array(ci)) => {
            Value::Array(merge_list_map(li, ci, keys, item_slot(sh)))
        }
        (Shape::ListSet, Value::Array(li), Value::Array(ci)) => {
            let mut out = li.clone();
            for v in ci {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Value::Array(out)
        }
        _ => config.clone(),
    }
}

/// Items of both lists, the config's in its order, live-only items where they were.
fn merge_list_map(live: &[Value], config: &[Value], keys: &[&str], slot: Slot) -> Vec<Value> {
    let key = |v: &Value| item_element(v, keys).ok();
    let live_keys: Vec<Option<PathElement>> = live.iter().map(key).collect();
    let config_keys: Vec<Option<PathElement>> = config.iter().map(key).collect();
    let merged_item = |ci: usize| -> Value {
        let found = live_keys
            .iter()
            .position(|k| k.is_some() && *k == config_keys[ci]);
        match found {
            Some(li) => merge(&live[li], &config[ci], slot),
            None => config[ci].clone(),
        }
    };
    let mut out = Vec::with_capacity(live.len() + config.len());
    let mut next = 0;
    for (li, lk) in live_keys.iter().enumerate() {
        let in_config = lk.is_some() && config_keys.contains(lk);
        if !in_config {
            out.push(live[li].clone());
            continue;
        }
        let Some(ci) = config_keys.iter().position(|k| k == lk) else {
            continue;
        };
        while next <= ci {
            out.push(merged_item(next));
            next += 1;
        }
    }
    while next < config.len() {
        out.push(merged_item(next));
        next += 1;
    }
    out
}

/// Removes from `obj` the fields of `last` (the applier's previous set) that no manager
/// owns any more (`owned` is every manager's set, the applier's new one included). A list
/// item or map stays while someone owns something under it; a map or list left empty by
/// the removal, and owned by no one, goes too.
pub fn prune(obj: &mut Value, slot: Slot, last: &FieldSet, owned: &FieldSet) {
    for path in last.difference(owned).paths() {
        let is_container = matches!(
            path.last(),
            Some(PathElement::Key(_) | PathElement::Index(_))
        ) || lookup(obj, slot, &path)
            .is_some_and(|v| v.is_object() || v.is_array());
        if (is_container && owned.has_under(&path)) || is_item_key(&path) {
            continue;
        }
        if !remove(obj, slot, &path) {
            continue;
        }
        let mut parent = path;
        parent.pop();
        while parent.len() > 1 && !owned.touches(&parent) {
            let empty = match lookup(obj, slot, &parent) {
                Some(Value::Object(m)) => m.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                _ => false,
            };
            if !empty || !remove(obj, slot, &parent) {
                break;
            }
            parent.pop();
        }
    }
}

/// Whether `path` ends at a key field of a list-map item: an item that stays keeps its keys.
fn is_item_key(path: &[PathElement]) -> bool {
    let [.., PathElement::Key(json), PathElement::Field(name)] = path else {
        return false;
    };
    serde_json::from_str::<serde_json::Map<String, Value>>(json)
        .is_ok_and(|keys| keys.contains_key(name))
}

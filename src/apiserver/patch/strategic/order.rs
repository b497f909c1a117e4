//! The order of a merged list, as upstream's `normalizeElementOrder` sets it, and the
//! `$setElementOrder/<field>` directive.
//!
//! The merged list is split into the items the patch (or the `$setElementOrder` list)
//! mentions and the server-only items. Each part is sorted by its own order (the patch's,
//! the live list's), then the server-only items are slotted in front of a patch item only
//! where the live list has them before it; the rest, and new items, keep the patch's place.

use serde_json::{Map, Value};

use super::{
    bad_arg_type, element_type, find_by_key, go_list, key_eq, merge_list, no_merge_key, SmpError,
    DIRECTIVE,
};
use crate::apiserver::patch::smp::{patch_meta, PatchStrategy};

/// Orders `merged`: the items `patch_order` mentions by it, the others by `server_order`,
/// interleaved as upstream does. `key` is the merge key of a list of maps.
pub(super) fn normalize(
    merged: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, SmpError> {
    let (patch_items, server_only) = partition(merged, patch_order, key)?;
    normalize_element_order(patch_items, server_only, patch_order, server_order, key)
}

/// `$setElementOrder/<field>`: merges the field's patch list (if any) into `original` and
/// orders the result by `order`, server-only items placed by the live list's order.
pub(super) fn merge_with_element_order(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    field: &str,
    order: &Value,
    type_name: Option<&str>,
) -> Result<(), SmpError> {
    let Value::Array(order) = order else {
        return Err(bad_arg_type("[]interface {}", order));
    };
    let live = list_at(original, field)?;
    let patch_list = list_at(patch, field)?;
    let meta = patch_meta(type_name, field);
    let key = match meta.strategy {
        PatchStrategy::MergeKey(key) => Some(key),
        _ => None,
    };
    validate_against_order(patch_list.unwrap_or(&[]), order, key)?;
    let mut merged = match (live, patch_list) {
        (None, None) => return Ok(()),
        (Some(live), None) => live.to_vec(),
        (live, Some(patch_list)) => {
            let mut merged = live.map(<[Value]>::to_vec).unwrap_or_default();
            merge_list(&mut merged, patch_list, &meta)?;
            merged
        }
    };
    let live = live.map(<[Value]>::to_vec).unwrap_or_default();
    let kind = element_type(&live, patch_list.unwrap_or(&[]))?;
    if !kind.is_null() {
        let key = if kind.is_object() { key } else { None };
        let (patch_items, server_only) = partition(merged, order, key)?;
        merged = normalize_element_order(patch_items, server_only, order, &live, key)?;
    }
    original.insert(field.to_string(), Value::Array(merged));
    Ok(())
}

/// The list at `field` of a map, if there is one.
fn list_at<'a>(map: &'a Map<String, Value>, field: &str) -> Result<Option<&'a [Value]>, SmpError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::Array(list)) => Ok(Some(list)),
        Some(other) => Err(bad_arg_type("[]interface {}", other)),
    }
}

/// Upstream's `validatePatchWithSetOrderList`: the patch list's items (deletions aside)
/// appear in the `$setElementOrder` list, in the same relative order.
fn validate_against_order(
    patch_list: &[Value],
    order: &[Value],
    key: Option<&str>,
) -> Result<(), SmpError> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut kept = Vec::new();
    for item in patch_list {
        if key.is_some() {
            let Value::Object(map) = item else {
                return Err(bad_arg_type("map[string]interface {}", item));
            };
            if map.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                continue;
            }
        }
        kept.push(item);
    }
    let (mut p, mut s) = (0, 0);
    while p < kept.len() && s < order.len() {
        if kept[p].get(DIRECTIVE).is_some() {
            p += 1;
            continue;
        }
        if merge_key_equal(kept[p], &order[s], key)? {
            p += 1;
        }
        s += 1;
    }
    if p < kept.len() && s >= order.len() {
        return Err(SmpError::OrderMismatch {
            patch: go_list(patch_list),
            order: go_list(order),
        });
    }
    Ok(())
}

/// Whether two list items have the same merge key value (or are equal, for primitives).
fn merge_key_equal(left: &Value, right: &Value, key: Option<&str>) -> Result<bool, SmpError> {
    let Some(key) = key else {
        return Ok(key_eq(left, right));
    };
    let (Value::Object(l), Value::Object(r)) = (left, right) else {
        let odd = if left.is_object() { right } else { left };
        return Err(bad_arg_type("map[string]interface {}", odd));
    };
    let lv = l.get(key).ok_or_else(|| no_merge_key(l, key))?;
    let rv = r.get(key).ok_or_else(|| no_merge_key(r, key))?;
    Ok(key_eq(lv, rv))
}

/// Splits `merged` into the items `present_in` mentions and the others, each in order.
fn partition(
    merged: Vec<Value>,
    present_in: &[Value],
    key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>), SmpError> {
    let (mut patch_items, mut server_only) = (Vec::new(), Vec::new());
    for item in merged {
        let found = match key {
            None => present_in.iter().any(|v| key_eq(v, &item)),
            Some(key) => {
                let Value::Object(map) = &item else {
                    return Err(bad_arg_type("map[string]interface {}", &item));
                };
                let wanted = map.get(key).ok_or_else(|| no_merge_key(map, key))?;
                find_by_key(present_in, key, wanted)?.is_some()
            }
        };
        if found {
            patch_items.push(item);
        } else {
            server_only.push(item);
        }
    }
    Ok((patch_items, server_only))
}

/// Upstream's `normalizeElementOrder`: sort each part by its order, then merge them.
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, SmpError> {
    let patch_items = sort_by_order(patch_items, patch_order, key)?;
    let server_only = sort_by_order(server_only, server_order, key)?;
    Ok(merge_sorted(server_only, patch_items, server_order, key))
}

/// Upstream's `normalizeSliceOrder`: a stable sort by position in `order`; items `order`
/// lacks stay behind, and `$patch: delete` items go last.
fn sort_by_order(
    items: Vec<Value>,
    order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, SmpError> {
    let mut deletes = Vec::new();
    let mut kept = Vec::new();
    if let Some(key) = key {
        for item in items.iter().chain(order) {
            let Value::Object(map) = item else {
                return Err(bad_arg_type("map[string]interface {}", item));
            };
            if !map.contains_key(key) {
                return Err(no_merge_key(map, key));
            }
        }
        for item in items {
            if item.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                deletes.push(item);
            } else {
                kept.push(item);
            }
        }
    } else {
        kept = items;
    }
    kept.sort_by_key(|item| index(order, item, key).unwrap_or(usize::MAX));
    kept.extend(deletes);
    Ok(kept)
}

/// Upstream's `mergeSortedSlice`: a server-only item (`left`) goes before the next patch
/// item (`right`) only when both are in the live list and it comes first there.
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                match (index(server_order, l, key), index(server_order, r, key)) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// The position in `list` of the item matching `item` (by merge key, or by value).
fn index(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    match key {
        Some(key) => {
            let wanted = item.get(key);
            list.iter().position(|v| match (v.get(key), wanted) {
                (Some(a), Some(b)) => key_eq(a, b),
                (a, b) => a.is_none() && b.is_none(),
            })
        }
        None => list.iter().position(|v| key_eq(v, item)),
    }
}

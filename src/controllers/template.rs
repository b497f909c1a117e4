//! What the controllers that stamp pods from a template share: the template's hash (the
//! `pod-template-hash` and `controller-revision-hash` labels, upstream's `ComputeHash`)
//! and its normal form for comparing two templates.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

/// Fields of a pod template that are plain (not pointer) booleans and integers in Go,
/// where `false` or `0` is the same as leaving them out.
const PLAIN_GO_FIELDS: [&str; 10] = [
    "stdin",
    "stdinOnce",
    "tty",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "generation",
    "readOnly",
    "hostPort",
    "initialDelaySeconds",
];

/// Drops nulls, empty objects and arrays, and the zero values of plain Go fields, so
/// that templates compare and hash as Go's semantic equality and struct hashing see them.
pub fn normalize(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for child in map.values_mut() {
                normalize(child);
            }
            map.retain(|k, c| {
                !is_empty(c)
                    && !(PLAIN_GO_FIELDS.contains(&k.as_str())
                        && (c == &Value::Bool(false) || c == &Value::from(0)))
            });
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Writes `v` with object keys sorted, so the same template always gives the same bytes.
fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend(other.to_string().as_bytes()),
    }
}

/// Upstream's `ComputeHash`: FNV-1a (32 bits) of the template, then of the collision
/// count, printed in decimal and each digit mapped to a letter that makes no words. The
/// template is hashed as canonical JSON rather than Go's struct dump, so the value differs
/// from kube-controller-manager's, but it is as stable.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut v = serde_json::to_value(template).unwrap_or_default();
    normalize(&mut v);
    let mut bytes = Vec::new();
    canonical(&v, &mut bytes);
    if let Some(count) = collision_count {
        bytes.extend((count as u32).to_le_bytes());
        bytes.extend([0u8; 4]);
    }
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.to_string()
        .bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

//! Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`),
//! which kubectl 1.32 and later send for `create namespace`, `create configmap` and the other
//! generator commands. They are read into the same JSON the rest of the server handles.
//!
//! The body is `k8s\0` followed by a `runtime.Unknown` message: the object's apiVersion and
//! kind, and its own encoding. Field numbers and JSON names come from the generated
//! [`schema`]; a few well-known messages (times, quantities, int-or-string) become JSON
//! scalars as they do in kube-apiserver's JSON.

mod schema;

use base64::Engine;
use serde_json::{json, Map, Value};

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8] = b"k8s\0";

/// The type of a field.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// string.
    Str,
    /// int32.
    I32,
    /// int64.
    I64,
    /// bool.
    Bool,
    /// double.
    F64,
    /// float.
    F32,
    /// bytes (base64 in JSON).
    Bytes,
    /// A message of the named type.
    Msg(&'static str),
    /// map<string, string>.
    MapStr,
    /// map<string, bytes>.
    MapBytes,
    /// map<string, message>.
    MapMsg(&'static str),
}

/// A field: number, JSON name, type, and whether it repeats.
#[derive(Clone, Copy, Debug)]
pub struct Field(pub u32, pub &'static str, pub Kind, pub bool);

/// A body that does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the protobuf body could not be decoded: {0}")]
pub struct ProtobufError(pub String);

fn err(message: impl Into<String>) -> ProtobufError {
    ProtobufError(message.into())
}

/// One field read off the wire.
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| err("truncated varint"))?;
            self.buf = rest;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(err("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        if self.buf.len() < n {
            return Err(err("truncated field"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn next(&mut self) -> Result<Option<(u32, Wire<'a>)>, ProtobufError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| err("field number too large"))?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| err("length too large"))?;
                Wire::Bytes(self.take(len)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            )),
            other => return Err(err(format!("unsupported wire type {other}"))),
        };
        Ok(Some((tag, wire)))
    }
}

fn fields_of(name: &str) -> Result<&'static [Field], ProtobufError> {
    schema::MESSAGES
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .map(|i| schema::MESSAGES[i].1)
        .map_err(|_| err(format!("unknown message type {name}")))
}

fn string(bytes: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| err("a string is not UTF-8"))
}

fn b64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Go's `time.Duration.String()` for a whole number of nanoseconds.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let (h, m) = (n / 3_600_000_000_000, (n / 60_000_000_000) % 60);
    let frac = n % 60_000_000_000;
    let secs = if frac.is_multiple_of(1_000_000_000) {
        format!("{}s", frac / 1_000_000_000)
    } else {
        let text = format!("{:.9}", frac as f64 / 1e9);
        format!("{}s", text.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => format!("{sign}{secs}"),
        (0, m) => format!("{sign}{m}m{secs}"),
        (h, m) => format!("{sign}{h}h{m}m{secs}"),
    }
}

/// The seconds of Go's zero time (year 1), which Go writes for unset times.
const GO_ZERO_TIME: i64 = -62_135_596_800;

fn time(seconds: i64, nanos: i64, micro: bool) -> Value {
    if seconds == GO_ZERO_TIME && nanos == 0 {
        return Value::Null;
    }
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(seconds) else {
        return Value::Null;
    };
    let base = at
        .format(&time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]"
        ))
        .unwrap_or_default();
    if micro {
        Value::String(format!("{base}.{:06}Z", nanos / 1000))
    } else {
        Value::String(format!("{base}Z"))
    }
}

/// The JSON of a well-known message, or `None` for an ordinary one.
fn special(name: &str, bytes: &[u8]) -> Result<Option<Value>, ProtobufError> {
    let mut ints = [0i64; 4];
    let mut strs: [Option<&[u8]>; 4] = [None; 4];
    let known = matches!(
        name.rsplit('.').next().unwrap_or_default(),
        "Time"
            | "MicroTime"
            | "Duration"
            | "IntOrString"
            | "Quantity"
            | "RawExtension"
            | "FieldsV1"
    ) && name.starts_with("apimachinery.");
    if !known {
        return Ok(None);
    }
    let mut r = Reader { buf: bytes };
    while let Some((tag, wire)) = r.next()? {
        let i = (tag as usize).min(3);
        match wire {
            Wire::Varint(v) => ints[i] = v as i64,
            Wire::Bytes(b) => strs[i] = Some(b),
            _ => {}
        }
    }
    let text = |i: usize| {
        strs[i]
            .map(string)
            .transpose()
            .map(Option::unwrap_or_default)
    };
    Ok(Some(match name.rsplit('.').next().unwrap_or_default() {
        // Go writes a zero time as an empty message, and reads it back as zero: null.
        "Time" | "MicroTime" if bytes.is_empty() => Value::Null,
        "Time" => time(ints[1], ints[2], false),
        "MicroTime" => time(ints[1], ints[2], true),
        "Duration" => Value::String(go_duration(ints[1])),
        "IntOrString" if ints[1] == 0 => json!(ints[2] as i32),
        "IntOrString" => Value::String(text(3)?),
        "Quantity" => Value::String(text(1)?),
        _ => match strs[1] {
            Some(raw) => serde_json::from_slice(raw).unwrap_or_else(|_| b64(raw)),
            None => Value::Null,
        },
    }))
}

fn scalar(kind: Kind, wire: &Wire<'_>) -> Result<Value, ProtobufError> {
    Ok(match (kind, wire) {
        (Kind::Str, Wire::Bytes(b)) => Value::String(string(b)?),
        (Kind::Bytes, Wire::Bytes(b)) => b64(b),
        (Kind::I32, Wire::Varint(v)) => json!(*v as i64 as i32),
        (Kind::I64, Wire::Varint(v)) => json!(*v as i64),
        (Kind::Bool, Wire::Varint(v)) => json!(*v != 0),
        (Kind::F64, Wire::Fixed64(v)) => json!(f64::from_bits(*v)),
        (Kind::F32, Wire::Fixed32(v)) => json!(f32::from_bits(*v)),
        (Kind::Msg(t), Wire::Bytes(b)) => decode_message(t, b)?,
        _ => return Err(err("a field has the wrong wire type")),
    })
}

fn map_entry(kind: Kind, bytes: &[u8]) -> Result<(String, Value), ProtobufError> {
    let (mut key, mut value) = (String::new(), Value::Null);
    let mut r = Reader { buf: bytes };
    while let Some((tag, wire)) = r.next()? {
        match (tag, &wire) {
            (1, Wire::Bytes(b)) => key = string(b)?,
            (2, _) => {
                let value_kind = match kind {
                    Kind::MapStr => Kind::Str,
                    Kind::MapBytes => Kind::Bytes,
                    Kind::MapMsg(t) => Kind::Msg(t),
                    other => other,
                };
                value = scalar(value_kind, &wire)?;
            }
            _ => {}
        }
    }
    if value.is_null() {
        value = match kind {
            Kind::MapStr | Kind::MapBytes => Value::String(String::new()),
            _ => Value::Null,
        };
    }
    Ok((key, value))
}

/// Decodes one message into JSON. Empty strings and unset times are left out, as Go's
/// JSON encoding leaves them out; unknown fields are skipped.
pub fn decode_message(name: &str, bytes: &[u8]) -> Result<Value, ProtobufError> {
    if let Some(value) = special(name, bytes)? {
        return Ok(value);
    }
    let fields = fields_of(name)?;
    let mut out = Map::new();
    let mut r = Reader { buf: bytes };
    while let Some((tag, wire)) = r.next()? {
        let Some(&Field(_, json_name, kind, repeated)) = fields.iter().find(|f| f.0 == tag) else {
            continue;
        };
        match kind {
            Kind::MapStr | Kind::MapBytes | Kind::MapMsg(_) => {
                let Wire::Bytes(b) = wire else {
                    return Err(err("a map entry has the wrong wire type"));
                };
                let (k, v) = map_entry(kind, b)?;
                let map = out
                    .entry(json_name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(map) = map.as_object_mut() {
                    map.insert(k, v);
                }
            }
            _ if repeated => {
                let list = out
                    .entry(json_name)
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Some(list) = list.as_array_mut() else {
                    continue;
                };
                match (kind, &wire) {
                    // A packed list of numbers.
                    (Kind::I32 | Kind::I64 | Kind::Bool, Wire::Bytes(b)) => {
                        let mut packed = Reader { buf: b };
                        while !packed.buf.is_empty() {
                            list.push(scalar(kind, &Wire::Varint(packed.varint()?))?);
                        }
                    }
                    _ => list.push(scalar(kind, &wire)?),
                }
            }
            _ => {
                let value = scalar(kind, &wire)?;
                let empty = value.is_null()
                    || value.as_str() == Some("")
                    || (is_plain_go_field(name, json_name)
                        && (value == Value::Bool(false) || value == json!(0)));
                if !empty {
                    out.insert(json_name.to_string(), value);
                }
            }
        }
    }
    Ok(Value::Object(out))
}

/// Fields that are plain (not pointer) booleans and integers with `omitempty` in Go, by
/// message: Go's protobuf writes them even when false or 0, and its JSON leaves them
/// out then, so kube-apiserver never stores `stdin: false` or `generation: 0`. Pointer
/// fields (`replicas`, `terminationGracePeriodSeconds`, …) keep their zeros.
const PLAIN_GO_FIELDS: &[(&str, &[&str])] = &[
    ("apimachinery.pkg.apis.meta.v1.ObjectMeta", &["generation"]),
    ("api.core.v1.Container", &["stdin", "stdinOnce", "tty"]),
    (
        "api.core.v1.EphemeralContainerCommon",
        &["stdin", "stdinOnce", "tty"],
    ),
    (
        "api.core.v1.PodSpec",
        &["hostNetwork", "hostPID", "hostIPC"],
    ),
    ("api.core.v1.VolumeMount", &["readOnly"]),
    ("api.core.v1.ContainerPort", &["hostPort"]),
    (
        "api.core.v1.Probe",
        &[
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ],
    ),
    ("api.core.v1.ServicePort", &["nodePort"]),
    ("api.apps.v1.DeploymentSpec", &["minReadySeconds", "paused"]),
    ("api.apps.v1.ReplicaSetSpec", &["minReadySeconds"]),
    ("api.apps.v1.DaemonSetSpec", &["minReadySeconds"]),
    ("api.apps.v1.StatefulSetSpec", &["minReadySeconds"]),
];

fn is_plain_go_field(message: &str, field: &str) -> bool {
    PLAIN_GO_FIELDS
        .iter()
        .any(|(m, fields)| *m == message && fields.contains(&field))
}

/// The protobuf package of a group's types: `""` → `api.core.v1`, `apps` → `api.apps.v1`,
/// `rbac.authorization.k8s.io` → `api.rbac.v1`.
fn package(api_version: &str) -> String {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let short = if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    };
    format!("api.{short}.{version}")
}

/// Decodes a whole request body (`k8s\0` + `runtime.Unknown`) into the object's JSON.
pub fn decode_object(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| err("the body does not start with the k8s protobuf prefix"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    let mut r = Reader { buf: rest };
    while let Some((tag, wire)) = r.next()? {
        match (tag, wire) {
            (1, Wire::Bytes(type_meta)) => {
                let mut t = Reader { buf: type_meta };
                while let Some((tag, wire)) = t.next()? {
                    match (tag, wire) {
                        (1, Wire::Bytes(b)) => api_version = string(b)?,
                        (2, Wire::Bytes(b)) => kind = string(b)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = Some(b),
            _ => {}
        }
    }
    if kind.is_empty() || api_version.is_empty() {
        return Err(err("the body names no apiVersion and kind"));
    }
    let raw = raw.ok_or_else(|| err("the body holds no object"))?;
    let mut obj = decode_message(&format!("{}.{kind}", package(&api_version)), raw)?;
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(api_version));
        map.insert("kind".into(), Value::String(kind));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests;

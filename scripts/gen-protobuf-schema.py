#!/usr/bin/env python3
"""Generates src/apiserver/protobuf/schema.rs: for every Kubernetes protobuf message that
the kinds skiff serves can contain, its fields' numbers, JSON names and types.

The facts come from two crates in the local cargo registry: k8s-pb (the prost bindings of
Kubernetes' generated.proto files: field numbers and wire types) and k8s-openapi (the
serde bindings: JSON names). Run it again when either crate is upgraded:

    scripts/gen-protobuf-schema.py > src/apiserver/protobuf/schema.rs
"""
import glob
import os
import re
import sys

REGISTRY = glob.glob(os.path.expanduser("~/.cargo/registry/src/*/"))
PB = sorted(p for r in REGISTRY for p in glob.glob(r + "k8s-pb-0.9.*"))[-1] + "/src"
OPENAPI = sorted(p for r in REGISTRY for p in glob.glob(r + "k8s-openapi-0.29.*"))[-1] + "/src/v1_33"

# The kinds served (see src/apiserver/resources.rs), as protobuf message names.
ROOTS = """api.core.v1.Namespace api.core.v1.Pod api.core.v1.Service api.core.v1.Endpoints
api.core.v1.Node api.core.v1.ConfigMap api.core.v1.Secret api.core.v1.ServiceAccount
api.core.v1.Event api.core.v1.PersistentVolume api.core.v1.PersistentVolumeClaim
api.core.v1.ResourceQuota api.core.v1.LimitRange api.apps.v1.Deployment api.apps.v1.ReplicaSet
api.apps.v1.DaemonSet api.apps.v1.StatefulSet api.apps.v1.ControllerRevision api.batch.v1.Job
api.batch.v1.CronJob api.coordination.v1.Lease api.discovery.v1.EndpointSlice api.events.v1.Event
api.rbac.v1.Role api.rbac.v1.RoleBinding api.rbac.v1.ClusterRole api.rbac.v1.ClusterRoleBinding
api.networking.v1.Ingress api.networking.v1.IngressClass api.networking.v1.NetworkPolicy
api.policy.v1.PodDisruptionBudget api.scheduling.v1.PriorityClass api.storage.v1.StorageClass
api.core.v1.Binding api.policy.v1.Eviction api.autoscaling.v1.Scale""".split()

# Messages the decoder turns into JSON scalars itself.
SPECIAL = {
    "apimachinery.pkg.apis.meta.v1.Time", "apimachinery.pkg.apis.meta.v1.MicroTime",
    "apimachinery.pkg.apis.meta.v1.Duration", "apimachinery.pkg.util.intstr.IntOrString",
    "apimachinery.pkg.api.resource.Quantity", "apimachinery.pkg.runtime.RawExtension",
    "apimachinery.pkg.apis.meta.v1.FieldsV1",
}


def json_names():
    names = {}
    for path in glob.glob(OPENAPI + "/**/*.rs", recursive=True):
        rel = os.path.relpath(os.path.dirname(path), OPENAPI).replace("/", ".")
        text = open(path).read()
        m = re.search(r"pub struct (\w+)", text)
        if not m:
            continue
        pairs = dict((snake, js) for js, snake in re.findall(r'"(\w+)" => Field::Key_(\w+)', text))
        # prost writes HostIP as HostIp: compare names without case.
        names[(rel + "." + m.group(1)).lower()] = pairs
    return names


def split_type(text):
    """The type text up to the first comma at angle-bracket depth 0."""
    depth = 0
    for i, c in enumerate(text):
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c == "," and depth == 0:
            return text[:i]
    return text


def resolve(module, rust_type):
    """A Rust type path inside `module` (a list) as a dotted protobuf message name."""
    inner = rust_type.strip()
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<"):
        if inner.startswith(wrapper):
            inner = inner[len(wrapper):-1].strip().rstrip(",").strip()
    parts = inner.split("::")
    mod = list(module)
    while parts and parts[0] == "super":
        mod.pop()
        parts.pop(0)
    return ".".join(mod + parts)


def messages():
    out = {}
    for path in glob.glob(PB + "/**/mod.rs", recursive=True):
        module = os.path.relpath(os.path.dirname(path), PB).split("/")
        text = open(path).read()
        for m in re.finditer(r"pub struct (\w+) \{(.*?)\n\}", text, re.S):
            fields = []
            body = m.group(2)
            for f in re.finditer(r"#\[prost\((.*?)\)\]\s*pub (?:r#)?(\w+):\s*", body, re.S):
                attrs, snake = f.group(1), f.group(2)
                rust_type = " ".join(split_type(body[f.end():]).split())
                tag = int(re.search(r'tag = "(\d+)"', attrs).group(1))
                repeated = "repeated" in attrs
                if attrs.startswith("btree_map") or attrs.startswith("hash_map"):
                    value = re.search(r'map = "string, (\w+)"', attrs).group(1)
                    if value == "message":
                        val_type = rust_type[rust_type.index(",") + 1:].strip().rstrip(">").strip().rstrip(",").strip()
                        kind = ("MapMsg", resolve(module, val_type))
                    else:
                        kind = ({"string": "MapStr", "bytes": "MapBytes"}[value], None)
                else:
                    base = attrs.split(",")[0].strip()
                    if base == "message":
                        kind = ("Msg", resolve(module, rust_type))
                    elif base.startswith("bytes"):
                        kind = ("Bytes", None)
                    else:
                        kind = ({"string": "Str", "int32": "I32", "int64": "I64", "bool": "Bool",
                                 "double": "F64", "float": "F32"}[base], None)
                fields.append((tag, snake, kind, repeated))
            out[".".join(module + [m.group(1)])] = fields
    return out


def camel(snake):
    head, *rest = snake.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def main():
    msgs = messages()
    names = json_names()
    wanted, todo = [], list(ROOTS)
    while todo:
        name = todo.pop()
        if name in wanted or name in SPECIAL:
            continue
        if name not in msgs:
            sys.exit(f"no protobuf message {name}")
        wanted.append(name)
        for _, _, (kind, target), _ in msgs[name]:
            if target:
                todo.append(target)
    print("//! Generated by scripts/gen-protobuf-schema.py; do not edit. For each Kubernetes")
    print("//! protobuf message the served kinds can contain: field number, JSON name, type and")
    print("//! whether it repeats. Facts from the k8s-pb (numbers) and k8s-openapi (names) crates.")
    print()
    print("use super::{Field as F, Kind as K};")
    print()
    print("/// Every message, sorted by name.")
    print("pub static MESSAGES: &[(&str, &[F])] = &[")
    for name in sorted(wanted):
        js = names.get(name.lower(), {})
        print(f'    ("{name}", &[')
        for tag, snake, (kind, target), repeated in msgs[name]:
            json = js.get(snake, camel(snake))
            k = f'K::{kind}("{target}")' if target else f"K::{kind}"
            print(f'        F({tag}, "{json}", {k}, {str(repeated).lower()}),')
        print("    ]),")
    print("];")


main()

#!/usr/bin/env python3
"""Generates src/apiserver/patch/schema.rs: for every Kubernetes struct type that the kinds
skiff serves can contain, its fields by JSON name, the struct type a field (or its list
element, or its map value) holds, and the merge strategy of the field.

The facts come from the k8s-openapi crate in the local cargo registry: its generated
`impl DeepMerge` says how each field merges (`merge_strategies::list::map` with the key
fields, `list::set`, `list::atomic`, `map::atomic`, `map::granular`, or a plain
`DeepMerge::merge_from` for structs and scalars), and its `Deserialize` impl maps JSON
names to Rust field names. These are the server-side apply list types; the strategic
merge patch differences are kept by hand in src/apiserver/patch/smp.rs. Run it again when
the crate is upgraded:

    scripts/gen-merge-schema.py > src/apiserver/patch/schema.rs
"""
import glob
import os
import re
import sys

REGISTRY = glob.glob(os.path.expanduser("~/.cargo/registry/src/*/"))
OPENAPI = sorted(p for r in REGISTRY for p in glob.glob(r + "k8s-openapi-0.29.*"))[-1] + "/src/v1_33"

# The kinds served (see src/apiserver/resources.rs and scripts/gen-protobuf-schema.py), as
# k8s-openapi struct paths.
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

WRAPPERS = ("Option<", "std::vec::Vec<", "std::collections::BTreeMap<std::string::String, ")


def short(dotted):
    """A crate path (dots) as the schema's type name: `core.v1.Pod`, `meta.v1.ObjectMeta`."""
    for prefix in ("api.", "apimachinery.pkg.apis."):
        if dotted.startswith(prefix):
            return dotted[len(prefix):]
    return dotted


def inner_type(rust_type):
    """The struct path a field holds, through Option, Vec and BTreeMap, or None."""
    t = rust_type.strip()
    changed = True
    while changed:
        changed = False
        for w in WRAPPERS:
            if t.startswith(w) and t.endswith(">"):
                t, changed = t[len(w):-1].strip(), True
    if not t.startswith("crate::"):
        return None
    return short(t[len("crate::"):].replace("::", "."))


def parse_file(path):
    """(type name, [(json, rust field, rust type)], {rust field: strategy}, (apiVersion, kind))."""
    text = open(path).read()
    m = re.search(r"^pub struct (\w+) \{(.*?)\n\}", text, re.S | re.M)
    if not m:
        return None
    rel = os.path.relpath(os.path.dirname(path), OPENAPI).replace("/", ".")
    name = short(rel + "." + m.group(1))
    json = {rust: js for js, rust in re.findall(r'"([^"]+)" => Field::Key_(\w+),', text)}
    fields = []
    for f in re.finditer(r"^\s*pub (?:r#)?(\w+): (.*),$", m.group(2), re.M):
        rust = f.group(1)
        if rust not in json:
            sys.exit(f"{name}.{rust}: no JSON name")
        fields.append((json[rust], rust, f.group(2)))
    strategies = {}
    merge = re.search(r"fn merge_from\(&mut self, other: Self\) \{(.*?)\n    \}\n", text, re.S)
    body = merge.group(1) if merge else ""
    calls = list(re.finditer(
        r"crate::(DeepMerge::merge_from|merge_strategies::(\w+)::(\w+))\(\s*&mut self\.(?:r#)?(\w+)", body))
    for i, c in enumerate(calls):
        end = calls[i + 1].start() if i + 1 < len(calls) else len(body)
        if c.group(1) == "DeepMerge::merge_from":
            strategies[c.group(4)] = ("plain", [])
        else:
            keys = re.findall(r"lhs\.([\w.#]+) == rhs\.", body[c.end():end])
            strategies[c.group(4)] = (c.group(2) + "::" + c.group(3), keys)
    root = None
    r = re.search(r'const API_VERSION: &\'static str = "([^"]+)";.*?const KIND: &\'static str = "([^"]+)";',
                  text, re.S)
    if r:
        root = (r.group(1), r.group(2))
    return name, fields, strategies, json, root


def json_path(types, type_name, rust_path):
    """A key path of the element type (`metadata.name`) in JSON names, or None."""
    out = []
    for part in rust_path.replace("r#", "").split("."):
        if type_name not in types:
            return None
        _, fields, _, json, _ = types[type_name]
        if part not in json:
            return None
        out.append(json[part])
        type_name = inner_type(next(t for _, r, t in fields if r == part))
    return ".".join(out)


def strategy(type_name, js, rust_type, child, kind, keys, types):
    if kind == "plain":
        if rust_type.startswith(("Option<std::vec::Vec<", "std::vec::Vec<", "Option<std::collections",
                                 "std::collections")):
            sys.exit(f"{type_name}.{js}: a list or map merged without a strategy")
        return "S::Struct" if child else "S::Scalar"
    if kind == "list::map":
        names = [json_path(types, child, k) for k in keys]
        if not names or None in names:
            sys.exit(f"{type_name}.{js}: a map list without keys")
        return "S::ListMap(&[" + ", ".join(f'"{n}"' for n in names) + "])"
    return {"list::atomic": "S::ListAtomic", "list::set": "S::ListSet",
            "map::atomic": "S::MapAtomic", "map::granular": "S::MapGranular"}[kind]


def main():
    types, roots = {}, {}
    for path in glob.glob(OPENAPI + "/**/*.rs", recursive=True):
        parsed = parse_file(path)
        if parsed:
            types[parsed[0]] = parsed
            if parsed[4]:
                roots[parsed[0]] = parsed[4]
    wanted, todo = set(), [short(r) for r in ROOTS]
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        if name not in types:
            sys.exit(f"no struct {name}")
        wanted.add(name)
        for _, _, rust_type in types[name][1]:
            child = inner_type(rust_type)
            if child in types:
                todo.append(child)
    print("//! Generated by scripts/gen-merge-schema.py; do not edit. For each Kubernetes struct")
    print("//! type the served kinds can contain: its fields by JSON name, the struct type a field")
    print("//! (or its list element, or its map value) holds, and the merge strategy the k8s-openapi")
    print("//! crate's `impl DeepMerge` gives the field (the server-side apply list and map types).")
    print()
    print("use super::{Field as F, Strategy as S};")
    print()
    print("/// Every type's fields, sorted by type name and then by JSON name.")
    print("pub static TYPES: &[(&str, &[F])] = &[")
    for name in sorted(wanted):
        _, fields, strategies, _, _ = types[name]
        print(f'    ("{name}", &[')
        for js, rust, rust_type in sorted(fields):
            child = inner_type(rust_type)
            child = child if child in types else None
            kind, keys = strategies.get(rust, ("plain", []))
            s = strategy(name, js, rust_type, child, kind, keys, types)
            c = f'Some("{child}")' if child else "None"
            print(f'        F {{ name: "{js}", child: {c}, strategy: {s} }},')
        print("    ]),")
    print("];")
    print()
    print("/// The served kinds: (apiVersion, kind, type), sorted by apiVersion and kind.")
    print("pub static ROOTS: &[(&str, &str, &str)] = &[")
    for (api_version, kind), name in sorted((roots[short(r)], short(r)) for r in ROOTS):
        print(f'    ("{api_version}", "{kind}", "{name}"),')
    print("];")


main()

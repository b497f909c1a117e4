//! The resource table: one entry per kind served, from which discovery, routing, storage
//! keys, validation and table columns all derive.

use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, events::v1 as events, networking::v1 as networking,
    policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Which columns `kubectl get` shows for a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Columns {
    /// Name and Age.
    Default,
    /// Pods.
    Pod,
    /// Deployments.
    Deployment,
    /// ReplicaSets.
    ReplicaSet,
    /// StatefulSets.
    StatefulSet,
    /// DaemonSets.
    DaemonSet,
    /// Services.
    Service,
    /// Nodes.
    Node,
    /// Namespaces.
    Namespace,
    /// ConfigMaps.
    ConfigMap,
    /// Secrets.
    Secret,
    /// Events.
    Event,
    /// Jobs.
    Job,
    /// CronJobs.
    CronJob,
    /// Endpoints.
    Endpoints,
    /// PersistentVolumeClaims.
    PersistentVolumeClaim,
    /// PersistentVolumes.
    PersistentVolume,
    /// ServiceAccounts.
    ServiceAccount,
    /// ResourceQuotas.
    ResourceQuota,
    /// Kinds shown with their creation time: LimitRanges, Roles, ClusterRoles.
    CreatedAt,
    /// ControllerRevisions.
    ControllerRevision,
    /// Leases.
    Lease,
    /// EndpointSlices.
    EndpointSlice,
    /// events.k8s.io Events.
    EventsV1,
    /// RoleBindings and ClusterRoleBindings.
    Binding,
    /// Ingresses.
    Ingress,
    /// IngressClasses.
    IngressClass,
    /// NetworkPolicies.
    NetworkPolicy,
    /// PodDisruptionBudgets.
    PodDisruptionBudget,
    /// PriorityClasses.
    PriorityClass,
    /// StorageClasses.
    StorageClass,
}

/// A subresource as discovery lists it.
#[derive(Clone, Copy, Debug)]
pub struct Subresource {
    /// `status`, `scale`, …
    pub name: &'static str,
    /// Its kind's group ("" for the parent's own).
    pub group: &'static str,
    /// Its kind's version ("" for the parent's own).
    pub version: &'static str,
    /// Its kind ("" for the parent's own kind).
    pub kind: &'static str,
    /// Its verbs.
    pub verbs: &'static [&'static str],
}

const GPU: &[&str] = &["get", "patch", "update"];
const STATUS: Subresource = Subresource {
    name: "status",
    group: "",
    version: "",
    kind: "",
    verbs: GPU,
};
const SCALE: Subresource = Subresource {
    name: "scale",
    group: "autoscaling",
    version: "v1",
    kind: "Scale",
    verbs: GPU,
};
const POD_SUBRESOURCES: &[Subresource] = &[
    Subresource {
        name: "binding",
        group: "",
        version: "v1",
        kind: "Binding",
        verbs: &["create"],
    },
    Subresource {
        name: "eviction",
        group: "policy",
        version: "v1",
        kind: "Eviction",
        verbs: &["create"],
    },
    STATUS,
];

/// The verbs of every collection served.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One kind served by the API server.
pub struct Resource {
    /// API group, "" for core.
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Plural resource name, used in paths and storage keys.
    pub plural: &'static str,
    /// Singular name.
    pub singular: &'static str,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names (`po`, `deploy`).
    pub short_names: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// Subresources, for discovery.
    pub subresources: &'static [Subresource],
    /// Fields besides metadata.name/namespace that field selectors accept.
    pub field_selectors: &'static [&'static str],
    /// Whether `metadata.generation` counts spec changes.
    pub generation: bool,
    /// Checks an object against its type and returns it as that type writes it.
    pub decode: fn(&Value) -> Result<Value, serde_json::Error>,
    /// Table columns.
    pub columns: Columns,
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage prefix of every object of this kind, ending in `/`.
    pub fn key_prefix(&self) -> String {
        match self.group {
            // Both event APIs are distinct kinds here; keep their keys apart.
            "events.k8s.io" => "/registry/events.k8s.io/events/".into(),
            _ => format!("/registry/{}/", self.plural),
        }
    }

    /// The storage prefix of a namespace's objects, or of all of them.
    pub fn collection_key(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.collection_key(namespace))
    }

    /// Whether the kind has a status subresource.
    pub fn has_status(&self) -> bool {
        self.subresources.iter().any(|s| s.name == "status")
    }
}

fn typed<T: Serialize + DeserializeOwned>(v: &Value) -> Result<Value, serde_json::Error> {
    serde_json::to_value(T::deserialize(v)?)
}

macro_rules! resources {
    ($( $ty:ty => ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr,
        $namespaced:expr, $short:expr, $cats:expr, $subs:expr, $fields:expr, $gen:expr, $cols:ident) ),* $(,)?) => {
        /// Every kind served.
        pub static RESOURCES: &[Resource] = &[$(
            Resource {
                group: $group, version: $version, kind: $kind, plural: $plural, singular: $singular,
                namespaced: $namespaced, short_names: $short, categories: $cats, subresources: $subs,
                field_selectors: $fields, generation: $gen, decode: typed::<$ty>, columns: Columns::$cols,
            },
        )*];
    };
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];
const ST: &[Subresource] = &[STATUS];
const ST_SCALE: &[Subresource] = &[SCALE, STATUS];
const NO_SUBS: &[Subresource] = &[];
const NAMESPACE_SUBS: &[Subresource] = &[
    Subresource {
        name: "finalize",
        group: "",
        version: "",
        kind: "",
        verbs: &["update"],
    },
    STATUS,
];
const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

resources! {
    core::Namespace => ("", "v1", "Namespace", "namespaces", "namespace", false, &["ns"], NONE, NAMESPACE_SUBS, &["status.phase"], false, Namespace),
    core::Pod => ("", "v1", "Pod", "pods", "pod", true, &["po"], ALL, POD_SUBRESOURCES, POD_FIELDS, false, Pod),
    core::Service => ("", "v1", "Service", "services", "service", true, &["svc"], ALL, ST, NONE, false, Service),
    core::Endpoints => ("", "v1", "Endpoints", "endpoints", "endpoints", true, &["ep"], NONE, NO_SUBS, NONE, false, Endpoints),
    core::Node => ("", "v1", "Node", "nodes", "node", false, &["no"], NONE, ST, &["spec.unschedulable"], false, Node),
    core::ConfigMap => ("", "v1", "ConfigMap", "configmaps", "configmap", true, &["cm"], NONE, NO_SUBS, NONE, false, ConfigMap),
    core::Secret => ("", "v1", "Secret", "secrets", "secret", true, NONE, NONE, NO_SUBS, &["type"], false, Secret),
    core::ServiceAccount => ("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true, &["sa"], NONE, NO_SUBS, NONE, false, ServiceAccount),
    core::Event => ("", "v1", "Event", "events", "event", true, &["ev"], NONE, NO_SUBS, EVENT_FIELDS, false, Event),
    core::PersistentVolume => ("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", false, &["pv"], NONE, ST, NONE, false, PersistentVolume),
    core::PersistentVolumeClaim => ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", true, &["pvc"], NONE, ST, NONE, false, PersistentVolumeClaim),
    core::ResourceQuota => ("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", true, &["quota"], NONE, ST, NONE, false, ResourceQuota),
    core::LimitRange => ("", "v1", "LimitRange", "limitranges", "limitrange", true, &["limits"], NONE, NO_SUBS, NONE, false, CreatedAt),
    apps::Deployment => ("apps", "v1", "Deployment", "deployments", "deployment", true, &["deploy"], ALL, ST_SCALE, NONE, true, Deployment),
    apps::ReplicaSet => ("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, &["rs"], ALL, ST_SCALE, &["status.replicas"], true, ReplicaSet),
    apps::DaemonSet => ("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, &["ds"], ALL, ST, NONE, true, DaemonSet),
    apps::StatefulSet => ("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true, &["sts"], ALL, ST_SCALE, NONE, true, StatefulSet),
    apps::ControllerRevision => ("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", true, NONE, NONE, NO_SUBS, NONE, false, ControllerRevision),
    batch::Job => ("batch", "v1", "Job", "jobs", "job", true, NONE, ALL, ST, &["status.successful"], true, Job),
    batch::CronJob => ("batch", "v1", "CronJob", "cronjobs", "cronjob", true, &["cj"], ALL, ST, NONE, true, CronJob),
    coordination::Lease => ("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, NONE, NONE, NO_SUBS, NONE, false, Lease),
    discovery::EndpointSlice => ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true, NONE, NONE, NO_SUBS, NONE, false, EndpointSlice),
    events::Event => ("events.k8s.io", "v1", "Event", "events", "event", true, &["ev"], NONE, NO_SUBS, NONE, false, EventsV1),
    rbac::Role => ("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", true, NONE, NONE, NO_SUBS, NONE, false, CreatedAt),
    rbac::RoleBinding => ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", true, NONE, NONE, NO_SUBS, NONE, false, Binding),
    rbac::ClusterRole => ("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", false, NONE, NONE, NO_SUBS, NONE, false, CreatedAt),
    rbac::ClusterRoleBinding => ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", false, NONE, NONE, NO_SUBS, NONE, false, Binding),
    networking::Ingress => ("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", true, &["ing"], NONE, ST, NONE, true, Ingress),
    networking::IngressClass => ("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", false, NONE, NONE, NO_SUBS, NONE, false, IngressClass),
    networking::NetworkPolicy => ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", true, &["netpol"], NONE, NO_SUBS, NONE, true, NetworkPolicy),
    policy::PodDisruptionBudget => ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true, &["pdb"], NONE, ST, NONE, true, PodDisruptionBudget),
    scheduling::PriorityClass => ("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", false, &["pc"], NONE, NO_SUBS, NONE, false, PriorityClass),
    storage::StorageClass => ("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", false, &["sc"], NONE, NO_SUBS, NONE, false, StorageClass),
}

/// The resource served at `group`/`version` under `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The groups served, in discovery order, each with its versions.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_unique_path_and_storage_prefix() {
        let mut paths = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        for r in RESOURCES {
            assert!(paths.insert((r.group, r.version, r.plural)), "{}", r.plural);
            assert!(keys.insert(r.key_prefix()), "{}", r.key_prefix());
        }
        assert_eq!(
            find("apps", "v1", "deployments").unwrap().kind,
            "Deployment"
        );
        assert_eq!(
            find("", "v1", "pods")
                .unwrap()
                .key(Some("default"), "web-1"),
            "/registry/pods/default/web-1"
        );
        assert_eq!(
            find("", "v1", "nodes").unwrap().key(None, "n1"),
            "/registry/nodes/n1"
        );
    }

    #[test]
    fn decode_checks_types_and_writes_kind_and_version() {
        let cm = find("", "v1", "configmaps").unwrap();
        let out = (cm.decode)(&serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"a": "b"}}))
        .unwrap();
        assert_eq!(out["data"]["a"], "b");
        assert_eq!(out["kind"], "ConfigMap");
        assert!(
            (cm.decode)(&serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"a": 1}}))
            .is_err()
        );
    }
}

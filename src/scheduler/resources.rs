//! Resource amounts as the scheduler counts them: a pod's effective requests (containers,
//! init containers, sidecars and overhead, as upstream's `resourcehelper.PodRequests`),
//! the "non-zero" requests used for scoring, and a node's allocatable.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as WireQuantity;

use crate::k8s::quantity::Quantity;

/// CPU assumed for a container that names no CPU request, when scoring (upstream's
/// `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory assumed for a container that names no memory request, when scoring
/// (upstream's `DefaultMemoryRequest`, 200Mi).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler tracks: cpu in millicores, memory and
/// ephemeral storage in bytes, every other resource (extended resources, hugepages) in
/// whole units, keyed by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in thousandths of a core.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Every other resource by name (`example.com/gpu`, `hugepages-2Mi`).
    pub scalars: BTreeMap<String, i64>,
}

impl Resources {
    /// The amounts of a `ResourceList` (requests, overhead or allocatable). Unparsable
    /// quantities count as zero; `pods` is left out (see [`allowed_pods`]).
    pub fn from_list(list: &BTreeMap<String, WireQuantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            r.add_one(name, q);
        }
        r
    }

    fn add_one(&mut self, name: &str, q: &WireQuantity) {
        let Ok(q) = Quantity::parse(&q.0) else {
            return;
        };
        match name {
            "cpu" => self.milli_cpu = self.milli_cpu.saturating_add(clamp(q.millis())),
            "memory" => self.memory = self.memory.saturating_add(clamp(q.units())),
            "ephemeral-storage" => {
                self.ephemeral_storage = self.ephemeral_storage.saturating_add(clamp(q.units()))
            }
            "pods" => {}
            other => {
                let slot = self.scalars.entry(other.to_string()).or_default();
                *slot = slot.saturating_add(clamp(q.units()));
            }
        }
    }

    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for (k, v) in &other.scalars {
            let slot = self.scalars.entry(k.clone()).or_default();
            *slot = slot.saturating_add(*v);
        }
    }

    /// Subtracts `other` from `self`.
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        for (k, v) in &other.scalars {
            let slot = self.scalars.entry(k.clone()).or_default();
            *slot = slot.saturating_sub(*v);
        }
    }

    /// Raises every amount of `self` to at least that of `other`.
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalars {
            let slot = self.scalars.entry(k.clone()).or_default();
            *slot = (*slot).max(*v);
        }
    }

    /// The amount of a scalar resource, zero when absent.
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalars.get(name).copied().unwrap_or(0)
    }
}

/// What a pod asks of a node: its requests, and the cpu and memory used for scoring
/// with upstream's defaults for containers that name none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// Effective requests, as the fit filter checks them.
    pub requests: Resources,
    /// CPU for scoring: missing container cpu requests count as 100m.
    pub non_zero_milli_cpu: i64,
    /// Memory for scoring: missing container memory requests count as 200Mi.
    pub non_zero_memory: i64,
}

impl PodRequests {
    /// A pod's requests: the sum over containers and sidecars (restartable init
    /// containers), raised to the largest init container (plus the sidecars started
    /// before it), plus the pod overhead.
    pub fn of(pod: &Pod) -> PodRequests {
        let Some(spec) = pod.spec.as_ref() else {
            return PodRequests::default();
        };
        let mut total = PodRequests::default();
        for c in &spec.containers {
            total.add(&container_requests(c));
        }
        let mut sidecars = PodRequests::default();
        let mut init_max = PodRequests::default();
        for c in spec.init_containers.iter().flatten() {
            let own = container_requests(c);
            let effective = if c.restart_policy.as_deref() == Some("Always") {
                total.add(&own);
                sidecars.add(&own);
                sidecars.clone()
            } else {
                let mut tmp = own;
                tmp.add(&sidecars);
                tmp
            };
            init_max.max_with(&effective);
        }
        total.max_with(&init_max);
        if let Some(overhead) = spec.overhead.as_ref() {
            let o = Resources::from_list(overhead);
            total.non_zero_milli_cpu = total.non_zero_milli_cpu.saturating_add(o.milli_cpu);
            total.non_zero_memory = total.non_zero_memory.saturating_add(o.memory);
            total.requests.add(&o);
        }
        total
    }

    fn add(&mut self, other: &PodRequests) {
        self.requests.add(&other.requests);
        self.non_zero_milli_cpu = self
            .non_zero_milli_cpu
            .saturating_add(other.non_zero_milli_cpu);
        self.non_zero_memory = self.non_zero_memory.saturating_add(other.non_zero_memory);
    }

    fn max_with(&mut self, other: &PodRequests) {
        self.requests.max_with(&other.requests);
        self.non_zero_milli_cpu = self.non_zero_milli_cpu.max(other.non_zero_milli_cpu);
        self.non_zero_memory = self.non_zero_memory.max(other.non_zero_memory);
    }
}

/// One container's requests, with the scoring defaults where cpu or memory is absent
/// (absent, not zero: an explicit `0` stays zero, as upstream).
fn container_requests(c: &Container) -> PodRequests {
    let list = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let requests = list.map(Resources::from_list).unwrap_or_default();
    let has = |name: &str| list.is_some_and(|l| l.contains_key(name));
    PodRequests {
        non_zero_milli_cpu: if has("cpu") {
            requests.milli_cpu
        } else {
            DEFAULT_MILLI_CPU_REQUEST
        },
        non_zero_memory: if has("memory") {
            requests.memory
        } else {
            DEFAULT_MEMORY_REQUEST
        },
        requests,
    }
}

/// The number of pods a node admits (`allocatable.pods`), zero when absent.
pub fn allowed_pods(allocatable: Option<&BTreeMap<String, WireQuantity>>) -> i64 {
    allocatable
        .and_then(|a| a.get("pods"))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .map(|q| clamp(q.units()))
        .unwrap_or(0)
}

fn clamp(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

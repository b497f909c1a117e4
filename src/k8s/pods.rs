//! Pod helpers shared by the API server, the scheduler and the kubelet.

use serde_json::Value;

use crate::k8s::quantity::Quantity;

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The pod's quality-of-service class, as `status.qosClass` reports it (upstream's
/// `GetPodQOS`): `Guaranteed` when every container limits cpu and memory and requests
/// what it limits, `BestEffort` when no container requests or limits either, else
/// `Burstable`.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers = ["containers", "initContainers"]
        .iter()
        .flat_map(|f| pod["spec"][f].as_array().cloned().unwrap_or_default())
        .collect::<Vec<_>>();
    let tracked = ["cpu", "memory"];
    let amount = |v: &Value| v.as_str().and_then(|s| s.parse::<Quantity>().ok());
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in &containers {
        let (requests, limits) = (&c["resources"]["requests"], &c["resources"]["limits"]);
        for r in tracked {
            let (req, lim) = (amount(&requests[r]), amount(&limits[r]));
            let nonzero = |q: &Option<Quantity>| q.as_ref().is_some_and(|q| q.nanos() != 0);
            any |= nonzero(&req) || nonzero(&lim);
            // A request left out defaults to the limit.
            let req = req.or(lim);
            if !nonzero(&lim) || req != lim {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(resources: Value) -> Value {
        json!({"spec": {"containers": [{"name": "c", "resources": resources}]}})
    }

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&pod(json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
        let both = json!({"cpu": "1", "memory": "1Gi"});
        assert_eq!(qos_class(&pod(json!({"limits": both}))), "Guaranteed");
        assert_eq!(
            qos_class(&pod(json!({"limits": both, "requests": {"cpu": "500m"}}))),
            "Burstable"
        );
    }
}

//! The Deployment controller's decisions, without the API.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::plan;
use super::util;

/// A Deployment; `surge` and `unavailable` are numbers unless they end in `%`.
fn deployment(replicas: i32, surge: &str, unavailable: &str) -> Deployment {
    let int_or_percent = |v: &str| match v.parse::<i32>() {
        Ok(n) => json!(n),
        Err(_) => json!(v),
    };
    let (surge, unavailable) = (int_or_percent(surge), int_or_percent(unavailable));
    serde_json::from_value(json!({
        "metadata": {"name": "web", "generation": 1, "uid": "d1"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "progressDeadlineSeconds": 600, "revisionHistoryLimit": 1,
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .unwrap()
}

fn rs(
    name: &str,
    created: i64,
    replicas: i32,
    available: i32,
    annotations: serde_json::Value,
) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name, "creationTimestamp": Timestamp::from_second(created).unwrap().to_string(),
                     "annotations": annotations, "generation": 1},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}},
        "status": {"replicas": replicas, "availableReplicas": available, "readyReplicas": available,
                   "observedGeneration": 1},
    }))
    .unwrap()
}

#[test]
fn percentages_round_surge_up_and_unavailable_down() {
    let d = deployment(3, "25%", "25%");
    assert_eq!(util::fenceposts(&d).unwrap(), (1, 0));
    let d = deployment(10, "25%", "25%");
    assert_eq!(util::fenceposts(&d).unwrap(), (3, 2));
    // Both zero after rounding: one may be unavailable.
    let d = deployment(1, "0%", "25%");
    assert_eq!(util::fenceposts(&d).unwrap(), (0, 1));
    assert!(util::scaled_value(&IntOrString::String("x".into()), 3, true).is_err());
    assert_eq!(util::scaled_value(&IntOrString::Int(2), 3, true), Ok(2));
}

#[test]
fn the_template_hash_is_stable_and_changes_with_collisions() {
    let d = deployment(3, "25%", "25%");
    let t = d.spec.unwrap().template;
    let h = util::compute_hash(&t, None);
    assert_eq!(h, util::compute_hash(&t.clone(), None));
    assert!(
        h.len() <= 10 && h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{h}"
    );
    assert_ne!(h, util::compute_hash(&t, Some(1)));
    let mut other = t.clone();
    other.spec.as_mut().unwrap().containers[0].image = Some("busybox:1.36".into());
    assert_ne!(h, util::compute_hash(&other, None));
}

#[test]
fn templates_are_equal_ignoring_the_hash_label_and_go_zero_values() {
    let a: PodTemplateSpec = serde_json::from_value(json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {}}]}}))
    .unwrap();
    let b: PodTemplateSpec = serde_json::from_value(json!({
        "metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}, "creationTimestamp": null},
        "spec": {"hostNetwork": false, "containers": [{"name": "c", "image": "busybox", "stdin": false}]}})).unwrap();
    assert!(util::equal_ignore_hash(&a, &b));
    assert_eq!(util::compute_hash(&a, None), {
        let mut b = b.clone();
        b.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .remove("pod-template-hash");
        util::compute_hash(&b, None)
    });
    let c: PodTemplateSpec = serde_json::from_value(json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"automountServiceAccountToken": false, "containers": [{"name": "c", "image": "busybox"}]}})).unwrap();
    assert!(
        !util::equal_ignore_hash(&a, &c),
        "a pointer field's false is a change"
    );
}

#[test]
fn a_rollback_raises_the_revision_and_keeps_the_history() {
    let mut d = deployment(3, "25%", "25%");
    d.metadata.annotations = Some(
        [
            ("kubernetes.io/change-cause".to_string(), "undo".to_string()),
            (util::REVISION.to_string(), "2".to_string()),
        ]
        .into(),
    );
    let mut new = rs("web-a", 0, 0, 0, json!({}));
    assert!(util::set_new_rs_annotations(&d, &mut new, 1, false));
    let a = new.metadata.annotations.clone().unwrap();
    assert_eq!(a[util::REVISION], "1");
    assert_eq!(a["kubernetes.io/change-cause"], "undo");
    assert_eq!(
        (
            a[util::DESIRED_REPLICAS].as_str(),
            a[util::MAX_REPLICAS].as_str()
        ),
        ("3", "4")
    );
    assert!(!a.contains_key(util::REVISION_HISTORY));
    // Made current again at revision 3, then 5.
    assert!(util::set_new_rs_annotations(&d, &mut new, 3, true));
    assert!(util::set_new_rs_annotations(&d, &mut new, 5, true));
    let a = new.metadata.annotations.clone().unwrap();
    assert_eq!(
        (
            a[util::REVISION].as_str(),
            a[util::REVISION_HISTORY].as_str()
        ),
        ("5", "1,3")
    );
    assert!(
        !util::set_new_rs_annotations(&d, &mut new, 4, true),
        "never lowered"
    );
}

/// Plays a whole rolling update with pods becoming available at once, checking the
/// budget after every step.
fn roll(replicas: i32, surge: &str, unavailable: &str) -> usize {
    let d = deployment(replicas, surge, unavailable);
    let (max_surge, max_unavailable) = util::fenceposts(&d).unwrap();
    let mut old = rs("web-old", 0, replicas, replicas, json!({}));
    let mut new = rs("web-new", 10, 0, 0, json!({}));
    let mut steps = 0;
    loop {
        let step = plan::rolling_step(&d, &new, &[&old]).unwrap();
        if step.is_empty() {
            break;
        }
        for (name, size) in step {
            let target = if name == "web-new" {
                &mut new
            } else {
                &mut old
            };
            target.spec.as_mut().unwrap().replicas = Some(size);
            let st = target.status.as_mut().unwrap();
            // Scaling down removes available pods at once; new pods are unavailable.
            st.replicas = size;
            st.available_replicas = Some(st.available_replicas.unwrap().min(size));
        }
        let total = util::rs_replicas(&old) + util::rs_replicas(&new);
        let available = util::rs_available(&old) + util::rs_available(&new);
        assert!(total <= replicas + max_surge, "{total} pods");
        assert!(
            available >= replicas - max_unavailable,
            "{available} available"
        );
        // The new pods become available.
        let n = util::rs_replicas(&new);
        new.status.as_mut().unwrap().available_replicas = Some(n);
        steps += 1;
        assert!(steps < 100);
    }
    assert_eq!(
        (util::rs_replicas(&new), util::rs_replicas(&old)),
        (replicas, 0)
    );
    steps
}

#[test]
fn a_rolling_update_stays_within_surge_and_unavailability() {
    assert_eq!(roll(3, "25%", "25%"), 6, "one up, one down, three times");
    roll(10, "25%", "25%");
    roll(5, "0", "1");
    roll(4, "100%", "0");
}

#[test]
fn unhealthy_old_replicas_are_scaled_down_first() {
    let d = deployment(3, "1", "0");
    let old = rs("web-old", 0, 3, 1, json!({}));
    let new = rs("web-new", 10, 1, 1, json!({}));
    // 4 pods of which 3 must stay: one may go, and it is an unavailable old one, though
    // the available pods are already below the minimum.
    assert_eq!(
        plan::rolling_step(&d, &new, &[&old]).unwrap(),
        vec![("web-old".to_string(), 2)]
    );
    // With nothing unhealthy and no room, nothing goes.
    let old = rs("web-old", 0, 3, 3, json!({}));
    let new = rs("web-new", 10, 1, 0, json!({}));
    assert!(plan::rolling_step(&d, &new, &[&old]).unwrap().is_empty());
}

#[test]
fn scaling_mid_rollout_is_proportional() {
    // Upstream's example: 10 replicas, surge 3, new at 6 and old at 7; scaled to 15.
    let mut d = deployment(15, "3", "0");
    d.status = Some(serde_json::from_value(json!({"replicas": 13})).unwrap());
    let annotations = json!({util::MAX_REPLICAS: "13", util::DESIRED_REPLICAS: "10"});
    let new = rs("web-new", 10, 6, 6, annotations.clone());
    let old = rs("web-old", 0, 7, 7, annotations);
    let mut out = plan::proportional(&d, Some(&new), &[&old]);
    out.sort();
    // 18 allowed, 5 to add: 7 -> 7*18/13 = 10, 6 -> 6*18/13 = 8.
    assert_eq!(
        out,
        vec![("web-new".to_string(), 8), ("web-old".to_string(), 10)]
    );
    // One active ReplicaSet takes every replica.
    let only = rs("web-new", 10, 10, 10, json!({}));
    assert_eq!(
        plan::proportional(&d, Some(&only), &[]),
        vec![("web-new".to_string(), 15)]
    );
    // To zero: all go.
    let d0 = deployment(0, "3", "0");
    let mut out = plan::proportional(&d0, Some(&new), &[&old]);
    out.sort();
    assert_eq!(
        out,
        vec![("web-new".to_string(), 0), ("web-old".to_string(), 0)]
    );
}

#[test]
fn old_replicasets_beyond_the_history_limit_are_deleted_lowest_revision_first() {
    let d = deployment(3, "25%", "25%");
    let r1 = rs("r1", 0, 0, 0, json!({util::REVISION: "1"}));
    let r2 = rs("r2", 1, 0, 0, json!({util::REVISION: "2"}));
    let busy = rs("r0", 2, 1, 1, json!({util::REVISION: "0"}));
    assert_eq!(plan::cleanup(&d, &[&r2, &r1]), vec!["r1".to_string()]);
    // Only the lowest revision is beyond the limit, and it still has a pod.
    assert!(plan::cleanup(&d, &[&r2, &busy]).is_empty());
}

#[test]
fn conditions_follow_the_rollout() {
    let now = Timestamp::from_second(1_000_000).unwrap();
    let mut d = deployment(3, "25%", "25%");
    let new = rs("web-new", 10, 3, 1, json!({}));
    let s = plan::rollout_status(&d, &[&new], Some(&new), None, now);
    let c = util::condition(&s, "Available").unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("False", Some("MinimumReplicasUnavailable"))
    );
    let c = util::condition(&s, "Progressing").unwrap();
    assert_eq!(
        c.message.as_deref(),
        Some("ReplicaSet \"web-new\" is progressing.")
    );
    assert_eq!(s.unavailable_replicas, Some(2));

    // No progress for longer than the deadline.
    d.status = Some(s.clone());
    let later = Timestamp::from_second(1_000_601).unwrap();
    let s = plan::rollout_status(&d, &[&new], Some(&new), None, later);
    let c = util::condition(&s, "Progressing").unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("False", Some("ProgressDeadlineExceeded"))
    );
    assert_eq!(
        c.message.as_deref(),
        Some("ReplicaSet \"web-new\" has timed out progressing.")
    );
    assert_eq!(
        plan::requeue_stuck(&d, &s, Timestamp::from_second(1_000_100).unwrap()),
        Some(std::time::Duration::from_secs(501))
    );

    // All available: complete.
    let done = rs("web-new", 10, 3, 3, json!({}));
    d.status = Some(s);
    let s = plan::rollout_status(&d, &[&done], Some(&done), None, later);
    let c = util::condition(&s, "Progressing").unwrap();
    assert_eq!(
        (c.reason.as_deref(), c.message.as_deref()),
        (
            Some("NewReplicaSetAvailable"),
            Some("ReplicaSet \"web-new\" has successfully progressed.")
        )
    );
    assert_eq!(
        util::condition(&s, "Available").unwrap().reason.as_deref(),
        Some("MinimumReplicasAvailable")
    );
    assert!(plan::complete(&d, &s));
}

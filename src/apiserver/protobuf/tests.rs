//! Bodies encoded by prost with the k8s-pb bindings, read back as kube-apiserver's JSON.

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::json;

use super::*;

fn body(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [MAGIC, &unknown.encode_to_vec()].concat()
}

fn meta(name: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(name.into()),
        namespace: Some(String::new()),
        labels: [("app".to_string(), "web".to_string())].into(),
        // Go writes its zero time for an unset timestamp.
        creation_timestamp: Some(meta::Time {
            seconds: Some(GO_ZERO_TIME),
            nanos: Some(0),
        }),
        ..Default::default()
    }
}

#[test]
fn a_configmap_and_a_secret_read_as_json() {
    let cm = core::ConfigMap {
        metadata: Some(meta("cfg")),
        data: [("a".to_string(), "1".to_string())].into(),
        binary_data: [("b".to_string(), vec![0u8, 1, 2])].into(),
        immutable: Some(false),
    };
    let out = decode_object(&body("v1", "ConfigMap", cm.encode_to_vec())).unwrap();
    assert_eq!(
        out,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "labels": {"app": "web"}},
        "data": {"a": "1"}, "binaryData": {"b": "AAEC"}, "immutable": false})
    );
    let secret = core::Secret {
        metadata: Some(meta("s")),
        data: [("p".to_string(), b"q".to_vec())].into(),
        r#type: Some("Opaque".into()),
        ..Default::default()
    };
    let out = decode_object(&body("v1", "Secret", secret.encode_to_vec())).unwrap();
    assert_eq!(out["data"]["p"], "cQ==");
    assert_eq!(out["type"], "Opaque");
}

#[test]
fn a_deployment_keeps_numbers_quantities_and_int_or_strings() {
    let container = core::Container {
        name: Some("app".into()),
        image: Some("busybox".into()),
        ports: vec![core::ContainerPort {
            container_port: Some(80),
            protocol: Some("TCP".into()),
            ..Default::default()
        }],
        resources: Some(core::ResourceRequirements {
            limits: [(
                "memory".to_string(),
                k8s_pb::apimachinery::pkg::api::resource::Quantity {
                    string: Some("64Mi".into()),
                },
            )]
            .into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let deploy = apps::Deployment {
        metadata: Some(meta("web")),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta("")),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_surge: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: Some("25%".into()),
                    }),
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(1),
                        str_val: Some(String::new()),
                    }),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let out = decode_object(&body("apps/v1", "Deployment", deploy.encode_to_vec())).unwrap();
    let spec = &out["spec"];
    assert_eq!(spec["replicas"], 0, "a zero that was set stays");
    assert_eq!(
        spec["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );
    assert_eq!(
        spec["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "64Mi"
    );
    assert_eq!(
        spec["strategy"]["rollingUpdate"],
        json!({"maxSurge": "25%", "maxUnavailable": 1})
    );
    // The result is a valid Deployment for the typed decoder.
    let typed: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(out).unwrap();
    assert_eq!(typed.metadata.name.as_deref(), Some("web"));
}

#[test]
fn times_and_durations_read_like_go() {
    assert_eq!(time(1_700_000_000, 0, false), json!("2023-11-14T22:13:20Z"));
    assert_eq!(
        time(1_700_000_000, 123_456_000, true),
        json!("2023-11-14T22:13:20.123456Z")
    );
    assert_eq!(time(GO_ZERO_TIME, 0, false), Value::Null);
    assert_eq!(go_duration(300_000_000_000), "5m0s");
    assert_eq!(go_duration(3_723_500_000_000), "1h2m3.5s");
    assert_eq!(go_duration(0), "0s");
}

#[test]
fn garbage_is_refused_with_a_clear_error() {
    assert!(decode_object(b"not protobuf")
        .unwrap_err()
        .0
        .contains("prefix"));
    let truncated = body("v1", "ConfigMap", vec![0x0a, 0x05, 0x01]);
    assert!(decode_object(&truncated).is_err());
    let unknown = body("v1", "Gadget", Vec::new());
    assert!(decode_object(&unknown)
        .unwrap_err()
        .0
        .contains("unknown message type"));
}

#[test]
fn go_zero_values_of_plain_fields_and_empty_times_are_left_out_as_go_json_does() {
    // As kubectl 1.33's `create deployment` sends it: Go writes every plain field, and a
    // zero time as an empty message.
    let container = core::Container {
        name: Some("app".into()),
        image: Some("busybox".into()),
        stdin: Some(false),
        stdin_once: Some(false),
        tty: Some(false),
        ..Default::default()
    };
    let template_meta = meta::ObjectMeta {
        labels: [("app".to_string(), "web".to_string())].into(),
        generation: Some(0),
        creation_timestamp: Some(meta::Time {
            seconds: None,
            nanos: None,
        }),
        ..Default::default()
    };
    let deploy = apps::Deployment {
        metadata: Some(meta("web")),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            min_ready_seconds: Some(0),
            paused: Some(false),
            template: Some(core::PodTemplateSpec {
                metadata: Some(template_meta),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    host_network: Some(false),
                    host_ipc: Some(false),
                    termination_grace_period_seconds: Some(0),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let out = decode_object(&body("apps/v1", "Deployment", deploy.encode_to_vec())).unwrap();
    let spec = &out["spec"];
    assert_eq!(spec["replicas"], 0, "a pointer's zero stays");
    assert!(spec.get("minReadySeconds").is_none() && spec.get("paused").is_none());
    let template = &spec["template"];
    assert_eq!(template["metadata"], json!({"labels": {"app": "web"}}));
    let pod = &template["spec"];
    assert!(pod.get("hostNetwork").is_none() && pod.get("hostIPC").is_none());
    assert_eq!(
        pod["terminationGracePeriodSeconds"], 0,
        "a pointer's zero stays"
    );
    assert_eq!(
        pod["containers"][0],
        json!({"name": "app", "image": "busybox"})
    );
}

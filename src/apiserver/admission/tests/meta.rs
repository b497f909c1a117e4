//! Tests of the metadata rules every kind shares.

use serde_json::json;

use super::{assert_causes, create_causes};

const NAME_PART: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn config_map(metadata: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {}})
}

#[test]
fn well_formed_metadata_has_no_causes() {
    let obj = config_map(json!({
        "name": "c",
        "generateName": "web-",
        "labels": {"app": "web", "example.com/tier": "front_end.1", "empty": ""},
        "annotations": {"Example.com/Note": "anything at all: {}", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
    }));
    assert_causes(&create_causes("v1", "ConfigMap", obj), &[]);
}

#[test]
fn label_keys_must_be_qualified_names() {
    let obj = config_map(json!({"name": "c", "labels": {"-app": "x"}}));
    let want = format!("metadata.labels: Invalid value: \"-app\": name part {NAME_PART}");
    assert_causes(&create_causes("v1", "ConfigMap", obj), &[&want]);
}

#[test]
fn label_key_prefixes_must_be_dns_subdomains() {
    let obj = config_map(json!({"name": "c", "labels": {"Example.com/app": "x", "/app": "y"}}));
    let causes = create_causes("v1", "ConfigMap", obj);
    assert_causes(
        &causes,
        &[
            "metadata.labels: Invalid value: \"/app\": prefix part must be non-empty",
            "metadata.labels: Invalid value: \"Example.com/app\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ],
    );
    assert!(causes.iter().all(|c| c.reason == "FieldValueInvalid"));
}

#[test]
fn label_keys_with_two_slashes_are_not_qualified_names() {
    let obj = config_map(json!({"name": "c", "labels": {"a/b/c": "x"}}));
    let want = format!("metadata.labels: Invalid value: \"a/b/c\": a qualified name {NAME_PART} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')");
    assert_causes(&create_causes("v1", "ConfigMap", obj), &[&want]);
}

#[test]
fn label_name_parts_are_at_most_63_characters() {
    let key = "a".repeat(64);
    let obj = config_map(json!({"name": "c", "labels": {key.clone(): "x"}}));
    let want = format!(
        "metadata.labels: Invalid value: \"{key}\": name part must be no more than 63 characters"
    );
    assert_causes(&create_causes("v1", "ConfigMap", obj), &[&want]);
}

#[test]
fn label_values_are_short_and_alphanumeric_at_the_ends() {
    let long = "v".repeat(64);
    let obj = config_map(json!({"name": "c", "labels": {"a": "-x", "b": long.clone()}}));
    let want_syntax = "metadata.labels: Invalid value: \"-x\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
    let want_long =
        format!("metadata.labels: Invalid value: \"{long}\": must be no more than 63 characters");
    assert_causes(
        &create_causes("v1", "ConfigMap", obj),
        &[want_syntax, &want_long],
    );
}

#[test]
fn annotation_keys_must_be_qualified_names() {
    let obj = config_map(json!({"name": "c", "annotations": {"bad key": "x"}}));
    let want = format!("metadata.annotations: Invalid value: \"bad key\": name part {NAME_PART}");
    assert_causes(&create_causes("v1", "ConfigMap", obj), &[&want]);
}

#[test]
fn annotations_larger_than_256_kib_are_too_long() {
    let big = "x".repeat(256 * 1024);
    let obj = config_map(json!({"name": "c", "annotations": {"a": big}}));
    let causes = create_causes("v1", "ConfigMap", obj);
    assert_causes(
        &causes,
        &["metadata.annotations: Too long: may not be more than 262144 bytes"],
    );
    assert_eq!(causes[0].reason, "FieldValueTooLong");
}

#[test]
fn generate_name_must_make_a_valid_name() {
    let obj = config_map(json!({"generateName": "Web-"}));
    let causes = create_causes("v1", "ConfigMap", obj);
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].field, "metadata.generateName");
    assert!(causes[0]
        .message
        .starts_with("Invalid value: \"Web-\": a lowercase RFC 1123 subdomain"));
}

#[test]
fn service_generate_names_are_dns_1035_labels() {
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"generateName": "1web-"},
        "spec": {"ports": [{"port": 80}]}});
    let causes = create_causes("v1", "Service", svc);
    assert_causes(&causes, &["metadata.generateName: Invalid value: \"1web-\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]);
}

#[test]
fn namespaces_are_labelled_with_their_name_and_start_active() {
    let mut ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}});
    crate::apiserver::admission::default("v1", "Namespace", &mut ns);
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "team-a"
    );
    assert_eq!(ns["status"]["phase"], "Active");
    assert_causes(&create_causes("v1", "Namespace", ns), &[]);
}

#[test]
fn secrets_claims_and_volumes_get_their_defaults() {
    let mut secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
    crate::apiserver::admission::default("v1", "Secret", &mut secret);
    assert_eq!(secret["type"], "Opaque");
    let mut claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"}, "spec": {}});
    crate::apiserver::admission::default("v1", "PersistentVolumeClaim", &mut claim);
    assert_eq!(claim["spec"]["volumeMode"], "Filesystem");
    assert_eq!(claim["status"]["phase"], "Pending");
    let mut volume = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "v"}, "spec": {}});
    crate::apiserver::admission::default("v1", "PersistentVolume", &mut volume);
    assert_eq!(volume["spec"]["persistentVolumeReclaimPolicy"], "Retain");
}

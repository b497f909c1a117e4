//! Tests of Job and CronJob defaults, generated selectors and validation.

use serde_json::{json, Value};

use super::{assert_causes, container, create_causes, update_causes};
use crate::apiserver::admission::{default, prepare_for_create};

fn job(template_labels: Option<Value>) -> Value {
    let mut template =
        json!({"spec": {"containers": [container("work", "busybox")], "restartPolicy": "Never"}});
    if let Some(labels) = template_labels {
        template["metadata"] = json!({"labels": labels});
    }
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "uid": "u-1"},
           "spec": {"template": template}})
}

/// A Job as the server stores it: defaulted, with its generated selector.
fn created(mut obj: Value) -> Value {
    default("batch/v1", "Job", &mut obj);
    prepare_for_create("batch/v1", "Job", &mut obj);
    obj
}

fn cron_job(schedule: &str) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
           "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
               "containers": [container("work", "busybox")], "restartPolicy": "OnFailure"}}}}}})
}

#[test]
fn jobs_get_kube_apiserver_defaults() {
    let j = created(job(None));
    let spec = &j["spec"];
    assert_eq!(spec["completions"], 1);
    assert_eq!(spec["parallelism"], 1);
    assert_eq!(spec["backoffLimit"], 6);
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
    assert_eq!(spec["manualSelector"], false);
    let mut parallel = job(None);
    parallel["spec"]["parallelism"] = json!(3);
    default("batch/v1", "Job", &mut parallel);
    assert!(parallel["spec"].get("completions").is_none());
}

#[test]
fn created_jobs_select_their_uid() {
    let j = created(job(Some(json!({"team": "a"}))));
    assert_eq!(
        j["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
    );
    let want = json!({
        "team": "a",
        "batch.kubernetes.io/controller-uid": "u-1",
        "batch.kubernetes.io/job-name": "pi",
        "controller-uid": "u-1",
        "job-name": "pi",
    });
    assert_eq!(j["spec"]["template"]["metadata"]["labels"], want);
    assert_eq!(
        j["metadata"]["labels"], want,
        "the job shares its template's labels"
    );
    assert_causes(&super::super::validate_create("batch/v1", "Job", &j), &[]);
}

#[test]
fn jobs_without_a_selector_are_invalid() {
    let causes = create_causes("batch/v1", "Job", job(None));
    assert_causes(
        &causes,
        &[
            "spec.selector: Required value",
            "spec.template.metadata.labels: Invalid value: map[string]string(nil): `selector` does not match template `labels`",
        ],
    );
}

#[test]
fn job_templates_must_restart_on_failure_or_never() {
    let mut j = job(None);
    j["spec"]["template"]["spec"]
        .as_object_mut()
        .map(|s| s.remove("restartPolicy"));
    let j = created(j);
    assert_causes(
        &super::super::validate_create("batch/v1", "Job", &j),
        &["spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""],
    );
}

#[test]
fn job_counts_may_not_be_negative() {
    let mut j = job(None);
    j["spec"]["parallelism"] = json!(-1);
    j["spec"]["completions"] = json!(-2);
    j["spec"]["backoffLimit"] = json!(-3);
    let j = created(j);
    assert_causes(
        &super::super::validate_create("batch/v1", "Job", &j),
        &[
            "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
            "spec.completions: Invalid value: -2: must be greater than or equal to 0",
            "spec.backoffLimit: Invalid value: -3: must be greater than or equal to 0",
        ],
    );
}

#[test]
fn job_selector_completions_and_template_are_immutable() {
    let old = created(job(None));
    let mut new = old.clone();
    new["spec"]["completions"] = json!(5);
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:2");
    let causes = update_causes("batch/v1", "Job", new, old.clone());
    let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["spec.completions", "spec.template"]);
    assert_eq!(causes[0].message, "Invalid value: 5: field is immutable");
    let mut relabelled = old.clone();
    relabelled["spec"]["selector"]["matchLabels"]["extra"] = json!("x");
    relabelled["spec"]["template"]["metadata"]["labels"]["extra"] = json!("x");
    let causes = update_causes("batch/v1", "Job", relabelled, old.clone());
    assert_eq!(causes[0].field, "spec.selector");
    let mut suspended = old.clone();
    suspended["spec"]["suspend"] = json!(false);
    assert_causes(&update_causes("batch/v1", "Job", suspended, old), &[]);
}

#[test]
fn cron_jobs_get_defaults_and_template_defaults() {
    let mut c = cron_job("*/5 * * * *");
    default("batch/v1", "CronJob", &mut c);
    let spec = &c["spec"];
    assert_eq!(spec["concurrencyPolicy"], "Allow");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["successfulJobsHistoryLimit"], 3);
    assert_eq!(spec["failedJobsHistoryLimit"], 1);
    let pod = &spec["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");
    assert!(spec["jobTemplate"]["spec"].get("backoffLimit").is_none());
    assert_causes(
        &create_causes("batch/v1", "CronJob", cron_job("@hourly")),
        &[],
    );
}

#[test]
fn bad_schedules_are_invalid() {
    assert_causes(
        &create_causes("batch/v1", "CronJob", cron_job("61 * * * *")),
        &["spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"],
    );
    assert_causes(
        &create_causes("batch/v1", "CronJob", cron_job("")),
        &["spec.schedule: Required value"],
    );
}

#[test]
fn time_zones_belong_in_the_time_zone_field() {
    assert_causes(
        &create_causes("batch/v1", "CronJob", cron_job("TZ=UTC 0 * * * *")),
        &["spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"],
    );
    let mut c = cron_job("0 * * * *");
    c["spec"]["timeZone"] = json!("Europe/Berlin");
    assert_causes(&create_causes("batch/v1", "CronJob", c.clone()), &[]);
    c["spec"]["timeZone"] = json!("Local");
    assert_causes(
        &create_causes("batch/v1", "CronJob", c),
        &["spec.timeZone: Invalid value: \"Local\": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"],
    );
}

#[test]
fn concurrency_policy_must_be_supported() {
    let mut c = cron_job("0 * * * *");
    c["spec"]["concurrencyPolicy"] = json!("Sometimes");
    assert_causes(
        &create_causes("batch/v1", "CronJob", c),
        &["spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\""],
    );
}

#[test]
fn generated_labels_must_carry_the_jobs_uid_and_name() {
    let mut j = created(job(None));
    j["spec"]["template"]["metadata"]["labels"]["job-name"] = json!("other");
    j["spec"]["template"]["metadata"]["labels"]
        .as_object_mut()
        .map(|l| l.remove("controller-uid"));
    j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"] = json!("u-2");
    let causes = super::super::validate_create("batch/v1", "Job", &j);
    let lines = super::lines(&causes);
    assert_eq!(
        lines[0],
        "spec.template.metadata.labels[controller-uid]: Required value: u-1"
    );
    assert!(lines[1]
        .starts_with("spec.template.metadata.labels[job-name]: Invalid value: map[string]string{"));
    assert!(lines[1].ends_with(": must be 'pi'"));
    assert_eq!(lines[2], "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"batch.kubernetes.io/controller-uid\":\"u-2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: `selector` not auto-generated");
}

#[test]
fn manual_selectors_are_left_to_the_user() {
    let mut j = job(Some(json!({"app": "batch"})));
    j["spec"]["manualSelector"] = json!(true);
    j["spec"]["selector"] = json!({"matchLabels": {"app": "batch"}});
    let j = created(j);
    assert!(j["spec"]["template"]["metadata"]["labels"]
        .get("job-name")
        .is_none());
    assert_causes(&super::super::validate_create("batch/v1", "Job", &j), &[]);
}

#[test]
fn cron_job_templates_may_not_choose_selectors() {
    let mut c = cron_job("@daily");
    c["spec"]["jobTemplate"]["spec"]["selector"] = json!({"matchLabels": {"a": "b"}});
    c["spec"]["jobTemplate"]["spec"]["manualSelector"] = json!(true);
    assert_causes(
        &create_causes("batch/v1", "CronJob", c),
        &[
            "spec.jobTemplate.spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"a\":\"b\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: `selector` will be auto-generated",
            "spec.jobTemplate.spec.manualSelector: Unsupported value: true: supported values: \"nil\", \"false\"",
        ],
    );
}

#[test]
fn indexed_jobs_scale_completions_with_parallelism() {
    let mut j = job(None);
    j["spec"]["completionMode"] = json!("Indexed");
    j["spec"]["completions"] = json!(3);
    j["spec"]["parallelism"] = json!(3);
    let old = created(j);
    let mut both = old.clone();
    both["spec"]["completions"] = json!(5);
    both["spec"]["parallelism"] = json!(5);
    assert_causes(&update_causes("batch/v1", "Job", both, old.clone()), &[]);
    let mut alone = old.clone();
    alone["spec"]["completions"] = json!(5);
    assert_causes(
        &update_causes("batch/v1", "Job", alone, old),
        &["spec.completions: Invalid value: 5: can only be modified in tandem with spec.parallelism"],
    );
}

#[test]
fn completion_modes_are_known() {
    let mut j = job(None);
    j["spec"]["completionMode"] = json!("Sometimes");
    let j = created(j);
    assert_causes(
        &super::super::validate_create("batch/v1", "Job", &j),
        &["spec.completionMode: Unsupported value: \"Sometimes\": supported values: \"NonIndexed\", \"Indexed\""],
    );
}

#[test]
fn a_suspended_job_that_never_ran_may_move_its_pods() {
    let mut j = job(None);
    j["spec"]["suspend"] = json!(true);
    let old = created(j);
    let mut new = old.clone();
    new["spec"]["template"]["spec"]["nodeSelector"] = json!({"zone": "a"});
    assert_causes(&update_causes("batch/v1", "Job", new, old), &[]);
}

#[test]
fn a_job_without_labels_takes_its_generated_template_labels() {
    let j = created(job(None));
    assert_eq!(
        j["metadata"]["labels"]["batch.kubernetes.io/job-name"],
        "pi"
    );
    assert_eq!(j["metadata"]["labels"]["controller-uid"], "u-1");
}

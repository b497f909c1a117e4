//! What the Job controller reads of its pods and writes into new ones: phases, the
//! tracking finalizer, completion indexes, finish times, the pod failure policy, the
//! order in which surplus pods go, and the pod made from the template.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, PodFailurePolicy};
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The finalizer that keeps a finished pod until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The annotation (and label) carrying a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable the index is exposed as.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// kube-apiserver's limit on a generateName prefix (63 less 5 random characters).
const MAX_GENERATED_NAME: usize = 58;

/// `status.phase`, or "".
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// Succeeded or Failed.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Marked for deletion.
pub fn is_deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Neither finished nor being deleted (upstream's `FilterActivePods`).
pub fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && !is_deleting(pod)
}

/// Being deleted but not finished yet.
pub fn is_terminating(pod: &Pod) -> bool {
    is_deleting(pod) && !is_terminal(pod)
}

/// Whether the pod still carries the tracking finalizer.
pub fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

/// The Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The completion index in the pod's annotation, if it is a valid one.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    let text = pod.metadata.annotations.as_ref()?.get(COMPLETION_INDEX)?;
    text.parse::<i32>().ok().filter(|ix| *ix >= 0)
}

/// Whether the pod counts as failed: phase Failed, or (unless only failed pods are
/// replaced) deleted before it succeeded.
pub fn is_failed(pod: &Pod, only_replace_failed: bool) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    !only_replace_failed && is_deleting(pod) && phase(pod) != "Succeeded"
}

/// When the pod finished: its containers' last finishedAt, else when it stopped being
/// ready, else its deletion, else `now`.
pub fn finish_time(pod: &Pod, now: Timestamp) -> Timestamp {
    let status = pod.status.as_ref();
    let containers = status
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    let not_ready = || {
        status
            .into_iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .find(|c| c.type_ == "Ready" && c.status == "False")
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0)
    };
    containers
        .or_else(not_ready)
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now)
}

/// What the pod failure policy says of a failed pod.
#[derive(Debug, PartialEq, Eq)]
pub struct PolicyMatch {
    /// The rule's action, if a rule matched.
    pub action: Option<String>,
    /// Whether the failure counts against backoffLimit.
    pub counts: bool,
    /// The Job's failure message, for a FailJob rule.
    pub fail_job: Option<String>,
}

/// Matches a failed pod against the rules in order (upstream's `matchPodFailurePolicy`).
pub fn match_failure_policy(policy: &PodFailurePolicy, pod: &Pod) -> PolicyMatch {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    for (index, rule) in policy.rules.iter().enumerate() {
        let what = if let Some(req) = &rule.on_exit_codes {
            matching_exit_code(pod, req).map(|(container, code)| {
                format!("Container {container} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {index}", rule.action)
            })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            matching_condition(pod, patterns).map(|ty| {
                format!(
                    "Pod {ns}/{name} has condition {ty} matching {} rule at index {index}",
                    rule.action
                )
            })
        } else {
            None
        };
        let Some(message) = what else { continue };
        let action = Some(rule.action.clone());
        match rule.action.as_str() {
            "Ignore" => {
                return PolicyMatch {
                    action,
                    counts: false,
                    fail_job: None,
                }
            }
            "Count" => {
                return PolicyMatch {
                    action,
                    counts: true,
                    fail_job: None,
                }
            }
            "FailJob" => {
                return PolicyMatch {
                    action,
                    counts: true,
                    fail_job: Some(message),
                }
            }
            // FailIndex needs backoffLimitPerIndex, which this controller leaves out.
            _ => continue,
        }
    }
    PolicyMatch {
        action: None,
        counts: true,
        fail_job: None,
    }
}

fn matching_exit_code(
    pod: &Pod,
    req: &k8s_openapi::api::batch::v1::PodFailurePolicyOnExitCodesRequirement,
) -> Option<(String, i32)> {
    let status = pod.status.as_ref()?;
    let lists = [&status.container_statuses, &status.init_container_statuses];
    lists.into_iter().flatten().flatten().find_map(|c| {
        let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
        let named = req.container_name.as_ref().is_none_or(|n| *n == c.name);
        let listed = req.values.contains(&code);
        let hit = match req.operator.as_str() {
            "In" => listed,
            "NotIn" => !listed,
            _ => false,
        };
        (named && code != 0 && hit).then(|| (c.name.clone(), code))
    })
}

fn matching_condition(
    pod: &Pod,
    patterns: &[k8s_openapi::api::batch::v1::PodFailurePolicyOnPodConditionsPattern],
) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    patterns.iter().find_map(|p| {
        conditions
            .iter()
            .find(|c| c.type_ == p.type_ && c.status == p.status)
            .map(|c| c.type_.clone())
    })
}

/// Orders active pods from the least to the most valuable (upstream's `ActivePods`):
/// unscheduled, pending, not ready, and newer pods go first.
pub fn removal_order(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
    let rank = |p: &Pod| match phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(a)
        .cmp(&scheduled(b))
        .then(rank(a).cmp(&rank(b)))
        .then(is_ready(a).cmp(&is_ready(b)))
        .then(created(b).cmp(&created(a)))
}

/// The pod the Job creates: the template with the tracking finalizer, the Job as
/// controller, and for an Indexed Job the index as annotation, label, env var and
/// hostname (upstream's `manageJob` and `GetPodFromTemplate`).
pub fn pod_from_template(job: &Job, index: Option<i32>) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    let mut finalizers = tmeta.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.to_string());
    }
    let generate_name = match index {
        Some(ix) => {
            spec.init_containers
                .iter_mut()
                .flatten()
                .for_each(add_index_env);
            spec.containers.iter_mut().for_each(add_index_env);
            annotations.insert(COMPLETION_INDEX.into(), ix.to_string());
            labels.insert(COMPLETION_INDEX.into(), ix.to_string());
            spec.hostname = Some(format!("{name}-{ix}"));
            generate_name_with_index(&name, ix)
        }
        None => generate_name_prefix(&name),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: non_empty(labels),
            annotations: non_empty(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![controller_ref(job)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn non_empty(map: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}

/// The controller reference to a Job.
pub fn controller_ref(job: &Job) -> OwnerReference {
    OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job.metadata.name.clone().unwrap_or_default(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn add_index_env(container: &mut Container) {
    let env = container.env.get_or_insert_with(Vec::new);
    if env.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
        return;
    }
    env.push(EnvVar {
        name: COMPLETION_INDEX_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
            }),
            ..EnvVarSource::default()
        }),
    });
}

/// `<job>-`, shortened so the generated name stays a valid DNS label.
fn generate_name_prefix(job: &str) -> String {
    let prefix = format!("{job}-");
    if prefix.len() > MAX_GENERATED_NAME {
        prefix[..MAX_GENERATED_NAME].to_string()
    } else {
        prefix
    }
}

/// `<job>-<index>-`, shortening the job's name rather than the index.
fn generate_name_with_index(job: &str, index: i32) -> String {
    let suffix = format!("-{index}-");
    let prefix = format!("{job}{suffix}");
    if prefix.len() > MAX_GENERATED_NAME {
        format!("{}{suffix}", &job[..MAX_GENERATED_NAME - suffix.len()])
    } else {
        prefix
    }
}

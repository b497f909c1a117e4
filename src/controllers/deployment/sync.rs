//! The Deployment controller's effects: creating the new ReplicaSet, scaling
//! ReplicaSets, deleting old ones and writing the Deployment's status and revision, as
//! upstream's `sync.go`, `rolling.go` and `recreate.go` do, each decision coming from
//! [`super::plan`].

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use super::plan;
use super::util::{self, desired, rs_replicas};
use crate::controllers::claim;
use crate::controllers::replicaset::now_time;
use crate::controllers::{Error, Result};
use crate::k8s::events::EventSink;

/// One sync of one Deployment: the Deployment as last written, and its ReplicaSets.
pub struct Sync<'a> {
    /// The Deployment, replaced by each answer of the API.
    pub d: Deployment,
    /// Its ReplicaSets, replaced by each answer of the API.
    pub rss: Vec<ReplicaSet>,
    /// The client.
    pub client: kube::Client,
    /// Events about the Deployment.
    pub events: &'a EventSink,
}

impl Sync<'_> {
    fn ns(&self) -> String {
        self.d.namespace().unwrap_or_default()
    }

    fn rs_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), &self.ns())
    }

    fn d_api(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.ns())
    }

    /// The index of the new ReplicaSet: the oldest whose template is the Deployment's.
    pub fn new_index(&self) -> Option<usize> {
        let template = &self.d.spec.as_ref()?.template;
        let mut order: Vec<usize> = (0..self.rss.len()).collect();
        order.sort_by(|a, b| util::by_creation(&self.rss[*a], &self.rss[*b]));
        order.into_iter().find(|i| {
            self.rss[*i]
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| util::equal_ignore_hash(t, template))
        })
    }

    /// The new ReplicaSet and the old ones.
    pub fn split(&self) -> (Option<&ReplicaSet>, Vec<&ReplicaSet>) {
        let new = self.new_index();
        let old = (0..self.rss.len())
            .filter(|i| Some(*i) != new)
            .map(|i| &self.rss[i])
            .collect();
        (new.map(|i| &self.rss[i]), old)
    }

    fn replace_rs(&mut self, rs: ReplicaSet) {
        match self
            .rss
            .iter_mut()
            .find(|r| r.metadata.uid == rs.metadata.uid)
        {
            Some(slot) => *slot = rs,
            None => self.rss.push(rs),
        }
    }

    /// Writes `status` unless it is what the API has.
    pub async fn write_status(&mut self, status: DeploymentStatus) -> Result<()> {
        let next = util::normalized(status);
        if self.d.status.clone().map(util::normalized) == Some(next.clone()) {
            return Ok(());
        }
        let mut d = self.d.clone();
        d.status = Some(next);
        self.d = self
            .d_api()
            .replace_status(&d.name_any(), &PostParams::default(), &d)
            .await?;
        Ok(())
    }

    /// Upstream's `SetDeploymentRevision`, written at once through the status
    /// subresource (which takes a Deployment's annotations), as upstream does.
    async fn set_revision(&mut self, revision: &str) -> Result<()> {
        let current = self.d.annotations().get(util::REVISION).map(String::as_str);
        if current == Some(revision) {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {util::REVISION: revision}}});
        self.d = self
            .d_api()
            .patch_status(
                &self.d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    /// Upstream's `scaleReplicaSet`: the size and the replicas annotations, with a
    /// ScalingReplicaSet event when the size changed. Whether it scaled.
    pub async fn scale(&mut self, name: &str, size: i32) -> Result<bool> {
        let Some(rs) = self
            .rss
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
        else {
            return Ok(false);
        };
        let (want, max) = (
            desired(&self.d),
            desired(&self.d) + util::max_surge(&self.d),
        );
        let old = rs_replicas(rs);
        if old == size && !util::replicas_annotations_need_update(rs, want, max) {
            return Ok(false);
        }
        let mut next = rs.clone();
        if let Some(spec) = next.spec.as_mut() {
            spec.replicas = Some(size);
        }
        util::set_replicas_annotations(&mut next, want, max);
        let written = self
            .rs_api()
            .replace(name, &PostParams::default(), &next)
            .await?;
        self.replace_rs(written);
        if old != size {
            let op = if old < size { "up" } else { "down" };
            tracing::debug!(rs = %name, from = old, to = size, "ReplicaSet scaled.");
            self.events.record(
                &self.d,
                "Normal",
                "ScalingReplicaSet",
                format!("Scaled {op} replica set {name} from {old} to {size}"),
            );
        }
        Ok(old != size)
    }

    /// Applies several sizes; whether any changed.
    pub async fn scale_all(&mut self, sizes: Vec<plan::Scale>) -> Result<bool> {
        let mut scaled = false;
        for (name, size) in sizes {
            scaled |= self.scale(&name, size).await?;
        }
        Ok(scaled)
    }

    /// Upstream's `getNewReplicaSet`: brings the new ReplicaSet's annotations and
    /// minReadySeconds up to date and the Deployment's revision with them, or creates it
    /// when `create`. Returns its index.
    pub async fn new_rs(&mut self, create: bool) -> Result<Option<usize>> {
        let (existing, old) = self.split();
        let new_revision = util::max_revision(&old) + 1;
        if let Some(existing) = existing {
            let mut copy = existing.clone();
            let changed = util::set_new_rs_annotations(&self.d, &mut copy, new_revision, true);
            let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let spec = copy.spec.get_or_insert_with(ReplicaSetSpec::default);
            if changed || spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0) {
                spec.min_ready_seconds = min_ready;
                let written = self
                    .rs_api()
                    .replace(&copy.name_any(), &PostParams::default(), &copy)
                    .await?;
                self.replace_rs(written);
                return Ok(self.new_index());
            }
            let revision = copy
                .annotations()
                .get(util::REVISION)
                .cloned()
                .unwrap_or_default();
            self.set_revision(&revision).await?;
            let mut status = self.d.status.clone().unwrap_or_default();
            if plan::progress_deadline(&self.d).is_some()
                && util::condition(&status, "Progressing").is_none()
            {
                let msg = format!("Found new replica set {:?}", copy.name_any());
                util::set_condition(
                    &mut status,
                    util::new_condition(
                        "Progressing",
                        "True",
                        "FoundNewReplicaSet",
                        msg,
                        now_time(),
                    ),
                );
                self.write_status(status).await?;
            }
            return Ok(self.new_index());
        }
        if !create {
            return Ok(None);
        }
        self.create_new_rs(new_revision).await.map(Some)
    }

    /// Creates the new ReplicaSet `<deployment>-<hash>`; a name taken by another template
    /// is a hash collision, counted in status.collisionCount for the next try.
    async fn create_new_rs(&mut self, revision: i64) -> Result<usize> {
        let spec = self.d.spec.clone().unwrap_or_default();
        let collisions = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = util::compute_hash(&spec.template, collisions);
        let mut template = spec.template.clone();
        let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(util::HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(util::HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{hash}", self.d.name_any());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.ns()),
                owner_references: Some(vec![claim::controller_ref(&self.d)]),
                labels: meta.labels.clone(),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let (_, old) = self.split();
        let mut all = old.clone();
        all.push(&rs);
        let size = plan::new_rs_new_replicas(&self.d, &all, &rs).map_err(Error::Invalid)?;
        if let Some(s) = rs.spec.as_mut() {
            s.replicas = Some(size);
        }
        util::set_new_rs_annotations(&self.d, &mut rs, revision, false);
        let (created, exists) = match self.rs_api().create(&PostParams::default(), &rs).await {
            Ok(created) => (created, false),
            Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
                let found = self.rs_api().get(&name).await?;
                let ours = claim::controller_of(&found.metadata)
                    .is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
                let same = found
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| util::equal_ignore_hash(t, &spec.template));
                if !(ours && same) {
                    let mut status = self.d.status.clone().unwrap_or_default();
                    status.collision_count = Some(collisions.unwrap_or(0) + 1);
                    self.write_status(status).await?;
                    tracing::info!(rs = %name, "Hash collision; the collision count is raised.");
                    return Err(Error::Invalid(format!(
                        "replicasets.apps {name:?} already exists"
                    )));
                }
                (found, true)
            }
            Err(e) => {
                let msg = format!(
                    "Failed to create new replica set {name:?}: {}",
                    claim::message(&e)
                );
                if plan::progress_deadline(&self.d).is_some() {
                    let mut status = self.d.status.clone().unwrap_or_default();
                    util::set_condition(
                        &mut status,
                        util::new_condition(
                            "Progressing",
                            "False",
                            "ReplicaSetCreateError",
                            msg.clone(),
                            now_time(),
                        ),
                    );
                    let _ = self.write_status(status).await;
                }
                self.events
                    .record(&self.d, "Warning", "ReplicaSetCreateError", msg);
                return Err(e.into());
            }
        };
        if !exists && size > 0 {
            self.events.record(
                &self.d,
                "Normal",
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {size}"),
            );
        }
        self.replace_rs(created);
        self.set_revision(&revision.to_string()).await?;
        if !exists && plan::progress_deadline(&self.d).is_some() {
            let mut status = self.d.status.clone().unwrap_or_default();
            let msg = format!("Created new replica set {name:?}");
            util::set_condition(
                &mut status,
                util::new_condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetCreated",
                    msg,
                    now_time(),
                ),
            );
            self.write_status(status).await?;
        }
        self.new_index().ok_or_else(|| {
            Error::Invalid(format!(
                "the new replica set {name} does not match its deployment"
            ))
        })
    }

    /// Deletes the old ReplicaSets beyond the revision history limit.
    pub async fn cleanup(&mut self) -> Result<()> {
        let (_, old) = self.split();
        for name in plan::cleanup(&self.d, &old) {
            tracing::debug!(rs = %name, "Deleting an old ReplicaSet beyond the history limit.");
            match self.rs_api().delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if claim::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Upstream's `syncDeploymentStatus`: the counts and Available, written if changed.
    pub async fn sync_status(&mut self) -> Result<()> {
        let (new, old) = self.split();
        let mut all = old;
        all.extend(new);
        let status = plan::status(&self.d, &all, new, now_time());
        self.write_status(status).await
    }

    /// Upstream's `syncRolloutStatus`; when to look again for the progress deadline.
    pub async fn sync_rollout_status(&mut self) -> Result<Option<std::time::Duration>> {
        let (new, old) = self.split();
        let mut all = old.clone();
        all.extend(new);
        let now = now_time();
        let failure = new
            .into_iter()
            .chain(old.iter().copied())
            .flat_map(|rs| rs.status.iter().flat_map(|s| s.conditions.iter().flatten()))
            .find(|c| c.type_ == "ReplicaFailure")
            .map(|c| k8s_openapi::api::apps::v1::DeploymentCondition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_update_time: c.last_transition_time.clone(),
                last_transition_time: c.last_transition_time.clone(),
            });
        let status = plan::rollout_status(&self.d, &all, new, failure, now);
        let requeue = plan::requeue_stuck(&self.d, &status, now);
        self.write_status(status).await?;
        Ok(requeue)
    }
}

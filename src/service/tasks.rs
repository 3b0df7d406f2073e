//! The tasks as use cases: start one (the work is the use case's own, in
//! `install.rs`, `create.rs` and `import.rs`; these run its blocking start
//! off the async workers), list them, look at one (optionally waiting for
//! its end), cancel one. Running them is `crate::tasks`.
//!
//! A start answers the new task, or the running one the request joined.

use super::create::{CreateRequest, FilesRequest};
use super::Service;
use crate::error::Result;
use crate::tasks::Task;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

impl Service {
    /// Starts installing `uuid` into `pool` (the configured default when
    /// `None`); see [`Service::install`].
    ///
    /// # Errors
    /// As [`Service::install`].
    pub async fn start_install(
        self: &Arc<Self>,
        uuid: String,
        pool: Option<String>,
    ) -> Result<Task> {
        let (task, _) = self
            .blocking(move |svc| {
                let svc = svc.arc();
                svc.install(&uuid, pool.as_deref())
            })
            .await?;
        Ok(task)
    }

    /// Starts exporting `uuid` into the directory `dir`; see
    /// [`Service::export`].
    ///
    /// # Errors
    /// As [`Service::export`].
    pub async fn start_export(self: &Arc<Self>, uuid: String, dir: PathBuf) -> Result<Task> {
        let (task, _) = self
            .blocking(move |svc| svc.arc().export(&uuid, &dir))
            .await?;
        Ok(task)
    }

    /// Starts creating an image from a dataset; see
    /// [`Service::create_from_dataset`].
    ///
    /// # Errors
    /// As [`Service::create_from_dataset`].
    pub async fn start_create_from_dataset(self: &Arc<Self>, req: CreateRequest) -> Result<Task> {
        let (task, _) = self
            .blocking(move |svc| svc.arc().create_from_dataset(req))
            .await?;
        Ok(task)
    }

    /// Starts installing from a manifest and file on this host; see
    /// [`Service::install_from_files`].
    ///
    /// # Errors
    /// As [`Service::install_from_files`].
    pub async fn start_install_from_files(self: &Arc<Self>, req: FilesRequest) -> Result<Task> {
        let (task, _) = self
            .blocking(move |svc| svc.arc().install_from_files(req))
            .await?;
        Ok(task)
    }

    /// Starts importing `uuid` (and its missing origins) from `source`, or
    /// from the sources in order, then installing it into `install` if
    /// given; see [`Service::import_remote`].
    ///
    /// # Errors
    /// As [`Service::import_remote`].
    pub async fn start_import_remote(
        self: &Arc<Self>,
        uuid: String,
        source: Option<String>,
        install: Option<String>,
    ) -> Result<Task> {
        let (task, _) = self
            .blocking(move |svc| {
                svc.arc()
                    .import_remote(&uuid, source.as_deref(), install.as_deref())
            })
            .await?;
        Ok(task)
    }

    /// [`Service::start_import_remote`] into `channel` (see
    /// [`Service::import_remote_in`]).
    ///
    /// # Errors
    /// As [`Service::import_remote`].
    pub async fn start_import_remote_in(
        self: &Arc<Self>,
        uuid: String,
        source: Option<String>,
        install: Option<String>,
        channel: Option<super::visibility::Channel>,
    ) -> Result<Task> {
        let (task, _) = self
            .blocking(move |svc| {
                svc.arc()
                    .import_remote_in(&uuid, source.as_deref(), install.as_deref(), channel)
            })
            .await?;
        Ok(task)
    }

    /// Every task the store remembers.
    ///
    /// # Errors
    /// Only if the blocking pool fails.
    pub async fn list_tasks(self: &Arc<Self>) -> Result<Vec<Task>> {
        self.blocking(|svc| Ok(svc.tasks.list())).await
    }

    /// ListImageJobs: the tasks about image `uuid` (those whose input or
    /// result names it as `image_uuid`), newest first; only those of kind
    /// `kind` when given.
    ///
    /// # Errors
    /// `ResourceNotFound` for an unknown image (as GetImage).
    pub async fn image_jobs(
        self: &Arc<Self>,
        uuid: String,
        kind: Option<String>,
    ) -> Result<Vec<Task>> {
        self.get_image(&uuid)?;
        self.blocking(move |svc| {
            let names = |v: Option<&serde_json::Value>| {
                v.and_then(|v| v.get("image_uuid")).and_then(|u| u.as_str()) == Some(uuid.as_str())
            };
            let mut jobs: Vec<Task> = svc
                .tasks
                .list()
                .into_iter()
                .filter(|t| names(Some(&t.input)) || names(t.result.as_ref()))
                .filter(|t| kind.as_deref().is_none_or(|k| t.kind == k))
                .collect();
            jobs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
            Ok(jobs)
        })
        .await
    }

    /// One task; with `wait`, once it has finished or `wait` has passed,
    /// whichever comes first.
    ///
    /// # Errors
    /// `ResourceNotFound` for an unknown id.
    pub async fn task(&self, id: &str, wait: Option<Duration>) -> Result<Task> {
        match wait {
            Some(timeout) => self.tasks.wait(id, timeout).await,
            None => self.tasks.get(id),
        }
    }

    /// Asks a running task to stop; the task as it is now.
    ///
    /// # Errors
    /// As [`crate::tasks::Tasks::cancel`].
    pub fn cancel_task(&self, id: &str) -> Result<Task> {
        self.tasks.cancel(id)
    }
}

//! The task list as use cases: list, look at (optionally waiting for the
//! end), cancel. Starting a task is the use case's own (`install.rs`,
//! `create.rs`, `import.rs`); running them is `crate::tasks`.

use super::Service;
use crate::error::Result;
use crate::tasks::Task;
use std::sync::Arc;
use std::time::Duration;

impl Service {
    /// Every task the store remembers.
    ///
    /// # Errors
    /// Only if the blocking pool fails.
    pub async fn list_tasks(self: &Arc<Self>) -> Result<Vec<Task>> {
        self.blocking(|svc| Ok(svc.tasks.list())).await
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

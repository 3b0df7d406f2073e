//! Background tasks: long operations (install, create, export, import from
//! files) that answer 202 with a task and run on the blocking pool.
//!
//! A task's record ([`crate::store::tasks`]) lives in the sled tree `tasks` and is flushed on every
//! status change, so `GET /tasks/:id` answers across restarts. Progress
//! counters live in memory only (they change thousands of times a second).
//! At start, a task that was pending or processing when the daemon stopped
//! is marked failed (`Interrupted`); the code that owns its partial state
//! (e.g. `-partial` datasets) cleans it up.
//!
//! Cancellation is cooperative plus forceful: [`TaskCtx::is_cancelled`] is
//! polled by pipelines, and ZFS children registered with
//! [`TaskCtx::on_cancel`] are killed at once.

use crate::error::{Error, Result};
use crate::store::tasks as record;
pub use crate::store::tasks::{Progress, Status, Task, TaskError};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long a finished task stays listed before `vacuum` may remove it.
pub const TASK_TTL_HOURS: i64 = 24;

/// What a running task can see and do.
#[derive(Clone)]
pub struct TaskCtx {
    inner: Arc<Live>,
}

struct Live {
    id: String,
    cancelled: AtomicBool,
    done: AtomicU64,
    total: AtomicU64,
    cancellers: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

impl TaskCtx {
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// `Err(Cancelled)` once the task is cancelled.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled(format!(
                "task {} was cancelled",
                self.inner.id
            )))
        } else {
            Ok(())
        }
    }

    pub fn set_total(&self, total: u64) {
        self.inner.total.store(total, Ordering::Relaxed);
    }

    /// Adds work to the total, for a task made of phases (import, then
    /// install) whose progress adds up.
    pub fn add_total(&self, n: u64) {
        self.inner.total.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_done(&self, n: u64) {
        self.inner.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Registers something to run on cancel (e.g. killing a zfs child). If
    /// the task is already cancelled it runs at once.
    pub fn on_cancel(&self, f: impl Fn() + Send + Sync + 'static) {
        if self.is_cancelled() {
            f();
        }
        self.inner.cancellers.lock().unwrap().push(Box::new(f));
    }

    fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        for f in self.inner.cancellers.lock().unwrap().iter() {
            f();
        }
    }
}

struct Running {
    ctx: TaskCtx,
    done_rx: watch::Receiver<bool>,
    dedupe: Option<String>,
}

pub struct Tasks {
    tree: sled::Tree,
    running: Mutex<HashMap<String, Running>>,
    /// `limits.max_tasks`: tasks allowed to run at once.
    max_running: std::sync::atomic::AtomicUsize,
}

fn now() -> String {
    crate::time::now_timestamp()
}

impl Tasks {
    /// Opens the task tree and marks tasks a previous run left unfinished as
    /// failed. Returns them too, so their owners can clean up.
    ///
    /// # Errors
    /// sled failed.
    pub fn open(tree: sled::Tree) -> Result<(Tasks, Vec<Task>)> {
        let mut interrupted = Vec::new();
        for item in tree.iter() {
            let (k, v) = item?;
            let Some(mut t) = record::decode(&v) else {
                tree.remove(k)?;
                continue;
            };
            if !t.status.is_finished() {
                t.status = Status::Failure;
                t.error = Some(TaskError {
                    code: "Interrupted".into(),
                    message: format!(
                        "the daemon stopped while task {} ({}) was running; its partial state was cleaned up",
                        t.id, t.kind
                    ),
                });
                t.updated_at = now();
                t.expires_at = Some(expiry());
                tree.insert(
                    k,
                    record::encode(&t).map_err(|e| Error::internal("task", e))?,
                )?;
                interrupted.push(t);
            }
        }
        tree.flush()?;
        Ok((
            Tasks {
                tree,
                running: Mutex::new(HashMap::new()),
                max_running: std::sync::atomic::AtomicUsize::new(usize::MAX),
            },
            interrupted,
        ))
    }

    fn store(&self, t: &Task) -> Result<()> {
        let bytes = record::encode(t).map_err(|e| Error::internal("task", e))?;
        self.tree.insert(t.id.as_bytes(), bytes)?;
        self.tree.flush()?;
        Ok(())
    }

    fn load(&self, id: &str) -> Option<Task> {
        let v = self.tree.get(id.as_bytes()).ok()??;
        record::decode(&v)
    }

    /// A task with its live progress.
    pub fn get(&self, id: &str) -> Result<Task> {
        let mut t = self
            .load(id)
            .ok_or_else(|| Error::ResourceNotFound(format!("task {id} not found")))?;
        if let Some(r) = self.running.lock().unwrap().get(id) {
            t.progress = Progress {
                bytes_done: r.ctx.inner.done.load(Ordering::Relaxed),
                bytes_total: r.ctx.inner.total.load(Ordering::Relaxed),
            };
        }
        Ok(t)
    }

    /// Every task, newest first.
    pub fn list(&self) -> Vec<Task> {
        let ids: Vec<String> = self
            .tree
            .iter()
            .keys()
            .filter_map(|k| k.ok())
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .collect();
        let mut out: Vec<Task> = ids.iter().filter_map(|id| self.get(id).ok()).collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        out
    }

    /// Sets how many tasks may run at once (`limits.max_tasks`).
    pub fn set_max_running(&self, n: usize) {
        self.max_running.store(n.max(1), Ordering::Relaxed);
    }

    /// How many tasks are running now.
    pub fn running_count(&self) -> usize {
        self.running.lock().unwrap().len()
    }

    /// Ids and dedupe keys of the running tasks.
    pub fn running_keys(&self) -> Vec<(String, Option<String>)> {
        self.running
            .lock()
            .unwrap()
            .iter()
            .map(|(id, r)| (id.clone(), r.dedupe.clone()))
            .collect()
    }

    /// Starts a task running `work` on the blocking pool. When `dedupe` is
    /// given and a running task has the same key, that task is returned
    /// instead (`false` in the second field) and `work` is dropped.
    ///
    /// # Errors
    /// `TooManyTasks` when `limits.max_tasks` tasks already run; the task
    /// record could not be stored.
    pub fn start<F>(
        self: &Arc<Self>,
        kind: &str,
        input: Value,
        dedupe: Option<String>,
        work: F,
    ) -> Result<(Task, bool)>
    where
        F: FnOnce(&TaskCtx) -> Result<Value> + Send + 'static,
    {
        let mut running = self.running.lock().unwrap();
        if let Some(key) = &dedupe {
            if let Some(r) = running.values().find(|r| r.dedupe.as_ref() == Some(key)) {
                let id = r.ctx.id().to_string();
                drop(running);
                return Ok((self.get(&id)?, false));
            }
        }
        let max = self.max_running.load(Ordering::Relaxed);
        if running.len() >= max {
            return Err(Error::TooManyTasks(format!(
                "{} tasks are running, the limit is {max} (limits.max_tasks): wait for one to end",
                running.len()
            )));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let ts = now();
        let task = Task {
            id: id.clone(),
            kind: kind.to_string(),
            status: Status::Processing,
            input,
            result: None,
            error: None,
            progress: Progress::default(),
            created_at: ts.clone(),
            updated_at: ts,
            expires_at: None,
        };
        self.store(&task)?;
        let ctx = TaskCtx {
            inner: Arc::new(Live {
                id: id.clone(),
                cancelled: AtomicBool::new(false),
                done: AtomicU64::new(0),
                total: AtomicU64::new(0),
                cancellers: Mutex::new(Vec::new()),
            }),
        };
        let (done_tx, done_rx) = watch::channel(false);
        running.insert(
            id.clone(),
            Running {
                ctx: ctx.clone(),
                done_rx,
                dedupe,
            },
        );
        drop(running);
        let tasks = self.clone();
        tokio::task::spawn_blocking(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&ctx)))
                .unwrap_or_else(|_| Err(Error::Internal(format!("task {} panicked", ctx.id()))));
            tasks.finish(&ctx, result);
            let _ = done_tx.send(true);
        });
        Ok((self.get(&id)?, true))
    }

    fn finish(&self, ctx: &TaskCtx, result: Result<Value>) {
        let Some(mut t) = self.load(ctx.id()) else {
            return;
        };
        t.progress = Progress {
            bytes_done: ctx.inner.done.load(Ordering::Relaxed),
            bytes_total: ctx.inner.total.load(Ordering::Relaxed),
        };
        match result {
            Ok(v) => {
                t.status = Status::Success;
                t.result = Some(v);
            }
            Err(e) => {
                t.status = if ctx.is_cancelled() {
                    Status::Cancelled
                } else {
                    Status::Failure
                };
                t.error = Some(TaskError {
                    code: e.code().to_string(),
                    message: e.to_string(),
                });
                if t.status == Status::Failure {
                    tracing::warn!(task = %t.id, kind = %t.kind, code = e.code(), error = %e, "task failed");
                }
            }
        }
        t.updated_at = now();
        t.expires_at = Some(expiry());
        if let Err(e) = self.store(&t) {
            tracing::error!(task = %t.id, error = %e, "could not record the end of a task");
        }
        self.running.lock().unwrap().remove(ctx.id());
    }

    /// Waits up to `timeout` for a task to finish, then returns it.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Task> {
        let rx = self
            .running
            .lock()
            .unwrap()
            .get(id)
            .map(|r| r.done_rx.clone());
        if let Some(mut rx) = rx {
            let _ = tokio::time::timeout(timeout, rx.wait_for(|d| *d)).await;
        }
        self.get(id)
    }

    /// Cancels a running task and returns it (still running until its
    /// pipeline notices; wait on it to see the end).
    ///
    /// # Errors
    /// `ResourceNotFound`; `Conflict` if it already finished.
    pub fn cancel(&self, id: &str) -> Result<Task> {
        let ctx = self.running.lock().unwrap().get(id).map(|r| r.ctx.clone());
        match ctx {
            Some(ctx) => {
                tracing::info!(task = id, "cancelling task");
                ctx.cancel();
                self.get(id)
            }
            None => {
                let t = self.get(id)?;
                Err(Error::Conflict(
                    format!("task {id} already ended ({:?})", t.status).to_lowercase(),
                ))
            }
        }
    }

    /// Cancels every running task and waits (bounded) for them to end; at
    /// shutdown, so no zfs child outlives the daemon.
    pub async fn cancel_all(&self, timeout: Duration) {
        let running: Vec<(TaskCtx, watch::Receiver<bool>)> = self
            .running
            .lock()
            .unwrap()
            .values()
            .map(|r| (r.ctx.clone(), r.done_rx.clone()))
            .collect();
        for (ctx, _) in &running {
            ctx.cancel();
        }
        for (_, mut rx) in running {
            let _ = tokio::time::timeout(timeout, rx.wait_for(|d| *d)).await;
        }
    }

    /// Finished tasks whose `expires_at` has passed.
    pub fn expired(&self) -> Vec<Task> {
        let now = now();
        self.list()
            .into_iter()
            .filter(|t| {
                t.status.is_finished() && t.expires_at.as_deref().is_some_and(|e| *e < *now)
            })
            .collect()
    }

    /// Removes finished tasks whose `expires_at` has passed; returns how many.
    pub fn remove_expired(&self) -> Result<usize> {
        let expired = self.expired();
        for t in &expired {
            self.tree.remove(t.id.as_bytes())?;
        }
        self.tree.flush()?;
        Ok(expired.len())
    }

    /// Tasks recorded as pending or processing that do not run in this
    /// process (only possible if marking them failed at open went wrong).
    pub fn stale_unfinished(&self) -> Vec<Task> {
        let running = self.running.lock().unwrap();
        let ids: Vec<String> = running.keys().cloned().collect();
        drop(running);
        self.list()
            .into_iter()
            .filter(|t| !t.status.is_finished() && !ids.contains(&t.id))
            .collect()
    }

    /// Marks a task that is not running as failed (`Interrupted`).
    pub fn mark_interrupted(&self, id: &str) -> Result<()> {
        if self.running.lock().unwrap().contains_key(id) {
            return Ok(());
        }
        let Some(mut t) = self.load(id) else {
            return Ok(());
        };
        if t.status.is_finished() {
            return Ok(());
        }
        t.status = Status::Failure;
        t.error = Some(TaskError {
            code: "Interrupted".into(),
            message: format!(
                "task {} ({}) was not running; marked failed by a repair",
                t.id, t.kind
            ),
        });
        t.updated_at = now();
        t.expires_at = Some(expiry());
        self.store(&t)
    }
}

fn expiry() -> String {
    crate::time::hours_from_now(TASK_TTL_HOURS)
}

//! Following a daemon task to its end, and what Ctrl-C does meanwhile.
//!
//! The CLI long-polls `GET /tasks/:id?wait=1`: the daemon answers as soon as
//! the task ends, or after a second with its current progress, which
//! refreshes the display and lets a pending Ctrl-C be seen within a second.
//!
//! Ctrl-C (SIGINT) does not kill the CLI while it follows a task: leaving a
//! task running unannounced, or killing it unasked, are both surprising.
//! With a terminal on stdin it asks: cancel the task, detach (the task goes
//! on; `imgstore task wait ID` follows it again), or keep watching. A second
//! Ctrl-C while the question is up quits at once and leaves the task running.
//! Without a terminal (a script was interrupted) it cancels the task: the
//! caller asked the work to stop and nobody can be asked which way.

use super::client::{seg, with_query, Body, Client};
use super::progress::{Mode, Progress};
use super::CliError;
use serde_json::Value;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit status after an interrupt that stopped the work (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// A SIGINT flag. While it is installed, the first Ctrl-C only sets it; one
/// more Ctrl-C before [`Interrupt::take`] clears it exits with 130.
#[derive(Clone)]
pub struct Interrupt {
    flag: Arc<AtomicBool>,
}

impl Interrupt {
    /// Installs the handlers.
    ///
    /// # Errors
    /// The handler cannot be registered.
    pub fn install() -> Result<Interrupt, CliError> {
        use signal_hook::consts::SIGINT;
        let flag = Arc::new(AtomicBool::new(false));
        // Order matters: the conditional exit runs first and sees the flag
        // as it was before this signal.
        signal_hook::flag::register_conditional_shutdown(
            SIGINT,
            EXIT_INTERRUPTED as i32,
            flag.clone(),
        )
        .and_then(|_| signal_hook::flag::register(SIGINT, flag.clone()))
        .map_err(|e| CliError::local(format!("installing the Ctrl-C handler: {e}")))?;
        Ok(Interrupt { flag })
    }

    /// Whether Ctrl-C was pressed since the last call; clears it.
    pub fn take(&self) -> bool {
        self.flag.swap(false, Ordering::SeqCst)
    }

    pub fn pending(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// What to do after a Ctrl-C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Cancel,
    Detach,
    Resume,
}

/// Maps an answer to the question; empty (Enter) or EOF keeps watching.
pub fn parse_choice(answer: &str) -> Option<Choice> {
    match answer.trim().to_ascii_lowercase().as_str() {
        "c" | "cancel" => Some(Choice::Cancel),
        "d" | "detach" => Some(Choice::Detach),
        "" | "w" | "wait" | "r" | "resume" => Some(Choice::Resume),
        _ => None,
    }
}

fn ask(task_id: &str) -> Choice {
    if !std::io::stdin().is_terminal() {
        return Choice::Cancel;
    }
    let stdin = std::io::stdin();
    loop {
        eprint!(
            "\nimgstore: interrupted. Task {task_id} is still running. \
             [c]ancel it, [d]etach and leave it running, or [w]ait for it? [c/d/W] \
             (Ctrl-C again quits and leaves it running) "
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        match stdin.lock().read_line(&mut answer) {
            Ok(0) | Err(_) => return Choice::Resume,
            Ok(_) => {}
        }
        if let Some(c) = parse_choice(&answer) {
            return c;
        }
        eprintln!("imgstore: please answer c, d or w");
    }
}

/// How following a task ended.
#[derive(Debug)]
pub enum End {
    /// The task reached `success`, `failure` or `cancelled`.
    Finished {
        task: Value,
        /// This CLI cancelled it (after Ctrl-C).
        cancelled_here: bool,
    },
    /// The user detached; the task goes on.
    Detached { task: Value },
    /// `timeout` passed first; the task goes on.
    TimedOut { task: Value },
}

pub fn status(task: &Value) -> &str {
    task.get("status").and_then(Value::as_str).unwrap_or("")
}

pub fn is_terminal_status(s: &str) -> bool {
    matches!(s, "success" | "failure" | "cancelled")
}

pub fn task_id(task: &Value) -> Result<String, CliError> {
    task.get("id")
        .and_then(|v| {
            v.as_str()
                .map(str::to_string)
                .or_else(|| v.as_u64().map(|n| n.to_string()))
        })
        .ok_or_else(|| {
            CliError::local(format!(
                "the daemon did not answer with a task (no \"id\"): {task}"
            ))
        })
}

fn progress_of(task: &Value) -> (u64, Option<u64>) {
    let p = task.get("progress");
    let done = p
        .and_then(|p| p.get("bytes_done"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let total = p.and_then(|p| p.get("bytes_total")).and_then(Value::as_u64);
    (done, total)
}

/// Follows `task` until it ends, showing progress labelled `label`.
/// `timeout` bounds the whole wait (`task wait --timeout`); when it passes,
/// the task is returned as it is then.
///
/// # Errors
/// The daemon cannot be reached or answers with an error.
pub fn follow(
    client: &Client,
    mut task: Value,
    label: &str,
    mode: Mode,
    intr: &Interrupt,
    timeout: Option<Duration>,
) -> Result<End, CliError> {
    let id = task_id(&task)?;
    let path = format!("/tasks/{}", seg(&id));
    let mut progress = Progress::new(label, mode);
    let mut cancelled_here = false;
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let st = status(&task).to_string();
        progress.set_label(if st == "pending" {
            format!("{label} (waiting to start)")
        } else {
            label.to_string()
        });
        let (done, total) = progress_of(&task);
        progress.update(done, total);
        if is_terminal_status(&st) {
            progress.finish(match st.as_str() {
                "success" => "done",
                "failure" => "failed",
                _ => "cancelled",
            });
            return Ok(End::Finished {
                task,
                cancelled_here,
            });
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            progress.finish(&format!("still {st} when the wait timed out"));
            return Ok(End::TimedOut { task });
        }
        if intr.take() {
            let choice = if std::io::stdin().is_terminal() {
                progress.suspend(|| ask(&id))
            } else {
                Choice::Cancel
            };
            // A Ctrl-C pressed while answering was for the question.
            intr.take();
            match choice {
                Choice::Resume => {}
                Choice::Detach => {
                    progress.finish("detached");
                    return Ok(End::Detached { task });
                }
                Choice::Cancel => {
                    progress.suspend(|| eprintln!("imgstore: cancelling task {id}"));
                    match client.call("DELETE", &path, Body::Empty) {
                        Ok((_, v)) if v.is_object() => task = v,
                        Ok(_) => {}
                        Err(e) => return Err(CliError::from(e)),
                    }
                    cancelled_here = true;
                    continue;
                }
            }
        }
        let asked = Instant::now();
        let (_, v) = client
            .call_with_timeout(
                "GET",
                &with_query(&path, &[("wait", "1")]),
                Body::Empty,
                Some(Duration::from_secs(60)),
            )
            .map_err(CliError::from)?;
        let unchanged = v == task;
        task = v;
        // A daemon that does not hold the request open must not be polled
        // in a tight loop.
        if unchanged && asked.elapsed() < Duration::from_millis(200) {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// The error a failed or cancelled task ends the command with.
pub fn task_error(task: &Value, cancelled_here: bool) -> Option<CliError> {
    let id = task_id(task).unwrap_or_default();
    match status(task) {
        "success" => None,
        "cancelled" if cancelled_here => Some(CliError {
            exit: EXIT_INTERRUPTED,
            code: Some("TaskCancelled".into()),
            message: format!("task {id} was cancelled"),
            details: vec![],
        }),
        "cancelled" => Some(CliError {
            exit: 1,
            code: Some("TaskCancelled".into()),
            message: format!("task {id} was cancelled"),
            details: vec![],
        }),
        _ => {
            let err = task.get("error");
            let code = err
                .and_then(|e| e.get("code"))
                .and_then(Value::as_str)
                .unwrap_or("TaskFailed")
                .to_string();
            let message = err
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .map(|m| format!("task {id} failed: {m}"))
                .unwrap_or_else(|| format!("task {id} failed"));
            let exit = if matches!(code.as_str(), "ImageNotInstalled" | "OriginNotInstalled") {
                super::EXIT_NOT_INSTALLED
            } else {
                1
            };
            Some(CliError {
                exit,
                code: Some(code),
                message,
                details: vec![],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers() {
        assert_eq!(parse_choice("c\n"), Some(Choice::Cancel));
        assert_eq!(parse_choice("Detach"), Some(Choice::Detach));
        assert_eq!(parse_choice("\n"), Some(Choice::Resume));
        assert_eq!(parse_choice("x"), None);
    }

    #[test]
    fn task_outcomes() {
        assert!(task_error(&json!({"id": "t", "status": "success"}), false).is_none());
        let e = task_error(
            &json!({"id": "t", "status": "failure", "error": {"code": "ZfsCommandFailed", "message": "out of space"}}),
            false,
        )
        .unwrap();
        assert_eq!((e.exit, e.code.as_deref()), (1, Some("ZfsCommandFailed")));
        assert!(e.message.contains("out of space") && e.message.contains("task t"));
        let e = task_error(
            &json!({"id": "t", "status": "failure", "error": {"code": "OriginNotInstalled", "message": "x"}}),
            false,
        )
        .unwrap();
        assert_eq!(e.exit, 3);
        assert_eq!(
            task_error(&json!({"id": "t", "status": "cancelled"}), true)
                .unwrap()
                .exit,
            130
        );
        assert_eq!(
            task_error(&json!({"id": "t", "status": "cancelled"}), false)
                .unwrap()
                .exit,
            1
        );
    }
}

//! Handlers for `/tasks` and `/tasks/:id`, and the 202 every task-starting
//! request answers with.

use crate::api::http::{json_response, Body, Ctx};
use crate::error::{Error, Result};
use crate::service::Task;
use hyper::{Response, StatusCode};
use std::time::Duration;

/// The longest `?wait=` a client may ask for.
const MAX_WAIT_SECS: u64 = 3600;

/// 202 with the task (a new one, or the running one a request joined).
pub fn accepted(task: &Task) -> Result<Response<Body>> {
    let v = serde_json::to_value(task).map_err(|e| Error::internal("task", e))?;
    let mut resp = json_response(StatusCode::ACCEPTED, &v);
    if let Ok(loc) = format!("/tasks/{}", task.id).parse() {
        resp.headers_mut().insert("location", loc);
    }
    Ok(resp)
}

fn task_json(t: &Task) -> Result<Response<Body>> {
    let v = serde_json::to_value(t).map_err(|e| Error::internal("task", e))?;
    Ok(json_response(StatusCode::OK, &v))
}

/// `GET /tasks`.
pub async fn list(ctx: Ctx) -> Result<Response<Body>> {
    let tasks = ctx.svc.list_tasks().await?;
    let v = serde_json::to_value(tasks).map_err(|e| Error::internal("tasks", e))?;
    Ok(json_response(StatusCode::OK, &v))
}

/// `GET /tasks/:id[?wait=SECS]`.
pub async fn get(ctx: Ctx, id: String) -> Result<Response<Body>> {
    let wait = match ctx.param("wait")? {
        None => None,
        Some(w) => Some(match w.parse::<u64>() {
            Ok(n) if n <= MAX_WAIT_SECS => Duration::from_secs(n),
            _ => {
                return Err(Error::param(
                    "wait",
                    format!("{w:?} is not a number of seconds from 0 to {MAX_WAIT_SECS}"),
                ))
            }
        }),
    };
    task_json(&ctx.svc.task(&id, wait).await?)
}

/// `DELETE /tasks/:id`.
pub fn cancel(ctx: Ctx, id: String) -> Result<Response<Body>> {
    task_json(&ctx.svc.cancel_task(&id)?)
}

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

/// A task's `status` under the name workflow jobs use for it
/// (`execution`).
fn execution(status: &str) -> &'static str {
    match status {
        "pending" => "queued",
        "processing" => "running",
        "success" => "succeeded",
        "cancelled" => "canceled",
        _ => "failed",
    }
}

/// A task in the shape of the workflow job IMGAPI's ListImageJobs returns
/// (`uuid`, `name`, `task`, `execution`, `params` with `image_uuid` and
/// `task`, `created_at`), plus the task's own `result`, `error`,
/// `progress` and `updated_at`.
fn job_json(t: &Task) -> Result<serde_json::Value> {
    let v = serde_json::to_value(t).map_err(|e| Error::internal("task", e))?;
    let status = v["status"].as_str().unwrap_or_default();
    let mut params = t.input.clone();
    if let Some(p) = params.as_object_mut() {
        p.insert("task".into(), serde_json::json!(t.kind));
    }
    Ok(serde_json::json!({
        "uuid": t.id,
        "name": t.kind,
        "task": t.kind,
        "execution": execution(status),
        "params": params,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
        "result": v["result"],
        "error": v["error"],
        "progress": v["progress"],
    }))
}

/// `GET /images/:uuid/jobs[?task=KIND][&execution=STATE]`: ListImageJobs,
/// the tasks about the image as workflow jobs, newest first.
pub async fn image_jobs(ctx: Ctx, uuid: String) -> Result<Response<Body>> {
    ctx.svc.scoped_image(&uuid, &super::scope(&ctx, true)?)?;
    let task = ctx.param("task")?.map(str::to_string);
    let wanted = ctx.param("execution")?.map(str::to_string);
    let jobs = ctx.svc.image_jobs(uuid, task).await?;
    let mut out = Vec::new();
    for t in &jobs {
        let j = job_json(t)?;
        if wanted.as_deref().is_none_or(|w| j["execution"] == w) {
            out.push(j);
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &serde_json::Value::Array(out),
    ))
}

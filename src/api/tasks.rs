//! Handlers for `/tasks` and `/pools/:pool/images`, and the task-starting
//! actions on `/images`.

use super::http::{json_body, json_response, no_content, Body, Ctx};
use crate::error::{Error, Result};
use crate::service::create::{CreateRequest, FilesRequest};
use crate::tasks::Task;
use hyper::{Response, StatusCode};
use serde_json::Value;
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

pub async fn list(ctx: Ctx) -> Result<Response<Body>> {
    let svc = ctx.svc.clone();
    let tasks = svc.blocking(|svc| Ok(svc.tasks.list())).await?;
    let v = serde_json::to_value(tasks).map_err(|e| Error::internal("tasks", e))?;
    Ok(json_response(StatusCode::OK, &v))
}

pub async fn get(ctx: Ctx) -> Result<Response<Body>> {
    let id = ctx.segments[1].clone();
    let wait = match ctx.param("wait")? {
        None => None,
        Some(w) => Some(match w.parse::<u64>() {
            Ok(n) if n <= MAX_WAIT_SECS => n,
            _ => {
                return Err(Error::param(
                    "wait",
                    format!("{w:?} is not a number of seconds from 0 to {MAX_WAIT_SECS}"),
                ))
            }
        }),
    };
    let t = match wait {
        Some(secs) => ctx.svc.tasks.wait(&id, Duration::from_secs(secs)).await?,
        None => ctx.svc.tasks.get(&id)?,
    };
    task_json(&t)
}

pub async fn cancel(ctx: Ctx) -> Result<Response<Body>> {
    let t = ctx.svc.tasks.cancel(&ctx.segments[1])?;
    task_json(&t)
}

/// `POST /images/:uuid?action=install[&pool=POOL]`.
pub async fn install(ctx: Ctx) -> Result<Response<Body>> {
    let uuid = ctx.segments[1].clone();
    let pool = ctx.param("pool")?.map(str::to_string);
    let (task, _) = ctx
        .svc
        .blocking(move |svc| {
            let svc = svc.arc();
            svc.install(&uuid, pool.as_deref())
        })
        .await?;
    accepted(&task)
}

/// `POST /images/:uuid?action=export&path=DIR`.
pub async fn export(ctx: Ctx) -> Result<Response<Body>> {
    let uuid = ctx.segments[1].clone();
    let path = ctx
        .param("path")?
        .ok_or_else(|| Error::param("path", "missing: the directory to export into"))?
        .to_string();
    let (task, _) = ctx
        .svc
        .blocking(move |svc| svc.arc().export(&uuid, std::path::Path::new(&path)))
        .await?;
    accepted(&task)
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, body: Value) -> Result<T> {
    serde_json::from_value(body)
        .map_err(|e| Error::param(what, format!("invalid request body: {e}")))
}

/// `POST /images?action=create-from-dataset`.
pub async fn create_from_dataset(ctx: Ctx) -> Result<Response<Body>> {
    let (ctx, body) = json_body(ctx).await?;
    let req: CreateRequest = parse("body", body)?;
    let (task, _) = ctx
        .svc
        .blocking(move |svc| svc.arc().create_from_dataset(req))
        .await?;
    accepted(&task)
}

/// `POST /images?action=install-from-files`.
pub async fn install_from_files(ctx: Ctx) -> Result<Response<Body>> {
    let (ctx, body) = json_body(ctx).await?;
    let req: FilesRequest = parse("body", body)?;
    let (task, _) = ctx
        .svc
        .blocking(move |svc| svc.arc().install_from_files(req))
        .await?;
    accepted(&task)
}

pub async fn pool_images(ctx: Ctx) -> Result<Response<Body>> {
    let pool = ctx.segments[1].clone();
    let v = ctx.svc.blocking(move |svc| svc.installed(&pool)).await?;
    Ok(json_response(StatusCode::OK, &Value::Array(v)))
}

pub async fn pool_image(ctx: Ctx) -> Result<Response<Body>> {
    let (pool, uuid) = (ctx.segments[1].clone(), ctx.segments[3].clone());
    let v = ctx
        .svc
        .blocking(move |svc| svc.installed_one(&pool, &uuid))
        .await?;
    Ok(json_response(StatusCode::OK, &v))
}

pub async fn uninstall(ctx: Ctx) -> Result<Response<Body>> {
    let (pool, uuid) = (ctx.segments[1].clone(), ctx.segments[3].clone());
    ctx.svc
        .blocking(move |svc| svc.uninstall(&pool, &uuid))
        .await?;
    Ok(no_content())
}

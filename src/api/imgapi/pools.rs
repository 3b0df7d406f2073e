//! Handlers for what is installed in a pool: `POST
//! /images/:uuid?action=install[&pool=POOL]` (a task) and
//! `/pools/:pool/images[/:uuid]`.

use super::tasks::accepted;
use crate::api::http::{json_response, no_content, Body, Ctx};
use crate::api::routes::Install;
use crate::error::Result;
use hyper::{Response, StatusCode};
use serde_json::Value;

/// `POST /images/:uuid?action=install[&pool=POOL]`.
pub async fn install(ctx: Ctx, req: Install) -> Result<Response<Body>> {
    let Install { uuid, pool } = req;
    let (task, _) = ctx
        .svc
        .blocking(move |svc| {
            let svc = svc.arc();
            svc.install(&uuid, pool.as_deref())
        })
        .await?;
    accepted(&task)
}

/// `GET /pools/:pool/images`.
pub async fn images(ctx: Ctx, pool: String) -> Result<Response<Body>> {
    let v = ctx.svc.blocking(move |svc| svc.installed(&pool)).await?;
    Ok(json_response(StatusCode::OK, &Value::Array(v)))
}

/// `GET /pools/:pool/images/:uuid`.
pub async fn image(ctx: Ctx, pool: String, uuid: String) -> Result<Response<Body>> {
    let v = ctx
        .svc
        .blocking(move |svc| svc.installed_one(&pool, &uuid))
        .await?;
    Ok(json_response(StatusCode::OK, &v))
}

/// `DELETE /pools/:pool/images/:uuid`.
pub async fn uninstall(ctx: Ctx, pool: String, uuid: String) -> Result<Response<Body>> {
    ctx.svc
        .blocking(move |svc| svc.uninstall(&pool, &uuid))
        .await?;
    Ok(no_content())
}

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
    accepted(&ctx.svc.start_install(uuid, pool).await?)
}

/// `GET /pools/:pool/images`.
pub async fn images(ctx: Ctx, pool: String) -> Result<Response<Body>> {
    let v = ctx.svc.pool_images(pool).await?;
    Ok(json_response(StatusCode::OK, &Value::Array(v)))
}

/// `GET /pools/:pool/images/:uuid`.
pub async fn image(ctx: Ctx, pool: String, uuid: String) -> Result<Response<Body>> {
    let v = ctx.svc.pool_image(pool, uuid).await?;
    Ok(json_response(StatusCode::OK, &v))
}

/// `DELETE /pools/:pool/images/:uuid`.
pub async fn uninstall(ctx: Ctx, pool: String, uuid: String) -> Result<Response<Body>> {
    ctx.svc.uninstall_image(pool, uuid).await?;
    Ok(no_content())
}

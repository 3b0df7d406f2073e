//! Handlers for `/packages/...`: the cloud API's package shape, plus the
//! bootstrap load (`POST /packages?action=load`) and the images that fit a
//! package (`GET /packages/:id-or-name/images`).
//!
//! Statuses: create 201 (as PAPI), load/get/list/replace 200, delete 204.

use super::http::{json_body, json_response, no_content, Body, Ctx};
use crate::error::{Error, Result};
use crate::service::filter::ListFilter;
use crate::service::packages::PackageFilter;
use crate::store::packages::Package;
use hyper::{Response, StatusCode};
use serde_json::Value;

fn package_json(p: &Package) -> Value {
    serde_json::to_value(p).unwrap_or_default()
}

/// `GET /packages?FIELD=VALUE...`.
pub async fn list(ctx: Ctx) -> Result<Response<Body>> {
    let filter = PackageFilter::parse(&ctx.query)?;
    let items: Vec<Value> = ctx
        .svc
        .list_packages(&filter)
        .iter()
        .map(|p| package_json(p))
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(items)))
}

/// `GET /packages/:id-or-name`.
pub async fn get(ctx: Ctx) -> Result<Response<Body>> {
    let p = ctx.svc.get_package(&ctx.segments[1])?;
    Ok(json_response(StatusCode::OK, &package_json(&p)))
}

/// `POST /packages` (create) and `POST /packages?action=load`.
pub async fn post(ctx: Ctx) -> Result<Response<Body>> {
    let action = ctx.param("action")?.map(str::to_string);
    let (ctx, body) = json_body(ctx).await?;
    match action.as_deref() {
        None => {
            let p = ctx.svc.create_package(body).await?;
            Ok(json_response(StatusCode::CREATED, &package_json(&p)))
        }
        Some("load") => {
            let summary = ctx.svc.load_packages(body).await?;
            let v = serde_json::to_value(&summary)
                .map_err(|e| Error::internal("encoding the load summary", e))?;
            Ok(json_response(StatusCode::OK, &v))
        }
        Some(other) => Err(Error::param(
            "action",
            format!("unknown action {other:?} on /packages: expected load"),
        )),
    }
}

/// `PUT /packages/:id`: replaces the package.
pub async fn replace(ctx: Ctx) -> Result<Response<Body>> {
    let id = ctx.segments[1].clone();
    let (ctx, body) = json_body(ctx).await?;
    let p = ctx.svc.replace_package(id, body).await?;
    Ok(json_response(StatusCode::OK, &package_json(&p)))
}

/// `DELETE /packages/:id`.
pub async fn delete(ctx: Ctx) -> Result<Response<Body>> {
    ctx.svc.delete_package(ctx.segments[1].clone()).await?;
    Ok(no_content())
}

/// `GET /packages/:id-or-name/images`: ListImages (same filters) limited to
/// the images that accept the package.
pub async fn images(ctx: Ctx) -> Result<Response<Body>> {
    let filter = ListFilter::parse(&ctx.query)?;
    if filter.package.is_some() {
        return Err(Error::param(
            "package",
            "not allowed here: the package is the one in the path",
        ));
    }
    let recs = ctx.svc.package_images(&ctx.segments[1], &filter)?;
    Ok(super::http::manifests_response(&recs))
}

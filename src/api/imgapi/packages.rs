//! Handlers for `/packages/...`: the cloud API's package shape, plus the
//! bootstrap load (`POST /packages?action=load`) and the images that fit a
//! package (`GET /packages/:id-or-name/images`).
//!
//! Statuses: create 201 (as PAPI), load/get/list/replace 200, delete 204.

use crate::api::http::{json_body, json_response, manifests_response, no_content, Body, Ctx};
use crate::error::{Error, Result};
use crate::service::filter::ListFilter;
use crate::service::packages::PackageFilter;
use crate::service::Package;
use hyper::{Response, StatusCode};
use serde_json::Value;

fn package_json(p: &Package) -> Value {
    serde_json::to_value(p).unwrap_or_default()
}

/// `GET /packages?FIELD=VALUE...`.
pub fn list(ctx: Ctx) -> Result<Response<Body>> {
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
pub fn get(ctx: Ctx, x: String) -> Result<Response<Body>> {
    let p = ctx.svc.get_package(&x)?;
    Ok(json_response(StatusCode::OK, &package_json(&p)))
}

/// `POST /packages`: creates a package.
pub async fn create(ctx: Ctx) -> Result<Response<Body>> {
    let (ctx, body) = json_body(ctx).await?;
    let p = ctx.svc.create_package(body).await?;
    Ok(json_response(StatusCode::CREATED, &package_json(&p)))
}

/// `POST /packages?action=load`: the bootstrap load.
pub async fn load(ctx: Ctx) -> Result<Response<Body>> {
    let (ctx, body) = json_body(ctx).await?;
    let summary = ctx.svc.load_packages(body).await?;
    let v = serde_json::to_value(&summary)
        .map_err(|e| Error::internal("encoding the load summary", e))?;
    Ok(json_response(StatusCode::OK, &v))
}

/// `POST /packages?action=OTHER`: refused, after the body is read (a bad
/// body is the error a client sees first, as always on this path).
pub async fn unknown_action(ctx: Ctx, action: String) -> Result<Response<Body>> {
    let _ = json_body(ctx).await?;
    Err(Error::param(
        "action",
        format!("unknown action {action:?} on /packages: expected load"),
    ))
}

/// `PUT /packages/:id`: replaces the package.
pub async fn replace(ctx: Ctx, id: String) -> Result<Response<Body>> {
    let (ctx, body) = json_body(ctx).await?;
    let p = ctx.svc.replace_package(id, body).await?;
    Ok(json_response(StatusCode::OK, &package_json(&p)))
}

/// `DELETE /packages/:id`.
pub async fn delete(ctx: Ctx, id: String) -> Result<Response<Body>> {
    ctx.svc.delete_package(id).await?;
    Ok(no_content())
}

/// `GET /packages/:id-or-name/images`: ListImages (same filters) limited to
/// the images that accept the package.
pub fn images(ctx: Ctx, x: String) -> Result<Response<Body>> {
    let filter = ListFilter::parse(&ctx.query)?;
    if filter.package.is_some() {
        return Err(Error::param(
            "package",
            "not allowed here: the package is the one in the path",
        ));
    }
    let recs = ctx.svc.package_images(&x, &filter)?;
    Ok(manifests_response(&recs))
}

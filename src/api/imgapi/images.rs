//! Handlers for `/images` and `/images/:uuid`: IMGAPI's paths, parameters
//! and response shapes, so IMGAPI clients work unchanged. The image file is
//! `files.rs`; installing into a pool is `pools.rs`.

use super::tasks::accepted;
use super::view::View;
use crate::api::http::{json_body, no_content, Body, Ctx};
use crate::api::routes::{Export, ImportRemote};
use crate::error::{Error, Result};
use crate::service::create::{CreateRequest, FilesRequest};
use crate::service::filter::ListFilter;
use crate::service::precondition::{etag_of_cached, Precondition};
use crate::service::visibility::check_operator;
use crate::service::ImageRecord;
use hyper::{Response, StatusCode};
use serde_json::Value;

/// 200 with the image's manifest in the request's view, and its `ETag`.
pub(super) fn ok_in(view: View, rec: impl AsRef<ImageRecord>) -> Result<Response<Body>> {
    Ok(view.record_response(rec.as_ref()))
}

/// The request's `If-Match` / `If-None-Match`.
pub(super) fn precondition(ctx: &Ctx) -> Precondition {
    Precondition::new(ctx.header("if-match"), ctx.header("if-none-match"))
}

/// `GET /images`: the page is assembled from the manifests' cached JSON
/// (the same bytes `serde_json` would write for the array).
pub async fn list(ctx: Ctx) -> Result<Response<Body>> {
    let view = View::of(&ctx)?;
    let mut filter = ListFilter::parse(&ctx.query)?;
    filter.channel = ctx.svc.channel_scope(ctx.param("channel")?, true)?;
    let recs = ctx.svc.list_images(&filter)?;
    Ok(view.list_response(&recs))
}

/// `GET /images/:uuid`: the manifest's cached JSON, shared, not copied,
/// with its `ETag`; `If-None-Match` naming it is 304, `If-Match` not
/// naming it 412.
pub async fn get(ctx: Ctx, uuid: String) -> Result<Response<Body>> {
    let view = View::of(&ctx)?;
    let scope = super::scope(&ctx, true)?;
    let c = ctx.svc.scoped_image(&uuid, &scope)?;
    let etag = etag_of_cached(&c);
    if precondition(&ctx).check_read(&etag)? {
        let mut resp = no_content();
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        super::view::set_etag(&mut resp, &etag);
        return Ok(resp);
    }
    Ok(view.cached_response(&c))
}

/// `POST /images`: CreateImage.
pub async fn create(ctx: Ctx) -> Result<Response<Body>> {
    let view = View::of(&ctx)?;
    let scope = super::scope(&ctx, false)?;
    let (ctx, body) = json_body(ctx).await?;
    ok_in(view, ctx.svc.create_image_scoped(body, &scope).await?)
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, body: Value) -> Result<T> {
    serde_json::from_value(body)
        .map_err(|e| Error::param(what, format!("invalid request body: {e}")))
}

/// `POST /images?action=create-from-dataset`.
pub async fn create_from_dataset(ctx: Ctx) -> Result<Response<Body>> {
    let (ctx, body) = json_body(ctx).await?;
    let req: CreateRequest = parse("body", body)?;
    accepted(&ctx.svc.start_create_from_dataset(req).await?)
}

/// `POST /images?action=install-from-files`.
pub async fn install_from_files(ctx: Ctx) -> Result<Response<Body>> {
    let (ctx, body) = json_body(ctx).await?;
    let req: FilesRequest = parse("body", body)?;
    accepted(&ctx.svc.start_install_from_files(req).await?)
}

/// `POST /images/:uuid?action=import`: AdminImportImage.
pub async fn import(ctx: Ctx, uuid: String) -> Result<Response<Body>> {
    let view = View::of(&ctx)?;
    let scope = super::scope(&ctx, false)?;
    let (ctx, body) = json_body(ctx).await?;
    ok_in(view, ctx.svc.import_image_scoped(uuid, body, &scope).await?)
}

/// `POST /images/:uuid?action=import&source=URL[&skip_owner_check=BOOL]`:
/// AdminImportImage of the manifest the IMGAPI at `source` has. The body,
/// if any, is not read (IMGAPI ignores it too). `skip_owner_check` must be
/// a boolean; a node has no account database to check owners against.
pub async fn import_from_source(ctx: Ctx, uuid: String, source: String) -> Result<Response<Body>> {
    let view = View::of(&ctx)?;
    let scope = super::scope(&ctx, false)?;
    match ctx.param("skip_owner_check")? {
        None | Some("true" | "false") => {}
        Some(other) => {
            return Err(Error::param(
                "skip_owner_check",
                format!("{other:?} is not a boolean (true or false)"),
            ))
        }
    }
    ok_in(
        view,
        ctx.svc.import_from_source(uuid, source, &scope).await?,
    )
}

/// `POST /images/:uuid?action=import-remote[&source=URL][&install=POOL]`.
pub async fn import_remote(ctx: Ctx, req: ImportRemote) -> Result<Response<Body>> {
    let scope = super::scope(&ctx, false)?;
    check_operator(&scope)?;
    let ImportRemote {
        uuid,
        source,
        install,
    } = req;
    accepted(
        &ctx.svc
            .start_import_remote_in(uuid, source, install, scope.channel)
            .await?,
    )
}

/// `POST /images/:uuid?action=activate`.
pub async fn activate(ctx: Ctx, uuid: String) -> Result<Response<Body>> {
    let view = View::of(&ctx)?;
    ctx.svc.check_owner(&uuid, &super::scope(&ctx, false)?)?;
    ok_in(view, ctx.svc.activate_if(uuid, precondition(&ctx)).await?)
}

/// `POST /images/:uuid?action=enable` and `?action=disable`.
pub async fn set_disabled(ctx: Ctx, uuid: String, disabled: bool) -> Result<Response<Body>> {
    let view = View::of(&ctx)?;
    let cond = precondition(&ctx);
    ctx.svc.check_owner(&uuid, &super::scope(&ctx, false)?)?;
    ok_in(view, ctx.svc.set_disabled_if(uuid, disabled, cond).await?)
}

/// `POST /images/:uuid?action=update`.
pub async fn update(ctx: Ctx, uuid: String) -> Result<Response<Body>> {
    let view = View::of(&ctx)?;
    let cond = precondition(&ctx);
    ctx.svc.check_owner(&uuid, &super::scope(&ctx, false)?)?;
    let (ctx, body) = json_body(ctx).await?;
    ok_in(view, ctx.svc.update_if(uuid, body, cond).await?)
}

/// `POST /images/:uuid?action=export&path=DIR`.
pub async fn export(ctx: Ctx, req: Export) -> Result<Response<Body>> {
    let Export { uuid, path } = req;
    ctx.svc.check_owner(&uuid, &super::scope(&ctx, false)?)?;
    accepted(&ctx.svc.start_export(uuid, path.into()).await?)
}

/// Media types of a JSON Patch body: RFC 6902's, and Glance's (which is
/// the same format under another name).
const PATCH_MEDIA_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/openstack-images-v2.1-json-patch",
];

/// `PATCH /images/:uuid`: a JSON Patch of the manifest's mutable fields,
/// applied atomically (see `service::patch`). Any other media type, or none,
/// is 415 `UnsupportedMediaType`.
pub async fn patch(ctx: Ctx, uuid: String) -> Result<Response<Body>> {
    ctx.svc.check_owner(&uuid, &super::scope(&ctx, false)?)?;
    let given = ctx.header("content-type").unwrap_or_default();
    let media = given.split(';').next().unwrap_or_default().trim();
    if !PATCH_MEDIA_TYPES
        .iter()
        .any(|t| t.eq_ignore_ascii_case(media))
    {
        return Err(Error::UnsupportedMediaType(format!(
            "PATCH needs Content-Type {}, got {given:?}",
            PATCH_MEDIA_TYPES.join(" or ")
        )));
    }
    let view = View::of(&ctx)?;
    let cond = precondition(&ctx);
    let (ctx, body) = json_body(ctx).await?;
    ok_in(view, ctx.svc.patch_image_if(uuid, body, cond).await?)
}

/// `DELETE /images/:uuid` (`If-Match` honoured, as on the other writes).
pub async fn delete(ctx: Ctx, uuid: String) -> Result<Response<Body>> {
    let scope = super::scope(&ctx, false)?;
    let force = match ctx.param("force_all_channels")? {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err(Error::param(
                "force_all_channels",
                format!("{v:?} is not true or false"),
            ))
        }
    };
    ctx.svc.check_owner(&uuid, &scope)?;
    let cond = precondition(&ctx);
    ctx.svc
        .delete_in_channel(uuid, scope.channel, force, cond)
        .await?;
    Ok(no_content())
}

//! Handlers for `/sources` (the ordered list of remote sources) and
//! `/sources/images` (what they offer, like `imgadm avail`). Importing from
//! them is an action on `/images/:uuid` (`images.rs`).

use crate::api::http::{json_body, json_response, no_content, Body, Ctx};
use crate::api::types::{SourceImage, SourceImages};
use crate::error::{Error, Result};
use crate::service::filter::ListFilter;
use crate::service::sources::SourceConfig;
use hyper::{Response, StatusCode};
use serde_json::Value;

fn specs_json(specs: &[SourceConfig]) -> Result<Value> {
    serde_json::to_value(specs).map_err(|e| Error::internal("sources", e))
}

fn to_json(v: &impl serde::Serialize) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::internal("encoding source images", e))
}

/// `GET /sources`.
pub fn list(ctx: Ctx) -> Result<Response<Body>> {
    let v = specs_json(&ctx.svc.source_specs())?;
    Ok(json_response(StatusCode::OK, &v))
}

/// `POST /sources` with `{url, type?, insecure?}`: appends a source.
pub async fn add(ctx: Ctx) -> Result<Response<Body>> {
    let (ctx, body) = json_body(ctx).await?;
    let spec: SourceConfig = serde_json::from_value(body)
        .map_err(|e| Error::param("body", format!("expected {{url, type, insecure}}: {e}")))?;
    let list = ctx.svc.add_source(spec).await?;
    Ok(json_response(StatusCode::CREATED, &specs_json(&list)?))
}

/// `DELETE /sources?url=URL`.
pub async fn remove(ctx: Ctx) -> Result<Response<Body>> {
    let url = ctx
        .param("url")?
        .ok_or_else(|| Error::param("url", "missing: the URL of the source to remove"))?
        .to_string();
    ctx.svc.remove_source(url).await?;
    Ok(no_content())
}

/// `GET /sources/images`: every source's images, merged (first source wins
/// for a uuid), filtered like `GET /images`. A source that fails is listed
/// under `errors`; the others still answer.
pub async fn avail(ctx: Ctx) -> Result<Response<Body>> {
    let filter = ListFilter::parse(&ctx.query)?;
    let avail = ctx.svc.available(&filter).await?;
    let out = SourceImages {
        images: avail
            .images
            .into_iter()
            .map(|(manifest, source)| SourceImage { manifest, source })
            .collect(),
        errors: avail
            .failures
            .iter()
            .map(|f| f.to_json(crate::error::source_code(&f.error)))
            .collect(),
    };
    Ok(json_response(StatusCode::OK, &to_json(&out)?))
}

/// `GET /sources/images/:uuid`: the manifest from the first source that has
/// the image (asked now, not from the cache), like `imgadm show`.
pub async fn avail_one(ctx: Ctx, uuid: String) -> Result<Response<Body>> {
    let (manifest, source) = ctx.svc.available_one(&uuid).await?;
    let out = SourceImage {
        manifest,
        source: Some(source),
    };
    Ok(json_response(StatusCode::OK, &to_json(&out)?))
}

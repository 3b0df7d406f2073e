//! Handlers for `/sources` (the ordered list of remote sources),
//! `/sources/images` (what they offer, like `imgadm avail`) and
//! `POST /images/:uuid?action=import-remote`.

use super::tasks::accepted;
use super::{json_body, json_response, no_content, Body, Ctx};
use crate::error::{Error, Result};
use crate::service::filter::ListFilter;
use crate::sources::SourceConfig;
use crate::store::meta::ImageRecord;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

fn specs_json(specs: &[SourceConfig]) -> Result<Value> {
    serde_json::to_value(specs).map_err(|e| Error::internal("sources", e))
}

/// `GET /sources`.
pub async fn list(ctx: Ctx) -> Result<Response<Body>> {
    let v = specs_json(&ctx.svc.sources.specs())?;
    Ok(json_response(StatusCode::OK, &v))
}

/// `POST /sources` with `{url, type?, insecure?}`: appends a source.
pub async fn add(ctx: Ctx) -> Result<Response<Body>> {
    let (ctx, body) = json_body(ctx).await?;
    let spec: SourceConfig = serde_json::from_value(body)
        .map_err(|e| Error::param("body", format!("expected {{url, type, insecure}}: {e}")))?;
    let list = ctx
        .svc
        .blocking(move |svc| Ok(svc.sources.add(&spec)?))
        .await?;
    Ok(json_response(StatusCode::CREATED, &specs_json(&list)?))
}

/// `DELETE /sources?url=URL`.
pub async fn remove(ctx: Ctx) -> Result<Response<Body>> {
    let url = ctx
        .param("url")?
        .ok_or_else(|| Error::param("url", "missing: the URL of the source to remove"))?
        .to_string();
    ctx.svc
        .blocking(move |svc| Ok(svc.sources.remove(&url)?))
        .await?;
    Ok(no_content())
}

/// `GET /sources/images`: every source's images, merged (first source wins
/// for a uuid), filtered like `GET /images`. A source that fails is listed
/// under `errors`; the others still answer.
pub async fn avail(ctx: Ctx) -> Result<Response<Body>> {
    let filter = ListFilter::parse(&ctx.query)?;
    let avail = ctx.svc.sources.avail().await;
    let mut from: HashMap<String, String> = HashMap::new();
    let recs: Vec<Arc<ImageRecord>> = avail
        .images
        .into_iter()
        .map(|(img, url)| {
            from.insert(img.uuid().to_string(), url);
            Arc::new(ImageRecord {
                manifest: img.manifest,
                activated: true,
                content_md5: None,
            })
        })
        .collect();
    let images: Vec<Value> = filter
        .apply(recs)?
        .iter()
        .map(|r| json!({"manifest": Value::Object(r.manifest.clone()), "source": from.get(r.uuid())}))
        .collect();
    let errors: Vec<Value> = avail
        .failures
        .iter()
        .map(|f| f.to_json(crate::error::source_code(&f.error)))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"images": images, "errors": errors}),
    ))
}

/// `GET /sources/images/:uuid`: the manifest from the first source that has
/// the image (asked now, not from the cache), like `imgadm show`.
pub async fn avail_one(ctx: Ctx) -> Result<Response<Body>> {
    let uuid = ctx.segments[2].clone();
    crate::service::images::check_uuid(&uuid)?;
    let mut failures = Vec::new();
    for src in ctx.svc.sources.list() {
        match src.get(&ctx.svc.sources.http, &uuid).await {
            Ok(Some(img)) => {
                return Ok(json_response(
                    StatusCode::OK,
                    &json!({"manifest": Value::Object(img.manifest), "source": src.url()}),
                ))
            }
            Ok(None) => {}
            Err(e) => failures.push(e.to_string()),
        }
    }
    let detail = if failures.is_empty() {
        String::new()
    } else {
        format!("; sources that failed: {}", failures.join("; "))
    };
    Err(Error::ImageNotFound(format!(
        "image {uuid} is in none of the sources{detail}"
    )))
}

/// `POST /images/:uuid?action=import-remote[&source=URL][&install=POOL]`.
pub async fn import_remote(ctx: Ctx) -> Result<Response<Body>> {
    let uuid = ctx.segments[1].clone();
    let source = ctx.param("source")?.map(str::to_string);
    let pool = ctx.param("install")?.map(str::to_string);
    let (task, _) = ctx
        .svc
        .blocking(move |svc| {
            svc.arc()
                .import_remote(&uuid, source.as_deref(), pool.as_deref())
        })
        .await?;
    accepted(&task)
}

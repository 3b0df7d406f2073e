//! The legacy DSAPI view: `GET /datasets` and `GET /datasets/:uuid` answer
//! the active images as v1 "dsmanifests" ([`crate::manifest::downgrade_v1`]),
//! and `GET /datasets/:uuid/:path` their files, so a DSAPI client (imgadm's
//! `dsapi` source through sdc-clients `dsapi.js`, or imgstore's own) can
//! use an imgstore as its source. IMGAPI itself redirects these paths to
//! `/images` (sdc-imgapi `lib/datasets.js`), which a DSAPI client cannot
//! read: the manifests would be v2 and their files have no `url`.

use crate::api::http::{json_response, Body, Ctx};
use crate::error::Result;
use crate::manifest::downgrade_v1;
use crate::service::filter::ListFilter;
use hyper::{Response, StatusCode};
use serde_json::Value;

/// Where the files are served, as the client reached this server: an
/// absolute URL from the `Host` header (what sdc-clients' DSAPI client
/// fetches), or a path when the request had none.
fn base_url(ctx: &Ctx) -> String {
    match ctx.header("host").filter(|h| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
    }) {
        Some(host) => format!("http://{host}/datasets"),
        None => "/datasets".into(),
    }
}

/// `GET /datasets`: the active images (ListImages' filters apply, and
/// DSAPI's `creator_uuid` filter is `owner`), as v1.
pub async fn list(ctx: Ctx) -> Result<Response<Body>> {
    let query: Vec<(String, String)> = ctx
        .query
        .iter()
        .map(|(k, v)| match k.as_str() {
            "creator_uuid" => ("owner".to_string(), v.clone()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    let filter = ListFilter::parse(&query)?;
    let recs = ctx.svc.list_images(&filter)?;
    let base = base_url(&ctx);
    let out: Vec<Value> = recs
        .iter()
        .map(|c| Value::Object(downgrade_v1(&c.record().manifest, &base)))
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(out)))
}

/// `GET /datasets/:uuid`: one image, as v1.
pub async fn get(ctx: Ctx, uuid: String) -> Result<Response<Body>> {
    let rec = ctx.svc.get_image(&uuid)?;
    let m = downgrade_v1(&rec.manifest, &base_url(&ctx));
    Ok(json_response(StatusCode::OK, &Value::Object(m)))
}

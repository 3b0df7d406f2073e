//! The HTTP/JSON API: one route table, request parsing helpers and response
//! encoding. Handlers live in one file per resource and call the service
//! layer; nothing below `service/` sees hyper.
//!
//! Every response, including errors and unknown routes, is JSON in IMGAPI's
//! shape; no request ends in a hang or an HTML page.

pub mod admin;
pub mod error;
pub mod http;
pub mod images;
pub mod packages;
pub mod sources;
pub mod tasks;

pub use http::Body;

use crate::access::Peer;
use crate::error::{Error, Result};
use crate::service::Service;
use http::Ctx;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response};
use std::sync::Arc;
use std::time::Instant;

fn not_allowed(ctx: &Ctx, allow: &'static str) -> Error {
    Error::MethodNotAllowed {
        method: ctx.method.to_string(),
        path: ctx.req.uri().path().to_string(),
        allow,
    }
}

/// The route table.
async fn route(ctx: Ctx) -> Result<Response<Body>> {
    let segs: Vec<&str> = ctx.segments.iter().map(String::as_str).collect();
    match (segs.as_slice(), &ctx.method) {
        (["ping"], &Method::GET | &Method::HEAD) => images::ping(ctx).await,
        (["ping"], _) => Err(not_allowed(&ctx, "GET, HEAD")),
        (["images"], &Method::GET | &Method::HEAD) => images::list(ctx).await,
        (["images"], &Method::POST) => images::create(ctx).await,
        (["images"], _) => Err(not_allowed(&ctx, "GET, HEAD, POST")),
        (["images", _], &Method::GET | &Method::HEAD) => images::get(ctx).await,
        (["images", _], &Method::POST) => images::action(ctx).await,
        (["images", _], &Method::PATCH) => images::patch(ctx).await,
        (["images", _], &Method::DELETE) => images::delete(ctx).await,
        (["images", _], _) => Err(not_allowed(&ctx, "GET, HEAD, POST, PATCH, DELETE")),
        (["images", _, "file"], &Method::GET | &Method::HEAD) => images::get_file(ctx).await,
        (["images", _, "file"], &Method::PUT) => images::put_file(ctx).await,
        (["images", _, "file"], _) => Err(not_allowed(&ctx, "GET, HEAD, PUT")),
        (["tasks"], &Method::GET | &Method::HEAD) => tasks::list(ctx).await,
        (["tasks"], _) => Err(not_allowed(&ctx, "GET, HEAD")),
        (["tasks", _], &Method::GET | &Method::HEAD) => tasks::get(ctx).await,
        (["tasks", _], &Method::DELETE) => tasks::cancel(ctx).await,
        (["tasks", _], _) => Err(not_allowed(&ctx, "GET, HEAD, DELETE")),
        (["pools", _, "images"], &Method::GET | &Method::HEAD) => tasks::pool_images(ctx).await,
        (["pools", _, "images"], _) => Err(not_allowed(&ctx, "GET, HEAD")),
        (["pools", _, "images", _], &Method::GET | &Method::HEAD) => tasks::pool_image(ctx).await,
        (["pools", _, "images", _], &Method::DELETE) => tasks::uninstall(ctx).await,
        (["pools", _, "images", _], _) => Err(not_allowed(&ctx, "GET, HEAD, DELETE")),
        (["packages"], &Method::GET | &Method::HEAD) => packages::list(ctx).await,
        (["packages"], &Method::POST) => packages::post(ctx).await,
        (["packages"], _) => Err(not_allowed(&ctx, "GET, HEAD, POST")),
        (["packages", _], &Method::GET | &Method::HEAD) => packages::get(ctx).await,
        (["packages", _], &Method::PUT) => packages::replace(ctx).await,
        (["packages", _], &Method::DELETE) => packages::delete(ctx).await,
        (["packages", _], _) => Err(not_allowed(&ctx, "GET, HEAD, PUT, DELETE")),
        (["packages", _, "images"], &Method::GET | &Method::HEAD) => packages::images(ctx).await,
        (["packages", _, "images"], _) => Err(not_allowed(&ctx, "GET, HEAD")),
        (["sources"], &Method::GET | &Method::HEAD) => sources::list(ctx).await,
        (["sources"], &Method::POST) => sources::add(ctx).await,
        (["sources"], &Method::DELETE) => sources::remove(ctx).await,
        (["sources"], _) => Err(not_allowed(&ctx, "GET, HEAD, POST, DELETE")),
        (["sources", "images"], &Method::GET | &Method::HEAD) => sources::avail(ctx).await,
        (["sources", "images"], _) => Err(not_allowed(&ctx, "GET, HEAD")),
        (["sources", "images", _], &Method::GET | &Method::HEAD) => sources::avail_one(ctx).await,
        (["sources", "images", _], _) => Err(not_allowed(&ctx, "GET, HEAD")),
        (["state"], &Method::GET | &Method::HEAD) => admin::state(ctx).await,
        (["state"], &Method::POST) => admin::repair(ctx).await,
        (["state"], _) => Err(not_allowed(&ctx, "GET, HEAD, POST")),
        (["vacuum"], &Method::POST) => admin::vacuum(ctx).await,
        (["vacuum"], _) => Err(not_allowed(&ctx, "POST")),
        _ => Err(Error::RouteNotFound {
            method: ctx.method.to_string(),
            path: ctx.req.uri().path().to_string(),
        }),
    }
}

/// Splits and percent-decodes the path. A segment that decodes to invalid
/// UTF-8, or to `.`/`..`, or contains `/` once decoded, cannot name
/// anything and is refused.
pub fn segments(path: &str) -> Result<Vec<String>> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let d = percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map_err(|_| Error::param("path", "path is not valid UTF-8"))?;
            if d == "." || d == ".." || d.contains('/') || d.contains('\0') {
                return Err(Error::param("path", format!("invalid path segment {d:?}")));
            }
            Ok(d.into_owned())
        })
        .collect()
}

/// Refuses a request head larger than `max` bytes (request line and
/// headers, as sent). hyper's own buffer limit is set above this, so that
/// such a request still gets a JSON answer; see `server/mod.rs`.
///
/// # Errors
/// `HeadersTooLarge` (431).
pub fn check_head<B>(req: &Request<B>, max: usize) -> Result<()> {
    let line = req.method().as_str().len() + req.uri().to_string().len() + 12;
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    let size = line + headers;
    if size > max {
        return Err(Error::HeadersTooLarge(format!(
            "request head is {size} bytes, over the limit of {max} bytes (limits.max_header_bytes)"
        )));
    }
    Ok(())
}

/// Serves one request: parse, check access, route, encode, log.
pub async fn handle(svc: Arc<Service>, req: Request<Incoming>, peer: Peer) -> Response<Body> {
    let start = Instant::now();
    let req_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128 && !v.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let admitted = check_head(&req, svc.limits().max_header_bytes)
        .and_then(|()| crate::access::check(&svc.config().access, &peer, &method))
        .and_then(|()| segments(&path));
    let result = match admitted {
        Ok(segments) => {
            route(Ctx {
                svc,
                method: method.clone(),
                segments,
                query,
                req,
                peer: peer.clone(),
            })
            .await
        }
        Err(e) => Err(e),
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            if error::status(&e).is_server_error() {
                tracing::error!(req_id = %req_id, error = %e, code = e.code(), "request failed");
            }
            error::response(&e)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&req_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    tracing::info!(
        req_id = %req_id,
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        duration_ms = start.elapsed().as_secs_f64() * 1000.0,
        peer_uid = peer.uid,
        peer_gid = peer.gid,
        peer_pid = peer.pid,
        "request"
    );
    resp
}

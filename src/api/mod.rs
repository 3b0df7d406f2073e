//! The HTTP/JSON API: one route table, request parsing helpers and response
//! encoding. Handlers live in one file per resource and call the service
//! layer; nothing below `service/` sees hyper.
//!
//! Every response, including errors and unknown routes, is JSON in IMGAPI's
//! shape; no request ends in a hang or an HTML page.

pub mod admin;
pub mod images;
pub mod packages;
pub mod sources;
pub mod tasks;

use crate::access::Peer;
use crate::error::{Error, Result};
use crate::service::Service;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::time::Instant;

pub type Body = BoxBody<Bytes, std::io::Error>;

/// A request as the handlers see it: method, decoded path segments, query
/// pairs, headers and the body still unread.
pub struct Ctx {
    pub svc: Arc<Service>,
    pub method: Method,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub req: Request<Incoming>,
    pub peer: Peer,
}

impl Ctx {
    /// The single value of a query parameter.
    ///
    /// # Errors
    /// `InvalidParameter` when it is given more than once.
    pub fn param(&self, key: &str) -> Result<Option<&str>> {
        let mut it = self.query.iter().filter(|(k, _)| k == key);
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() {
            return Err(Error::param(key, "given more than once"));
        }
        Ok(first)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.req.headers().get(name).and_then(|v| v.to_str().ok())
    }
}

/// Reads a whole JSON body, bounded by `limits.max_body_bytes`. An empty
/// body reads as `{}` (actions such as `activate` take none).
///
/// # Errors
/// `PayloadTooLarge` over the limit, `MalformedBody` for invalid JSON or a
/// body that breaks off, `RequestTimeout` for a body that stalls for
/// `idle_timeout_secs` or is not whole after `request_timeout_secs`.
pub async fn json_body(ctx: Ctx) -> Result<(Ctx, serde_json::Value)> {
    let max = ctx.svc.limits().max_body_bytes;
    let idle = ctx.svc.limits().idle_timeout();
    let total = ctx.svc.limits().request_timeout();
    let deadline = tokio::time::Instant::now() + total;
    let Ctx {
        svc,
        method,
        segments,
        query,
        req,
        peer,
    } = ctx;
    let (parts, mut body) = req.into_parts();
    let mut buf = Vec::new();
    loop {
        let wait = idle.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        let frame = match tokio::time::timeout(wait, body.frame()).await {
            Err(_) if wait < idle => {
                return Err(Error::RequestTimeout(format!(
                    "request body did not arrive whole within {} s (limits.request_timeout_secs)",
                    total.as_secs()
                )))
            }
            Err(_) => {
                return Err(Error::RequestTimeout(format!(
                    "request body stalled for {} s (limits.idle_timeout_secs)",
                    idle.as_secs()
                )))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(Error::MalformedBody(format!("reading request body: {e}")))
            }
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > max {
                return Err(Error::PayloadTooLarge(format!(
                    "request body is larger than the limit of {max} bytes (limits.max_body_bytes)"
                )));
            }
            buf.extend_from_slice(&data);
        }
    }
    let value = if buf.iter().all(|b| b.is_ascii_whitespace()) {
        serde_json::json!({})
    } else {
        serde_json::from_slice(&buf)
            .map_err(|e| Error::MalformedBody(format!("request body is not valid JSON: {e}")))?
    };
    let req = Request::from_parts(parts, body);
    Ok((
        Ctx {
            svc,
            method,
            segments,
            query,
            req,
            peer,
        },
        value,
    ))
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A response whose body is JSON already serialised (ending in a newline,
/// as [`json_response`] writes it).
pub fn json_bytes_response(status: StatusCode, bytes: Bytes) -> Response<Body> {
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A JSON array of manifests, joined from their cached JSON: the same
/// bytes [`json_response`] writes for the array of parsed manifests.
pub fn manifests_response(recs: &[std::sync::Arc<crate::store::meta::Cached>]) -> Response<Body> {
    let len = recs.iter().map(|c| c.json().len() + 1).sum::<usize>() + 2;
    let mut out = Vec::with_capacity(len);
    out.push(b'[');
    for (i, c) in recs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(c.json());
    }
    out.extend_from_slice(b"]\n");
    json_bytes_response(StatusCode::OK, Bytes::from(out))
}

pub fn error_response(e: &Error) -> Response<Body> {
    let mut resp = json_response(e.status(), &e.body());
    match e {
        Error::MethodNotAllowed { allow, .. } => {
            resp.headers_mut()
                .insert("allow", HeaderValue::from_static(allow));
        }
        Error::RangeNotSatisfiable(_, size) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert("content-range", v);
            }
        }
        _ => {}
    }
    resp
}

pub fn no_content() -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

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
            if e.status().is_server_error() {
                tracing::error!(req_id = %req_id, error = %e, code = e.code(), "request failed");
            }
            error_response(&e)
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

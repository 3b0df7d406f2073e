//! The HTTP/JSON API: admit a request (head size, access, path), route it
//! ([`routes`]), hand it to its dialect's handler ([`imgapi`]), and log it.
//! - [`routes`]: the one route table, a [`routes::Route`] per request.
//! - [`error`]: the HTTP status and response of each error.
//! - [`http`]: the request context, body reader and response builders.
//! - [`types`]: wire shapes that are not a stored record as is.
//! - [`imgapi`]: the IMGAPI dialect's handlers, one file per resource.
//!
//! Handlers call the service layer only; nothing below `service/` sees
//! hyper.
//!
//! Every response, including errors and unknown routes, is JSON in IMGAPI's
//! shape; no request ends in a hang or an HTML page.

pub mod error;
pub mod http;
pub mod imgapi;
pub mod routes;
pub mod types;
pub mod version;

pub use http::Body;

use crate::access::Peer;
use crate::error::{Error, Result};
use crate::service::Service;
use http::Ctx;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response};
use std::sync::Arc;
use std::time::Instant;

/// The `Server` header of every response: IMGAPI's `imgapi/VERSION`
/// form, with this daemon's name.
pub const SERVER: &str = concat!("imgstore/", env!("CARGO_PKG_VERSION"));

/// Adds the headers every response carries (`Server`).
pub fn stamp(resp: &mut Response<Body>) {
    resp.headers_mut()
        .insert(hyper::header::SERVER, HeaderValue::from_static(SERVER));
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
    let accept_version = req
        .headers()
        .get("accept-version")
        .map(|v| v.to_str().unwrap_or("?").to_string());
    let result = match admitted
        .and_then(|segments| routes::parse(&method, &path, &segments, &query))
        .and_then(|route| {
            version::negotiate(accept_version.as_deref(), method.as_str(), &path).map(|_| route)
        }) {
        Ok(route) => {
            let ctx = Ctx {
                svc,
                method: method.clone(),
                query,
                req,
                peer: peer.clone(),
            };
            imgapi::serve(route, ctx).await
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
    stamp(&mut resp);
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

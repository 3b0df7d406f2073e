//! What every handler shares: the request context [`Ctx`], the bounded
//! JSON body reader and the response builders.

use crate::access::Peer;
use crate::error::{Error, Result};
use crate::service::{Cached, Service};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;

pub type Body = BoxBody<Bytes, std::io::Error>;

/// A request as the handlers see it: method, query pairs, headers and the
/// body still unread. What the path names comes with the [`Route`].
///
/// [`Route`]: super::routes::Route
pub struct Ctx {
    pub svc: Arc<Service>,
    pub method: Method,
    pub query: Vec<(String, String)>,
    pub req: Request<Incoming>,
    pub peer: Peer,
}

/// The single value of a query parameter.
///
/// # Errors
/// `InvalidParameter` when it is given more than once.
pub fn param<'a>(query: &'a [(String, String)], key: &str) -> Result<Option<&'a str>> {
    let mut it = query.iter().filter(|(k, _)| k == key);
    let first = it.next().map(|(_, v)| v.as_str());
    if it.next().is_some() {
        return Err(Error::param(key, "given more than once"));
    }
    Ok(first)
}

impl Ctx {
    /// The single value of a query parameter.
    ///
    /// # Errors
    /// `InvalidParameter` when it is given more than once.
    pub fn param(&self, key: &str) -> Result<Option<&str>> {
        param(&self.query, key)
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
pub fn manifests_response(recs: &[Arc<Cached>]) -> Response<Body> {
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

pub fn no_content() -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

//! How a stored manifest goes out on the wire (IMGAPI's `Image.serialize`,
//! `lib/images.js`), and the image responses that carry it with its
//! `ETag`:
//! - `files` is always there: `[]` until a file is added;
//! - API version 1 (`Accept-Version: ~1`) has no `channels`;
//! - `inclAdminFields=true` adds `files[].stor`, where the file is kept:
//!   always `"local"` on one node (IMGAPI's storage type for its own disk).
//!
//! Most manifests need none of this and go out as the cached bytes, not
//! parsed again.

use crate::api::http::{json_bytes_response, json_response, Body, Ctx};
use crate::api::version::{negotiate, ApiVersion};
use crate::error::{Error, Result};
use crate::service::precondition::{etag_of, etag_of_cached};
use crate::service::{Cached, ImageRecord};
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// What a request asked to see of its manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub version: ApiVersion,
    /// `inclAdminFields=true`.
    pub admin: bool,
}

impl View {
    /// The view a request asks for.
    ///
    /// # Errors
    /// `InvalidVersion` for an `Accept-Version` no served version meets
    /// (already refused before routing); `InvalidParameter` for an
    /// `inclAdminFields` that is not `true` or `false`.
    pub fn of(ctx: &Ctx) -> Result<View> {
        let version = negotiate(
            ctx.header("accept-version"),
            ctx.method.as_str(),
            ctx.req.uri().path(),
        )?;
        let admin = match ctx.param("inclAdminFields")? {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => {
                return Err(Error::param(
                    "inclAdminFields",
                    format!("{v:?} is not true or false"),
                ))
            }
        };
        Ok(View { version, admin })
    }

    /// Whether a cached manifest must be rewritten for this view.
    fn rewrites(&self, c: &Cached) -> bool {
        let json = c.json();
        self.admin
            || !contains(json, b"\"files\":")
            || (self.version == ApiVersion::V1 && contains(json, b"\"channels\":"))
    }

    /// The manifest as this view shows it.
    pub fn render(&self, m: &Map<String, Value>) -> Value {
        let mut m = m.clone();
        if !m.contains_key("files") {
            m.insert("files".into(), json!([]));
        }
        if self.version == ApiVersion::V1 {
            m.remove("channels");
        }
        if self.admin {
            if let Some(Value::Array(files)) = m.get_mut("files") {
                for f in files.iter_mut().filter_map(Value::as_object_mut) {
                    f.insert("stor".into(), json!("local"));
                }
            }
        }
        Value::Object(m)
    }

    /// The JSON line of a cached manifest in this view.
    pub fn cached_line(&self, c: &Cached) -> bytes::Bytes {
        if !self.rewrites(c) {
            return c.json_line().clone();
        }
        let m: Map<String, Value> = serde_json::from_slice(c.json()).unwrap_or_default();
        let mut out = serde_json::to_vec(&self.render(&m)).unwrap_or_default();
        out.push(b'\n');
        out.into()
    }

    /// A JSON array of manifests (ListImages).
    pub fn list_response(&self, recs: &[Arc<Cached>]) -> Response<Body> {
        let mut out =
            Vec::with_capacity(recs.iter().map(|c| c.json().len() + 1).sum::<usize>() + 2);
        out.push(b'[');
        for (i, c) in recs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let line = self.cached_line(c);
            out.extend_from_slice(&line[..line.len() - 1]);
        }
        out.extend_from_slice(b"]\n");
        json_bytes_response(StatusCode::OK, out.into())
    }

    /// 200 with a cached manifest and its `ETag` (GetImage).
    pub fn cached_response(&self, c: &Cached) -> Response<Body> {
        let mut resp = json_bytes_response(StatusCode::OK, self.cached_line(c));
        set_etag(&mut resp, &etag_of_cached(c));
        resp
    }

    /// 200 with a manifest a write returned, and its `ETag`.
    pub fn record_response(&self, rec: &ImageRecord) -> Response<Body> {
        let mut resp = json_response(StatusCode::OK, &self.render(&rec.manifest));
        set_etag(&mut resp, &etag_of(rec));
        resp
    }
}

/// Sets `ETag` (unquoted, as IMGAPI sends it).
pub fn set_etag(resp: &mut Response<Body>, etag: &str) {
    if let Ok(v) = HeaderValue::from_str(etag) {
        resp.headers_mut().insert("etag", v);
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_views() {
        let m = json!({"uuid": "u", "channels": ["dev"]});
        let m = m.as_object().unwrap();
        let latest = View {
            version: ApiVersion::V2,
            admin: false,
        };
        assert_eq!(
            latest.render(m),
            json!({"uuid": "u", "channels": ["dev"], "files": []})
        );
        let v1 = View {
            version: ApiVersion::V1,
            admin: false,
        };
        assert_eq!(v1.render(m), json!({"uuid": "u", "files": []}));
        let admin = View {
            version: ApiVersion::V2,
            admin: true,
        };
        let m = json!({"uuid": "u", "files": [{"sha1": "x"}]});
        assert_eq!(
            admin.render(m.as_object().unwrap()),
            json!({"uuid": "u", "files": [{"sha1": "x", "stor": "local"}]})
        );
    }
}

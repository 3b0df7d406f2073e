//! Handlers for `/images/:uuid/icon`: AddImageIcon, GetImageIcon and
//! DeleteImageIcon, with IMGAPI's headers (sdc-imgapi `lib/images.js`
//! `apiAddImageIcon`, `resSetImageIconCacheHeaders`): the icon is served
//! with its own `Content-Type`, `ETag` (its SHA-1), `Content-MD5`,
//! `Content-Length` and `Last-Modified`. The rules are `service::icons`'.

use super::images::ok_in;
use super::view::View;
use crate::api::http::{full, Body, Ctx};
use crate::error::{Error, Result};
use crate::service::icons::{too_big, IconUpload, MAX_ICON_BYTES};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, ETAG, LAST_MODIFIED};
use hyper::{Response, StatusCode};

/// `PUT /images/:uuid/icon[?sha1=HEX]`: the body is the icon.
pub async fn add(ctx: Ctx, uuid: String) -> Result<Response<Body>> {
    let up = IconUpload {
        content_type: ctx.header("content-type").map(str::to_string),
        sha1: ctx.param("sha1")?.map(str::to_string),
        content_length: ctx
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok()),
    };
    // Refused before the body is stored: an unknown image, a wrong type or
    // an announced size over the limit.
    let checked = View::of(&ctx).and_then(|view| {
        ctx.svc.check_owner(&uuid, &super::scope(&ctx, false)?)?;
        up.check_head()?;
        Ok(view)
    });
    let idle = ctx.svc.limits().idle_timeout();
    let mut body = ctx.req.into_body();
    let view = match checked {
        Ok(view) => view,
        Err(e) => {
            drain(&mut body, idle).await;
            return Err(e);
        }
    };
    let data = match read_bounded(&mut body, idle).await {
        Ok(d) => d,
        Err(e) => {
            drain(&mut body, idle).await;
            return Err(e);
        }
    };
    ok_in(view, ctx.svc.add_icon(uuid, up, data).await?)
}

/// How much of a refused icon upload is read and dropped before the error
/// is answered: a client that writes its whole body before it reads (as
/// sdc-clients does) then gets the answer instead of a reset connection.
/// Bigger bodies are cut off.
const DRAIN_MAX: usize = 1 << 20;

async fn drain(body: &mut hyper::body::Incoming, idle: std::time::Duration) {
    let mut seen = 0;
    while seen <= DRAIN_MAX {
        match tokio::time::timeout(idle, body.frame()).await {
            Ok(Some(Ok(f))) => seen += f.data_ref().map_or(0, |d| d.len()),
            _ => return,
        }
    }
}

/// Reads a body of at most [`MAX_ICON_BYTES`]; one byte more is 400 Upload.
async fn read_bounded(
    body: &mut hyper::body::Incoming,
    idle: std::time::Duration,
) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(Error::RequestTimeout(format!(
                    "icon upload stalled for {} s (limits.idle_timeout_secs); nothing was stored",
                    idle.as_secs()
                )))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(Error::Upload(
                    format!("icon upload broke off after {} bytes: {e}", buf.len()),
                    Vec::new(),
                ))
            }
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > MAX_ICON_BYTES {
                return Err(too_big());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// `GET /images/:uuid/icon` (and `HEAD`).
pub async fn get(ctx: Ctx, uuid: String) -> Result<Response<Body>> {
    ctx.svc.scoped_image(&uuid, &super::scope(&ctx, true)?)?;
    let (icon, path) = ctx.svc.icon_path(&uuid)?;
    // IMGAPI runs restify's conditionalRequest here: the ETag a client
    // already has is answered 304, without the bytes.
    let unchanged = ctx.header("if-none-match").is_some_and(|v| {
        v.split(',')
            .map(|t| t.trim().trim_start_matches("W/").trim_matches('"'))
            .any(|t| t == "*" || t == icon.sha1)
    });
    if unchanged {
        let mut resp = Response::new(full(Bytes::new()));
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        if let Ok(v) = HeaderValue::from_str(&icon.sha1) {
            resp.headers_mut().insert(ETAG, v);
        }
        return Ok(resp);
    }
    let body = if ctx.method == hyper::Method::HEAD {
        full(Bytes::new())
    } else {
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| Error::io(&format!("reading the icon of image {uuid}"), e))?;
        full(bytes)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(CONTENT_LENGTH, HeaderValue::from(icon.size));
    let mut set = |name, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set(CONTENT_TYPE, &icon.content_type);
    set(ETAG, &icon.sha1);
    set(
        hyper::header::HeaderName::from_static("content-md5"),
        &icon.content_md5,
    );
    if let Some(t) = crate::time::parse(&icon.mtime) {
        set(
            LAST_MODIFIED,
            &t.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        );
    }
    Ok(resp)
}

/// `DELETE /images/:uuid/icon`: 200 with the manifest, as IMGAPI answers.
pub async fn delete(ctx: Ctx, uuid: String) -> Result<Response<Body>> {
    let view = View::of(&ctx)?;
    ctx.svc.check_owner(&uuid, &super::scope(&ctx, false)?)?;
    ok_in(view, ctx.svc.delete_icon(uuid).await?)
}

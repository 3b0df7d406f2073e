//! Handlers for `/images/:uuid/file`: AddImageFile streamed into the blob
//! store, and GetImageFile streamed out of it with `Range` support.

use super::images::{ok_in, precondition};
use super::view::View;
use crate::api::http::{full, json_body, Body, Ctx};
use crate::error::{Error, Result};
use crate::service::images::{BodyError, FileParams};
use crate::service::precondition::Precondition;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use std::io::{Read, Seek, SeekFrom};
use tokio::sync::mpsc;

fn parse_u64(name: &str, v: Option<&str>) -> Result<Option<u64>> {
    v.map(|s| {
        s.parse::<u64>()
            .map_err(|_| Error::param(name, format!("{s:?} is not a non-negative integer")))
    })
    .transpose()
}

/// `PUT /images/:uuid/file`: AddImageFile, streamed into the blob store.
pub async fn put(ctx: Ctx, uuid: String) -> Result<Response<Body>> {
    let view = View::of(&ctx)?;
    let cond = precondition(&ctx);
    let scope = super::scope(&ctx, false)?;
    ctx.svc.check_owner(&uuid, &scope)?;
    let params = FileParams {
        compression: ctx
            .param("compression")?
            .ok_or_else(|| {
                // IMGAPI's AddImageFile says `Missing` here (not
                // `MissingParameter`, as elsewhere).
                let message = "missing: one of none, gzip, bzip2, xz, zstd";
                Error::InvalidParameter(
                    format!("invalid parameter compression: {message}"),
                    vec![crate::manifest::FieldError {
                        field: "compression".into(),
                        code: "Missing".into(),
                        message: message.into(),
                    }],
                )
            })?
            .to_string(),
        sha1: ctx.param("sha1")?.map(str::to_string),
        size: parse_u64("size", ctx.param("size")?)?,
        content_length: parse_u64("Content-Length", ctx.header("content-length"))?,
        dataset_guid: ctx
            .param("dataset_guid")?
            .filter(|g| !g.is_empty())
            .map(str::to_string),
    };
    let limits = ctx.svc.limits();
    let idle = limits.idle_timeout();
    let min_window = limits
        .min_upload_bytes_per_sec
        .saturating_mul(limits.idle_timeout_secs);
    let svc = ctx.svc.clone();
    let mut body = ctx.req.into_body();
    let (tx, rx) = mpsc::channel(4);
    // The body is read here, on the connection's task, and handed to the
    // blocking ingest through a bounded channel: memory stays flat whatever
    // the file size, and a slow disk slows the client down (backpressure).
    // Each idle window must bring `min_upload_bytes_per_sec` on average, so
    // a trickle of bytes cannot hold a connection and a temp file forever.
    let forward = async move {
        let mut window_start = tokio::time::Instant::now();
        let mut window_bytes = 0u64;
        loop {
            if window_start.elapsed() >= idle {
                if window_bytes < min_window {
                    let _ = tx
                        .send(Err(BodyError::TooSlow {
                            bytes: window_bytes,
                            secs: idle.as_secs(),
                        }))
                        .await;
                    break;
                }
                window_start = tokio::time::Instant::now();
                window_bytes = 0;
            }
            let wait = idle.saturating_sub(window_start.elapsed());
            let item = match tokio::time::timeout(wait, body.frame()).await {
                // The window ends; the check above decides.
                Err(_) if window_bytes > 0 => continue,
                Err(_) => Some(Err(BodyError::Idle(idle.as_secs()))),
                Ok(None) => None,
                Ok(Some(Err(e))) => Some(Err(BodyError::Truncated(e.to_string()))),
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(d) if d.is_empty() => continue,
                    Ok(d) => {
                        window_bytes += d.len() as u64;
                        Some(Ok(d))
                    }
                    Err(_) => continue,
                },
            };
            let Some(item) = item else { break };
            let last = item.is_err();
            if tx.send(item).await.is_err() || last {
                break;
            }
        }
    };
    let (_, result) = tokio::join!(forward, svc.add_file_if(uuid, params, rx, cond));
    ok_in(view, result?)
}

/// `PUT /images/:uuid/file?source=URL`: the file of the same image at the
/// IMGAPI `source`, verified against its manifest there. The request body
/// is not read.
pub async fn add_from_source(ctx: Ctx, uuid: String, source: String) -> Result<Response<Body>> {
    let view = View::of(&ctx)?;
    ctx.svc.check_owner(&uuid, &super::scope(&ctx, false)?)?;
    ok_in(view, ctx.svc.add_file_from_source(uuid, source).await?)
}

/// `POST /images/:uuid/file/from-url?compression=C[&sha1=HEX]`, body
/// `{"file_url": "https://..."}`: AddImageFileFromUrl.
pub async fn add_from_url(ctx: Ctx, uuid: String) -> Result<Response<Body>> {
    let view = View::of(&ctx)?;
    ctx.svc.check_owner(&uuid, &super::scope(&ctx, false)?)?;
    let (ctx, body) = json_body(ctx).await?;
    let compression = ctx
        .param("compression")?
        .ok_or_else(|| Error::param("compression", "missing: one of none, gzip, bzip2, xz, zstd"))?
        .to_string();
    let url = match body.get("file_url") {
        Some(serde_json::Value::String(u)) => u.clone(),
        Some(_) => return Err(Error::param("file_url", "not a string")),
        None => return Err(Error::param("file_url", "missing from the request body")),
    };
    let params = FileParams {
        compression,
        sha1: ctx.param("sha1")?.map(str::to_string),
        size: None,
        content_length: None,
        dataset_guid: ctx
            .param("dataset_guid")?
            .filter(|g| !g.is_empty())
            .map(str::to_string),
    };
    ok_in(view, ctx.svc.add_file_from_url(uuid, url, params).await?)
}

/// A parsed `Range: bytes=...` header: `Some((start, end_inclusive))`.
/// Multiple ranges and malformed headers are ignored (the whole file is
/// served), as RFC 9110 allows; an unsatisfiable range is an error.
fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let unsat = || {
        Error::RangeNotSatisfiable(
            format!("range {spec:?} is outside the file's {size} bytes"),
            size,
        )
    };
    let range = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => {
            if start >= size {
                return Err(unsat());
            }
            (start, end.min(size - 1))
        }
        (Ok(start), Err(_)) if b.is_empty() => {
            if start >= size {
                return Err(unsat());
            }
            (start, size - 1)
        }
        (Err(_), Ok(n)) if a.is_empty() => {
            if n == 0 || size == 0 {
                return Err(unsat());
            }
            (size.saturating_sub(n), size - 1)
        }
        _ => return Ok(None),
    };
    Ok(Some(range))
}

/// `?index=N` as IMGAPI reads it (`parseInt(index) || 0`): an optional
/// sign and the leading digits, and 0 for anything else.
fn file_index(v: Option<&str>) -> i64 {
    let v = v.unwrap_or_default().trim_start();
    let (neg, v) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
    let n: i64 = digits.parse().unwrap_or(i64::MAX);
    match (digits.is_empty(), neg) {
        (true, _) => 0,
        (false, true) => -n,
        (false, false) => n,
    }
}

/// An HTTP date (`Thu, 01 Jan 1970 00:00:00 GMT`).
fn http_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// What the conditional headers of a download ask, in restify's order
/// (`conditionalRequest`: If-Match, If-None-Match, If-Modified-Since,
/// If-Unmodified-Since): `Ok(true)` for 304 Not Modified. A date that does
/// not parse is ignored, as restify's `Date.parse` comparison ignores it.
fn download_precondition(
    ctx: &Ctx,
    etag: &str,
    modified: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<bool> {
    if Precondition::new(ctx.header("if-match"), ctx.header("if-none-match")).check_read(etag)? {
        return Ok(true);
    }
    let date = |h: &str| {
        ctx.header(h)
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .map(|d| d.with_timezone(&chrono::Utc))
    };
    let Some(modified) = modified else {
        return Ok(false);
    };
    if date("if-modified-since").is_some_and(|since| modified <= since) {
        return Ok(true);
    }
    if let Some(since) = date("if-unmodified-since").filter(|since| modified > *since) {
        return Err(Error::PreconditionFailed(format!(
            "object was modified at '{}'; if-unmodified-since '{}'",
            http_date(modified),
            http_date(since)
        )));
    }
    Ok(false)
}

/// `GET /images/:uuid/file`: streamed from the blob, with `Range` support,
/// `ETag` (the file's SHA-1) and `Last-Modified` (when the blob was
/// stored), and IMGAPI's conditional requests on both.
pub async fn get(ctx: Ctx, uuid: String) -> Result<Response<Body>> {
    let scope = super::scope(&ctx, true)?;
    ctx.svc.scoped_image(&uuid, &scope)?;
    let (rec, path) = ctx.svc.file_path(&uuid)?;
    let index = file_index(ctx.param("index")?);
    if index != 0 {
        return Err(Error::ResourceNotFound(format!(
            "image \"{uuid}\" has no file at index {index}"
        )));
    }
    let file = rec.file();
    let size = file.as_ref().map_or(0, |f| f.size);
    let modified = tokio::fs::metadata(&path)
        .await
        .and_then(|m| m.modified())
        .ok()
        .map(|t| {
            let t: chrono::DateTime<chrono::Utc> = t.into();
            // HTTP dates have whole seconds.
            chrono::DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
        });
    let etag = file.as_ref().map(|f| f.sha1.clone()).unwrap_or_default();
    if download_precondition(&ctx, &etag, modified)? {
        let mut resp = Response::new(full(Bytes::new()));
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        if let Ok(v) = HeaderValue::from_str(&etag) {
            resp.headers_mut().insert("etag", v);
        }
        if let Some(Ok(v)) = modified.map(|m| HeaderValue::from_str(&http_date(m))) {
            resp.headers_mut().insert("last-modified", v);
        }
        return Ok(resp);
    }
    let range = parse_range(ctx.header("range"), size)?;
    let (start, len, status) = match range {
        Some((s, e)) => (s, e - s + 1, StatusCode::PARTIAL_CONTENT),
        None => (0, size, StatusCode::OK),
    };
    let head_only = ctx.method == hyper::Method::HEAD;
    let body = if head_only || len == 0 {
        full(Bytes::new())
    } else {
        stream_file(path, start, len)
            .await
            .map_err(|e| Error::internal(&format!("opening the file of image {uuid}"), e))?
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    h.insert("accept-ranges", HeaderValue::from_static("bytes"));
    if let Some(f) = &file {
        if let Ok(v) = HeaderValue::from_str(&f.sha1) {
            h.insert("etag", v);
        }
    }
    if let Some(Ok(v)) = modified.map(|m| HeaderValue::from_str(&http_date(m))) {
        h.insert("last-modified", v);
    }
    if status == StatusCode::OK {
        if let Some(md5) = rec
            .content_md5
            .as_deref()
            .and_then(|m| HeaderValue::from_str(m).ok())
        {
            h.insert("content-md5", md5);
        }
    } else if let Ok(v) =
        HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        h.insert("content-range", v);
    }
    Ok(resp)
}

/// Chunk size of downloads: large, so that the per-chunk hand-offs
/// (channel, task wake-up, one `writev`) are noise next to the copies.
const DOWNLOAD_CHUNK: u64 = crate::codec::CHUNK as u64;

/// Streams `len` bytes of `path` from `start`: a blocking reader thread sends
/// chunks through a small bounded channel, so memory stays flat and a slow
/// client throttles the reads. Chunks are read into fresh, uninitialised
/// buffers (no zeroing pass) that hyper sends without copying.
async fn stream_file(path: std::path::PathBuf, start: u64, len: u64) -> std::io::Result<Body> {
    let mut f = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let mut f = std::fs::File::open(&path)?;
        f.seek(SeekFrom::Start(start))?;
        Ok(f)
    })
    .await
    .map_err(std::io::Error::other)??;
    let (tx, rx) = mpsc::channel::<std::io::Result<Frame<Bytes>>>(4);
    tokio::task::spawn_blocking(move || {
        let mut left = len;
        while left > 0 {
            let n = left.min(DOWNLOAD_CHUNK);
            let mut buf = Vec::with_capacity(n as usize);
            let r = match (&mut f).take(n).read_to_end(&mut buf) {
                Ok(k) if k as u64 == n => Ok(Frame::data(Bytes::from(buf))),
                Ok(k) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("blob ended {} bytes early", left - k as u64),
                )),
                Err(e) => Err(e),
            };
            let failed = r.is_err();
            if tx.blocking_send(r).is_err() || failed {
                return;
            }
            left -= n;
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    Ok(StreamBody::new(stream).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::status;

    #[test]
    fn index_as_parse_int() {
        assert_eq!(file_index(None), 0);
        assert_eq!(file_index(Some("0")), 0);
        assert_eq!(file_index(Some("1")), 1);
        assert_eq!(file_index(Some("2x")), 2);
        assert_eq!(file_index(Some("x")), 0);
        assert_eq!(file_index(Some("-1")), -1);
        assert_eq!(file_index(Some("+0")), 0);
    }

    #[test]
    fn http_dates() {
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let s = http_date(t);
        assert_eq!(s, "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(chrono::DateTime::parse_from_rfc2822(&s).unwrap(), t);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10).unwrap(), None);
        assert_eq!(parse_range(Some("bytes=0-3"), 10).unwrap(), Some((0, 3)));
        assert_eq!(parse_range(Some("bytes=5-"), 10).unwrap(), Some((5, 9)));
        assert_eq!(parse_range(Some("bytes=-3"), 10).unwrap(), Some((7, 9)));
        assert_eq!(parse_range(Some("bytes=8-100"), 10).unwrap(), Some((8, 9)));
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10).unwrap(), None);
        assert_eq!(parse_range(Some("items=0-1"), 10).unwrap(), None);
        assert_eq!(parse_range(Some("bytes=4-2"), 10).unwrap(), None);
        assert_eq!(
            status(&parse_range(Some("bytes=10-"), 10).unwrap_err()).as_u16(),
            416
        );
        assert_eq!(
            status(&parse_range(Some("bytes=-0"), 10).unwrap_err()).as_u16(),
            416
        );
    }
}

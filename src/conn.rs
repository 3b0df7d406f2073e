//! Per-connection plumbing shared by the Unix socket ([`crate::server`])
//! and the peer listener ([`crate::server::peer`]), so both treat a
//! client alike: a deadline on writes ([`WriteDeadline`]) and JSON for the
//! errors hyper answers by itself ([`HyperErrors`]).
//!
//! # JSON for hyper's own errors
//!
//! A request hyper cannot parse as HTTP/1.1 (a broken request line or
//! header, bad framing, a head over hyper's own size limit) never reaches
//! [`crate::api::handle`]: hyper writes a bare status line itself, with
//! `content-length: 0`, and closes the connection. hyper 1 has no hook for
//! that response, so [`HyperErrors`] wraps the connection's IO and
//! recognises it on the way out:
//!
//! ```text
//! HTTP/1.1 4xx Reason\r\nconnection: close\r\ncontent-length: 0\r\ndate: ...\r\n\r\n
//! ```
//!
//! and writes in its place a JSON error with a stable code (`BadRequest`,
//! `UriTooLong`, `RequestHeaderFieldsTooLarge`) whose message says what
//! could not be parsed (the request head is re-parsed with `httparse`, the
//! parser hyper itself uses). Every response of our own carries a
//! `content-type`, so none of them can be mistaken for hyper's.
//!
//! A client that stalls in the middle of a request head is cut off by
//! hyper's header timeout without any response; the wrapper hands its IO
//! back through a [`Slot`] when hyper drops it, so the accept loop can send a
//! JSON `408 RequestTimeout` before closing ([`timed_out`]). A keep-alive
//! connection that merely sat idle is closed silently, as usual.

use crate::error::Error;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// How much of a request head is kept to explain a parse error.
const KEEP: usize = 8192;

/// What a connection's IO looks like when hyper lets go of it.
pub struct Returned<S> {
    pub io: S,
    /// Bytes of a request arrived after the last response was written: the
    /// client is in the middle of a request.
    pub partial_head: bool,
}

/// Where [`HyperErrors`] leaves its IO when dropped.
pub type Slot<S> = Arc<Mutex<Option<Returned<S>>>>;

pub struct HyperErrors<S> {
    io: Option<S>,
    slot: Slot<S>,
    /// The start of what was read since the last write (at most `KEEP`).
    head: Vec<u8>,
    partial_head: bool,
    /// A rewritten response still to be written, and how much of it is.
    pending: Vec<u8>,
    done: usize,
}

impl<S> HyperErrors<S> {
    pub fn new(io: S) -> (HyperErrors<S>, Slot<S>) {
        let slot: Slot<S> = Arc::new(Mutex::new(None));
        let w = HyperErrors {
            io: Some(io),
            slot: slot.clone(),
            head: Vec::new(),
            partial_head: false,
            pending: Vec::new(),
            done: 0,
        };
        (w, slot)
    }

    fn io(&mut self) -> Pin<&mut S>
    where
        S: Unpin,
    {
        Pin::new(self.io.as_mut().expect("IO is only taken on drop"))
    }
}

impl<S> Drop for HyperErrors<S> {
    fn drop(&mut self) {
        if let Some(io) = self.io.take() {
            if let Ok(mut slot) = self.slot.lock() {
                *slot = Some(Returned {
                    io,
                    partial_head: self.partial_head,
                });
            }
        }
    }
}

/// If `buf` ends with hyper's automatic error response, where it starts
/// and its status.
fn hyper_error_at(buf: &[u8]) -> Option<(usize, u16)> {
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let start = buf.windows(9).rposition(|w| w == b"HTTP/1.1 ")?;
    let head = &buf[start..];
    if head.len() > 512 || head.get(9) != Some(&b'4') {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?.to_ascii_lowercase();
    if !text.contains("\r\nconnection: close\r\ncontent-length: 0\r\n")
        || text.contains("content-type")
    {
        return None;
    }
    let status = text.get(9..12)?.parse().ok()?;
    Some((start, status))
}

/// What is wrong with a request head, as far as `httparse` can tell.
fn explain(head: &[u8]) -> String {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Err(httparse::Error::HeaderName) => "a header name is not a valid token".into(),
        Err(httparse::Error::HeaderValue) => "a header value contains a forbidden byte".into(),
        Err(httparse::Error::NewLine) => "a line does not end with CRLF".into(),
        Err(httparse::Error::Token) => {
            "the request line is not METHOD TARGET HTTP/1.x (a bad token or separator)".into()
        }
        Err(httparse::Error::Version) => "the request line has no valid HTTP/1.x version".into(),
        Err(httparse::Error::Status) => "the request line is malformed".into(),
        Err(httparse::Error::TooManyHeaders) => "the request has more than 100 headers".into(),
        Ok(_) if req.path.is_some_and(|p| !p.starts_with('/') && p != "*") => {
            "the request target is not a path".into()
        }
        Ok(_) => {
            "its framing is invalid (Content-Length or Transfer-Encoding, or a header hyper refuses)"
                .into()
        }
    }
}

/// The JSON response that replaces hyper's bare `status`.
fn json_response(status: u16, head: &[u8]) -> Vec<u8> {
    let e = match status {
        431 => Error::HeadersTooLarge(
            "the request head is larger than this server accepts (limits.max_header_bytes)".into(),
        ),
        414 => Error::UriTooLong("the request target is too long".into()),
        _ => Error::BadRequest(format!(
            "the request could not be parsed as HTTP/1.1: {}",
            explain(head)
        )),
    };
    encode(&e)
}

/// A complete `connection: close` response for `e`.
pub fn encode(e: &Error) -> Vec<u8> {
    let body = e.body().to_string();
    let status = crate::api::error::status(e);
    format!(
        "HTTP/1.1 {} {}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

impl<S: AsyncWrite + Unpin> HyperErrors<S> {
    /// Writes what is left of a rewritten response.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.done < self.pending.len() {
            let (pending, done) = (std::mem::take(&mut self.pending), self.done);
            let r = self.io().poll_write(cx, &pending[done..]);
            self.pending = pending;
            match r {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => self.done += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// `buf` is being written: if it ends with hyper's own error response,
    /// queue the data before it and the JSON response instead.
    fn rewrite(&mut self, buf: &[u8]) -> bool {
        let Some((at, status)) = hyper_error_at(buf) else {
            return false;
        };
        let mut out = buf[..at].to_vec();
        out.extend_from_slice(&json_response(status, &self.head));
        self.pending = out;
        self.done = 0;
        true
    }

    fn wrote(&mut self) {
        self.head.clear();
        self.partial_head = false;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HyperErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = self.io().poll_read(cx, buf);
        let new = &buf.filled()[before..];
        if !new.is_empty() {
            self.partial_head = true;
            let room = KEEP.saturating_sub(self.head.len());
            let keep = &new[..new.len().min(room)];
            self.head.extend_from_slice(keep);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HyperErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        if self.rewrite(buf) {
            self.wrote();
            // The rewritten bytes stand for all of `buf`; what is not out
            // yet goes out on the next write, flush or shutdown.
            let _ = self.drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        let r = self.io().poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.wrote();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        let last = bufs.iter().rev().find(|b| !b.is_empty());
        if last.is_some_and(|b| hyper_error_at(b).is_some()) {
            // Rare (once per connection at most): flatten and rewrite.
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            return self.poll_write(cx, &all);
        }
        let r = self.io().poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.wrote();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        self.io().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        self.io().poll_shutdown(cx)
    }
}

/// After hyper's header timeout ended a connection: a client that was in the
/// middle of a request head gets a JSON 408 (best effort, bounded by one
/// second); an idle keep-alive connection is just closed.
pub async fn timed_out<S: AsyncWrite + Unpin>(slot: &Slot<S>, timeout_secs: u64) {
    let returned = slot.lock().ok().and_then(|mut s| s.take());
    let Some(Returned {
        mut io,
        partial_head: true,
    }) = returned
    else {
        return;
    };
    let e = Error::RequestTimeout(format!(
        "the request head did not arrive within {timeout_secs} s (limits.header_timeout_secs)"
    ));
    let bytes = encode(&e);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        io.write_all(&bytes).await?;
        io.shutdown().await
    })
    .await;
}

/// A connection whose writes may not stay blocked longer than `timeout`:
/// a client that stops reading a response (or reads a byte a minute) is
/// cut off instead of holding a connection, a file and a blocking reader
/// thread forever. Reads are not limited here: hyper's header timeout and
/// the body timeouts in the handlers bound them.
pub struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub fn new(inner: S, timeout: Duration) -> WriteDeadline<S> {
        WriteDeadline {
            inner,
            timeout,
            sleep: None,
        }
    }

    /// Turns a `Pending` write into a timeout error once it has been
    /// pending for `timeout`; any progress resets the clock.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        use std::future::Future;
        match r {
            Poll::Ready(r) => {
                self.sleep = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if sleep.as_mut().poll(cx).is_ready() {
                    self.sleep = None;
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "client did not read for {} s (limits.idle_timeout_secs)",
                            timeout.as_secs()
                        ),
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPER_400: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 24 Nov 2026 17:25:21 GMT\r\n\r\n";

    #[test]
    fn recognises_only_hypers_bare_error() {
        assert_eq!(hyper_error_at(HYPER_400), Some((0, 400)));
        let mut two = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec();
        two.extend_from_slice(HYPER_400);
        assert_eq!(hyper_error_at(&two), Some((40, 400)));
        let ours = b"HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\ncontent-type: application/json\r\n\r\n";
        assert_eq!(hyper_error_at(ours), None);
        let ok = b"HTTP/1.1 204 No Content\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_error_at(ok), None);
        assert_eq!(hyper_error_at(b"a body that ends in \r\n\r\n"), None);
    }

    #[test]
    fn explains_what_could_not_be_parsed() {
        assert!(explain(b"GET /ping HTTP/1.1\r\nHost x\r\n\r\n").contains("header name"));
        assert!(
            explain(b"GET /ping HTTP/7\r\n\r\n").contains("version"),
            "{}",
            explain(b"GET /ping HTTP/7\r\n\r\n")
        );
        let e = explain(b"GET /ping\r\n\r\n");
        assert!(e.contains("request line"), "{e}");
        assert!(explain(b"\x00\x01 / HTTP/1.1\r\n\r\n").contains("METHOD TARGET"));
        assert!(explain(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n").contains("framing"));
    }

    #[tokio::test]
    async fn rewrites_the_response_and_hands_the_io_back() {
        let (a, mut b) = tokio::io::duplex(4096);
        let (mut w, slot) = HyperErrors::new(a);
        use tokio::io::AsyncReadExt;
        b.write_all(b"GET /ping HTTP/1.1\r\nHost x\r\n\r\n")
            .await
            .unwrap();
        let mut tmp = [0u8; 64];
        let n = w.read(&mut tmp).await.unwrap();
        assert!(n > 0);
        w.write_all(HYPER_400).await.unwrap();
        w.flush().await.unwrap();
        drop(w);
        let returned = slot.lock().unwrap().take().expect("IO handed back");
        assert!(!returned.partial_head, "a response was written");
        drop(returned);
        let mut out = String::new();
        b.read_to_string(&mut out).await.unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], "BadRequest");
        assert!(
            v["message"].as_str().unwrap().contains("header name"),
            "{v}"
        );
    }
}

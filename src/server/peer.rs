//! The peer listener: an optional TCP socket (`[peer] listen`) that serves
//! the read-only IMGAPI subset, so another node can use this one as an
//! `imgapi` source:
//!
//! - `GET|HEAD /ping`
//! - `GET|HEAD /images` (same filters as on the socket)
//! - `GET|HEAD /images/:uuid`
//! - `GET|HEAD /images/:uuid/file` (with `Range`, so a peer can resume)
//! - `GET|HEAD /images/:uuid/icon`
//! - `GET|HEAD /datasets`, `/datasets/:uuid` and `/datasets/:uuid/:file`
//!   (the DSAPI view, so another node can use this one as a `dsapi`
//!   source too)
//!
//! Requests go through [`guard`] and then the same handlers as the Unix
//! socket, so both answer alike. Everything else is refused before it
//! reaches a handler: another method on those paths is 405, any other path
//! 404, whatever the method. Writes are never served here: the socket's
//! permissions are the daemon's access control, and TCP has none. There is
//! no TLS either; put a proxy in front to serve beyond a trusted network.

use crate::access::Peer;
use crate::api;
use crate::conn::{self, HyperErrors, WriteDeadline};
use crate::error::{Error, StartError};
use crate::service::Service;
use hyper::service::service_fn;
use hyper::{Method, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Binds the listener when `listen` is set.
///
/// # Errors
/// The address is not `ADDR:PORT`, or cannot be bound (the message names it).
pub fn bind(listen: &str) -> Result<Option<std::net::TcpListener>, StartError> {
    if listen.is_empty() {
        return Ok(None);
    }
    let l = std::net::TcpListener::bind(listen).map_err(StartError::during(format!(
        "binding the peer listener on {listen}"
    )))?;
    l.set_nonblocking(true)
        .map_err(StartError::during(format!("peer listener {listen}")))?;
    Ok(Some(l))
}

/// Whether a request may be served to a peer.
///
/// # Errors
/// `RouteNotFound` for a path outside the subset, `MethodNotAllowed` for
/// anything but GET/HEAD on one inside it, `InvalidParameter` for a path
/// that does not decode.
pub fn guard(method: &Method, path: &str) -> Result<(), Error> {
    let segs = api::segments(path)?;
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let readable = matches!(
        segs.as_slice(),
        ["ping"]
            | ["images"]
            | ["images", _]
            | ["images", _, "file" | "icon"]
            | ["datasets"]
            | ["datasets", _]
            | ["datasets", _, _]
    );
    if !readable {
        return Err(Error::RouteNotFound {
            method: method.to_string(),
            path: path.to_string(),
        });
    }
    if method != Method::GET && method != Method::HEAD {
        return Err(Error::MethodNotAllowed {
            method: method.to_string(),
            path: path.to_string(),
            allow: "GET, HEAD",
        });
    }
    Ok(())
}

async fn handle(
    svc: Arc<Service>,
    req: Request<hyper::body::Incoming>,
) -> hyper::Response<api::Body> {
    if let Err(e) = guard(req.method(), req.uri().path()) {
        tracing::info!(method = %req.method(), path = %req.uri().path(), status = api::error::status(&e).as_u16(), "peer request refused");
        let mut resp = api::error::response(&e);
        api::stamp(&mut resp);
        return resp;
    }
    api::handle(svc, req, Peer::default()).await
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves peers until `stop` turns true, then lets in-flight requests
/// finish for up to `shutdown_grace_secs`.
pub async fn serve(
    listener: std::net::TcpListener,
    svc: Arc<Service>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "peer listener unusable");
            return;
        }
    };
    let addr = listener.local_addr().ok();
    tracing::info!(addr = ?addr, "serving the read-only IMGAPI subset to peers");
    let permits = Arc::new(Semaphore::new(svc.limits().max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore is never closed"),
            _ = stopped(&mut stop) => break,
        };
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "peer accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let limits = svc.limits();
        let header_timeout = limits.header_timeout_secs;
        // The same connection hygiene as the socket: a write deadline for
        // clients that stop reading, JSON for what hyper refuses itself.
        let (stream, returned) =
            HyperErrors::new(WriteDeadline::new(stream, limits.idle_timeout()));
        let svc = svc.clone();
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(header_timeout))
            .serve_connection(
                TokioIo::new(stream),
                service_fn(move |req| {
                    let svc = svc.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(svc, req).await) }
                }),
            );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(peer = %remote, error = %e, "peer connection ended with an error");
                if e.is_timeout() {
                    conn::timed_out(&returned, header_timeout).await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let grace = Duration::from_secs(svc.config().shutdown_grace_secs);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("peer downloads did not finish in the grace period; cutting them off");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_of_the_subset_pass() {
        let u = "/images/11111111-1111-4111-8111-111111111111";
        for (m, p) in [
            (Method::GET, "/ping"),
            (Method::HEAD, "/images"),
            (Method::GET, u),
            (Method::GET, &format!("{u}/file")),
            (Method::GET, &format!("{u}/icon")),
            (Method::GET, "/datasets"),
            (
                Method::GET,
                "/datasets/11111111-1111-4111-8111-111111111111",
            ),
            (
                Method::HEAD,
                "/datasets/11111111-1111-4111-8111-111111111111/x.zfs.gz",
            ),
        ] {
            assert!(guard(&m, p).is_ok(), "{m} {p}");
        }
        for (m, p, status) in [
            (Method::POST, "/images", 405),
            (Method::POST, u, 405),
            (Method::DELETE, u, 405),
            (Method::PUT, &format!("{u}/file") as &str, 405),
            (Method::PUT, &format!("{u}/icon") as &str, 405),
            (Method::DELETE, &format!("{u}/icon") as &str, 405),
            (Method::GET, &format!("{u}/jobs") as &str, 404),
            (Method::POST, "/datasets", 405),
            (Method::GET, "/tasks", 404),
            (Method::GET, "/sources", 404),
            (Method::POST, "/sources", 404),
            (Method::GET, "/pools/zones/images", 404),
            (Method::GET, "/images/x/file/extra", 404),
            (Method::GET, "/images/%2e%2e/file", 422),
        ] {
            let e = guard(&m, p).unwrap_err();
            assert_eq!(api::error::status(&e).as_u16(), status, "{m} {p}");
        }
    }
}

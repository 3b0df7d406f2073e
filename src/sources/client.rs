//! The HTTP(S) client of remote sources: one pooled hyper client per trust
//! mode, JSON fetches, and file downloads that survive a flaky network.
//!
//! Failures are sorted into two kinds. *Transient* ones (connection refused
//! or reset, a body cut short, a timeout, 5xx, 408, 429) are retried with
//! exponential backoff; a download resumes where it stopped with
//! `Range: bytes=N-`, so bytes already received are never fetched twice.
//! *Permanent* ones (404 and other 4xx, an untrusted certificate, a
//! response that is not what was asked for) end the attempt at once: trying
//! again would only get the same answer.
//!
//! HTTPS uses rustls with the system's CA roots (read once, on first use).
//! A source flagged `insecure` gets a second client whose verifier accepts
//! any certificate; handshake signatures are still checked, so it is "no
//! authentication", not "no TLS". Each use is logged as a warning.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_RANGE, RANGE, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;

type HyperClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Time to set up a TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time from sending a request to its response headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a response body may go without a byte before it counts as stalled.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest JSON document accepted from a source (a big image list).
pub const MAX_JSON_BYTES: usize = 64 << 20;

/// How hard to try: `attempts` in a row that make no progress, waiting
/// `backoff`, `2 * backoff`, ... (at most [`MAX_BACKOFF`]) in between.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub attempts: u32,
    pub backoff: Duration,
}

/// Manifests and lists: a down source should be passed over quickly.
pub const META: Policy = Policy {
    attempts: 3,
    backoff: Duration::from_millis(200),
};

/// Files: a transfer that keeps making progress is never given up; one that
/// fails six times in a row without a byte is.
pub const DOWNLOAD: Policy = Policy {
    attempts: 6,
    backoff: Duration::from_millis(250),
};

pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Policy {
    fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        (self.backoff * factor).min(MAX_BACKOFF)
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// 404 or 410.
    NotFound { url: String },
    /// Any other unwanted status.
    Status {
        url: String,
        status: u16,
        attempts: u32,
    },
    /// The connection failed, broke or stalled.
    Network {
        url: String,
        detail: String,
        attempts: u32,
    },
    /// The TLS handshake failed (untrusted certificate, ...).
    Tls { url: String, detail: String },
    /// The response is not what was asked for (bad JSON, a Content-Range
    /// that does not start where asked).
    Invalid { url: String, detail: String },
    /// The source serves a file other than the one its manifest describes.
    Mismatch { url: String, detail: String },
    /// A local file (a `file` source) could not be read.
    Local { path: String, detail: String },
    /// The consumer went away (the task was cancelled or failed).
    Stopped,
}

impl FetchError {
    /// Whether trying again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Network { .. } => true,
            FetchError::Status { status, .. } => transient_status(*status),
            _ => false,
        }
    }

    fn with_attempts(mut self, n: u32) -> FetchError {
        match &mut self {
            FetchError::Network { attempts, .. } | FetchError::Status { attempts, .. } => {
                *attempts = n
            }
            _ => {}
        }
        self
    }

    /// The source error for a failed fetch of `what` ("the list of
    /// images", "the file of image U"); `crate::error` says which code it
    /// answers with.
    pub fn into_error(self, what: &str) -> super::SourceError {
        super::SourceError::Fetch {
            what: what.to_string(),
            source: self,
        }
    }
}

fn tries(n: u32) -> String {
    if n > 1 {
        format!(" (after {n} attempts)")
    } else {
        String::new()
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::NotFound { url } => write!(f, "GET {url}: 404 Not Found"),
            FetchError::Status {
                url,
                status,
                attempts,
            } => {
                let reason = StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                write!(f, "GET {url}: HTTP {status} {reason}{}", tries(*attempts))
            }
            FetchError::Network {
                url,
                detail,
                attempts,
            } => write!(f, "GET {url}: {detail}{}", tries(*attempts)),
            FetchError::Tls { url, detail } => write!(
                f,
                "GET {url}: TLS handshake failed: {detail}; if this is a lab source with a self-signed certificate, add it with \"insecure\": true"
            ),
            FetchError::Invalid { url, detail } => write!(f, "GET {url}: {detail}"),
            FetchError::Mismatch { url, detail } => write!(f, "GET {url}: {detail}"),
            FetchError::Local { path, detail } => write!(f, "{path}: {detail}"),
            FetchError::Stopped => write!(f, "stopped"),
        }
    }
}

impl std::error::Error for FetchError {}

fn transient_status(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

/// Counters of one download, readable while it runs.
#[derive(Debug, Default)]
pub struct Transfer {
    /// Bytes received from the network, including any a server that
    /// ignored `Range` sent again and that were discarded.
    pub received: AtomicU64,
    /// Bytes handed on (the file as far as it has arrived).
    pub delivered: AtomicU64,
    /// Attempts that failed and were retried.
    pub retries: AtomicU32,
    /// Retries that continued a partial transfer with `Range`.
    pub resumes: AtomicU32,
}

/// Where a download goes: the channel its chunks are sent on, the counters
/// it keeps, and a flag polled between attempts (a cancelled task).
#[derive(Clone)]
pub struct Delivery {
    pub tx: mpsc::Sender<Bytes>,
    pub stats: Arc<Transfer>,
    pub stop: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl Delivery {
    /// Hands a chunk on and counts it as delivered.
    pub async fn send(&self, data: Bytes) -> Result<(), FetchError> {
        let n = data.len() as u64;
        self.tx.send(data).await.map_err(|_| FetchError::Stopped)?;
        self.stats.delivered.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Bytes handed on so far.
    pub fn delivered(&self) -> u64 {
        self.stats.delivered.load(Ordering::Relaxed)
    }
}

/// The shared HTTP client. Cheap to clone.
#[derive(Clone, Default)]
pub struct Http {
    inner: Arc<Clients>,
}

#[derive(Default)]
struct Clients {
    verified: OnceLock<HyperClient>,
    insecure: OnceLock<HyperClient>,
}

impl Http {
    pub fn new() -> Http {
        Http::default()
    }

    fn client(&self, insecure: bool) -> &HyperClient {
        let cell = if insecure {
            &self.inner.insecure
        } else {
            &self.inner.verified
        };
        cell.get_or_init(|| build_client(tls_config(insecure)))
    }

    /// One GET, following no redirects; the response with headers read.
    async fn send(
        &self,
        url: &str,
        insecure: bool,
        range_from: u64,
    ) -> Result<hyper::Response<hyper::body::Incoming>, FetchError> {
        let uri: Uri = url.parse().map_err(|e| FetchError::Invalid {
            url: url.to_string(),
            detail: format!("not a valid URL: {e}"),
        })?;
        if insecure && uri.scheme_str() == Some("https") {
            tracing::warn!(
                url,
                "TLS certificate not verified: source is marked insecure"
            );
        }
        let mut req = Request::get(uri)
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("imgstore/", env!("CARGO_PKG_VERSION"))),
            )
            // IMGAPI hides `channels` from clients that do not ask for v2.
            .header("accept-version", HeaderValue::from_static("~2"));
        if range_from > 0 {
            req = req.header(RANGE, format!("bytes={range_from}-"));
        }
        let req = req.body(Empty::new()).map_err(|e| FetchError::Invalid {
            url: url.to_string(),
            detail: e.to_string(),
        })?;
        match tokio::time::timeout(HEADER_TIMEOUT, self.client(insecure).request(req)).await {
            Err(_) => Err(FetchError::Network {
                url: url.to_string(),
                detail: format!("no response within {} s", HEADER_TIMEOUT.as_secs()),
                attempts: 1,
            }),
            Ok(Err(e)) => Err(classify(url, &e)),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// GETs a JSON document, retrying transient failures per `policy`.
    ///
    /// # Errors
    /// The last failure; `NotFound` for 404/410.
    pub async fn get_json(
        &self,
        url: &str,
        insecure: bool,
        policy: Policy,
    ) -> Result<serde_json::Value, FetchError> {
        let mut failures = 0;
        loop {
            match self.get_json_once(url, insecure).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && failures + 1 < policy.attempts => {
                    failures += 1;
                    tracing::debug!(url, error = %e, failures, "retrying");
                    tokio::time::sleep(policy.delay(failures)).await;
                }
                Err(e) => return Err(e.with_attempts(failures + 1)),
            }
        }
    }

    async fn get_json_once(
        &self,
        url: &str,
        insecure: bool,
    ) -> Result<serde_json::Value, FetchError> {
        let resp = self.send(url, insecure, 0).await?;
        check_status(url, resp.status())?;
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        loop {
            let frame = match tokio::time::timeout(IDLE_TIMEOUT, body.frame()).await {
                Err(_) => return Err(stalled(url)),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(classify(url, &e)),
                Ok(Some(Ok(f))) => f,
            };
            if let Ok(d) = frame.into_data() {
                if buf.len() + d.len() > MAX_JSON_BYTES {
                    return Err(FetchError::Invalid {
                        url: url.to_string(),
                        detail: format!("response is larger than {MAX_JSON_BYTES} bytes"),
                    });
                }
                buf.extend_from_slice(&d);
            }
        }
        serde_json::from_slice(&buf).map_err(|e| FetchError::Invalid {
            url: url.to_string(),
            detail: format!("response is not JSON: {e}"),
        })
    }

    /// Downloads `url` into `to`, retrying per `policy` and resuming with
    /// `Range` after a failure. `size`, when known, is the exact length the
    /// file must have: more bytes, or a server announcing another length,
    /// is a `Mismatch` and ends the download at once.
    ///
    /// # Errors
    /// The last failure, with the number of attempts; `Stopped` when the
    /// receiving side hung up or the task was stopped.
    pub async fn download(
        &self,
        url: &str,
        insecure: bool,
        size: Option<u64>,
        policy: Policy,
        to: &Delivery,
    ) -> Result<(), FetchError> {
        let stats = &to.stats;
        let mut failures = 0;
        loop {
            if (to.stop)() {
                return Err(FetchError::Stopped);
            }
            let before = to.delivered();
            match self.download_once(url, insecure, size, to).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() => {
                    let offset = to.delivered();
                    if offset > before {
                        // Progress was made: the source works, the network hiccuped.
                        failures = 0;
                    }
                    failures += 1;
                    if failures >= policy.attempts {
                        return Err(e.with_attempts(failures));
                    }
                    let delay = policy.delay(failures);
                    tracing::warn!(url, error = %e, offset, retry_in_ms = delay.as_millis() as u64, "download failed; retrying");
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                    if offset > 0 {
                        stats.resumes.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn download_once(
        &self,
        url: &str,
        insecure: bool,
        size: Option<u64>,
        to: &Delivery,
    ) -> Result<(), FetchError> {
        let stats = &to.stats;
        let offset = to.delivered();
        if size == Some(offset) && offset > 0 {
            return Ok(());
        }
        let resp = self.send(url, insecure, offset).await?;
        let status = resp.status();
        check_status(url, status)?;
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        // Bytes at the start of this response that we already have.
        let mut skip = 0u64;
        if status == StatusCode::PARTIAL_CONTENT {
            let cr = header(CONTENT_RANGE).unwrap_or_default();
            let (start, total) = parse_content_range(cr).ok_or_else(|| FetchError::Invalid {
                url: url.to_string(),
                detail: format!("206 with an unusable Content-Range {cr:?}"),
            })?;
            if start != offset {
                return Err(FetchError::Invalid {
                    url: url.to_string(),
                    detail: format!("asked for bytes from {offset}, got a range from {start}"),
                });
            }
            check_total(url, size, total)?;
        } else {
            // A full response: to a plain GET, or from a server that ignores Range.
            skip = offset;
            let len = header(CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
            check_total(url, size, len)?;
        }
        let mut body = resp.into_body();
        loop {
            let frame = match tokio::time::timeout(IDLE_TIMEOUT, body.frame()).await {
                Err(_) => return Err(stalled(url)),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(classify(url, &e)),
                Ok(Some(Ok(f))) => f,
            };
            let Ok(mut data) = frame.into_data() else {
                continue;
            };
            stats
                .received
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            if skip > 0 {
                let n = skip.min(data.len() as u64);
                skip -= n;
                data = data.slice(n as usize..);
                if data.is_empty() {
                    continue;
                }
            }
            let have = to.delivered();
            if let Some(size) = size.filter(|&s| have + data.len() as u64 > s) {
                return Err(FetchError::Mismatch {
                    url: url.to_string(),
                    detail: format!(
                        "the source sends more than the {size} bytes its manifest declares"
                    ),
                });
            }
            to.send(data).await?;
        }
        let have = to.delivered();
        match size {
            Some(size) if have < size => Err(FetchError::Mismatch {
                url: url.to_string(),
                detail: format!(
                    "the response ended after {have} bytes, but the manifest declares {size}"
                ),
            }),
            _ => Ok(()),
        }
    }
}

fn stalled(url: &str) -> FetchError {
    FetchError::Network {
        url: url.to_string(),
        detail: format!("no data for {} s", IDLE_TIMEOUT.as_secs()),
        attempts: 1,
    }
}

fn check_status(url: &str, status: StatusCode) -> Result<(), FetchError> {
    match status.as_u16() {
        200 | 206 => Ok(()),
        404 | 410 => Err(FetchError::NotFound {
            url: url.to_string(),
        }),
        s => Err(FetchError::Status {
            url: url.to_string(),
            status: s,
            attempts: 1,
        }),
    }
}

/// A server announcing a file length other than the manifest's serves
/// another file; there is no point reading it.
fn check_total(url: &str, want: Option<u64>, got: Option<u64>) -> Result<(), FetchError> {
    match (want, got) {
        (Some(w), Some(g)) if w != g => Err(FetchError::Mismatch {
            url: url.to_string(),
            detail: format!("the source serves {g} bytes, but the manifest declares {w}"),
        }),
        _ => Ok(()),
    }
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`): `(START, TOTAL)`.
pub fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start, total))
}

/// Sorts a hyper/connector error into TLS, network (transient) or invalid.
fn classify(url: &str, e: &(dyn std::error::Error + 'static)) -> FetchError {
    if let Some(tls) = find_rustls(e) {
        return FetchError::Tls {
            url: url.to_string(),
            detail: tls.to_string(),
        };
    }
    FetchError::Network {
        url: url.to_string(),
        detail: chain(e),
        attempts: 1,
    }
}

/// Walks an error's causes, looking inside `io::Error`s too (their
/// `source()` skips the wrapped error itself).
fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    let mut cur = Some(e);
    std::iter::from_fn(move || {
        let this = cur?;
        cur = match this
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => this.source(),
        };
        Some(this)
    })
}

fn find_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    causes(e).find_map(|c| c.downcast_ref::<rustls::Error>())
}

/// "a: b: c" from an error and its causes, without repeats.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in causes(e) {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

fn build_client(tls: rustls::ClientConfig) -> HyperClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS config: system CA roots, or (insecure) no certificate check.
fn tls_config(insecure: bool) -> rustls::ClientConfig {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions");
    if insecure {
        return builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
            .with_no_client_auth();
    }
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "reading the system's CA certificates");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!("no system CA certificates found: HTTPS sources will fail certificate verification (install ca-certificates)");
    } else {
        tracing::debug!(added, ignored, "loaded the system's CA certificates");
    }
    builder.with_root_certificates(roots).with_no_client_auth()
}

/// Accepts any server certificate (the `insecure` source flag), but still
/// verifies handshake signatures with the certificate it was given.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        assert_eq!(
            parse_content_range("bytes 100-199/1000"),
            Some((100, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, None)));
        assert_eq!(parse_content_range("bytes */1000"), None);
        assert_eq!(parse_content_range("bytes 9-3/10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }

    #[test]
    fn transient_and_permanent_failures() {
        let st = |status| FetchError::Status {
            url: "u".into(),
            status,
            attempts: 1,
        };
        for s in [500, 502, 503, 504, 408, 429] {
            assert!(st(s).is_transient(), "{s}");
        }
        for s in [400, 401, 403, 416] {
            assert!(!st(s).is_transient(), "{s}");
        }
        assert!(!FetchError::NotFound { url: "u".into() }.is_transient());
        assert!(!FetchError::Tls {
            url: "u".into(),
            detail: "d".into()
        }
        .is_transient());
        let net = FetchError::Network {
            url: "u".into(),
            detail: "reset".into(),
            attempts: 1,
        };
        assert!(net.is_transient());
        // The codes these answer with are pinned in `crate::error`'s tests.
        let e = st(403).with_attempts(1).into_error("the file of image X");
        assert!(e.to_string().contains("GET u: HTTP 403 Forbidden"), "{e}");
        let e = st(503).with_attempts(6).into_error("f");
        assert!(e.to_string().contains("after 6 attempts"), "{e}");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = Policy {
            attempts: 10,
            backoff: Duration::from_millis(250),
        };
        assert_eq!(p.delay(1), Duration::from_millis(250));
        assert_eq!(p.delay(2), Duration::from_millis(500));
        assert_eq!(p.delay(3), Duration::from_secs(1));
        assert_eq!(p.delay(12), MAX_BACKOFF);
    }

    #[test]
    fn tls_errors_are_found_inside_io_errors() {
        let inner = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let outer = std::io::Error::other(inner);
        match classify("https://x", &outer) {
            FetchError::Tls { detail, .. } => assert!(detail.contains("UnknownIssuer"), "{detail}"),
            other => panic!("{other:?}"),
        }
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(classify("http://x", &reset).is_transient());
    }

    #[test]
    fn both_tls_configs_build() {
        tls_config(false);
        tls_config(true);
    }
}

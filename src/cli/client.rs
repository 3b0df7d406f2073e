//! A small blocking HTTP/1.1 client over the daemon's Unix socket.
//!
//! One request per connection (`Connection: close`): the CLI makes a handful
//! of requests, so keep-alive would buy nothing and cost state. Bodies stream
//! both ways, so a multi-GiB upload or download never sits in memory.
//! Uploads send `Expect: 100-continue` so that a request the daemon refuses
//! up front (unknown image, bad parameter) is answered before the first byte
//! of the file is sent.
//!
//! Every error names the socket, because "which daemon?" is the first
//! question when a command fails.

use crate::codec::CHUNK;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a reply may take when nothing says otherwise. Deleting a large
/// dataset or committing a large upload takes a while, but a daemon silent
/// for this long is stuck.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(600);

/// How long an upload waits for `100 Continue` before sending the body
/// anyway (RFC 9110 §10.1.1 allows it).
const CONTINUE_TIMEOUT: Duration = Duration::from_secs(10);

/// An error answer from the daemon: IMGAPI's `{code, message, errors?}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// Per-field problems: `{field, code, message}`.
    pub errors: Vec<Value>,
    pub request_id: Option<String>,
}

impl ApiError {
    /// The daemon answers an unknown route with `ResourceNotFound` and the
    /// message "route METHOD PATH does not exist" (`Error::RouteNotFound`).
    /// Telling it apart from "no such image" matters: the first means "this
    /// daemon does not have the feature", the second "exit 3".
    pub fn is_unknown_route(&self) -> bool {
        self.status == 404
            && self.code == "ResourceNotFound"
            && self.message.starts_with("route ")
            && self.message.ends_with(" does not exist")
    }
}

#[derive(Debug)]
pub enum Error {
    /// The socket could not be connected to: no daemon, wrong path, no access.
    Connect(PathBuf, std::io::Error),
    /// The connection broke, or the daemon took too long.
    Io(PathBuf, std::io::Error),
    /// The daemon's answer is not HTTP/JSON as expected.
    Protocol(PathBuf, String),
    /// The daemon answered with an error.
    Api(ApiError),
    /// The caller's progress callback asked to stop (Ctrl-C).
    Aborted,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Connect(sock, e) => {
                let hint = match e.kind() {
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                        "is the daemon running? Start it with \"imgstore serve\", or name its \
                         socket with --socket or IMGSTORE_SOCKET"
                    }
                    std::io::ErrorKind::PermissionDenied => {
                        "the socket's mode and group (socket_mode, socket_group in the config) \
                         decide who may connect; try as root"
                    }
                    _ => "check --socket / IMGSTORE_SOCKET",
                };
                write!(
                    f,
                    "cannot connect to the imgstore daemon at {}: {e} ({hint})",
                    sock.display()
                )
            }
            Error::Io(sock, e) => write!(
                f,
                "talking to the imgstore daemon at {}: {e}",
                sock.display()
            ),
            Error::Protocol(sock, m) => write!(
                f,
                "unexpected answer from the imgstore daemon at {}: {m}",
                sock.display()
            ),
            Error::Api(e) => write!(f, "{}: {}", e.code, e.message),
            Error::Aborted => write!(f, "interrupted"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A response whose body was read whole.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A request body.
pub enum Body<'a> {
    Empty,
    Json(&'a Value),
    /// `len` bytes from `reader`. `progress` is called with the bytes sent so
    /// far after each chunk; returning `false` aborts the upload.
    Stream {
        reader: &'a mut dyn Read,
        len: u64,
        progress: &'a mut dyn FnMut(u64) -> bool,
    },
}

/// Everything but RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path segment (a uuid, a pool, a task id).
pub fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// Builds `path?k=v&...` with the values form-encoded.
pub fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return path.to_string();
    }
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    format!("{path}?{}", q.finish())
}

#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn io(&self) -> impl Fn(std::io::Error) -> Error + '_ {
        move |e| Error::Io(self.socket.clone(), e)
    }

    fn connect(&self, read_timeout: Option<Duration>) -> Result<UnixStream> {
        let s = UnixStream::connect(&self.socket)
            .map_err(|e| Error::Connect(self.socket.clone(), e))?;
        s.set_read_timeout(read_timeout).map_err(self.io())?;
        Ok(s)
    }

    fn head(&self, method: &str, path: &str, extra: &[(&str, String)]) -> String {
        let mut h = format!(
            "{method} {path} HTTP/1.1\r\nHost: imgstore\r\nConnection: close\r\n\
             User-Agent: imgstore-cli/{}\r\nAccept: application/json\r\n",
            env!("CARGO_PKG_VERSION")
        );
        for (k, v) in extra {
            h.push_str(k);
            h.push_str(": ");
            h.push_str(v);
            h.push_str("\r\n");
        }
        h.push_str("\r\n");
        h
    }

    /// Sends a request and reads the whole answer, whatever its status.
    ///
    /// # Errors
    /// Connecting, writing or reading failed, or the answer is not HTTP.
    /// An upload whose progress callback returned `false` gives `Aborted`.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Body<'_>,
        read_timeout: Option<Duration>,
    ) -> Result<Response> {
        let mut stream = self.connect(read_timeout)?;
        let mut reader = BufReader::new(stream.try_clone().map_err(self.io())?);
        match body {
            Body::Empty => {
                let extra = if matches!(method, "POST" | "PUT") {
                    vec![("Content-Length", "0".to_string())]
                } else {
                    vec![]
                };
                stream
                    .write_all(self.head(method, path, &extra).as_bytes())
                    .map_err(self.io())?;
            }
            Body::Json(v) => {
                let bytes = serde_json::to_vec(v).expect("a Value always serialises");
                let extra = [
                    ("Content-Type", "application/json".to_string()),
                    ("Content-Length", bytes.len().to_string()),
                ];
                let mut msg = self.head(method, path, &extra).into_bytes();
                msg.extend_from_slice(&bytes);
                if let Err(e) = stream.write_all(&msg) {
                    return self.answer_after_write_error(&mut reader, e);
                }
            }
            Body::Stream {
                reader: src,
                len,
                progress,
            } => {
                let extra = [
                    ("Content-Type", "application/octet-stream".to_string()),
                    ("Content-Length", len.to_string()),
                    ("Expect", "100-continue".to_string()),
                ];
                stream
                    .write_all(self.head(method, path, &extra).as_bytes())
                    .map_err(self.io())?;
                // An early final answer means the daemon refused the request
                // before reading the body: return it, send nothing.
                stream
                    .set_read_timeout(Some(CONTINUE_TIMEOUT))
                    .map_err(self.io())?;
                match read_head(&mut reader) {
                    Ok((100, _)) => {}
                    Ok((status, headers)) => {
                        stream.set_read_timeout(read_timeout).map_err(self.io())?;
                        return self.finish_read(&mut reader, status, headers);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(self.io()(e)),
                }
                stream.set_read_timeout(read_timeout).map_err(self.io())?;
                let mut buf = vec![0u8; CHUNK];
                let mut sent = 0u64;
                while sent < len {
                    let want = (len - sent).min(CHUNK as u64) as usize;
                    let n = src.read(&mut buf[..want]).map_err(|e| {
                        Error::Protocol(self.socket.clone(), format!("reading the upload: {e}"))
                    })?;
                    if n == 0 {
                        return Err(Error::Protocol(
                            self.socket.clone(),
                            format!("the file ended after {sent} of {len} bytes"),
                        ));
                    }
                    if let Err(e) = stream.write_all(&buf[..n]) {
                        return self.answer_after_write_error(&mut reader, e);
                    }
                    sent += n as u64;
                    if !progress(sent) {
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                        return Err(Error::Aborted);
                    }
                }
            }
        }
        let (status, headers) = read_final_head(&mut reader).map_err(self.io())?;
        self.finish_read(&mut reader, status, headers)
    }

    /// The daemon may answer (413, 404, ...) and close while the body is
    /// still being sent; that answer explains the failure better than EPIPE.
    fn answer_after_write_error(
        &self,
        reader: &mut BufReader<UnixStream>,
        e: std::io::Error,
    ) -> Result<Response> {
        match read_final_head(reader) {
            Ok((status, headers)) => self.finish_read(reader, status, headers),
            Err(_) => Err(self.io()(e)),
        }
    }

    fn finish_read(
        &self,
        reader: &mut BufReader<UnixStream>,
        status: u16,
        headers: Vec<(String, String)>,
    ) -> Result<Response> {
        let mut body = Vec::new();
        read_body(reader, &headers, status, &mut body).map_err(self.io())?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Sends a request and decodes a 2xx JSON answer (`Null` for an empty
    /// body, such as a 204).
    ///
    /// # Errors
    /// As [`Client::send`], plus `Api` for a non-2xx answer.
    pub fn call(&self, method: &str, path: &str, body: Body<'_>) -> Result<(u16, Value)> {
        self.call_with_timeout(method, path, body, Some(DEFAULT_READ_TIMEOUT))
    }

    pub fn call_with_timeout(
        &self,
        method: &str,
        path: &str,
        body: Body<'_>,
        read_timeout: Option<Duration>,
    ) -> Result<(u16, Value)> {
        let resp = self.send(method, path, body, read_timeout)?;
        self.decode(resp)
    }

    fn decode(&self, resp: Response) -> Result<(u16, Value)> {
        let value = if resp.body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            match serde_json::from_slice::<Value>(&resp.body) {
                Ok(v) => v,
                Err(e) => {
                    return Err(Error::Protocol(
                        self.socket.clone(),
                        format!(
                            "status {} with a body that is not JSON ({e}): {:?}",
                            resp.status,
                            String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)])
                        ),
                    ))
                }
            }
        };
        if (200..300).contains(&resp.status) {
            return Ok((resp.status, value));
        }
        let s = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
        Err(Error::Api(ApiError {
            status: resp.status,
            code: s("code").unwrap_or_else(|| format!("HTTP{}", resp.status)),
            message: s("message").unwrap_or_else(|| format!("status {}", resp.status)),
            errors: value
                .get("errors")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            request_id: resp.header("x-request-id").map(str::to_string),
        }))
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.call("GET", path, Body::Empty).map(|(_, v)| v)
    }

    /// Streams a 2xx body into `out`; `progress(done, total)` is called per
    /// chunk and may return `false` to stop. Returns the response headers.
    ///
    /// # Errors
    /// As [`Client::call`]; `Aborted` when `progress` stopped it.
    pub fn download(
        &self,
        path: &str,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64, Option<u64>) -> bool,
    ) -> Result<Vec<(String, String)>> {
        let mut stream = self.connect(Some(DEFAULT_READ_TIMEOUT))?;
        stream
            .write_all(self.head("GET", path, &[]).as_bytes())
            .map_err(self.io())?;
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_final_head(&mut reader).map_err(self.io())?;
        if !(200..300).contains(&status) {
            let resp = self.finish_read(&mut reader, status, headers)?;
            return self.decode(resp).map(|_| Vec::new());
        }
        let total = header(&headers, "content-length").and_then(|v| v.parse().ok());
        let mut sink = |chunk: &[u8], done: u64| -> std::io::Result<bool> {
            out.write_all(chunk)?;
            Ok(progress(done, total))
        };
        match read_body_to(&mut reader, &headers, status, &mut sink) {
            Ok(true) => Ok(headers),
            Ok(false) => Err(Error::Aborted),
            Err(e) => Err(self.io()(e)),
        }
    }
}

/// Reads a status line and headers.
fn read_head(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection without answering",
        ));
    }
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an HTTP status line: {:?}", line.trim_end()),
            )
        })?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the answer's headers were cut off",
            ));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok((status, headers))
}

/// Reads heads until a final (non-1xx) one.
fn read_final_head(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<(String, String)>)> {
    loop {
        let (status, headers) = read_head(r)?;
        if !(100..200).contains(&status) {
            return Ok((status, headers));
        }
    }
}

fn read_body(
    r: &mut impl BufRead,
    headers: &[(String, String)],
    status: u16,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut sink = |chunk: &[u8], _: u64| -> std::io::Result<bool> {
        out.extend_from_slice(chunk);
        Ok(true)
    };
    read_body_to(r, headers, status, &mut sink).map(|_| ())
}

/// Reads a body framed by Content-Length, chunked encoding or the end of
/// the connection, handing each piece to `sink` with the running total.
/// Returns `false` when `sink` asked to stop.
fn read_body_to(
    r: &mut impl BufRead,
    headers: &[(String, String)],
    status: u16,
    sink: &mut dyn FnMut(&[u8], u64) -> std::io::Result<bool>,
) -> std::io::Result<bool> {
    if status == 204 || status == 304 {
        return Ok(true);
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    let chunked = header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            let size_hex = line.trim().split(';').next().unwrap_or("");
            let mut left = u64::from_str_radix(size_hex, 16).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("bad chunk size {size_hex:?}"),
                )
            })?;
            if left == 0 {
                // Trailers, then the empty line.
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        return Ok(true);
                    }
                }
            }
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                r.read_exact(&mut buf[..n])?;
                left -= n as u64;
                done += n as u64;
                if !sink(&buf[..n], done)? {
                    return Ok(false);
                }
            }
            line.clear();
            r.read_line(&mut line)?;
        }
    }
    if let Some(len) = header(headers, "content-length").and_then(|v| v.parse::<u64>().ok()) {
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            let got = r.read(&mut buf[..n])?;
            if got == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the answer was cut off after {done} of {len} bytes"),
                ));
            }
            left -= got as u64;
            done += got as u64;
            if !sink(&buf[..got], done)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    loop {
        let got = r.read(&mut buf)?;
        if got == 0 {
            return Ok(true);
        }
        done += got as u64;
        if !sink(&buf[..got], done)? {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> (u16, Vec<u8>) {
        let mut r = std::io::Cursor::new(raw.to_vec());
        let (status, headers) = read_final_head(&mut r).unwrap();
        let mut body = Vec::new();
        read_body(&mut r, &headers, status, &mut body).unwrap();
        (status, body)
    }

    #[test]
    fn content_length_chunked_and_close_framing() {
        let (s, b) = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA");
        assert_eq!((s, b.as_slice()), (200, &b"hello"[..]));
        let (s, b) = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
        );
        assert_eq!((s, b.as_slice()), (200, &b"hello world"[..]));
        let (s, b) = parse(b"HTTP/1.1 500 Oops\r\n\r\nuntil close");
        assert_eq!((s, b.as_slice()), (500, &b"until close"[..]));
        let (s, b) = parse(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!((s, b.len()), (204, 0));
    }

    /// The cases the packages verbs' own client was tested with, before they
    /// moved to this one.
    #[test]
    fn responses_are_split_and_dechunked() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]";
        assert_eq!(parse(raw), (200, b"[]".to_vec()));
        let raw = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n3\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n";
        assert_eq!(parse(raw), (404, b"{\"a\":1}".to_vec()));
        let mut r = std::io::Cursor::new(b"HTTP/1.1 200 OK\r\n".to_vec());
        assert!(read_final_head(&mut r).is_err());
    }

    #[test]
    fn interim_answers_are_skipped() {
        let (s, b) = parse(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}",
        );
        assert_eq!((s, b.as_slice()), (201, &b"{}"[..]));
    }

    #[test]
    fn cut_off_body_is_an_error() {
        let mut r =
            std::io::Cursor::new(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec());
        let (status, headers) = read_final_head(&mut r).unwrap();
        let mut body = Vec::new();
        let e = read_body(&mut r, &headers, status, &mut body).unwrap_err();
        assert!(e.to_string().contains("3 of 10"), "{e}");
    }

    #[test]
    fn unknown_route_is_told_apart_from_a_missing_image() {
        let mut e = ApiError {
            status: 404,
            code: "ResourceNotFound".into(),
            message: "route GET /pools/zones/images does not exist".into(),
            errors: vec![],
            request_id: None,
        };
        assert!(e.is_unknown_route());
        e.message = "image 0f1e2d3c-0000-4000-8000-000000000000 not found".into();
        assert!(!e.is_unknown_route());
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            with_query("/images/x", &[("action", "export"), ("path", "/tmp/a b&c")]),
            "/images/x?action=export&path=%2Ftmp%2Fa+b%26c"
        );
        assert_eq!(seg("zones/x y"), "zones%2Fx%20y");
        assert_eq!(seg("0f1e-2d_3c.4~"), "0f1e-2d_3c.4~");
    }

    #[test]
    fn connect_error_names_the_socket_and_the_fix() {
        let c = Client::new("/nonexistent/imgstore.sock");
        let e = c.get("/ping").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/imgstore.sock"), "{e}");
        assert!(e.contains("imgstore serve"), "{e}");
    }
}

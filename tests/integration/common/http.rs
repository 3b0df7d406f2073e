//! Raw HTTP/1.1 over the daemon's Unix socket: one request per connection,
//! written byte by byte as the test says (no client crate), and the answer
//! read whole into a [`Resp`]. Also the test data that goes into bodies:
//! [`pattern`] bytes and their [`sha1_hex`].

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the status and, for errors, the IMGAPI code; returns the JSON.
    pub fn expect(&self, status: u16, code: Option<&str>) -> Value {
        let text = String::from_utf8_lossy(&self.body);
        assert_eq!(self.status, status, "unexpected status; body: {text}");
        let v = if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        };
        if let Some(code) = code {
            assert_eq!(v["code"], code, "unexpected code; body: {text}");
            assert!(
                v["message"].as_str().is_some_and(|m| !m.is_empty()),
                "error without a message: {text}"
            );
        }
        v
    }
}

/// Reads one HTTP response from `r`.
pub fn read_response(r: &mut impl BufRead) -> std::io::Result<Resp> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let mut body = Vec::new();
    match len {
        Some(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        }
        None if status == 204 || status == 304 => {}
        None => {
            r.read_to_end(&mut body)?;
        }
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// Sends one request on a fresh connection and reads the answer.
pub fn request(
    sock: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    try_request(sock, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", sock.display()))
}

pub fn try_request(
    sock: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: imgstore\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    // A server may answer (413, 404, ...) and close before reading the whole
    // body; the answer is what the test wants, so a failed write is not fatal.
    let _ = s.write_all(body);
    read_response(&mut BufReader::new(s))
}

/// Streams a body of `len` bytes produced by `fill` (called with a buffer to
/// fill and the offset), without holding it in memory.
pub fn upload_stream(
    sock: &Path,
    path: &str,
    len: u64,
    mut fill: impl FnMut(&mut [u8], u64),
) -> Resp {
    let mut s = UnixStream::connect(sock).expect("connect");
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: imgstore\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        fill(&mut buf[..n], off);
        s.write_all(&buf[..n]).unwrap();
        off += n as u64;
    }
    read_response(&mut BufReader::new(s)).unwrap()
}

/// Deterministic pseudo-random bytes: fast, incompressible enough, and the
/// same for a given offset, so uploads and downloads can be compared without
/// keeping the data.
pub fn pattern(buf: &mut [u8], off: u64) {
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let mut x = (off / 8 + i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 29;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

pub fn sha1_hex(data: &[u8]) -> String {
    use sha1::Digest;
    hex::encode(sha1::Sha1::digest(data))
}

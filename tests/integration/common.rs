//! Test harness: runs the real `imgstore` binary on a temp socket and data
//! dir, and talks raw HTTP/1.1 to it over the Unix socket, so tests control
//! every byte (truncated bodies, bad headers) and depend on no client crate.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_imgstore");

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

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub data: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
    /// Run the daemon as this uid and gid (root tests only).
    pub run_as: Option<(u32, u32)>,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Daemon {
        let mut d = Daemon::new(extra);
        d.spawn();
        d
    }

    /// Starts a daemon whose config file holds `toml` from its first start.
    pub fn start_config(toml: &str) -> Daemon {
        let mut d = Daemon::new(&[]);
        std::fs::write(d.config_path(), toml).unwrap();
        d.spawn();
        d
    }

    /// Starts a daemon on the given config file text.
    pub fn start_configured(config: &str) -> Daemon {
        let mut d = Daemon::new(&[]);
        std::fs::write(d.config_path(), config).unwrap();
        d.spawn();
        d
    }

    /// A daemon not yet started (write its config, then `spawn`).
    pub fn new(extra: &[&str]) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("imgstore-test")
            .tempdir()
            .unwrap();
        let sock = dir.path().join("d.sock");
        let data = dir.path().join("data");
        let log = dir.path().join("daemon.log");
        Daemon {
            dir,
            sock,
            data,
            log,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            run_as: None,
        }
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--socket")
            .arg(&self.sock)
            .args(&self.extra);
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            c.uid(uid).gid(gid);
        }
        c
    }

    /// The config file the daemon reads (written empty on first start, so
    /// the daemon runs on defaults unless a test writes one).
    pub fn config_path(&self) -> PathBuf {
        let p = self.dir.path().join("imgstore.toml");
        if !p.exists() {
            std::fs::write(&p, "").unwrap();
        }
        p
    }

    /// Starts the daemon (again) and waits until it answers `/ping`.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning imgstore");
        self.child = Some(child);
        self.wait_ready();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = try_request(&self.sock, "GET", "/ping", &[], b"") {
                if r.status == 200 && r.json()["pid"] == self.pid() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "daemon exited before it was ready ({status}); log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "daemon not ready after 30 s; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig).unwrap();
    }

    /// SIGTERM, then waits for the exit and returns its status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        wait_timeout(&mut child, Duration::from_secs(60))
    }

    /// Waits for a daemon that was already signalled to exit.
    pub fn stop_after_signal(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        wait_timeout(&mut child, Duration::from_secs(60))
    }

    /// SIGKILL: a crash, as far as the store can tell.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("daemon running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn get(&self, path: &str) -> Resp {
        request(&self.sock, "GET", path, &[], b"")
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Resp {
        request(
            &self.sock,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    pub fn post(&self, path: &str) -> Resp {
        request(&self.sock, "POST", path, &[], b"")
    }

    pub fn put(&self, path: &str, body: &[u8]) -> Resp {
        request(
            &self.sock,
            "PUT",
            path,
            &[("Content-Type", "application/octet-stream")],
            body,
        )
    }

    pub fn delete(&self, path: &str) -> Resp {
        request(&self.sock, "DELETE", path, &[], b"")
    }

    /// Creates an image from a minimal manifest plus `extra` fields and
    /// returns its uuid.
    pub fn create(&self, name: &str, extra: Value) -> String {
        let mut m = serde_json::json!({"name": name, "version": "1.0.0", "type": "zone-dataset", "os": "smartos"});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        let v = self.post_json("/images", &m).expect(200, None);
        v["uuid"].as_str().unwrap().to_string()
    }

    /// Creates, uploads `data` and activates; returns the uuid.
    pub fn create_active(&self, name: &str, data: &[u8], extra: Value) -> String {
        let uuid = self.create(name, extra);
        self.put(
            &format!(
                "/images/{uuid}/file?compression=none&sha1={}",
                sha1_hex(data)
            ),
            data,
        )
        .expect(200, None);
        self.post(&format!("/images/{uuid}?action=activate"))
            .expect(200, None);
        uuid
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            wait_timeout(&mut child, Duration::from_secs(30));
        }
    }
}

pub fn wait_timeout(child: &mut Child, t: Duration) -> ExitStatus {
    let deadline = Instant::now() + t;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {t:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Resident set size of a process, in KiB (Linux /proc).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Peak resident set size (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

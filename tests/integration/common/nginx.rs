//! Test servers on loopback: a real nginx serving a static directory (with
//! its own prefix, config and access log in a temp dir, never the system
//! service), and a small fault-injecting HTTP proxy that cuts chosen
//! responses short.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const NGINX: &str = "/usr/sbin/nginx";

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, what: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} not listening on {port} after 20 s:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[derive(Default)]
pub struct NginxOpts {
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Extra directives in the `server` block (e.g. `limit_rate 8m;`).
    pub server_extra: String,
}

/// nginx serving `root` on 127.0.0.1. `/datasets` (no slash) returns
/// `root/datasets/index.json`, so `http://127.0.0.1:PORT/datasets` is a
/// DSAPI base URL with files at `/datasets/UUID/FILE`.
pub struct Nginx {
    pub port: u16,
    pub prefix: tempfile::TempDir,
    pub access_log: PathBuf,
    scheme: &'static str,
    child: Option<Child>,
}

impl Nginx {
    pub fn start(root: &Path, opts: NginxOpts) -> Nginx {
        let prefix = tempfile::Builder::new()
            .prefix("imgstore-nginx")
            .tempdir()
            .unwrap();
        let p = prefix.path();
        for d in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(p.join("tmp").join(d)).unwrap();
        }
        let port = free_port();
        let access_log = p.join("access.log");
        let (listen, tls) = match &opts.tls {
            Some((cert, key)) => (
                format!("listen 127.0.0.1:{port} ssl;"),
                format!(
                    "ssl_certificate {};\n    ssl_certificate_key {};",
                    cert.display(),
                    key.display()
                ),
            ),
            None => (format!("listen 127.0.0.1:{port};"), String::new()),
        };
        let conf = format!(
            r#"worker_processes 1;
user root;
error_log {p}/error.log info;
pid {p}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  log_format imgstore '$request_method $request_uri $status $body_bytes_sent "$http_range"';
  access_log {log} imgstore;
  client_body_temp_path {p}/tmp/body;
  proxy_temp_path {p}/tmp/proxy;
  fastcgi_temp_path {p}/tmp/fastcgi;
  uwsgi_temp_path {p}/tmp/uwsgi;
  scgi_temp_path {p}/tmp/scgi;
  types {{ application/json json; }}
  default_type application/octet-stream;
  sendfile on;
  server {{
    {listen}
    {tls}
    root {root};
    location = /datasets {{ try_files /datasets/index.json =404; }}
    {extra}
  }}
}}
"#,
            p = p.display(),
            log = access_log.display(),
            root = root.display(),
            extra = opts.server_extra,
        );
        let conf_path = p.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(p)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(p.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {NGINX}: {e} (apt-get install nginx-light)"));
        let n = Nginx {
            port,
            access_log,
            scheme: if opts.tls.is_some() { "https" } else { "http" },
            prefix,
            child: Some(child),
        };
        wait_listening(port, "nginx", || n.error_log());
        n
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.port)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("error.log")).unwrap_or_default()
    }

    /// Access log lines: `METHOD URI STATUS BYTES "RANGE"`.
    pub fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Logged requests whose URI contains `needle`.
    pub fn requests(&self, needle: &str) -> Vec<String> {
        self.log_lines()
            .into_iter()
            .filter(|l| l.split(' ').nth(1).is_some_and(|u| u.contains(needle)))
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGQUIT: graceful stop, which also flushes the access log.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGQUIT,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost, made with openssl.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// An HTTP/1.1 proxy in front of `127.0.0.1:upstream`. Each connection
/// carries one request (the proxy forces `Connection: close`). Requests
/// whose path contains `needle` are first answered `503` (the first
/// `fail` of them, without asking upstream), then the next `times`
/// responses are cut after `after` bytes (headers included): the
/// connection is closed in the middle of the body, as a flaky network or a
/// crashing server would.
pub struct CutProxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// Responses cut (or failed) so far.
    pub cuts: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Rule {
    needle: String,
    fail: usize,
    after: u64,
    times: usize,
}

enum Action {
    Pass,
    Fail,
    Cut(u64),
}

impl CutProxy {
    pub fn start(upstream: u16, needle: &str, after: u64, times: usize) -> CutProxy {
        CutProxy::with(upstream, needle, 0, after, times)
    }

    /// Answers the first `fail` matching requests with 503.
    pub fn failing(upstream: u16, needle: &str, fail: usize) -> CutProxy {
        CutProxy::with(upstream, needle, fail, 0, 0)
    }

    fn with(upstream: u16, needle: &str, fail: usize, after: u64, times: usize) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let rule = Arc::new(Mutex::new(Rule {
            needle: needle.to_string(),
            fail,
            after,
            times,
        }));
        let (stop2, cuts2) = (stop.clone(), cuts.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (rule, cuts) = (rule.clone(), cuts2.clone());
                std::thread::spawn(move || {
                    let _ = proxy_one(conn, upstream, &rule, &cuts);
                });
            }
        });
        CutProxy {
            port,
            stop,
            cuts,
            thread: Some(thread),
        }
    }
}

fn proxy_one(
    client: TcpStream,
    upstream: u16,
    rule: &Mutex<Rule>,
    cuts: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let mut head = request_line.clone();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.push_str(&line);
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    let action = {
        let mut r = rule.lock().unwrap();
        if !path.contains(&r.needle) {
            Action::Pass
        } else if r.fail > 0 {
            r.fail -= 1;
            Action::Fail
        } else if r.times > 0 {
            r.times -= 1;
            Action::Cut(r.after)
        } else {
            Action::Pass
        }
    };
    let limit = match action {
        Action::Pass => None,
        Action::Cut(n) => Some(n),
        Action::Fail => {
            let mut client = client;
            cuts.fetch_add(1, Ordering::SeqCst);
            client.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        }
    };
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.write_all(head.as_bytes())?;
    let mut client = client;
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    loop {
        let n = up.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let n = match limit {
            Some(l) if sent + n as u64 >= l => {
                let k = (l - sent) as usize;
                client.write_all(&buf[..k])?;
                cuts.fetch_add(1, Ordering::SeqCst);
                // Cut: the client sees the body end early.
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
            _ => n,
        };
        client.write_all(&buf[..n])?;
        sent += n as u64;
    }
    let _ = client.shutdown(Shutdown::Write);
    Ok(())
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! Load generator and client tools for the benchmark suite (`scripts/bench`).
//!
//! Built with `cargo build --release --example loadgen`. Every mode prints
//! one flat JSON object on one line on stdout, which the driver script
//! picks figures out of.
//!
//! - `get`: N keep-alive connections over the Unix socket, each sending GET
//!   requests back to back (closed loop) for D seconds or K requests in
//!   all; reports requests/s and p50/p99/p999 latency.
//! - `populate`: creates N active images through the API (import, add a
//!   small file, activate) with C clients in parallel.
//! - `put`: `PUT` a file as a request body (sendfile from the page cache,
//!   so the client costs next to nothing) and time it to the response.
//! - `download`: `GET` a path and discard the body with a 1 MiB buffer.
//! - `socket-copy`: the floor of a download without HTTP: a thread sends
//!   a file into a Unix socket pair (read+write in 1 MiB chunks, as the
//!   daemon does, or `sendfile`, which hyper cannot do) and another reads
//!   and discards it with a 1 MiB buffer, as `download` does.
//! - `call`: one request (setup steps of the driver); prints the body and
//!   fails on a status of 300 or more.
//! - `ready`: starts a command (the daemon) and times until the socket
//!   answers `GET /ping`; the daemon is left running and its pid printed.
//!
//! Only Unix-socket addresses are ever used: this tool cannot reach a
//! network.

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "loadgen", about = "imgstore benchmark client")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Closed-loop GET load with keep-alive connections.
    Get {
        #[arg(long)]
        socket: PathBuf,
        /// Request path (repeatable: connections cycle through them).
        #[arg(long = "path", required = true)]
        paths: Vec<String>,
        /// Concurrent connections.
        #[arg(short = 'c', long, default_value_t = 1)]
        concurrency: usize,
        /// Seconds to run (after warm-up).
        #[arg(long, default_value_t = 3.0)]
        duration: f64,
        /// Stop after this many requests in all (whichever comes first).
        #[arg(long)]
        requests: Option<u64>,
        /// Requests per connection before measuring.
        #[arg(long, default_value_t = 5)]
        warmup: u64,
    },
    /// Creates N active images through the API.
    Populate {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        count: usize,
        #[arg(short = 'c', long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Uploads a file as the body of a PUT.
    Put {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        path: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Downloads a path and discards the body.
    Download {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        path: String,
    },
    /// Moves a file through a Unix socket pair, without HTTP.
    SocketCopy {
        #[arg(long)]
        file: PathBuf,
        /// Send with sendfile(2) instead of read+write.
        #[arg(long)]
        sendfile: bool,
    },
    /// One request; prints the response body.
    Call {
        #[arg(long)]
        socket: PathBuf,
        method: String,
        path: String,
        /// Request body (JSON).
        #[arg(long, default_value = "")]
        data: String,
    },
    /// Starts a command and times until `socket` answers `GET /ping`.
    Ready {
        #[arg(long)]
        socket: PathBuf,
        /// Where the command's stderr goes.
        #[arg(long)]
        log: PathBuf,
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let out = match cli.cmd {
        Cmd::Get {
            socket,
            paths,
            concurrency,
            duration,
            requests,
            warmup,
        } => get_load(
            &socket,
            paths,
            concurrency.max(1),
            Duration::from_secs_f64(duration),
            requests,
            warmup,
        ),
        Cmd::Populate {
            socket,
            count,
            concurrency,
        } => populate(&socket, count, concurrency.max(1)),
        Cmd::Put { socket, path, file } => put(&socket, &path, &file),
        Cmd::Download { socket, path } => download(&socket, &path),
        Cmd::SocketCopy { file, sendfile } => socket_copy(&file, sendfile),
        Cmd::Call {
            socket,
            method,
            path,
            data,
        } => expect_ok(
            &format!("{method} {path}"),
            request(&socket, &method, &path, data.as_bytes()),
        )
        .map(|r| String::from_utf8_lossy(&r.body).trim_end().to_string()),
        Cmd::Ready {
            socket,
            log,
            timeout,
            command,
        } => ready(&socket, &log, Duration::from_secs_f64(timeout), &command),
    };
    match out {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}

type Res<T> = Result<T, String>;

// ---- raw HTTP/1.1 over a std Unix socket (put, download, populate) --------

struct Resp {
    status: u16,
    body: Vec<u8>,
}

/// Reads the status line and headers; returns (status, content-length).
fn read_head(r: &mut impl BufRead) -> Res<(u16, Option<u64>)> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut len = None;
    loop {
        line.clear();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok();
            }
        }
    }
    Ok((status, len))
}

fn request(sock: &Path, method: &str, path: &str, body: &[u8]) -> Res<Resp> {
    let mut s = StdUnixStream::connect(sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: imgstore\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let (status, len) = read_head(&mut r)?;
    let mut body = Vec::new();
    match len {
        Some(n) => {
            body.resize(n as usize, 0);
            r.read_exact(&mut body).map_err(|e| e.to_string())?;
        }
        None if status == 204 => {}
        None => {
            r.read_to_end(&mut body).map_err(|e| e.to_string())?;
        }
    }
    Ok(Resp { status, body })
}

fn expect_ok(what: &str, r: Res<Resp>) -> Res<Resp> {
    let r = r?;
    if r.status >= 300 {
        return Err(format!(
            "{what}: status {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    Ok(r)
}

fn put(sock: &Path, path: &str, file: &Path) -> Res<String> {
    let mut f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let start = Instant::now();
    let mut s = StdUnixStream::connect(sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: imgstore\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    // std::io::copy uses sendfile(2) from a file to a socket.
    let sent = std::io::copy(&mut f, &mut s).map_err(|e| format!("sending the body: {e}"))?;
    let mut r = BufReader::new(s);
    let (status, _) = read_head(&mut r)?;
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    let secs = start.elapsed().as_secs_f64();
    if status != 200 {
        return Err(format!(
            "PUT {path}: status {status}: {}",
            String::from_utf8_lossy(&rest)
        ));
    }
    Ok(format!(
        "{{\"bytes\":{sent},\"secs\":{secs:.6},\"mb_per_s\":{:.1}}}",
        sent as f64 / secs / 1e6
    ))
}

fn download(sock: &Path, path: &str) -> Res<String> {
    let start = Instant::now();
    let mut s = StdUnixStream::connect(sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: imgstore\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    let mut r = BufReader::with_capacity(1 << 20, s);
    let (status, len) = read_head(&mut r)?;
    if status != 200 {
        return Err(format!("GET {path}: status {status}"));
    }
    let mut total = 0u64;
    loop {
        let buf = r.fill_buf().map_err(|e| e.to_string())?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len();
        total += n as u64;
        r.consume(n);
    }
    let secs = start.elapsed().as_secs_f64();
    if let Some(want) = len.filter(|&l| l != total) {
        return Err(format!("GET {path}: got {total} of {want} bytes"));
    }
    Ok(format!(
        "{{\"bytes\":{total},\"secs\":{secs:.6},\"mb_per_s\":{:.1}}}",
        total as f64 / secs / 1e6
    ))
}

fn socket_copy(file: &Path, use_sendfile: bool) -> Res<String> {
    let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    let (mut tx, mut rx) = StdUnixStream::pair().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let mut f = f;
        if use_sendfile {
            let mut left = size;
            while left > 0 {
                use std::os::fd::AsRawFd;
                let want = left.min(1 << 30) as usize;
                // SAFETY: two descriptors this thread owns; no buffers.
                #[allow(unsafe_code)]
                let n = unsafe {
                    libc::sendfile(tx.as_raw_fd(), f.as_raw_fd(), std::ptr::null_mut(), want)
                };
                if n < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let n = n as usize;
                if n == 0 {
                    break;
                }
                left -= n as u64;
            }
        } else {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                tx.write_all(&buf[..n])?;
            }
        }
        Ok(())
    });
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = rx.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    sender
        .join()
        .map_err(|_| "sender panicked".to_string())?
        .map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    if total != size {
        return Err(format!("socket-copy: got {total} of {size} bytes"));
    }
    Ok(format!(
        "{{\"bytes\":{total},\"secs\":{secs:.6},\"mb_per_s\":{:.1}}}",
        total as f64 / secs / 1e6
    ))
}

// ---- populate ----------------------------------------------------------------

fn populate(sock: &Path, count: usize, concurrency: usize) -> Res<String> {
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let next = next.clone();
            let sock = sock.to_path_buf();
            std::thread::spawn(move || -> Res<()> {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= count {
                        return Ok(());
                    }
                    create_one(&sock, i)?;
                }
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "populate worker panicked")??;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(format!(
        "{{\"images\":{count},\"secs\":{secs:.3},\"per_s\":{:.1}}}",
        count as f64 / secs
    ))
}

/// One realistic image: a varied name, version, os, tags and a published
/// date, so filters and sorting have something to work on.
fn create_one(sock: &Path, i: usize) -> Res<()> {
    let uuid = uuid::Uuid::new_v4().to_string();
    let names = [
        "base-64",
        "minimal-64",
        "ubuntu-22.04",
        "debian-12",
        "centos-7",
    ];
    let name = names[i % names.len()];
    let os = if i % 5 < 2 { "smartos" } else { "linux" };
    let ty = if os == "smartos" {
        "zone-dataset"
    } else {
        "lx-dataset"
    };
    let day = i % 28 + 1;
    let month = i / 28 % 12 + 1;
    let year = 2015 + i / (28 * 12) % 10;
    let manifest = serde_json::json!({
        "v": 2,
        "uuid": uuid,
        "owner": "00000000-0000-0000-0000-000000000000",
        "name": name,
        "version": format!("{}.{}.{}", year - 2000, month, i),
        "description": format!("benchmark image {i}: a {name} image for the list and get figures"),
        "type": ty,
        "os": os,
        "public": !i.is_multiple_of(3),
        "published_at": format!("{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", i % 24, i % 60, i / 60 % 60, i % 1000),
        "tags": {"role": if i.is_multiple_of(2) { "db" } else { "web" }, "group": format!("g{}", i % 50)},
        "requirements": {"min_platform": {"7.0": "20141030T081701Z"}},
    });
    let body = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    expect_ok(
        "import",
        request(
            sock,
            "POST",
            &format!("/images/{uuid}?action=import"),
            &body,
        ),
    )?;
    let file = format!("image file {i} {uuid}\n");
    expect_ok(
        "add file",
        request(
            sock,
            "PUT",
            &format!("/images/{uuid}/file?compression=none"),
            file.as_bytes(),
        ),
    )?;
    expect_ok(
        "activate",
        request(
            sock,
            "POST",
            &format!("/images/{uuid}?action=activate"),
            b"",
        ),
    )?;
    Ok(())
}

// ---- ready -----------------------------------------------------------------

fn ready(sock: &Path, log: &Path, timeout: Duration, command: &[String]) -> Res<String> {
    let _ = std::fs::remove_file(sock);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let start = Instant::now();
    let mut child = std::process::Command::new(&command[0])
        .args(&command[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", command[0]))?;
    loop {
        if let Ok(r) = request(sock, "GET", "/ping", b"") {
            if r.status == 200 {
                break;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{} exited with {status} before answering",
                command[0]
            ));
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            return Err(format!(
                "no answer on {} within {timeout:?}",
                sock.display()
            ));
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    // The daemon keeps running; the caller stops it by pid.
    Ok(format!("{{\"ready_ms\":{ms:.2},\"pid\":{}}}", child.id()))
}

// ---- get load --------------------------------------------------------------

fn get_load(
    sock: &Path,
    paths: Vec<String>,
    concurrency: usize,
    duration: Duration,
    requests: Option<u64>,
    warmup: u64,
) -> Res<String> {
    // One thread for the client: the daemon gets the rest of the machine.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let paths = Arc::new(paths);
        let issued = Arc::new(AtomicU64::new(0));
        let limit = requests.unwrap_or(u64::MAX);
        // Connect and warm up every connection before the clock starts.
        let mut conns = Vec::new();
        for i in 0..concurrency {
            let mut c = Conn::connect(sock).await?;
            for k in 0..warmup {
                let p = &paths[(i + k as usize) % paths.len()];
                c.get(p).await?;
            }
            conns.push(c);
        }
        let start = Instant::now();
        let deadline = start + duration;
        let mut tasks = Vec::new();
        for (i, mut c) in conns.into_iter().enumerate() {
            let paths = paths.clone();
            let issued = issued.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat: Vec<u32> = Vec::with_capacity(4096);
                let mut errors = 0u64;
                let mut bytes = 0u64;
                let mut k = i;
                while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < limit {
                    let p = &paths[k % paths.len()];
                    k += 1;
                    let t = Instant::now();
                    match c.get(p).await {
                        Ok((200, n)) => bytes += n,
                        Ok(_) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    }
                    lat.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                }
                (lat, errors, bytes)
            }));
        }
        let mut lat = Vec::new();
        let mut errors = 0;
        let mut bytes = 0;
        for t in tasks {
            let (l, e, b) = t.await.map_err(|e| e.to_string())?;
            lat.extend(l);
            errors += e;
            bytes += b;
        }
        let secs = start.elapsed().as_secs_f64();
        if lat.is_empty() {
            return Err("no request completed".to_string());
        }
        lat.sort_unstable();
        let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1e6;
        Ok(format!(
            "{{\"requests\":{},\"errors\":{errors},\"secs\":{secs:.3},\"rps\":{:.1},\"p50_ms\":{:.4},\"p99_ms\":{:.4},\"p999_ms\":{:.4},\"max_ms\":{:.4},\"bytes_per_req\":{}}}",
            lat.len(),
            lat.len() as f64 / secs,
            q(0.50),
            q(0.99),
            q(0.999),
            q(1.0),
            bytes / lat.len() as u64,
        ))
    })
}

/// One keep-alive HTTP/1.1 connection (hyper's client over a Unix socket).
struct Conn {
    tx: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl Conn {
    async fn connect(sock: &Path) -> Res<Conn> {
        let stream = tokio::net::UnixStream::connect(sock)
            .await
            .map_err(|e| format!("{}: {e}", sock.display()))?;
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { tx })
    }

    /// Sends one GET and reads the whole body; returns (status, body bytes).
    async fn get(&mut self, path: &str) -> Res<(u16, u64)> {
        self.tx.ready().await.map_err(|e| e.to_string())?;
        let req = Request::get(path)
            .header("host", "imgstore")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = self.tx.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body.len() as u64))
    }
}

//! A bounded soak: 500 concurrent keep-alive connections on the socket for
//! `IMGSTORE_SOAK_SECS` seconds (default 60), mixing list, get and file
//! downloads with uploads. Passes when no request fails, the daemon's open
//! file descriptors (other than blobs open for downloads in flight, whose
//! number follows the request mix) and RSS do not grow between the first and
//! the last ten seconds, and every fd is closed once the clients are gone.
//! Prints throughput, latency percentiles, fds and RSS. One
//! connection in 25 uploads; uploads are three fsynced writes through the
//! single writer, so a larger share only grows the write queue.

use crate::common::*;
use serde_json::json;
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 500;

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The daemon's fds that are blobs open for downloads in flight: their
/// number follows the moment's mix of requests (3 to 100 a second apart
/// under this load), not a leak. Leaks are judged on the other fds, and on
/// every fd once the clients are gone.
fn blob_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| {
        d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|t| t.to_string_lossy().contains("/blobs/"))
            .count()
    })
}

/// One keep-alive connection's loop; returns request latencies in µs.
fn client(
    sock: std::path::PathBuf,
    id: usize,
    images: Arc<Vec<(String, Vec<u8>)>>,
    stop: Arc<AtomicBool>,
    errors: Arc<Mutex<Vec<String>>>,
    uploads: Arc<AtomicU64>,
) -> (Vec<u32>, Vec<u32>) {
    let mut lat = Vec::new();
    let mut up_lat = Vec::new();
    let mut x = (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut conn: Option<BufReader<UnixStream>> = None;
    let mut n = 0u64;
    // One connection in 25 uploads (create, PUT, delete: three fsynced
    // writes through the single writer); the rest read. Writes are
    // serialised, so a bigger share only lengthens the write queue.
    let uploader = id.is_multiple_of(25);
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (img, data) = &images[(x % images.len() as u64) as usize];
        let pick = x % 100;
        let start = Instant::now();
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match UnixStream::connect(&sock) {
                Ok(s) => conn.insert(BufReader::new(s)),
                Err(e) => {
                    errors.lock().unwrap().push(format!("connect: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            },
        };
        let result = (|| -> std::io::Result<(u16, Option<Vec<u8>>)> {
            if uploader {
                // Upload: a new image with a small file, then delete it, so
                // the store stays the same size.
                let body = json!({"name": format!("soak-{id}-{n}"), "version": "1", "type": "zone-dataset", "os": "smartos"}).to_string();
                let r = roundtrip(c, "POST", "/images", body.as_bytes())?;
                if r.status != 200 {
                    return Ok((r.status, None));
                }
                let u = r.json()["uuid"].as_str().unwrap_or_default().to_string();
                let file = vec![(n % 251) as u8; 64 * 1024 + (x % 4096) as usize];
                let r = roundtrip(
                    c,
                    "PUT",
                    &format!("/images/{u}/file?compression=none"),
                    &file,
                )?;
                if r.status != 200 {
                    return Ok((r.status, None));
                }
                let r = roundtrip(c, "DELETE", &format!("/images/{u}"), b"")?;
                uploads.fetch_add(1, Ordering::Relaxed);
                return Ok((if r.status == 204 { 200 } else { r.status }, None));
            }
            let (path, want) = if pick < 30 {
                ("/images".to_string(), None)
            } else if pick < 65 {
                (format!("/images/{img}"), None)
            } else {
                (format!("/images/{img}/file"), Some(data.clone()))
            };
            let r = roundtrip(c, "GET", &path, b"")?;
            Ok((r.status, want.filter(|w| r.body != *w)))
        })();
        match result {
            Ok((200, None)) => {
                let us = start.elapsed().as_micros().min(u32::MAX as u128) as u32;
                if uploader {
                    up_lat.push(us);
                } else {
                    lat.push(us);
                }
            }
            Ok((status, Some(_))) => errors
                .lock()
                .unwrap()
                .push(format!("download {status}: wrong bytes")),
            Ok((status, None)) => errors.lock().unwrap().push(format!("status {status}")),
            Err(e) => {
                errors.lock().unwrap().push(format!("io: {e}"));
                conn = None;
            }
        }
    }
    (lat, up_lat)
}

fn roundtrip(
    c: &mut BufReader<UnixStream>,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<Resp> {
    let s = c.get_mut();
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: soak\r\n");
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    read_response(c)
}

#[test]
fn soak_500_connections_no_errors_no_fd_or_rss_growth() {
    let secs: u64 = std::env::var("IMGSTORE_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    assert!(
        secs >= 20,
        "IMGSTORE_SOAK_SECS must be at least 20 (two 10 s windows)"
    );
    let d = Daemon::start();
    let pid = d.pid();
    let images: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| {
            let mut data = vec![0u8; (32 * 1024) << (i % 4)];
            pattern(&mut data, i as u64 * 1_000_003);
            (
                d.create_active(&format!("soak-{i}"), &data, json!({})),
                data,
            )
        })
        .collect();
    let images = Arc::new(images);
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let uploads = Arc::new(AtomicU64::new(0));
    let idle_fds = fds(pid);
    let handles: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let (sock, images, stop, errors, uploads) = (
                d.sock.clone(),
                images.clone(),
                stop.clone(),
                errors.clone(),
                uploads.clone(),
            );
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || client(sock, i, images, stop, errors, uploads))
                .unwrap()
        })
        .collect();
    // Sample fds and RSS once a second.
    let start = Instant::now();
    let mut samples: Vec<(f64, usize, u64)> = Vec::new();
    let mut in_flight: Vec<usize> = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        let (all, blobs) = (fds(pid), blob_fds(pid));
        in_flight.push(blobs);
        samples.push((
            start.elapsed().as_secs_f64(),
            all.saturating_sub(blobs),
            rss_kib(pid),
        ));
    }
    stop.store(true, Ordering::Relaxed);
    let (mut reads, mut ups): (Vec<u32>, Vec<u32>) = (Vec::new(), Vec::new());
    for h in handles {
        let (r, u) = h.join().unwrap();
        reads.extend(r);
        ups.extend(u);
    }
    let elapsed = start.elapsed().as_secs_f64();
    reads.sort_unstable();
    ups.sort_unstable();
    let mut lat = reads.clone();
    lat.extend(&ups);
    lat.sort_unstable();
    let pct = |v: &[u32], p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let first: Vec<&(f64, usize, u64)> = samples.iter().filter(|s| s.0 <= 10.5).collect();
    let last: Vec<&(f64, usize, u64)> = samples
        .iter()
        .filter(|s| s.0 > secs as f64 - 10.5)
        .collect();
    let max_fd = |v: &[&(f64, usize, u64)]| v.iter().map(|s| s.1).max().unwrap_or(0);
    let avg_rss =
        |v: &[&(f64, usize, u64)]| v.iter().map(|s| s.2).sum::<u64>() / v.len().max(1) as u64;
    let (fd_first, fd_last) = (max_fd(&first), max_fd(&last));
    let (rss_first, rss_last) = (avg_rss(&first), avg_rss(&last));
    let errors = errors.lock().unwrap().clone();
    println!(
        "soak: {CONNECTIONS} connections for {elapsed:.1} s: {} requests ({:.0}/s), {} uploads (create+PUT+delete); latency all p50 {:.1} ms p99 {:.1} ms; reads (list/get/download) p50 {:.1} ms p99 {:.1} ms; uploads p50 {:.1} ms p99 {:.1} ms; max {:.1} ms; errors {}",
        lat.len(),
        lat.len() as f64 / elapsed,
        uploads.load(Ordering::Relaxed),
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        pct(&reads, 0.50),
        pct(&reads, 0.99),
        pct(&ups, 0.50),
        pct(&ups, 0.99),
        pct(&lat, 1.0),
        errors.len()
    );
    let trace: Vec<String> = samples
        .iter()
        .filter(|s| (s.0 as u64).is_multiple_of(10) || s.0 > secs as f64 - 1.5)
        .map(|s| format!("{:.0}s {} fds {} MiB", s.0, s.1, s.2 / 1024))
        .collect();
    println!("soak: samples: {}", trace.join(", "));
    println!(
        "soak: daemon fds idle {idle_fds}; besides blobs open for downloads in flight ({}..{} of them), max in first 10 s {fd_first}, max in last 10 s {fd_last}; after {}; RSS avg first 10 s {rss_first} KiB, last 10 s {rss_last} KiB",
        in_flight.iter().min().unwrap_or(&0),
        in_flight.iter().max().unwrap_or(&0),
        fds(pid)
    );
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
    // Growth allowances: a handful of fds for uploads (temp files) in
    // flight at a sample, and allocator noise for RSS.
    assert!(
        fd_last <= fd_first + 16,
        "fds grew: {fd_first} -> {fd_last}"
    );
    assert!(
        rss_last <= rss_first + rss_first / 5 + 8 * 1024,
        "RSS grew: {rss_first} -> {rss_last} KiB"
    );
    // Connections closed: the fds go back down.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fds(pid) > idle_fds + 8 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        fds(pid) <= idle_fds + 8,
        "fds after the soak: {} (idle {idle_fds})",
        fds(pid)
    );
    d.get("/state").expect(200, None);
}

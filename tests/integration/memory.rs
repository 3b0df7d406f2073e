//! Memory stays flat whatever the file size: a 2 GiB upload and download
//! keep the daemon's peak RSS under 64 MiB.

use crate::common::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Read};

const SIZE: u64 = 2 << 30;
const LIMIT_KIB: u64 = 64 * 1024;

#[test]
fn two_gib_upload_and_download_keep_rss_under_64_mib() {
    let d = Daemon::start();
    let uuid = d.create("big", json!({}));
    let idle = rss_kib(d.pid());
    let r = upload_stream(
        &d.sock,
        &format!("/images/{uuid}/file?compression=none&size={SIZE}"),
        SIZE,
        pattern,
    );
    let v = r.expect(200, None);
    assert_eq!(v["files"][0]["size"], SIZE);
    let after_upload = peak_rss_kib(d.pid());

    // Download and compare against the pattern, chunk by chunk.
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    use std::io::Write;
    write!(
        s,
        "GET /images/{uuid}/file HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::with_capacity(1 << 20, s);
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
    }
    let mut got = vec![0u8; 1 << 20];
    let mut want = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < SIZE {
        let n = (SIZE - off).min(got.len() as u64) as usize;
        r.read_exact(&mut got[..n]).unwrap();
        pattern(&mut want[..n], off);
        assert!(
            got[..n] == want[..n],
            "downloaded bytes differ at offset {off}"
        );
        off += n as u64;
    }
    let peak = peak_rss_kib(d.pid());
    println!(
        "daemon RSS: idle {idle} KiB, peak after 2 GiB upload {after_upload} KiB, peak after download {peak} KiB (limit {LIMIT_KIB} KiB)"
    );
    assert!(
        peak < LIMIT_KIB,
        "peak RSS {peak} KiB is over {LIMIT_KIB} KiB"
    );
}

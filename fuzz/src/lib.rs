//! The bodies of the fuzz targets, as plain functions: `cargo fuzz run
//! <target>` drives them with libFuzzer, and `cargo test` in this crate
//! replays the kept corpus (`fuzz/corpus/<target>/`) through them, so a
//! crash found once stays a regression test.
//!
//! Each function panics when a property fails:
//! - `manifest`: any JSON through prepare_create / prepare_import (in every
//!   IMGAPI mode) / apply_update / upgrade_v1 / validate; whatever a mode
//!   accepts validates clean in that mode, and every refusal names at least
//!   one problem.
//! - `filters`: any query string through ListFilter::parse and apply; a
//!   refusal is a 422 InvalidParameter, a result honours `limit` and only
//!   holds records that match.
//! - `routes`: any method, request target, header and body through hyper
//!   and the real `api::handle` over an in-memory connection, against a
//!   store in a temp dir with ZFS pointed at a missing binary; no answer is
//!   a 5xx other than 503 ZfsNotAvailable (or a sample error `GET
//!   /ping?error=` asks for), and every answer of ours to an
//!   error is IMGAPI JSON with a code. `action=export` (which writes files
//!   where the request says) is left out.

use imgstore::access::Peer;
use imgstore::api;
use imgstore::config::Config;
use imgstore::manifest::{self, Mode};
use imgstore::service::filter::ListFilter;
use imgstore::service::Service;
use imgstore::store::meta::ImageRecord;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};

const UUID: &str = "3b5e7a2c-9d4f-4a1b-8c6e-2f0a1b2c3d4e";

pub fn manifest(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    // What a mode accepts validates in that mode (IMGAPI's `mode`).
    for mode in [Mode::Minimal, Mode::Dc, Mode::Public, Mode::Private] {
        match manifest::prepare_create(&v, UUID, mode) {
            Ok(m) => {
                let errs = manifest::validate_as(&m, mode);
                assert!(
                    errs.is_empty(),
                    "prepare_create ({mode:?}) accepted {v} but validate says {errs:?}"
                );
            }
            Err(errs) => assert!(!errs.is_empty(), "refusal without a reason: {v}"),
        }
        match manifest::prepare_import(&v, UUID, mode) {
            Ok(m) => {
                let errs = manifest::validate_as(&m, mode);
                assert!(
                    errs.is_empty(),
                    "prepare_import ({mode:?}) accepted {v} but validate says {errs:?}"
                );
                assert_eq!(m.get("uuid").and_then(|u| u.as_str()), Some(UUID));
            }
            Err(errs) => assert!(!errs.is_empty(), "refusal without a reason: {v}"),
        }
    }
    let base = json!({"name": "base", "version": "1.0.0", "type": "zone-dataset", "os": "smartos"});
    let current =
        manifest::prepare_create(&base, UUID, Mode::Dc).expect("the base manifest is valid");
    match manifest::apply_update(&current, &v, Mode::Dc) {
        Ok(m) => {
            let errs = manifest::validate_as(&m, Mode::Dc);
            assert!(
                errs.is_empty(),
                "apply_update accepted {v} but validate says {errs:?}"
            );
        }
        Err(errs) => assert!(!errs.is_empty(), "refusal without a reason: {v}"),
    }
    if let Value::Object(o) = &v {
        let _ = manifest::validate(o);
        let up = manifest::upgrade_v1(o);
        let _ = manifest::validate(&up);
    }
}

fn records() -> &'static Vec<Arc<ImageRecord>> {
    static RECORDS: OnceLock<Vec<Arc<ImageRecord>>> = OnceLock::new();
    RECORDS.get_or_init(|| {
        (0..12u32)
            .map(|i| {
                let uuid = format!("00000000-0000-4000-8000-{i:012}");
                let state = ["active", "unactivated", "disabled"][i as usize % 3];
                let mut m = json!({"uuid": uuid, "name": format!("img-{}", i % 4), "version": format!("{}.0", i % 3),
                    "type": if i % 2 == 0 { "zone-dataset" } else { "zvol" }, "os": if i % 3 == 0 { "linux" } else { "smartos" },
                    "owner": format!("00000000-0000-4000-8000-{:012}", i % 2), "public": i % 2 == 0,
                    "state": state,
                    "tags": {"role": format!("r{}", i % 2), "n": i}});
                if i % 3 != 1 {
                    m["published_at"] = json!(format!("2020-01-{:02}T00:00:00.000Z", 1 + i));
                }
                Arc::new(ImageRecord {
                    manifest: m.as_object().unwrap().clone(),
                    activated: i % 3 != 1,
                    content_md5: None,
                    icon: None,
                })
            })
            .collect()
    })
}

pub fn filters(data: &[u8]) {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    match ListFilter::parse(&pairs) {
        Ok(f) => match f.apply(records().clone()) {
            Ok(out) => {
                if let Some(limit) = f.limit {
                    assert!(
                        out.len() <= limit,
                        "limit {limit} but {} results",
                        out.len()
                    );
                }
                for r in &out {
                    assert!(f.matches(r), "{} does not match {f:?}", r.uuid());
                }
            }
            Err(e) => assert_eq!(api::error::status(&e).as_u16(), 422, "{e}"),
        },
        Err(e) => {
            assert_eq!(api::error::status(&e).as_u16(), 422, "{e}");
            assert_eq!(e.code(), "InvalidParameter");
        }
    }
}

struct Env {
    rt: tokio::runtime::Runtime,
    svc: Arc<Service>,
}

/// libFuzzer ends with exit(), so statics are never dropped: the store
/// lives in `imgstore-fuzz-<pid>`, and stores of processes that are gone
/// are removed when the next one starts.
fn store_dir() -> std::path::PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    if let Ok(rd) = std::fs::read_dir(base) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix("imgstore-fuzz-") else {
                continue;
            };
            if pid
                .parse::<u32>()
                .is_ok_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = std::path::Path::new(base).join(format!("imgstore-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut config = Config {
            data_dir: store_dir(),
            ..Config::default()
        };
        config.zfs.zfs_bin = "/nonexistent/zfs".into();
        config.zfs.zpool_bin = "/nonexistent/zpool".into();
        config.limits.request_timeout_secs = 1;
        config.limits.idle_timeout_secs = 1;
        let svc = Service::open(config).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Env { rt, svc }
    })
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW",
];

/// Input: method index, then the request target up to a NUL, then extra
/// header lines up to a second NUL, then the body.
pub fn routes(data: &[u8]) {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let method = METHODS[m as usize % METHODS.len()];
    let mut parts = rest.splitn(3, |&b| b == 0);
    let target = parts.next().unwrap_or_default();
    let headers = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    if target.is_empty()
        || target.contains(&b'\n')
        || target.contains(&b'\r')
        || target.contains(&b' ')
    {
        return;
    }
    if let Some(q) = target.iter().position(|&b| b == b'?') {
        // Exports write files; `source=` fetches from a URL (AdminImportImage
        // and AddImageFile from another IMGAPI): neither belongs in a fuzz run.
        if form_urlencoded::parse(&target[q + 1..])
            .any(|(k, v)| v.contains("export") || k == "source")
        {
            return;
        }
    }
    // AddImageFileFromUrl fetches its body's URL.
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if api::segments(&String::from_utf8_lossy(path))
        .is_ok_and(|segs| segs.iter().any(|s| s == "from-url"))
    {
        return;
    }
    let mut req = Vec::new();
    req.extend_from_slice(method.as_bytes());
    req.push(b' ');
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n");
    for line in headers
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .take(8)
    {
        req.extend_from_slice(line);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);
    let env = env();
    let svc = env.svc.clone();
    let sent = req.clone();
    let raw = env.rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let conn = tokio::spawn(async move {
            let svc2 = svc.clone();
            let service = hyper::service::service_fn(move |r| {
                let svc = svc2.clone();
                async move {
                    let peer = Peer {
                        uid: Some(0),
                        gid: Some(0),
                        pid: None,
                        groups: Default::default(),
                    };
                    Ok::<_, std::convert::Infallible>(api::handle(svc, r, peer).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                // As the daemon serves it: hyper's own refusals become JSON.
                .serve_connection(
                    hyper_util::rt::TokioIo::new(imgstore::conn::HyperErrors::new(server).0),
                    service,
                )
                .await;
        });
        let _ = client.write_all(&req).await;
        let mut out = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            client.read_to_end(&mut out),
        )
        .await;
        drop(client);
        let _ = conn.await;
        assert!(
            read.is_ok(),
            "no answer within 10 s to {:?}",
            String::from_utf8_lossy(&req[..req.len().min(200)])
        );
        out
    });
    check_response(&sent, &raw);
}

/// `GET /ping?error=NAME` asks for IMGAPI's sample error NAME, 5xx ones
/// included (`InternalError`, `StorageIsDown`, ...).
fn asks_for_sample_error(req: &[u8]) -> bool {
    let line = req.split(|&b| b == b'\r').next().unwrap_or_default();
    let target = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(q) => (&target[..q], &target[q + 1..]),
        None => return false,
    };
    let path = String::from_utf8_lossy(path);
    path.trim_end_matches('/').ends_with("/ping")
        && form_urlencoded::parse(query).any(|(k, _)| k == "error")
}

fn check_response(req: &[u8], raw: &[u8]) {
    let shown = || String::from_utf8_lossy(&req[..req.len().min(300)]).into_owned();
    if raw.is_empty() {
        return; // hyper closed a connection it could not parse
    }
    let text = String::from_utf8_lossy(raw);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in answer to {}", shown()));
    let Some(split) = text.find("\r\n\r\n") else {
        panic!("no end of headers in answer to {}", shown());
    };
    let head = text[..split].to_ascii_lowercase();
    let body = &raw[split + 4..];
    let ours = head.contains("content-type: application/json");
    if status >= 400 && ours && !body.is_empty() {
        let v: Value = serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}) for {}", shown()));
        let code = v["code"]
            .as_str()
            .unwrap_or_else(|| panic!("error without a code for {}: {v}", shown()));
        assert!(
            status < 500 || code == "ZfsNotAvailable" || asks_for_sample_error(req),
            "{status} {code} for {}: {v}",
            shown()
        );
    }
    // Every refusal is JSON, hyper's own included (`conn::HyperErrors`).
    if status >= 400 {
        assert!(ours, "bare {status} for {}", shown());
    }
}

#[cfg(test)]
mod tests {
    /// Replays the kept corpus: every input ever found interesting.
    #[test]
    fn corpus_replays_clean() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        let mut n = 0;
        for (target, f) in [
            ("manifest", super::manifest as fn(&[u8])),
            ("filters", super::filters),
            ("routes", super::routes),
        ] {
            let Ok(dir) = std::fs::read_dir(root.join(target)) else {
                panic!("no corpus for {target} in {}", root.display());
            };
            for e in dir.flatten() {
                f(&std::fs::read(e.path()).unwrap());
                n += 1;
            }
        }
        assert!(n > 0);
        println!("replayed {n} corpus inputs");
    }
}

//! Remote sources and import-remote, against real servers on loopback: an
//! nginx serving a static DSAPI directory (an index plus `UUID/FILE`, with
//! an origin chain), a fault-injecting proxy in front of it, an HTTPS nginx
//! with a self-signed certificate, and a second imgstore daemon whose peer
//! listener is an IMGAPI source.

use crate::common::nginx::*;
use crate::common::*;
use crate::zfs::{expect_success, wait_task};
use serde_json::{json, Value};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const OWNER: &str = "930896af-bf8c-48d4-885c-6573a94b1853";

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    pattern(&mut v, seed << 40);
    v
}

/// A static DSAPI directory: `ROOT/datasets/index.json` lists the
/// manifests, `ROOT/datasets/UUID/FILE` holds the files.
struct Repo {
    dir: tempfile::TempDir,
    index: Vec<Value>,
}

struct Added {
    uuid: String,
    sha1: String,
    size: u64,
}

impl Repo {
    fn new() -> Repo {
        Repo {
            dir: tempfile::Builder::new()
                .prefix("imgstore-repo")
                .tempdir()
                .unwrap(),
            index: Vec::new(),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn file_path(&self, uuid: &str, file: &str) -> PathBuf {
        self.root().join("datasets").join(uuid).join(file)
    }

    /// Adds an image with `data` as its file. `v1` writes a DSAPI v1
    /// manifest (creator_uuid, files[].path, no v), as old servers do.
    fn add(&mut self, name: &str, origin: Option<&str>, data: &[u8], v1: bool) -> Added {
        let uuid = new_uuid();
        let sha1 = sha1_hex(data);
        let file = format!("{name}-1.0.zfs.gz");
        let path = self.file_path(&uuid, &file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        let day = self.index.len() + 1;
        let mut m = if v1 {
            json!({"uuid": uuid, "name": name, "version": "1.0", "type": "zone-dataset",
                "os": "smartos", "creator_uuid": OWNER, "created_at": format!("2023-05-{day:02}T10:00Z"),
                "description": "a v1 dsmanifest",
                "files": [{"path": file, "sha1": sha1, "size": data.len()}]})
        } else {
            json!({"v": 2, "uuid": uuid, "owner": OWNER, "name": name, "version": "1.0",
                "state": "active", "disabled": false, "public": true,
                "published_at": format!("2024-01-{day:02}T00:00:00Z"),
                "type": "zone-dataset", "os": "smartos",
                "files": [{"path": file, "sha1": sha1, "size": data.len(), "compression": "gzip"}]})
        };
        if let Some(o) = origin {
            m["origin"] = json!(o);
        }
        self.index.push(m);
        self.write_index();
        Added {
            uuid,
            sha1,
            size: data.len() as u64,
        }
    }

    fn write_index(&self) {
        let p = self.root().join("datasets/index.json");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, serde_json::to_vec_pretty(&self.index).unwrap()).unwrap();
    }

    /// Drops an image from the index (its file stays).
    fn unlist(&mut self, uuid: &str) {
        self.index.retain(|m| m["uuid"] != uuid);
        self.write_index();
    }

    /// A chain base (v1) <- mid <- leaf, each `size` bytes.
    fn chain(&mut self, label: &str, size: usize) -> Vec<Added> {
        let base = self.add(&format!("{label}-base"), None, &bytes(1, size), true);
        let mid = self.add(
            &format!("{label}-mid"),
            Some(&base.uuid),
            &bytes(2, size),
            false,
        );
        let leaf = self.add(
            &format!("{label}-leaf"),
            Some(&mid.uuid),
            &bytes(3, size),
            false,
        );
        vec![base, mid, leaf]
    }
}

fn add_source(d: &Daemon, url: &str, kind: &str, insecure: bool) {
    d.post_json(
        "/sources",
        &json!({"url": url, "type": kind, "insecure": insecure}),
    )
    .expect(201, None);
}

fn import(d: &Daemon, uuid: &str, query: &str) -> Value {
    d.post(&format!("/images/{uuid}?action=import-remote{query}"))
        .expect(202, None)
}

fn imported_uuids(t: &Value) -> Vec<String> {
    t["result"]["imported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["uuid"].as_str().unwrap().to_string())
        .collect()
}

fn file_sha1(d: &Daemon, uuid: &str) -> String {
    let r = d.get(&format!("/images/{uuid}/file"));
    assert_eq!(r.status, 200);
    sha1_hex(&r.body)
}

fn expect_failure(d: &Daemon, task: &Value, code: &str) -> Value {
    let t = wait_task(d, task);
    assert_eq!(t["status"], "failure", "{t}\nlog:\n{}", d.log_text());
    assert_eq!(t["error"]["code"], code, "{t}");
    t
}

/// Nothing was stored: no blob, no temp file.
fn store_is_empty(d: &Daemon) {
    let blobs = std::fs::read_dir(d.data.join("blobs/sha256"))
        .unwrap()
        .count();
    let ingest = std::fs::read_dir(d.data.join("ingest")).unwrap().count();
    assert_eq!((blobs, ingest), (0, 0), "blobs, temp files left");
}

/// One raw request over TCP (the peer listener).
fn tcp_request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: peer\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if matches!(method, "POST" | "PUT") {
        head.push_str("Content-Length: 2\r\n\r\n{}");
    } else {
        head.push_str("\r\n");
    }
    s.write_all(head.as_bytes()).unwrap();
    if method == "HEAD" {
        // Headers only, whatever Content-Length says.
        let mut text = String::new();
        std::io::Read::read_to_string(&mut s, &mut text).unwrap();
        let head = text.split("\r\n\r\n").next().unwrap();
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        return Resp {
            status,
            headers,
            body: Vec::new(),
        };
    }
    read_response(&mut BufReader::new(s)).unwrap()
}

#[test]
fn sources_api_validates_persists_and_is_seeded_once() {
    let mut d = Daemon::start_config(
        "sources = [{url = \"http://127.0.0.1:9/seeded\", type = \"dsapi\"}]\n",
    );
    let v = d.get("/sources").expect(200, None);
    assert_eq!(
        v,
        json!([{"url": "http://127.0.0.1:9/seeded", "type": "dsapi", "insecure": false}])
    );
    for (body, field) in [
        (json!({"url": "http://h", "type": "docker"}), "body"),
        (json!({"url": "ftp://h"}), "url"),
        (json!({"url": "relative/dir", "type": "file"}), "url"),
        (json!({"url": "http://h", "insecure": true}), "url"),
        (json!({"url": "http://h/?page=2"}), "url"),
        (json!({"url": "http://h", "bogus": 1}), "body"),
    ] {
        let v = d
            .post_json("/sources", &body)
            .expect(422, Some("InvalidParameter"));
        assert_eq!(v["errors"][0]["field"], field, "{body}: {v}");
    }
    let v = d
        .post_json(
            "/sources",
            &json!({"url": "https://images.example.com/?channel=dev"}),
        )
        .expect(201, None);
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[1]["type"], "imgapi", "imgapi is the default type");
    d.post_json(
        "/sources",
        &json!({"url": "https://images.example.com/?channel=dev"}),
    )
    .expect(409, Some("Conflict"));
    add_source(&d, "/srv/images", "file", false);
    d.delete("/sources?url=http://127.0.0.1:9/seeded")
        .expect(204, None);
    d.delete("/sources?url=http://127.0.0.1:9/seeded")
        .expect(404, Some("ResourceNotFound"));
    d.delete("/sources").expect(422, Some("InvalidParameter"));
    request(&d.sock, "PUT", "/sources", &[], b"").expect(405, Some("MethodNotAllowed"));
    // Persisted, in order, and the config's seed is not applied again.
    d.stop();
    d.spawn();
    let v = d.get("/sources").expect(200, None);
    let urls: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        ["https://images.example.com/?channel=dev", "/srv/images"]
    );
}

#[test]
fn dsapi_origin_chain_is_imported_base_first_from_nginx() {
    let mut repo = Repo::new();
    let chain = repo.chain("ds", 3 << 20);
    let nginx = Nginx::start(repo.root(), NginxOpts::default());
    let d = Daemon::start();
    // No sources yet: refused before a task starts.
    d.post(&format!("/images/{}?action=import-remote", chain[2].uuid))
        .expect(404, Some("ImageNotFound"));
    add_source(&d, &nginx.url("/datasets"), "dsapi", false);

    // avail: every image, v1 upgraded, filters as on /images.
    let v = d.get("/sources/images").expect(200, None);
    assert_eq!(v["errors"], json!([]));
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 3, "{v}");
    assert!(images
        .iter()
        .all(|i| i["source"] == nginx.url("/datasets").as_str()));
    let base = images
        .iter()
        .find(|i| i["manifest"]["uuid"] == chain[0].uuid.as_str())
        .unwrap();
    assert_eq!(base["manifest"]["v"], 2);
    assert_eq!(base["manifest"]["owner"], OWNER);
    assert_eq!(base["manifest"]["files"][0]["compression"], "gzip");
    let v = d.get("/sources/images?name=~leaf").expect(200, None);
    assert_eq!(v["images"].as_array().unwrap().len(), 1);
    let index_reads = |n: &Nginx| {
        n.log_lines()
            .iter()
            .filter(|l| l.starts_with("GET /datasets "))
            .count()
    };
    assert_eq!(index_reads(&nginx), 1, "the list is cached between calls");
    let v = d
        .get(&format!("/sources/images/{}", chain[1].uuid))
        .expect(200, None);
    assert_eq!(v["manifest"]["origin"], chain[0].uuid.as_str());
    d.get(&format!("/sources/images/{}", new_uuid()))
        .expect(404, Some("ImageNotFound"));
    d.get("/sources/images?limit=0")
        .expect(422, Some("InvalidParameter"));

    // Import the leaf: the whole chain comes, base first, each verified.
    // nginx logs a request after answering it: let the log catch up with
    // the live look-ups above before counting from here.
    let mut before = index_reads(&nginx);
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = index_reads(&nginx);
        if now == before {
            break;
        }
        before = now;
    }
    let task = import(&d, &chain[2].uuid, "");
    assert_eq!(task["type"], "import-remote");
    let t = expect_success(&d, &task);
    let want: Vec<String> = chain.iter().map(|a| a.uuid.clone()).collect();
    assert_eq!(imported_uuids(&t), want, "{t}");
    assert_eq!(
        index_reads(&nginx) - before,
        1,
        "the chain was resolved from one read of the index"
    );
    let total: u64 = chain.iter().map(|a| a.size).sum();
    assert_eq!(t["result"]["bytes_total"], total);
    assert_eq!(t["result"]["bytes_fetched"], total);
    assert_eq!(t["progress"]["bytes_total"], total);
    assert_eq!(t["progress"]["bytes_done"], total);
    for (i, a) in chain.iter().enumerate() {
        let m = d.get(&format!("/images/{}", a.uuid)).expect(200, None);
        assert_eq!(m["state"], "active");
        assert_eq!(m["files"][0]["sha1"], a.sha1.as_str());
        assert_eq!(m["files"][0]["size"], a.size);
        assert_eq!(m["files"][0]["compression"], "gzip");
        assert!(m["files"][0]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"));
        if i > 0 {
            assert_eq!(m["origin"], chain[i - 1].uuid.as_str());
        }
        assert_eq!(file_sha1(&d, &a.uuid), a.sha1);
        let reqs = nginx.requests(&format!("/{}/", a.uuid));
        assert_eq!(reqs.len(), 1, "each file fetched once: {reqs:?}");
        assert!(reqs[0].contains(" 200 "), "{reqs:?}");
    }
    let base = d.get(&format!("/images/{}", chain[0].uuid)).json();
    assert_eq!(base["owner"], OWNER, "v1 creator_uuid became owner");
    assert_eq!(base["published_at"], "2023-05-01T10:00:00Z");

    // Again: nothing to fetch. An image the sources lack: ImageNotFound.
    let t = expect_success(&d, &import(&d, &chain[2].uuid, ""));
    assert_eq!(t["result"]["imported"], json!([]));
    assert_eq!(t["result"]["present"], chain[2].uuid.as_str());
    let t = expect_failure(&d, &import(&d, &new_uuid(), ""), "ImageNotFound");
    assert!(
        t["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&nginx.url("/datasets")),
        "{t}"
    );
    d.post("/images/not-a-uuid?action=import-remote")
        .expect(404, Some("ResourceNotFound"));
}

#[test]
fn dropped_connection_resumes_with_range() {
    let mut repo = Repo::new();
    let size = 24 << 20;
    let img = repo.add("flaky", None, &bytes(7, size), false);
    let nginx = Nginx::start(repo.root(), NginxOpts::default());
    // The first response for the file is cut after 5 MiB.
    let proxy = CutProxy::start(nginx.port, &img.uuid, 5 << 20, 1);
    let d = Daemon::start();
    add_source(
        &d,
        &format!("http://127.0.0.1:{}/datasets", proxy.port),
        "dsapi",
        false,
    );
    let t = expect_success(&d, &import(&d, &img.uuid, ""));
    assert_eq!(proxy.cuts.load(std::sync::atomic::Ordering::SeqCst), 1);
    let rep = &t["result"]["imported"][0];
    assert!(rep["resumes"].as_u64().unwrap() >= 1, "{t}");
    assert_eq!(
        rep["bytes_fetched"], size as u64,
        "the resumed download fetched no byte twice: {t}"
    );
    assert_eq!(t["result"]["bytes_fetched"], size as u64);
    assert_eq!(t["progress"]["bytes_done"], size as u64);
    assert_eq!(file_sha1(&d, &img.uuid), img.sha1);
    // nginx saw the first request whole and then a Range request from
    // where the cut left off.
    let reqs = nginx.requests(&format!("/{}/", img.uuid));
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert!(
        reqs[0].contains(" 200 ") && reqs[0].ends_with("\"-\""),
        "{reqs:?}"
    );
    let range = reqs[1].rsplit('"').nth(1).unwrap();
    let from: u64 = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a resume range: {reqs:?}"));
    assert!(from > 0 && from < size as u64, "{reqs:?}");
    assert!(reqs[1].contains(" 206 "), "{reqs:?}");
    assert_eq!(
        reqs[1].split(' ').nth(3).unwrap().parse::<u64>().unwrap(),
        size as u64 - from,
        "{reqs:?}"
    );
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let mut repo = Repo::new();
    let img = repo.add("busy", None, &bytes(8, 2 << 20), false);
    let nginx = Nginx::start(repo.root(), NginxOpts::default());
    let proxy = CutProxy::failing(nginx.port, &img.uuid, 2);
    let d = Daemon::start();
    add_source(
        &d,
        &format!("http://127.0.0.1:{}/datasets", proxy.port),
        "dsapi",
        false,
    );
    let t = expect_success(&d, &import(&d, &img.uuid, ""));
    let rep = &t["result"]["imported"][0];
    assert_eq!(rep["retries"], 2, "{t}");
    assert_eq!(rep["resumes"], 0, "{t}");
    assert_eq!(rep["bytes_fetched"], img.size);
    assert_eq!(proxy.cuts.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(nginx.requests(&format!("/{}/", img.uuid)).len(), 1);
    assert_eq!(file_sha1(&d, &img.uuid), img.sha1);
    // A source that keeps failing: DownloadError with the URL and status,
    // after the retries.
    let img2 = repo.add("down", None, &bytes(10, 1 << 20), false);
    let proxy2 = CutProxy::failing(nginx.port, &img2.uuid, 100);
    let d2 = Daemon::start();
    add_source(
        &d2,
        &format!("http://127.0.0.1:{}/datasets", proxy2.port),
        "dsapi",
        false,
    );
    let t = expect_failure(&d2, &import(&d2, &img2.uuid, ""), "DownloadError");
    let msg = t["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("HTTP 503") && msg.contains(&img2.uuid) && msg.contains("6 attempts"),
        "{msg}"
    );
    store_is_empty(&d2);
}

#[test]
fn wrong_bytes_fail_with_a_checksum_error_and_store_nothing() {
    let mut repo = Repo::new();
    let data = bytes(9, 2 << 20);
    let same_size = repo.add("wrong", None, &data, false);
    let longer = repo.add("longer", None, &data, false);
    let mut bad = data.clone();
    bad[1 << 20] ^= 0xff;
    std::fs::write(repo.file_path(&same_size.uuid, "wrong-1.0.zfs.gz"), &bad).unwrap();
    let mut more = data.clone();
    more.extend_from_slice(b"trailing bytes");
    std::fs::write(repo.file_path(&longer.uuid, "longer-1.0.zfs.gz"), &more).unwrap();
    let nginx = Nginx::start(repo.root(), NginxOpts::default());
    let d = Daemon::start();
    add_source(&d, &nginx.url("/datasets"), "dsapi", false);

    let t = expect_failure(&d, &import(&d, &same_size.uuid, ""), "ChecksumMismatch");
    let msg = t["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&same_size.sha1) && msg.contains("sha1"),
        "{msg}"
    );
    assert!(
        msg.contains(&nginx.url("/datasets")),
        "names the URL: {msg}"
    );
    let t = expect_failure(&d, &import(&d, &longer.uuid, ""), "ChecksumMismatch");
    assert!(
        t["error"]["message"].as_str().unwrap().contains("declares"),
        "{t}"
    );
    for u in [&same_size.uuid, &longer.uuid] {
        d.get(&format!("/images/{u}"))
            .expect(404, Some("ResourceNotFound"));
        // Permanent: fetched once, never retried.
        assert_eq!(nginx.requests(&format!("/{u}/")).len(), 1);
    }
    store_is_empty(&d);
}

#[test]
fn missing_origin_is_origin_not_found_in_source() {
    let mut repo = Repo::new();
    let chain = repo.chain("gap", 1 << 20);
    repo.unlist(&chain[1].uuid);
    let nginx = Nginx::start(repo.root(), NginxOpts::default());
    let d = Daemon::start();
    add_source(&d, &nginx.url("/datasets"), "dsapi", false);
    let t = expect_failure(
        &d,
        &import(&d, &chain[2].uuid, ""),
        "OriginNotFoundInSource",
    );
    let msg = t["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&chain[1].uuid) && msg.contains(&nginx.url("/datasets")),
        "{msg}"
    );
    // Resolved before any download: no file was fetched, nothing stored.
    assert!(nginx.requests(".gz").is_empty(), "{:?}", nginx.log_lines());
    store_is_empty(&d);
    // A file download that 404s is a permanent DownloadError naming the URL.
    std::fs::remove_file(repo.file_path(&chain[0].uuid, "gap-base-1.0.zfs.gz")).unwrap();
    let t = expect_failure(&d, &import(&d, &chain[0].uuid, ""), "DownloadError");
    let msg = t["error"]["message"].as_str().unwrap();
    assert!(msg.contains("404") && msg.contains(&chain[0].uuid), "{msg}");
    assert_eq!(nginx.requests(&format!("/{}/", chain[0].uuid)).len(), 1);
}

#[test]
fn first_source_down_the_second_is_used() {
    let mut repo = Repo::new();
    let chain = repo.chain("fo", 1 << 20);
    let nginx = Nginx::start(repo.root(), NginxOpts::default());
    let dead = format!("http://127.0.0.1:{}", free_port());
    let d = Daemon::start();
    add_source(&d, &dead, "imgapi", false);
    add_source(&d, &nginx.url("/datasets"), "dsapi", false);
    let v = d.get("/sources/images").expect(200, None);
    assert_eq!(v["images"].as_array().unwrap().len(), 3);
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    assert_eq!(errors[0]["url"], dead.as_str());
    assert_eq!(errors[0]["code"], "RemoteSourceError");
    assert!(
        errors[0]["message"].as_str().unwrap().contains("attempts"),
        "{v}"
    );
    let t = expect_success(&d, &import(&d, &chain[2].uuid, ""));
    assert_eq!(imported_uuids(&t).len(), 3);
    assert_eq!(
        t["result"]["imported"][2]["source"],
        nginx.url("/datasets").as_str()
    );
    // ?source= picks one source and only that one.
    let t = expect_failure(
        &d,
        &import(&d, &new_uuid(), &format!("&source={dead}")),
        "RemoteSourceError",
    );
    assert!(
        t["error"]["message"].as_str().unwrap().contains(&dead),
        "{t}"
    );
}

#[test]
fn a_download_that_keeps_failing_moves_to_the_next_source() {
    let mut repo = Repo::new();
    let img = repo.add("mirror", None, &bytes(14, 2 << 20), false);
    let nginx = Nginx::start(repo.root(), NginxOpts::default());
    // The first source lists the image but never serves its file.
    let broken = CutProxy::failing(nginx.port, &img.uuid, 1000);
    let broken_url = format!("http://127.0.0.1:{}/datasets", broken.port);
    let d = Daemon::start();
    add_source(&d, &broken_url, "dsapi", false);
    add_source(&d, &nginx.url("/datasets"), "dsapi", false);
    let t = expect_success(&d, &import(&d, &img.uuid, ""));
    let rep = &t["result"]["imported"][0];
    assert_eq!(rep["source"], nginx.url("/datasets").as_str(), "{t}");
    assert_eq!(file_sha1(&d, &img.uuid), img.sha1);
    assert!(
        d.log_text().contains("looking for another source"),
        "the failover is logged"
    );
}

#[test]
fn concurrent_imports_share_one_download() {
    let mut repo = Repo::new();
    let size = 24 << 20;
    let base = repo.add("shared-base", None, &bytes(11, size), false);
    let leaf = repo.add("shared-leaf", Some(&base.uuid), &bytes(12, 1 << 20), false);
    // 8 MiB/s: the base takes about 3 s, long enough to overlap.
    let nginx = Nginx::start(
        repo.root(),
        NginxOpts {
            server_extra: "limit_rate 8m;".into(),
            ..Default::default()
        },
    );
    let d = Daemon::start();
    add_source(&d, &nginx.url("/datasets"), "dsapi", false);
    let t1 = import(&d, &base.uuid, "");
    let t2 = import(&d, &base.uuid, "");
    assert_eq!(t1["id"], t2["id"], "same image, same task");
    // A different task whose chain needs the same base waits for that
    // download instead of starting its own.
    let t3 = import(&d, &leaf.uuid, "");
    assert_ne!(t3["id"], t1["id"]);
    let t1 = expect_success(&d, &t1);
    let t3 = expect_success(&d, &t3);
    // Whichever task claimed the base first downloaded it; the other
    // waited for that download and used it (or, had it started later,
    // found the base already in the store).
    let fetched_base: Vec<&Value> = [&t1, &t3]
        .iter()
        .flat_map(|t| t["result"]["imported"].as_array().unwrap())
        .filter(|r| r["uuid"] == base.uuid.as_str() && r["shared"] == false)
        .collect();
    assert_eq!(fetched_base.len(), 1, "{t1}\n{t3}");
    assert_eq!(fetched_base[0]["bytes_fetched"], base.size);
    let sum = |t: &Value| t["result"]["bytes_fetched"].as_u64().unwrap();
    assert_eq!(sum(&t1) + sum(&t3), base.size + leaf.size);
    let last = t3["result"]["imported"].as_array().unwrap().last().unwrap();
    assert_eq!(last["uuid"], leaf.uuid.as_str());
    let reqs = nginx.requests(&format!("/{}/", base.uuid));
    assert_eq!(reqs.len(), 1, "one download of the base: {reqs:?}");
    assert_eq!(file_sha1(&d, &base.uuid), base.sha1);
    assert_eq!(file_sha1(&d, &leaf.uuid), leaf.sha1);
}

#[test]
fn cancelled_import_stores_nothing() {
    let mut repo = Repo::new();
    let img = repo.add("slow", None, &bytes(15, 32 << 20), false);
    let nginx = Nginx::start(
        repo.root(),
        NginxOpts {
            server_extra: "limit_rate 4m;".into(),
            ..Default::default()
        },
    );
    let d = Daemon::start();
    add_source(&d, &nginx.url("/datasets"), "dsapi", false);
    let task = import(&d, &img.uuid, "");
    let id = task["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = d.get(&format!("/tasks/{id}")).json();
        if t["progress"]["bytes_done"].as_u64().unwrap_or(0) > 0 {
            assert_eq!(t["status"], "processing", "{t}");
            assert_eq!(t["progress"]["bytes_total"], 32u64 << 20);
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {t}");
        std::thread::sleep(Duration::from_millis(20));
    }
    d.delete(&format!("/tasks/{id}")).expect(200, None);
    let t = wait_task(&d, &task);
    assert_eq!(t["status"], "cancelled", "{t}");
    d.get(&format!("/images/{}", img.uuid))
        .expect(404, Some("ResourceNotFound"));
    store_is_empty(&d);
}

#[test]
fn peer_listen_address_in_use_is_refused_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imgstore.toml");
    std::fs::write(&cfg, peer_config(port)).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--socket")
        .arg(dir.path().join("d.sock"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("peer listener") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn https_source_needs_trusted_certificate_or_insecure() {
    let mut repo = Repo::new();
    let img = repo.add("tls", None, &bytes(13, 1 << 20), false);
    let certs = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(
        repo.root(),
        NginxOpts {
            tls: Some(self_signed_cert(certs.path())),
            ..Default::default()
        },
    );
    let url = nginx.url("/datasets");
    assert!(url.starts_with("https://"));
    let d = Daemon::start();
    add_source(&d, &url, "dsapi", false);
    let v = d.get("/sources/images").expect(200, None);
    assert_eq!(v["errors"][0]["code"], "TlsError", "{v}");
    let t = expect_failure(&d, &import(&d, &img.uuid, ""), "TlsError");
    let msg = t["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("certificate") && msg.contains("insecure"),
        "{msg}"
    );
    store_is_empty(&d);
    // The same server, flagged insecure (lab setups): works, with a warning.
    d.delete(&format!("/sources?url={url}")).expect(204, None);
    add_source(&d, &url, "dsapi", true);
    let t = expect_success(&d, &import(&d, &img.uuid, ""));
    assert_eq!(imported_uuids(&t), vec![img.uuid.clone()]);
    assert_eq!(file_sha1(&d, &img.uuid), img.sha1);
    assert!(
        d.log_text().contains("TLS certificate not verified"),
        "insecure use is logged"
    );
}

fn peer_config(port: u16) -> String {
    format!("[peer]\nlisten = \"127.0.0.1:{port}\"\n")
}

#[test]
fn peer_listener_serves_only_reads_and_is_an_imgapi_source() {
    let port = free_port();
    let a = Daemon::start_config(&peer_config(port));
    let base_data = bytes(21, 3 << 20);
    let base = a.create_active("peer-base", &base_data, json!({}));
    let child_data = bytes(22, 1 << 20);
    let child = a.create_active("peer-child", &child_data, json!({"origin": base}));

    // The read-only subset, served as on the socket.
    let r = tcp_request(port, "GET", "/ping", &[]);
    assert_eq!(r.json()["ping"], "pong");
    let r = tcp_request(port, "GET", "/images?name=~peer", &[]);
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    let r = tcp_request(port, "GET", &format!("/images/{child}"), &[]);
    assert_eq!(r.json()["origin"], base.as_str());
    let r = tcp_request(
        port,
        "GET",
        &format!("/images/{base}/file"),
        &[("Range", "bytes=100-199")],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &base_data[100..200]);
    let r = tcp_request(port, "HEAD", &format!("/images/{base}/file"), &[]);
    assert_eq!(r.status, 200);
    // What hyper cannot parse is refused as JSON here too.
    {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"GET /ping HTTP/1.1\r\nHost peer\r\n\r\n")
            .unwrap();
        let v = read_response(&mut BufReader::new(s))
            .unwrap()
            .expect(400, Some("BadRequest"));
        assert!(
            v["message"].as_str().unwrap().contains("header name"),
            "{v}"
        );
    }
    // Writes, and everything outside the subset, are refused as JSON.
    for (method, path, status, code) in [
        ("POST", "/images".to_string(), 405, "MethodNotAllowed"),
        (
            "POST",
            format!("/images/{base}?action=disable"),
            405,
            "MethodNotAllowed",
        ),
        (
            "DELETE",
            format!("/images/{child}"),
            405,
            "MethodNotAllowed",
        ),
        (
            "PUT",
            format!("/images/{base}/file?compression=none"),
            405,
            "MethodNotAllowed",
        ),
        ("GET", "/tasks".to_string(), 404, "ResourceNotFound"),
        ("GET", "/sources".to_string(), 404, "ResourceNotFound"),
        ("POST", "/sources".to_string(), 404, "ResourceNotFound"),
        (
            "GET",
            "/pools/zones/images".to_string(),
            404,
            "ResourceNotFound",
        ),
    ] {
        let r = tcp_request(port, method, &path, &[]);
        r.expect(status, Some(code));
        if status == 405 {
            assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method} {path}");
        }
    }
    assert_eq!(a.get(&format!("/images/{base}")).json()["state"], "active");
    assert_eq!(
        a.get(&format!("/images/{child}")).expect(200, None)["uuid"],
        child.as_str()
    );

    // A second node imports the chain from the first.
    let b = Daemon::start();
    add_source(&b, &format!("http://127.0.0.1:{port}"), "imgapi", false);
    let v = b.get("/sources/images?name=~peer").expect(200, None);
    assert_eq!(v["images"].as_array().unwrap().len(), 2, "{v}");
    let t = expect_success(&b, &import(&b, &child, ""));
    assert_eq!(imported_uuids(&t), [base.clone(), child.clone()]);
    assert_eq!(file_sha1(&b, &base), sha1_hex(&base_data));
    assert_eq!(file_sha1(&b, &child), sha1_hex(&child_data));
    let (ma, mb) = (
        a.get(&format!("/images/{child}")).json(),
        b.get(&format!("/images/{child}")).json(),
    );
    for k in [
        "name",
        "version",
        "origin",
        "published_at",
        "owner",
        "files",
    ] {
        assert_eq!(ma[k], mb[k], "{k}");
    }
}

#[test]
fn file_source_imports_exported_images() {
    let a = Daemon::start();
    let data = bytes(31, 2 << 20);
    let uuid = a.create_active("exported", &data, json!({}));
    let dir = tempfile::tempdir().unwrap();
    let task = a
        .post(&format!(
            "/images/{uuid}?action=export&path={}",
            dir.path().display()
        ))
        .expect(202, None);
    expect_success(&a, &task);
    let b = Daemon::start();
    add_source(&b, &dir.path().display().to_string(), "file", false);
    let v = b.get("/sources/images").expect(200, None);
    assert_eq!(v["images"][0]["manifest"]["uuid"], uuid.as_str(), "{v}");
    let t = expect_success(&b, &import(&b, &uuid, ""));
    assert_eq!(imported_uuids(&t), vec![uuid.clone()]);
    assert_eq!(file_sha1(&b, &uuid), sha1_hex(&data));
}

#[test]
fn peer_import_installs_the_zfs_chain() {
    use crate::zfs::*;
    let port = free_port();
    let a = Daemon::start_config(&peer_config(port));
    let src = make_source("peerbase");
    let want_base = tree(&mountpoint(&src));
    let base = create_image(&a, &src, "peer-zfs-base", "zstd", false);
    install(&a, &base);
    let base_ds = format!("{}/{base}", pool());
    let vm = format!("{}/peervm-{}", pool(), &new_uuid()[..8]);
    zfs(&["clone", &format!("{base_ds}@final"), &vm]);
    let dir = mountpoint(&vm);
    std::fs::write(dir.join("etc/added"), b"added in the vm").unwrap();
    let want_child = tree(&dir);
    let child = create_image(&a, &vm, "peer-zfs-child", "gzip", true);
    // The second node installs into the same pool: make room.
    destroy(&vm);
    a.delete(&format!("/pools/{}/images/{base}", pool()))
        .expect(204, None);

    let b = Daemon::start();
    add_source(&b, &format!("http://127.0.0.1:{port}"), "imgapi", false);
    let task = import(&b, &child, &format!("&install={}", pool()));
    let t = expect_success(&b, &task);
    assert_eq!(imported_uuids(&t), [base.clone(), child.clone()]);
    assert_eq!(t["result"]["pool"], pool());
    let p = &t["progress"];
    assert_eq!(p["bytes_done"], p["bytes_total"], "{t}");
    let downloaded = t["result"]["bytes_total"].as_u64().unwrap();
    assert_eq!(
        p["bytes_total"].as_u64().unwrap(),
        2 * downloaded,
        "download, then install of the same bytes: {t}"
    );
    let child_ds = format!("{}/{child}", pool());
    assert!(exists(&format!("{base_ds}@final")));
    assert_eq!(tree(&mountpoint(&base_ds)), want_base);
    assert_eq!(tree(&mountpoint(&child_ds)), want_child);
    b.post(&format!(
        "/images/{child}?action=import-remote&install=bad@pool"
    ))
    .expect(422, Some("InvalidParameter"));
    destroy(&child_ds);
    destroy(&base_ds);
    destroy(&src);
}

/// Import throughput of a 1 GiB image from nginx on loopback, next to
/// `curl -o /dev/null` of the same file in the same run. Prints both and
/// their ratio; asserts only correctness (timings depend on the machine).
/// Run with: cargo test --test integration remote::throughput -- --ignored --nocapture
#[test]
#[ignore = "benchmark: writes and imports a 1 GiB file; run explicitly with --ignored"]
fn throughput_1gib_import_vs_curl() {
    let mut repo = Repo::new();
    let size: u64 = 1 << 30;
    let uuid = new_uuid();
    let file = "big-1.0.zfs";
    let path = repo.file_path(&uuid, file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let sha1 = {
        use sha1::Digest;
        let mut h = sha1::Sha1::new();
        let mut f = std::fs::File::create(&path).unwrap();
        let mut buf = vec![0u8; 8 << 20];
        let mut off = 0;
        while off < size {
            pattern(&mut buf, off);
            h.update(&buf);
            f.write_all(&buf).unwrap();
            off += buf.len() as u64;
        }
        hex::encode(h.finalize())
    };
    repo.index.push(json!({"v": 2, "uuid": uuid, "owner": OWNER, "name": "big", "version": "1.0",
        "state": "active", "disabled": false, "public": true, "published_at": "2024-01-01T00:00:00Z",
        "type": "zone-dataset", "os": "smartos",
        "files": [{"path": file, "sha1": sha1, "size": size, "compression": "none"}]}));
    repo.write_index();
    let nginx = Nginx::start(repo.root(), NginxOpts::default());
    let url = nginx.url(&format!("/datasets/{uuid}/{file}"));
    // Warm the page cache so both runs read from memory.
    let _ = std::process::Command::new("cat")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .status();
    let start = Instant::now();
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{size_download}", &url])
        .output()
        .expect("running curl");
    let curl_secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        size.to_string()
    );

    let d = Daemon::start();
    add_source(&d, &nginx.url("/datasets"), "dsapi", false);
    let start = Instant::now();
    let t = expect_success(&d, &import(&d, &uuid, ""));
    let import_secs = start.elapsed().as_secs_f64();
    assert_eq!(t["result"]["bytes_fetched"], size);
    // The store's own ingest speed, for scale: the same bytes uploaded
    // over the socket (AddImageFile hashes and writes them the same way).
    let d2 = Daemon::start();
    let up = d2.create("big-put", json!({}));
    let start = Instant::now();
    upload_stream(
        &d2.sock,
        &format!("/images/{up}/file?compression=none&sha1={sha1}"),
        size,
        pattern,
    )
    .expect(200, None);
    let put_secs = start.elapsed().as_secs_f64();
    let mb = size as f64 / 1e6;
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "throughput ({profile} build of imgstore), 1 GiB over loopback:\n  curl -o /dev/null   {:>6.0} MB/s ({curl_secs:.2} s)\n  import-remote       {:>6.0} MB/s ({import_secs:.2} s: fetched, hashed, written, fsynced)\n  PUT /images/U/file  {:>6.0} MB/s ({put_secs:.2} s: the store's ingest alone)\n  import/curl = {:.2}, import/PUT = {:.2}",
        mb / curl_secs,
        mb / import_secs,
        mb / put_secs,
        curl_secs / import_secs,
        put_secs / import_secs,
    );
}

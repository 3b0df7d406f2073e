//! Hostile and malformed input: a corpus of bad requests, each answered
//! with a JSON 4xx and a stable code while the daemon keeps serving; slow
//! clients cut off by the configured timeouts; connection and task limits.
//!
//! Requests hyper cannot parse as HTTP at all (a broken request line or
//! header, a bad Content-Length) are refused by hyper itself before any
//! route runs; `conn.rs` turns its bare status into the same JSON
//! error shape, and the test checks both.

use crate::common::*;
use serde_json::{json, Value};
use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Sends raw bytes and reads one response (None if the server closed
/// without answering).
fn raw(d: &Daemon, bytes: &[u8]) -> Option<Resp> {
    let mut s = UnixStream::connect(&d.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(bytes);
    read_response(&mut BufReader::new(s)).ok()
}

fn json_req(d: &Daemon, method: &str, path: &str, body: &[u8]) -> Resp {
    request(
        &d.sock,
        method,
        path,
        &[("Content-Type", "application/json")],
        body,
    )
}

struct Case {
    what: &'static str,
    resp: Resp,
    status: u16,
    code: &'static str,
}

#[test]
fn corpus_of_bad_requests_gets_json_4xx_and_the_daemon_keeps_serving() {
    let d = Daemon::start();
    let u = d.create("target", json!({}));
    let active = d.create_active("active", b"bytes", json!({}));
    let valid = || json!({"name": "x", "version": "1", "type": "zone-dataset", "os": "smartos"});
    let with = |k: &str, v: Value| {
        let mut m = valid();
        m[k] = v;
        m.to_string().into_bytes()
    };
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let mut cases: Vec<Case> = Vec::new();
    let mut case = |what, resp, status, code| {
        cases.push(Case {
            what,
            resp,
            status,
            code,
        })
    };

    // Bodies: invalid JSON, invalid UTF-8, wrong types, huge numbers.
    case(
        "truncated JSON",
        json_req(&d, "POST", "/images", b"{\"name\": "),
        400,
        "InvalidContent",
    );
    case(
        "invalid UTF-8 in JSON",
        json_req(&d, "POST", "/images", b"{\"name\": \"\xff\xfe\"}"),
        400,
        "InvalidContent",
    );
    case(
        "nesting 5000 deep",
        json_req(&d, "POST", "/images", deep.as_bytes()),
        400,
        "InvalidContent",
    );
    case(
        "JSON array body",
        json_req(&d, "POST", "/images", b"[1,2]"),
        422,
        "ValidationFailed",
    );
    case(
        "JSON null body",
        json_req(&d, "POST", "/images", b"null"),
        422,
        "ValidationFailed",
    );
    case(
        "JSON string body",
        json_req(&d, "POST", "/images", b"\"x\""),
        422,
        "ValidationFailed",
    );
    case(
        "wrong types",
        json_req(
            &d,
            "POST",
            "/images",
            br#"{"name": 5, "version": [], "type": {}, "os": true}"#,
        ),
        422,
        "ValidationFailed",
    );
    case(
        "number beyond f64",
        json_req(
            &d,
            "POST",
            "/images",
            br#"{"name":"x","version":"1","type":"zvol","os":"linux","image_size":1e400}"#,
        ),
        400,
        "InvalidContent",
    );
    case("integer beyond u64", json_req(&d, "POST", "/images", br#"{"name":"x","version":"1","type":"zvol","os":"linux","image_size":123456789012345678901234567890}"#), 422, "ValidationFailed");
    case(
        "negative size",
        json_req(
            &d,
            "POST",
            "/images",
            br#"{"name":"x","version":"1","type":"zvol","os":"linux","nic_driver":"virtio","disk_driver":"virtio","cpu_type":"host","image_size":-1}"#,
        ),
        422,
        "ValidationFailed",
    );
    case(
        "tags not an object",
        json_req(&d, "POST", "/images", &with("tags", json!("x"))),
        422,
        "ValidationFailed",
    );
    case(
        "name with NUL",
        json_req(&d, "POST", "/images", &with("name", json!("a\u{0}b"))),
        422,
        "ValidationFailed",
    );
    case(
        "name with newline",
        json_req(&d, "POST", "/images", &with("name", json!("a\nb"))),
        422,
        "ValidationFailed",
    );
    case(
        "uuid in create body",
        json_req(&d, "POST", "/images", &with("uuid", json!("../x"))),
        422,
        "InvalidParameter",
    );
    case(
        "huge name",
        json_req(
            &d,
            "POST",
            "/images",
            &with("name", json!("a".repeat(100_000))),
        ),
        422,
        "ValidationFailed",
    );
    case(
        "update with wrong type",
        json_req(
            &d,
            "POST",
            &format!("/images/{u}?action=update"),
            br#"{"tags": []}"#,
        ),
        422,
        "ValidationFailed",
    );

    // Paths: bad UUIDs, dot segments, invalid UTF-8.
    case("short uuid", d.get("/images/1234"), 404, "ResourceNotFound");
    case(
        "uppercase uuid",
        d.get("/images/AAAAAAAA-0000-4000-8000-000000000000"),
        404,
        "ResourceNotFound",
    );
    case(
        "non-hex uuid",
        d.get("/images/00000000-0000-0000-0000-00000000000g"),
        404,
        "ResourceNotFound",
    );
    case(
        "uuid with newline",
        d.get(&format!("/images/{u}%0a")),
        404,
        "ResourceNotFound",
    );
    case(
        "dot-dot segment",
        d.get("/images/../../etc/passwd"),
        422,
        "InvalidParameter",
    );
    case(
        "encoded dot-dot slash",
        d.get("/images/%2e%2e%2fetc%2fpasswd/file"),
        422,
        "InvalidParameter",
    );
    case("encoded NUL", d.get("/images/%00"), 422, "InvalidParameter");
    case(
        "invalid UTF-8 in path",
        d.get("/images/%ff%fe"),
        422,
        "InvalidParameter",
    );
    case(
        "unknown route",
        d.get("/etc/passwd"),
        404,
        "ResourceNotFound",
    );
    case(
        "unknown method",
        request(&d.sock, "BREW", "/images", &[], b""),
        405,
        "MethodNotAllowed",
    );

    // Queries: duplicate keys, huge numbers, bad values.
    case(
        "duplicate list key",
        d.get("/images?limit=1&limit=2"),
        422,
        "InvalidParameter",
    );
    case(
        "duplicate action",
        d.post(&format!("/images/{u}?action=activate&action=disable")),
        422,
        "InvalidParameter",
    );
    case(
        "duplicate compression",
        d.put(
            &format!("/images/{u}/file?compression=none&compression=gzip"),
            b"x",
        ),
        422,
        "InvalidParameter",
    );
    case(
        "huge limit",
        d.get("/images?limit=99999999999999999999999"),
        422,
        "InvalidParameter",
    );
    case(
        "negative limit",
        d.get("/images?limit=-1"),
        422,
        "InvalidParameter",
    );
    case(
        "huge size",
        d.put(
            &format!("/images/{u}/file?compression=none&size=184467440737095516160"),
            b"x",
        ),
        422,
        "InvalidParameter",
    );
    case(
        "size as float",
        d.put(&format!("/images/{u}/file?compression=none&size=1e3"), b"x"),
        422,
        "InvalidParameter",
    );
    case(
        "compression path",
        d.put(&format!("/images/{u}/file?compression=../../x"), b"x"),
        422,
        "InvalidParameter",
    );
    case(
        "huge wait",
        d.get("/tasks/00000000-0000-4000-8000-000000000000?wait=99999999999"),
        422,
        "InvalidParameter",
    );
    case(
        "bad vacuum days",
        d.post("/vacuum?uninstall_unused_days=1e9"),
        422,
        "InvalidParameter",
    );
    case(
        "bad dry_run",
        d.post("/vacuum?dry_run=yes"),
        422,
        "InvalidParameter",
    );
    case(
        "bad verify",
        d.get("/state?verify=1"),
        422,
        "InvalidParameter",
    );
    case(
        "invalid UTF-8 query value",
        d.get("/images?state=%ff"),
        422,
        "InvalidParameter",
    );

    // Fields that reach the filesystem: relative paths, .., NUL.
    for (what, path) in [
        ("export to a relative path", "tmp/x"),
        ("export through ..", "/tmp/../etc"),
        ("export with NUL", "/tmp/%00x"),
    ] {
        case(
            what,
            d.post(&format!("/images/{active}?action=export&path={path}")),
            422,
            "InvalidParameter",
        );
    }
    for (what, body) in [
        (
            "install-from-files relative",
            json!({"manifest": "m.json", "file": "/tmp/f"}),
        ),
        (
            "install-from-files ..",
            json!({"manifest": "/tmp/../etc/passwd", "file": "/tmp/f"}),
        ),
        (
            "install-from-files not a manifest",
            json!({"manifest": "/etc/passwd", "file": "/etc/passwd"}),
        ),
        (
            "install-from-files wrong type",
            json!({"manifest": 5, "file": "/tmp/f"}),
        ),
        (
            "install-from-files unknown field",
            json!({"manifest": "/a", "file": "/b", "x": 1}),
        ),
    ] {
        case(
            what,
            d.post_json("/images?action=install-from-files", &body),
            422,
            "InvalidParameter",
        );
    }

    // Dataset and pool names: @, spaces, leading -, .., absolute.
    for ds in [
        "zones/x@snap",
        "zones/a b",
        "-zones/x",
        "zones/-x",
        "zones/../x",
        "/zones/x",
        "",
        "zones//x",
    ] {
        case(
            "bad dataset name",
            d.post_json(
                "/images?action=create-from-dataset",
                &json!({"dataset": ds, "manifest": {"name": "n", "version": "1"}}),
            ),
            422,
            "InvalidParameter",
        );
    }
    for pool in ["bad@name", "a%20b", "-p", "..", "p/q"] {
        case(
            "bad pool name",
            d.post(&format!("/images/{active}?action=install&pool={pool}")),
            422,
            "InvalidParameter",
        );
    }

    // Headers and bodies at the edges of the limits.
    let big = "a".repeat(20_000);
    case(
        "header over max_header_bytes",
        request(&d.sock, "GET", "/ping", &[("X-Big", big.as_str())], b""),
        431,
        "RequestHeaderFieldsTooLarge",
    );
    case(
        "body over max_body_bytes",
        json_req(&d, "POST", "/images", &vec![b' '; 2 << 20]),
        413,
        "PayloadTooLarge",
    );
    case(
        "file over max_file_bytes",
        request(
            &d.sock,
            "PUT",
            &format!("/images/{u}/file?compression=none&size=68719476737"),
            &[],
            b"x",
        ),
        400,
        "Upload",
    );
    let chunked = format!(
        "PUT /images/{u}/file?compression=none HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"
    );
    case(
        "broken chunked body",
        raw(&d, chunked.as_bytes()).expect("an answer"),
        400,
        "Upload",
    );

    let n = cases.len();
    for c in cases {
        let text = String::from_utf8_lossy(&c.resp.body).into_owned();
        assert_eq!(c.resp.status, c.status, "{}: body {text}", c.what);
        let v: Value = serde_json::from_slice(&c.resp.body)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {text}", c.what));
        assert_eq!(v["code"], c.code, "{}: {text}", c.what);
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            c.what
        );
    }

    // Requests hyper refuses before routing: hyper's own 4xx, rewritten to
    // JSON (`conn.rs`) with a message saying what was wrong, then
    // still serving.
    let huge = "b".repeat(200_000);
    let framing: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        (
            "no HTTP version",
            b"GET /ping\r\n\r\n".to_vec(),
            400,
            "BadRequest",
            "request line",
        ),
        (
            "header without colon",
            b"GET /ping HTTP/1.1\r\nHost x\r\n\r\n".to_vec(),
            400,
            "BadRequest",
            "header name",
        ),
        (
            "bad Content-Length",
            b"POST /images HTTP/1.1\r\nContent-Length: abc\r\n\r\n".to_vec(),
            400,
            "BadRequest",
            "Content-Length",
        ),
        (
            "two Content-Lengths",
            b"POST /images HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx".to_vec(),
            400,
            "BadRequest",
            "Content-Length",
        ),
        (
            "raw 0xff in path",
            b"GET /images/\xff HTTP/1.1\r\n\r\n".to_vec(),
            400,
            "BadRequest",
            "HTTP/1.1",
        ),
        (
            "header far over the limit",
            format!("GET /ping HTTP/1.1\r\nX-Huge: {huge}\r\n\r\n").into_bytes(),
            431,
            "RequestHeaderFieldsTooLarge",
            "max_header_bytes",
        ),
        (
            "binary garbage",
            vec![0u8, 1, 2, 3, 255, 254, b'\r', b'\n', b'\r', b'\n'],
            400,
            "BadRequest",
            "METHOD TARGET",
        ),
    ];
    for (what, bytes, status, code, says) in &framing {
        let r = raw(&d, bytes).unwrap_or_else(|| panic!("{what}: no response"));
        let v = r.expect(*status, Some(code));
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{what}: {msg}");
        d.get("/ping").expect(200, None);
    }
    // Nothing above created or changed an image.
    let all = d.get("/images?state=all").json();
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");

    // IMGAPI allows `/` and `.` in names and versions; where they reach the
    // filesystem (export file names) they cannot climb out of the directory.
    let sneaky = d.create_active(
        "../../../etc",
        b"x",
        json!({"version": "1/../../../../tmp/y"}),
    );
    let out = d.dir.path().join("export");
    std::fs::create_dir(&out).unwrap();
    let t = d
        .post(&format!(
            "/images/{sneaky}?action=export&path={}",
            out.display()
        ))
        .expect(202, None);
    let t = d
        .get(&format!("/tasks/{}?wait=30", t["id"].as_str().unwrap()))
        .json();
    assert_eq!(t["status"], "success", "{t}");
    for key in ["manifest_path", "file_path"] {
        let p = std::path::Path::new(t["result"][key].as_str().unwrap());
        assert_eq!(
            p.parent(),
            Some(out.as_path()),
            "{key} escaped: {}",
            p.display()
        );
        assert!(p.exists());
    }
    let written = std::fs::read_dir(&out).unwrap().count();
    assert_eq!(written, 2, "export wrote only its two files");
    assert_eq!(d.get(&format!("/images/{active}/file")).body, b"bytes");
    d.get("/state").expect(200, None);
    println!(
        "hostile corpus: {n} bad requests answered with JSON 4xx by the router, {} unparseable ones by conn::HyperErrors; daemon still serving",
        framing.len()
    );
}

/// A config with short timeouts for the slow-client tests.
const SLOW: &str = "[limits]\nheader_timeout_secs = 2\nidle_timeout_secs = 2\nrequest_timeout_secs = 3\nmin_upload_bytes_per_sec = 1024\n";

/// Sends `bytes` one at a time every `gap` until the server answers or
/// closes; returns the response (if any) and when it came.
fn trickle(d: &Daemon, head: &[u8], bytes: &[u8], gap: Duration) -> (Option<Resp>, Duration) {
    let start = Instant::now();
    let mut s = UnixStream::connect(&d.sock).unwrap();
    s.write_all(head).unwrap();
    let mut probe = [0u8; 1];
    for b in bytes {
        if s.write_all(std::slice::from_ref(b)).is_err() {
            break;
        }
        std::thread::sleep(gap);
        // Stop trickling once the server has answered or closed.
        use nix::sys::socket::{recv, MsgFlags};
        use std::os::fd::AsRawFd;
        match recv(
            s.as_raw_fd(),
            &mut probe,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Err(nix::errno::Errno::EAGAIN) => {}
            _ => break,
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never cut off");
    }
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let r = read_response(&mut BufReader::new(&s)).ok();
    (r, start.elapsed())
}

#[test]
fn slow_clients_are_cut_off() {
    let d = Daemon::start_configured(SLOW);
    let u = d.create("slow", json!({}));

    // Headers a byte every 300 ms: cut off by the 2 s header timeout.
    let (r, t) = trickle(&d, b"", b"GET /images HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n", Duration::from_millis(300));
    let v = r
        .expect("a JSON 408 for a request head cut off half-way")
        .expect(408, Some("RequestTimeout"));
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("header_timeout_secs"),
        "{v}"
    );
    assert!(
        t < Duration::from_secs(8),
        "slow headers held the connection for {t:?}"
    );

    // A JSON body a byte every 300 ms: 408 after request_timeout_secs.
    let body = vec![b' '; 200];
    let head = b"POST /images HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n";
    let (r, t) = trickle(&d, head, &body, Duration::from_millis(300));
    r.expect("an answer").expect(408, Some("RequestTimeout"));
    assert!(t < Duration::from_secs(8), "{t:?}");

    // An upload a byte every 300 ms: under min_upload_bytes_per_sec.
    let head = format!(
        "PUT /images/{u}/file?compression=none HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    );
    let (r, t) = trickle(
        &d,
        head.as_bytes(),
        &[7u8; 1000],
        Duration::from_millis(300),
    );
    let v = r.expect("an answer").expect(408, Some("RequestTimeout"));
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("min_upload_bytes_per_sec"),
        "{v}"
    );
    assert!(t < Duration::from_secs(8), "{t:?}");
    assert_eq!(std::fs::read_dir(d.data.join("ingest")).unwrap().count(), 0);

    // An idle keep-alive connection is closed after the header timeout.
    let mut s = UnixStream::connect(&d.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "idle connection got data");
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );

    d.get("/ping").expect(200, None);
    let m = d.get(&format!("/images/{u}")).expect(200, None);
    assert_eq!(
        m["files"],
        serde_json::json!([]),
        "no partial file recorded: {m}"
    );
}

#[test]
fn connection_limit_queues_and_recovers() {
    let d = Daemon::start_configured(&format!("{SLOW}max_connections = 3\n"));
    // Three connections that never finish their headers hold every slot.
    let held: Vec<UnixStream> = (0..3)
        .map(|_| {
            let mut s = UnixStream::connect(&d.sock).unwrap();
            s.write_all(b"GET /ping HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // A fourth waits in the backlog until the header timeout frees a slot.
    let start = Instant::now();
    let r = request(&d.sock, "GET", "/ping", &[], b"");
    r.expect(200, None);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(1000),
        "not queued: {waited:?}"
    );
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    drop(held);
}

#[test]
fn task_limit_refuses_with_429() {
    let d = Daemon::start_configured("[limits]\nmax_tasks = 1\n");
    let u = d.create_active("blocker", b"export me", json!({}));
    let dir = d.dir.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    // The export writes its manifest through this temp name: a FIFO there
    // blocks the task until the test opens the other end.
    let fifo = dir.join(".blocker-1.0.0.imgmanifest.partial");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let t = d
        .post(&format!("/images/{u}?action=export&path={}", dir.display()))
        .expect(202, None);
    let v = d
        .post(&format!("/images/{u}?action=export&path=/tmp"))
        .expect(429, Some("TooManyTasks"));
    assert!(v["message"].as_str().unwrap().contains("max_tasks"), "{v}");
    // Release the first task; then a new one is accepted.
    let mut r = std::fs::File::open(&fifo).unwrap();
    let mut sink = Vec::new();
    r.read_to_end(&mut sink).unwrap();
    let id = t["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = d.get(&format!("/tasks/{id}?wait=5")).json();
        if t["status"] != "processing" {
            break;
        }
        assert!(Instant::now() < deadline, "{t}");
    }
    let other = d.dir.path().join("out2");
    std::fs::create_dir(&other).unwrap();
    d.post(&format!(
        "/images/{u}?action=export&path={}",
        other.display()
    ))
    .expect(202, None);
}

#[test]
fn client_that_stops_reading_is_dropped() {
    let d = Daemon::start_configured(SLOW);
    let mut data = vec![0u8; 8 << 20];
    pattern(&mut data, 3);
    let u = d.create_active("big", &data, json!({}));
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
            .unwrap()
            .count()
    };
    let idle = fds();
    // Ask for 8 MiB and read nothing: the socket buffers fill, the daemon's
    // write blocks, and after idle_timeout_secs the connection is dropped
    // (with its blob file and reader thread).
    let mut s = UnixStream::connect(&d.sock).unwrap();
    write!(s, "GET /images/{u}/file HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    assert!(fds() > idle, "the download is in progress");
    while fds() > idle {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "a client that does not read still holds {} fds (idle {idle})",
            fds()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "non-reading client dropped after {:.1} s (idle_timeout_secs = 2)",
        start.elapsed().as_secs_f64()
    );
    drop(s);
    d.get("/ping").expect(200, None);
}

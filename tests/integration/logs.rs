//! The daemon's log: Bunyan JSON lines, one line per request with a request
//! id echoed in `x-request-id`, text format on request, level set by the
//! config and changed by SIGHUP.

use crate::common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

fn lines(d: &Daemon) -> Vec<Value> {
    d.log_text()
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l:?}"))
        })
        .collect()
}

fn request_lines(d: &Daemon, req_id: &str) -> Vec<Value> {
    lines(d)
        .into_iter()
        .filter(|l| l["msg"] == "request" && l["req_id"] == req_id)
        .collect()
}

/// Polls the log until `pred` holds (the daemon writes asynchronously).
fn wait_log(d: &Daemon, what: &str, pred: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pred(&d.log_text()) {
        assert!(
            Instant::now() < deadline,
            "log never showed {what}:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_line_is_bunyan_json() {
    let d = Daemon::start();
    d.get("/ping").expect(200, None);
    d.get("/images/nope").expect(404, Some("ResourceNotFound"));
    wait_log(&d, "two requests", |t| {
        t.matches("\"msg\":\"request\"").count() >= 2
    });
    let all = lines(&d);
    assert!(all.len() >= 3, "{all:?}");
    for l in &all {
        assert_eq!(l["name"], "imgstore", "{l}");
        assert!(l["hostname"].as_str().is_some_and(|h| !h.is_empty()), "{l}");
        assert_eq!(l["pid"], d.pid(), "{l}");
        assert!(
            matches!(l["level"].as_u64(), Some(10 | 20 | 30 | 40 | 50)),
            "{l}"
        );
        assert!(l["msg"].is_string(), "{l}");
        assert_eq!(l["v"], 0, "{l}");
        let t = l["time"].as_str().unwrap_or_default();
        assert!(
            t.len() == 24 && t.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(t).is_ok(),
            "time {t:?} is not RFC 3339 with milliseconds in UTC"
        );
    }
    assert!(all
        .iter()
        .any(|l| l["msg"] == "imgstore ready" && l["level"] == 30));
}

#[test]
fn each_request_is_logged_once_with_its_request_id() {
    let d = Daemon::start();
    let uid = nix::unistd::getuid().as_raw();

    // A client's request id is kept and echoed.
    let r = request(
        &d.sock,
        "GET",
        "/ping",
        &[("x-request-id", "test-req-1")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("test-req-1"));
    // Without one the daemon makes one up, and the log has the same.
    let r = d.get("/images/0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9");
    assert_eq!(r.status, 404);
    let made_up = r.header("x-request-id").expect("x-request-id").to_string();
    assert!(uuid::Uuid::parse_str(&made_up).is_ok(), "{made_up}");

    wait_log(&d, "both requests", |t| {
        t.contains("test-req-1") && t.contains(&made_up)
    });
    let got = request_lines(&d, "test-req-1");
    assert_eq!(got.len(), 1, "logged once: {got:?}");
    let l = &got[0];
    assert_eq!(l["level"], 30);
    assert_eq!(l["method"], "GET");
    assert_eq!(l["path"], "/ping");
    assert_eq!(l["status"], 200);
    assert!(l["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{l}");
    assert_eq!(l["peer_uid"], uid);
    let got = request_lines(&d, &made_up);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["status"], 404);
    assert_eq!(
        got[0]["path"],
        "/images/0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
    );
}

#[test]
fn text_format_is_for_people() {
    let d = Daemon::start_with(&["--log-format", "text"]);
    request(
        &d.sock,
        "GET",
        "/ping",
        &[("x-request-id", "text-req")],
        b"",
    );
    wait_log(&d, "the request", |t| t.contains("text-req"));
    let text = d.log_text();
    let line = text.lines().find(|l| l.contains("text-req")).unwrap();
    assert!(serde_json::from_str::<Value>(line).is_err(), "{line}");
    assert!(line.contains("INFO") && line.contains("request"), "{line}");
    assert!(line.contains("/ping") && line.contains("200"), "{line}");
    assert!(
        !line.contains('\u{1b}'),
        "no colour when stderr is a file: {line:?}"
    );
}

#[test]
fn sighup_changes_the_level() {
    let mut d = Daemon::start();
    // The level comes from the config: warn hides request lines...
    d.stop();
    std::fs::write(d.config_path(), "log_level = \"warn\"\n").unwrap();
    d.spawn();
    request(&d.sock, "GET", "/ping", &[("x-request-id", "at-warn")], b"");
    // ...and SIGHUP with info brings them back. The reload line itself is
    // at info, so it shows once the new level applies.
    std::fs::write(d.config_path(), "log_level = \"info\"\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_log(&d, "the reload", |t| t.contains("configuration reloaded"));
    request(&d.sock, "GET", "/ping", &[("x-request-id", "at-info")], b"");
    wait_log(&d, "the request at info", |t| t.contains("at-info"));
    assert!(request_lines(&d, "at-warn").is_empty(), "{}", d.log_text());

    // Down to warn again. The request line is written before the answer
    // is sent, so an answered request that is not in the log was not
    // logged; the reload itself is asynchronous, so probe until it applies.
    std::fs::write(d.config_path(), "log_level = \"warn\"\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        n += 1;
        let id = format!("probe-{n}");
        request(&d.sock, "GET", "/ping", &[("x-request-id", &id)], b"");
        if !d.log_text().contains(&id) {
            break;
        }
        assert!(Instant::now() < deadline, "level never went to warn");
        std::thread::sleep(Duration::from_millis(50));
    }
    request(
        &d.sock,
        "GET",
        "/ping",
        &[("x-request-id", "after-warn")],
        b"",
    );
    assert!(!d.log_text().contains("after-warn"), "{}", d.log_text());
}

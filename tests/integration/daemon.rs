//! Daemon lifecycle: locking, stale sockets, signals, config, durability.

use crate::common::*;
use serde_json::json;
use std::process::Stdio;

#[test]
fn sigterm_exits_cleanly_and_removes_the_socket() {
    let mut d = Daemon::start();
    let status = d.stop();
    assert!(status.success(), "exit {status}; log:\n{}", d.log_text());
    assert!(!d.sock.exists(), "socket left behind");
}

#[test]
fn second_daemon_on_the_same_data_dir_is_refused_naming_the_pid() {
    let d = Daemon::start();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(&d.data)
        .arg("--socket")
        .arg(d.dir.path().join("other.sock"))
        .arg("--config")
        .arg(d.config_path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {}", d.pid())), "{err}");
    assert!(err.contains("in use"), "{err}");
    d.get("/ping").expect(200, None);
}

#[test]
fn stale_socket_after_a_crash_is_replaced() {
    let mut d = Daemon::start();
    d.kill9();
    assert!(d.sock.exists(), "a crash leaves the socket file");
    d.spawn();
    d.get("/ping").expect(200, None);
}

#[test]
fn socket_mode_comes_from_the_config() {
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::start();
    let mode = std::fs::metadata(&d.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    drop(d);
    let mut d = Daemon::start_with(&[]);
    d.stop();
    std::fs::write(d.config_path(), "socket_mode = \"0600\"\n").unwrap();
    d.spawn();
    let mode = std::fs::metadata(&d.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn unknown_config_key_is_refused_naming_key_and_file() {
    let d = Daemon::start();
    let cfg = d.dir.path().join("bad.toml");
    std::fs::write(&cfg, "data_dir = \"/tmp/x\"\nsokcet = \"/tmp/y\"\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sokcet") && err.contains("bad.toml"), "{err}");
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config", "/nonexistent/imgstore.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/imgstore.toml"));
}

#[test]
fn sighup_reloads_limits_and_refuses_a_bad_config() {
    let d = Daemon::start();
    let big = vec![b' '; 4096];
    // Default body limit (1 MiB) accepts 4 KiB of whitespace (an empty body).
    d.post_json("/images", &json!({}))
        .expect(422, Some("ValidationFailed"));
    std::fs::write(
        d.config_path(),
        "log_level = \"debug\"\n[limits]\nmax_body_bytes = 1000\n",
    )
    .unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for_log(&d, "configuration reloaded");
    request(&d.sock, "POST", "/images", &[], &big).expect(413, Some("PayloadTooLarge"));
    assert!(
        d.log_text().contains("max_body_bytes: 1000"),
        "reload logs what changed"
    );
    // An invalid config is refused; the running one stays.
    std::fs::write(d.config_path(), "[limits]\nmax_body_bytes = \"lots\"\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for_log(&d, "new config refused");
    request(&d.sock, "POST", "/images", &[], &big).expect(413, Some("PayloadTooLarge"));
    d.get("/ping").expect(200, None);
}

fn wait_for_log(d: &Daemon, needle: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !d.log_text().contains(needle) {
        assert!(
            std::time::Instant::now() < deadline,
            "log never said {needle:?}:\n{}",
            d.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn acknowledged_changes_survive_kill_9_and_restart() {
    let mut d = Daemon::start();
    let data = b"durable bytes".to_vec();
    let a = d.create_active("a", &data, json!({"tags": {"k": "v"}}));
    let b = d.create("b", json!({}));
    let c = d.create_active("c", b"c", json!({}));
    d.post(&format!("/images/{c}?action=disable"))
        .expect(200, None);
    let gone = d.create("gone", json!({}));
    d.delete(&format!("/images/{gone}")).expect(204, None);
    let before = d.get("/images?state=all").json();
    d.kill9();
    d.spawn();
    assert_eq!(d.get("/images?state=all").json(), before);
    assert_eq!(d.get(&format!("/images/{a}/file")).body, data);
    assert_eq!(
        d.get(&format!("/images/{b}")).json()["state"],
        "unactivated"
    );
    assert_eq!(d.get(&format!("/images/{c}")).json()["state"], "disabled");
    d.get(&format!("/images/{gone}"))
        .expect(404, Some("ResourceNotFound"));
}

#[test]
fn index_is_rebuilt_from_records_when_the_database_is_lost() {
    let mut d = Daemon::start();
    let a = d.create_active("a", b"abc", json!({}));
    let before = d.get("/images?state=all").json();
    d.stop();
    std::fs::remove_dir_all(d.data.join("db")).unwrap();
    d.spawn();
    assert_eq!(d.get("/images?state=all").json(), before);
    assert_eq!(d.get(&format!("/images/{a}/file")).body, b"abc");
}

#[test]
fn in_flight_request_finishes_during_graceful_shutdown() {
    let mut d = Daemon::start();
    let uuid = d.create("slow", json!({}));
    // Start an upload, send half, then SIGTERM; the rest follows and the
    // upload must still succeed before the daemon exits 0.
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    use std::io::Write;
    let data = vec![9u8; 2_000_000];
    write!(s, "PUT /images/{uuid}/file?compression=none HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", data.len()).unwrap();
    s.write_all(&data[..1_000_000]).unwrap();
    d.signal(nix::sys::signal::Signal::SIGTERM);
    // The socket disappears once accepting stops.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while d.sock.exists() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    s.write_all(&data[1_000_000..]).unwrap();
    let r = read_response(&mut std::io::BufReader::new(s)).unwrap();
    r.expect(200, None);
    let status = d.stop_after_signal();
    assert!(status.success(), "{status}");
}

#[test]
fn socket_group_comes_from_the_config() {
    use std::os::unix::fs::MetadataExt;
    let mut d = Daemon::start();
    d.stop();
    let gid = nix::unistd::Group::from_name("daemon")
        .unwrap()
        .expect("group daemon exists")
        .gid;
    std::fs::write(
        d.config_path(),
        "socket_group = \"daemon\"\nsocket_mode = \"0660\"\n",
    )
    .unwrap();
    d.spawn();
    let md = std::fs::metadata(&d.sock).unwrap();
    assert_eq!(md.gid(), gid.as_raw());
    assert_eq!(md.mode() & 0o777, 0o660);
    d.stop();
    // A group that does not exist is refused, naming it.
    std::fs::write(d.config_path(), "socket_group = \"no-such-group-xyz\"\n").unwrap();
    let out = d.command().output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-group-xyz"));
}

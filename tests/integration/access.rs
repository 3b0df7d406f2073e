//! Access control over the socket: owner, group and mode from the config,
//! writers by uid/gid from SO_PEERCRED, read-only for everyone else, and
//! the peer uid in the request log.
//!
//! The tests run as root. To be a *reader*, the test client must not be the
//! daemon's own uid (always a writer), so the daemon runs as `nobody`
//! (65534) and root is left out of `writer_uids`.

use crate::common::*;
use serde_json::json;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

const NOBODY: u32 = 65534;

/// A daemon running as nobody with the given config text.
fn as_nobody(config: &str) -> Daemon {
    assert!(
        nix::unistd::geteuid().is_root(),
        "access tests run the daemon as another user: run them as root"
    );
    let mut d = Daemon::new(&[]);
    std::fs::write(d.config_path(), config).unwrap();
    nix::unistd::chown(
        d.dir.path(),
        Some(nix::unistd::Uid::from_raw(NOBODY)),
        Some(nix::unistd::Gid::from_raw(NOBODY)),
    )
    .unwrap();
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d.run_as = Some((NOBODY, NOBODY));
    d.spawn();
    d
}

#[test]
fn readers_read_and_only_writers_write() {
    let d = as_nobody("[access]\nwriter_uids = []\nwriter_gids = []\n");
    // The daemon really runs as nobody and owns its data dir.
    let pid_uid = std::fs::metadata(format!("/proc/{}", d.pid()))
        .unwrap()
        .uid();
    assert_eq!(pid_uid, NOBODY);
    d.get("/ping").expect(200, None);
    d.get("/images").expect(200, None);
    d.get("/tasks").expect(200, None);
    d.get("/state").expect(200, None);
    {
        use std::io::{BufRead, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
        s.write_all(b"HEAD /images HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "HEAD: {line}");
    }
    let uuid = "11111111-1111-4111-8111-111111111111";
    let refused: &[(&str, String)] = &[
        ("POST", "/images".into()),
        ("POST", format!("/images/{uuid}?action=activate")),
        ("PUT", format!("/images/{uuid}/file?compression=none")),
        ("DELETE", format!("/images/{uuid}")),
        (
            "DELETE",
            "/tasks/00000000-0000-4000-8000-000000000000".into(),
        ),
        ("POST", "/vacuum?dry_run=true".into()),
        ("POST", "/state?action=repair".into()),
        ("PATCH", "/no/such/route".into()),
    ];
    for (method, path) in refused {
        let body = json!({"name": "x", "version": "1", "type": "zone-dataset", "os": "smartos"});
        let v = request(&d.sock, method, path, &[], body.to_string().as_bytes())
            .expect(403, Some("OperatorOnly"));
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains("uid 0") && msg.contains("writer_uids"),
            "{method} {path}: {msg}"
        );
    }
    assert_eq!(
        d.get("/images?state=all").json(),
        json!([]),
        "nothing was written"
    );
    // The peer uid is logged with every request.
    let log = d.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("\"peer_uid\":0") && l.contains("\"status\":403")),
        "no request line with peer_uid 0:\n{log}"
    );
}

#[test]
fn writers_by_uid_or_gid_and_changes_apply_on_sighup() {
    let d = as_nobody("[access]\nwriter_uids = []\n");
    d.post_json("/images", &json!({}))
        .expect(403, Some("OperatorOnly"));
    // Root by uid.
    std::fs::write(d.config_path(), "[access]\nwriter_uids = [0]\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_until(&d, || d.post_json("/images", &json!({})).status != 403);
    let u = d.create_active("w", b"written by root", json!({}));
    // Root by gid 0 only.
    std::fs::write(
        d.config_path(),
        "[access]\nwriter_uids = [4242]\nwriter_gids = [0]\n",
    )
    .unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    // Probe with a write that changes nothing (an invalid CreateImage): 422
    // for a writer, 403 for everyone else.
    wait_until(&d, || {
        d.post_json("/images", &serde_json::json!({})).status == 422
    });
    d.post(&format!("/images/{u}?action=disable"))
        .expect(200, None);
    // Neither: read only again.
    std::fs::write(
        d.config_path(),
        "[access]\nwriter_uids = [4242]\nwriter_gids = [4242]\n",
    )
    .unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_until(&d, || {
        d.post_json("/images", &serde_json::json!({})).status == 403
    });
    d.post(&format!("/images/{u}?action=enable"))
        .expect(403, Some("OperatorOnly"));
    assert_eq!(d.get(&format!("/images/{u}")).json()["state"], "disabled");
    assert_eq!(d.get(&format!("/images/{u}/file")).body, b"written by root");
}

fn wait_until(d: &Daemon, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met; log:\n{}",
            d.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn socket_owner_group_and_mode_come_from_the_config() {
    let d = Daemon::start_configured(
        "socket_owner = \"nobody\"\nsocket_group = \"nogroup\"\nsocket_mode = \"0640\"\n",
    );
    let md = std::fs::metadata(&d.sock).unwrap();
    assert_eq!(md.uid(), NOBODY, "owner");
    assert_eq!(md.gid(), 65534, "group");
    assert_eq!(md.permissions().mode() & 0o777, 0o640);
    d.get("/ping").expect(200, None);
    // An unknown user is refused at start, naming the key.
    let bad = Daemon::new(&[]);
    std::fs::write(bad.config_path(), "socket_owner = \"no-such-user-x\"\n").unwrap();
    let out = bad.command().output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("socket_owner") && err.contains("no-such-user-x"),
        "{err}"
    );
}

#[test]
fn the_daemons_own_uid_is_always_a_writer() {
    // Root daemon, root client, no writer listed: still a writer.
    let d = Daemon::start_configured("[access]\nwriter_uids = []\n");
    d.create_active("own", b"x", json!({}));
}

/// `curl` as uid/gid 4243 with the given supplementary groups: POST an
/// invalid CreateImage (422 for a writer, 403 for a reader, and it changes
/// nothing either way) and return the status.
fn post_as(d: &Daemon, groups: &[u32]) -> u16 {
    use std::os::unix::process::CommandExt;
    let groups: Vec<nix::unistd::Gid> = groups
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    let mut cmd = std::process::Command::new("curl");
    cmd.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--unix-socket",
    ])
    .arg(&d.sock)
    .args([
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        "{}",
        "http://localhost/images",
    ]);
    // SAFETY: only async-signal-safe calls (setgroups, setgid, setuid)
    // between fork and exec.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setgroups(&groups)?;
            nix::unistd::setgid(nix::unistd::Gid::from_raw(4243))?;
            nix::unistd::setuid(nix::unistd::Uid::from_raw(4243))?;
            Ok(())
        });
    }
    let out = cmd.output().expect("curl runs");
    let code = String::from_utf8_lossy(&out.stdout);
    code.trim()
        .parse()
        .unwrap_or_else(|_| panic!("curl: {code} {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_supplementary_group_in_writer_gids_makes_a_writer() {
    let d = as_nobody("socket_mode = \"0666\"\n[access]\nwriter_uids = []\nwriter_gids = [4242]\n");
    // Same uid and primary gid (4243, not a writer) each time; only the
    // supplementary groups differ.
    assert_eq!(post_as(&d, &[]), 403, "no supplementary groups: reader");
    assert_eq!(post_as(&d, &[5, 4244]), 403, "other groups: reader");
    assert_eq!(post_as(&d, &[5, 4242]), 422, "member of 4242: writer");
    let log = d.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("\"peer_uid\":4243") && l.contains("\"status\":422")),
        "no request line from uid 4243:\n{log}"
    );
    assert_eq!(d.get("/images?state=all").json(), json!([]));
}

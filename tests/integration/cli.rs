//! The CLI: the real binary in client mode against a real daemon.
//!
//! Verbs whose daemon side is still being built (installed images under
//! `/pools`, tasks, remote sources, vacuum) are tested against what the
//! daemon answers today, and check the full contract as soon as the route
//! exists: [`route_exists`] asks the daemon, so these tests need no change
//! when the feature lands. With the pool API, `IMGSTORE_TEST_POOL` names
//! the pool to use (default: the config's default_pool, `zones`).

use crate::common::*;
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A finished CLI run.
pub struct Run {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn context(&self) -> String {
        format!(
            "imgstore {}\nexit: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }

    /// Asserts the exit status; on failure prints the command and output.
    #[track_caller]
    pub fn code(&self, want: i32) -> &Run {
        assert_eq!(self.code, Some(want), "{}", self.context());
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Run {
        self.code(0)
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", self.context()))
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.context()
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Run {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{}",
            self.context()
        );
        self
    }
}

/// The CLI with a clean environment: no IMGSTORE_* from the caller, and an
/// empty config (the embedded defaults) unless a test sets one.
pub fn cli_command(sock: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("IMGSTORE_") {
            c.env_remove(k);
        }
    }
    c.env("IMGSTORE_SOCKET", sock)
        .env("IMGSTORE_CONFIG", "/dev/null")
        .args(args)
        .stdin(Stdio::null());
    c
}

pub fn run_cli(sock: &Path, args: &[&str]) -> Run {
    run_command(cli_command(sock, args), args)
}

pub fn run_command(mut c: Command, args: &[&str]) -> Run {
    let out = c.output().expect("running imgstore");
    Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn cli(d: &Daemon, args: &[&str]) -> Run {
    // The test pool is given as a config default, as an operator would.
    let cfg = d.dir.path().join("cli.toml");
    if !cfg.exists() {
        std::fs::write(&cfg, format!("default_pool = {:?}\n", test_pool())).unwrap();
    }
    let mut c = cli_command(&d.sock, args);
    c.env("IMGSTORE_CONFIG", &cfg);
    run_command(c, args)
}

fn test_pool() -> String {
    crate::zfs::pool().to_string()
}

/// Whether the daemon implements `method path` (or answers "no such route").
pub fn route_exists(d: &Daemon, method: &str, path: &str) -> bool {
    let r = request(&d.sock, method, path, &[], b"");
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    !(r.status == 404
        && v["code"] == "ResourceNotFound"
        && v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("route ")))
}

/// Whether `POST /images?action=ACTION` is known (the current daemon
/// refuses unknown actions on /images with InvalidParameter).
fn images_action_exists(d: &Daemon, action: &str) -> bool {
    let r = d.post_json(&format!("/images?action={action}"), &json!({}));
    let text = String::from_utf8_lossy(&r.body);
    !text.contains("unknown action")
}

/// Asserts the CLI reported a route the daemon lacks: exit 1, the code and
/// the daemon's message, and a hint.
#[track_caller]
fn assert_reports_missing_route(r: &Run) {
    r.code(1)
        .stderr_has("imgstore: error (ResourceNotFound): route ")
        .stderr_has("does not exist")
        .stderr_has("does not implement the request");
}

fn write_image(dir: &Path, name: &str, manifest: Value, data: &[u8]) -> (PathBuf, PathBuf) {
    let m = dir.join(format!("{name}.json"));
    let f = dir.join(format!("{name}.file"));
    std::fs::write(&m, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    std::fs::write(&f, data).unwrap();
    (m, f)
}

fn minimal(name: &str, version: &str) -> Value {
    json!({"name": name, "version": version, "type": "other", "os": "other"})
}

/// Adds an image with the CLI; returns its uuid.
fn cli_add(d: &Daemon, name: &str, version: &str, data: &[u8]) -> String {
    let (m, f) = write_image(
        d.dir.path(),
        &format!("{name}-{version}"),
        minimal(name, version),
        data,
    );
    let r = cli(
        d,
        &[
            "add",
            "-q",
            "-j",
            "-m",
            m.to_str().unwrap(),
            "-f",
            f.to_str().unwrap(),
        ],
    );
    r.ok();
    let v = r.json();
    assert_eq!(v["state"], "active", "{v}");
    v["uuid"].as_str().unwrap().to_string()
}

const NO_SUCH: &str = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";

// ---- connection, usage, help

#[test]
fn ping_answers_in_text_and_json() {
    let d = Daemon::start();
    cli(&d, &["ping"])
        .ok()
        .stdout_has("pong")
        .stdout_has(&format!("pid {}", d.pid()))
        .stdout_has(d.sock.to_str().unwrap());
    let v = cli(&d, &["ping", "-j"]).ok().json();
    assert_eq!(v["pid"], d.pid());
    // --socket wins over IMGSTORE_SOCKET.
    let mut c = cli_command(Path::new("/nonexistent/x.sock"), &["--socket"]);
    c.arg(&d.sock).arg("ping");
    run_command(c, &["--socket", "...", "ping"]).ok();
}

#[test]
fn no_daemon_is_a_clear_error_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("absent.sock");
    for verb in [
        &["ping"][..],
        &["list"],
        &["images"],
        &["get", NO_SUCH],
        &["tasks"],
    ] {
        let r = run_cli(&sock, verb);
        r.code(1)
            .stderr_has(&format!(
                "cannot connect to the imgstore daemon at {}",
                sock.display()
            ))
            .stderr_has("imgstore serve");
    }
    // The socket also comes from the config file.
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("socket = {:?}\n", dir.path().join("from-config.sock")),
    )
    .unwrap();
    let mut c = Command::new(BIN);
    c.env_remove("IMGSTORE_SOCKET")
        .env("IMGSTORE_CONFIG", &cfg)
        .arg("ping");
    run_command(c, &["ping"])
        .code(1)
        .stderr_has("from-config.sock");
}

#[test]
fn ping_wait_returns_once_a_late_daemon_answers() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("late.sock");
    let mut ping = cli_command(&sock, &["ping", "--wait", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(ping.try_wait().unwrap().is_none(), "ping gave up early");
    let mut daemon = Command::new(BIN)
        .args(["serve", "--config", "/dev/null", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--socket")
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut ping, Duration::from_secs(30));
    let mut out = String::new();
    ping.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    wait_timeout(&mut daemon, Duration::from_secs(30));
    assert!(status.success(), "ping --wait failed: {status} {out}");
    assert!(out.contains(&format!("pid {}", daemon.id())), "{out}");

    // Nobody comes: a bounded wait, then a message naming the socket.
    let t = Instant::now();
    let r = run_cli(&sock, &["ping", "--wait", "0.5"]);
    r.code(1)
        .stderr_has("no answer from the imgstore daemon at")
        .stderr_has(sock.to_str().unwrap())
        .stderr_has("within 0.5 s");
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn bad_usage_exits_2() {
    let d = Daemon::start();
    for args in [
        &[][..],
        &["frobnicate"],
        &["list", "--bogus"],
        &["get", "not-a-uuid"],
        &["delete"],
        &["add", "-m", "x.json"],
        &["list", "name"],
        &["images", "-o", "uuid,,name"],
        &["ping", "--wait", "soon"],
        &["create", "zones/x", "name"],
        &["create", "zones/x", "tags:={"],
        &["task", "wait"],
        &["serve", "--log-format", "xml"],
    ] {
        let r = cli(&d, args);
        assert_eq!(r.code, Some(2), "{}", r.context());
        assert!(!r.stderr.is_empty(), "{}", r.context());
    }
}

/// `imgstore --help` and every verb's `--help` exit 0 and mention every
/// option and argument the verb has.
#[test]
fn help_is_complete_for_every_verb() {
    use clap::CommandFactory;
    let root = imgstore::cli::Cli::command();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let top = run_cli(&sock, &["--help"]);
    top.ok()
        .stdout_has("Exit status")
        .stdout_has("IMGSTORE_SOCKET");
    let mut checked = 0;
    let mut stack: Vec<(Vec<String>, clap::Command)> = root
        .get_subcommands()
        .map(|c| (vec![c.get_name().to_string()], c.clone()))
        .collect();
    while let Some((path, cmd)) = stack.pop() {
        top.stdout_has(&format!("  {}", path[0]));
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let r = run_cli(&sock, &args);
        r.ok()
            .stdout_has(&format!("Usage: imgstore {}", path.join(" ")));
        for a in cmd.get_arguments() {
            if a.is_hide_set() {
                continue;
            }
            let shown = match (a.get_long(), a.get_short()) {
                (Some(l), _) => format!("--{l}"),
                (None, Some(s)) => format!("-{s}"),
                (None, None) => a
                    .get_value_names()
                    .map(|n| n[0].to_string())
                    .unwrap_or_else(|| a.get_id().to_string()),
            };
            r.stdout_has(&shown);
            assert!(
                a.get_help().is_some(),
                "{} {shown} has no help text",
                path.join(" ")
            );
        }
        for sub in cmd.get_subcommands() {
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            stack.push((p, sub.clone()));
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} verbs checked");
}

// ---- the store: add, images, image get|get-file|delete

#[test]
fn add_then_list_get_download_and_delete_from_the_store() {
    let d = Daemon::start();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (m, f) = write_image(d.dir.path(), "base", minimal("base", "1.0.0"), &data);
    let r = cli(
        &d,
        &["add", "-m", m.to_str().unwrap(), "-f", f.to_str().unwrap()],
    );
    r.ok()
        .stdout_has("Added image ")
        .stdout_has("(base 1.0.0) to the store");
    let uuid = r.stdout.split_whitespace().nth(2).unwrap().to_string();

    let list = cli(&d, &["images", "-j"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["uuid"], uuid.as_str());
    assert_eq!(list[0]["files"][0]["size"], data.len());
    assert_eq!(list[0]["files"][0]["sha1"], sha1_hex(&data));

    // Scripting output is stable: exactly the columns, TAB-separated.
    cli(&d, &["images", "-H", "-o", "uuid,name,version,state,size"])
        .ok()
        .stdout_has(&format!("{uuid}\tbase\t1.0.0\tactive\t{}\n", data.len()));
    let table = cli(&d, &["images"]).ok().stdout.clone();
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["UUID", "NAME", "VERSION", "STATE", "TYPE", "PUB"]
    );
    assert!(lines
        .next()
        .unwrap()
        .starts_with(&format!("{uuid}  base  ")));

    let v = cli(&d, &["image", "get", &uuid]).ok().json();
    assert_eq!(v["name"], "base");

    let out = d.dir.path().join("downloaded");
    cli(
        &d,
        &[
            "image",
            "get-file",
            &uuid,
            "-o",
            out.to_str().unwrap(),
            "-q",
        ],
    )
    .ok();
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert!(!d.dir.path().join("downloaded.partial").exists());

    cli(&d, &["image", "delete", &uuid])
        .ok()
        .stdout_has(&format!("Deleted image {uuid}"));
    assert_eq!(cli(&d, &["images", "-a", "-j"]).ok().json(), json!([]));
}

#[test]
fn add_keeps_the_manifest_uuid_and_checks_the_file() {
    let d = Daemon::start();
    let data = b"hello image".to_vec();
    let uuid = "5b1ad1c4-56b2-4c55-8e5c-7b2ba3c0a5f7";
    let mut m = minimal("kept", "2.0");
    m["uuid"] = json!(uuid);
    m["files"] = json!([{"sha1": sha1_hex(&data), "size": data.len(), "compression": "none"}]);
    let (mp, fp) = write_image(d.dir.path(), "kept", m.clone(), &data);
    cli(
        &d,
        &[
            "add",
            "-m",
            mp.to_str().unwrap(),
            "-f",
            fp.to_str().unwrap(),
        ],
    )
    .ok()
    .stdout_has(uuid);
    // Again: the uuid exists; the daemon's code and message are printed.
    cli(
        &d,
        &[
            "add",
            "-m",
            mp.to_str().unwrap(),
            "-f",
            fp.to_str().unwrap(),
        ],
    )
    .code(1)
    .stderr_has("imgstore: error (ImageUuidAlreadyExists):")
    .stderr_has(uuid);

    // A wrong sha1: the daemon refuses the file, and the half-added image
    // is removed again.
    let uuid2 = "6c2be2d5-67c3-4d66-9f6d-8c3cb4d1b608";
    m["uuid"] = json!(uuid2);
    m["files"][0]["sha1"] = json!("0000000000000000000000000000000000000000");
    let (mp, fp) = write_image(d.dir.path(), "badsha", m.clone(), &data);
    cli(
        &d,
        &[
            "add",
            "-m",
            mp.to_str().unwrap(),
            "-f",
            fp.to_str().unwrap(),
        ],
    )
    .code(1)
    .stderr_has("imgstore: error (")
    .stderr_has(&format!("the half-added image {uuid2} was removed"));
    cli(&d, &["image", "get", uuid2]).code(3);

    // The size in the manifest does not match the file: refused before
    // anything is sent.
    m["files"][0]["size"] = json!(data.len() + 1);
    let (mp, fp) = write_image(d.dir.path(), "badsize", m, &data);
    cli(
        &d,
        &[
            "add",
            "-m",
            mp.to_str().unwrap(),
            "-f",
            fp.to_str().unwrap(),
        ],
    )
    .code(1)
    .stderr_has("files[0].size");

    // Missing and invalid inputs name the path.
    cli(
        &d,
        &[
            "add",
            "-m",
            "/nonexistent/m.json",
            "-f",
            fp.to_str().unwrap(),
        ],
    )
    .code(1)
    .stderr_has("/nonexistent/m.json");
    std::fs::write(d.dir.path().join("bad.json"), "{not json").unwrap();
    cli(
        &d,
        &[
            "add",
            "-m",
            d.dir.path().join("bad.json").to_str().unwrap(),
            "-f",
            fp.to_str().unwrap(),
        ],
    )
    .code(1)
    .stderr_has("not valid JSON");
    // A manifest the daemon refuses: code, message and the field errors.
    let (mp, fp) = write_image(d.dir.path(), "invalid", json!({"name": "x"}), &data);
    cli(
        &d,
        &[
            "add",
            "-m",
            mp.to_str().unwrap(),
            "-f",
            fp.to_str().unwrap(),
        ],
    )
    .code(1)
    .stderr_has("imgstore: error (ValidationFailed):")
    .stderr_has("version:");
}

#[test]
fn images_filters_sort_and_columns() {
    let d = Daemon::start();
    let a = cli_add(&d, "alpha", "1.0", b"a");
    let b = cli_add(&d, "beta", "2.0", b"bb");
    let c = cli_add(&d, "betamax", "3.0", b"ccc");
    let col = |args: &[&str]| -> Vec<String> {
        cli(&d, args)
            .ok()
            .stdout
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        col(&["images", "-H", "-o", "uuid", "name=~beta", "-s", "name"]),
        [b.as_str(), c.as_str()]
    );
    assert_eq!(
        col(&["images", "-H", "-o", "uuid", "name=beta"]),
        [b.as_str()]
    );
    assert_eq!(
        col(&["images", "-H", "-o", "name", "-s", "-size"]),
        ["betamax", "beta", "alpha"]
    );
    assert_eq!(
        col(&["images", "-H", "-o", "name,version", "-s", "version"]),
        ["alpha\t1.0", "beta\t2.0", "betamax\t3.0"]
    );
    assert!(col(&["images", "-H", "name=nothing"]).is_empty());
    let v = cli(&d, &["images", "-j", "name=~al"]).ok().json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["uuid"], a.as_str());
    // Disabled images show with -a or a state filter only.
    d.post(&format!("/images/{a}?action=disable"))
        .expect(200, None);
    assert_eq!(
        col(&["images", "-H", "-o", "uuid", "-s", "name"]),
        [b.as_str(), c.as_str()]
    );
    assert_eq!(
        col(&["images", "-H", "-o", "uuid", "state=disabled"]),
        [a.as_str()]
    );
    assert_eq!(
        col(&["images", "-a", "-H", "-o", "name,state", "-s", "name"]).len(),
        3
    );
}

#[test]
fn unknown_uuid_in_the_store_exits_3() {
    let d = Daemon::start();
    for verb in [
        &["image", "get", NO_SUCH][..],
        &["image", "delete", NO_SUCH],
    ] {
        cli(&d, verb)
            .code(3)
            .stderr_has("imgstore: error (ResourceNotFound):")
            .stderr_has(NO_SUCH)
            .stderr_has("request id ");
    }
    let out = d.dir.path().join("x");
    cli(
        &d,
        &["image", "get-file", NO_SUCH, "-o", out.to_str().unwrap()],
    )
    .code(3);
    assert!(!out.exists() && !d.dir.path().join("x.partial").exists());
}

// ---- progress

#[test]
fn progress_lines_when_stderr_is_not_a_terminal_and_none_with_q() {
    let d = Daemon::start();
    let size = 24u64 << 20;
    let f = d.dir.path().join("big.file");
    std::fs::File::create(&f).unwrap().set_len(size).unwrap();
    let m = d.dir.path().join("big.json");
    std::fs::write(&m, minimal("big", "1").to_string()).unwrap();
    let mut c = cli_command(
        &d.sock,
        &["add", "-m", m.to_str().unwrap(), "-f", f.to_str().unwrap()],
    );
    c.env("IMGSTORE_PROGRESS_INTERVAL", "0");
    let r = run_command(c, &["add", "(24 MiB)"]);
    r.ok();
    let lines: Vec<&str> = r.stderr.lines().collect();
    let progress: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("imgstore: upload ") && l.contains(" of 24.00 MiB ("))
        .collect();
    assert!(
        progress.len() >= 10,
        "expected a line per MiB:\n{}",
        r.stderr
    );
    for l in &progress {
        assert!(l.contains("/s, ETA "), "{l}");
    }
    assert!(
        progress
            .last()
            .unwrap()
            .contains("24.00 MiB of 24.00 MiB (100%)"),
        "{}",
        r.stderr
    );
    assert!(
        lines.last().unwrap().contains(": done, 24.00 MiB in "),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains('\r') && !r.stderr.contains('\u{1b}'),
        "no terminal codes"
    );

    let m2 = d.dir.path().join("big2.json");
    std::fs::write(&m2, minimal("big", "2").to_string()).unwrap();
    let r = cli(
        &d,
        &[
            "add",
            "-q",
            "-m",
            m2.to_str().unwrap(),
            "-f",
            f.to_str().unwrap(),
        ],
    );
    r.ok();
    assert_eq!(r.stderr, "", "-q prints nothing on stderr");
}

/// Runs the CLI with stdin, stdout and stderr on a pseudo-terminal and
/// returns everything it wrote there, and its exit status.
fn run_on_pty(mut c: Command) -> (String, std::process::ExitStatus) {
    use nix::pty::{openpty, Winsize};
    let ws = Winsize {
        ws_row: 24,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&ws), None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    c.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    let mut child = c.spawn().unwrap();
    drop(c);
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match master.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                // EIO: every slave end is closed (the child exited).
                Err(_) => break,
            }
        }
        out
    });
    let status = wait_timeout(&mut child, Duration::from_secs(120));
    let out = reader.join().unwrap();
    (String::from_utf8_lossy(&out).into_owned(), status)
}

#[test]
fn progress_bar_on_a_terminal() {
    let d = Daemon::start();
    let size = 48u64 << 20;
    let f = d.dir.path().join("tty.file");
    std::fs::File::create(&f).unwrap().set_len(size).unwrap();
    let m = d.dir.path().join("tty.json");
    std::fs::write(&m, minimal("tty", "1").to_string()).unwrap();
    let mut c = cli_command(
        &d.sock,
        &["add", "-m", m.to_str().unwrap(), "-f", f.to_str().unwrap()],
    );
    c.env("TERM", "xterm");
    let (out, status) = run_on_pty(c);
    assert!(status.success(), "{status}\n{out}");
    // indicatif's bar: label, bar, bytes of total, rate and ETA, redrawn
    // in place with terminal control sequences.
    assert!(out.contains("upload "), "{out:?}");
    assert!(out.contains("/48.00 MiB"), "no byte counts in {out:?}");
    assert!(out.contains("iB/s"), "no rate in {out:?}");
    assert!(out.contains("ETA"), "no ETA in {out:?}");
    assert!(
        out.contains('\r') || out.contains("\u{1b}["),
        "no redraw in {out:?}"
    );
    assert!(out.contains(": done, 48.00 MiB in "), "{out:?}");
    assert!(out.contains("Added image "), "{out:?}");
    // The periodic line format is for logs, not terminals.
    assert!(!out.contains(" of 48.00 MiB ("), "{out:?}");
}

#[test]
fn ctrl_c_during_an_upload_stops_it_and_removes_the_image() {
    let d = Daemon::start();
    let f = d.dir.path().join("slow.file");
    std::fs::File::create(&f)
        .unwrap()
        .set_len(512 << 20)
        .unwrap();
    let m = d.dir.path().join("slow.json");
    std::fs::write(&m, minimal("slow", "1").to_string()).unwrap();
    let mut c = cli_command(
        &d.sock,
        &["add", "-m", m.to_str().unwrap(), "-f", f.to_str().unwrap()],
    );
    c.env("IMGSTORE_PROGRESS_INTERVAL", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    // Wait for the upload to be under way.
    while !seen.contains("imgstore: upload ") {
        let mut line = String::new();
        use std::io::BufRead;
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "stderr ended: {seen}"
        );
        seen.push_str(&line);
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(60));
    stderr.read_to_string(&mut seen).unwrap();
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(seen.contains("interrupted"), "{seen}");
    assert!(seen.contains("was removed from the store"), "{seen}");
    assert_eq!(cli(&d, &["images", "-a", "-j"]).ok().json(), json!([]));
}

// ---- installed images: list, get, delete, ancestry (GET/DELETE /pools/...)

#[test]
fn pool_verbs() {
    let d = Daemon::start();
    let pool = test_pool();
    if !route_exists(&d, "GET", &format!("/pools/{pool}/images")) {
        assert_reports_missing_route(&cli(&d, &["list"]));
        assert_reports_missing_route(&cli(&d, &["list", "-P", "other", "-j"]));
        assert_reports_missing_route(&cli(&d, &["get", NO_SUCH]));
        assert_reports_missing_route(&cli(&d, &["info", NO_SUCH]));
        assert_reports_missing_route(&cli(&d, &["delete", NO_SUCH]));
        assert_reports_missing_route(&cli(&d, &["uninstall", NO_SUCH]));
        assert_reports_missing_route(&cli(&d, &["ancestry", NO_SUCH]));
        return;
    }
    let v = cli(&d, &["list", "-j"]).ok().json();
    assert!(v.is_array(), "{v}");
    cli(&d, &["list", "-H", "-o", "uuid,name"]).ok();
    for verb in [
        &["get", NO_SUCH][..],
        &["info", NO_SUCH],
        &["delete", NO_SUCH],
        &["uninstall", NO_SUCH],
        &["ancestry", NO_SUCH],
    ] {
        cli(&d, verb).code(3).stderr_has(NO_SUCH);
    }
}

// ---- tasks: install, create, export, import, tasks, task get|wait|cancel

#[test]
fn task_verbs() {
    let d = Daemon::start();
    if !route_exists(&d, "GET", "/tasks") {
        assert_reports_missing_route(&cli(&d, &["tasks"]));
        assert_reports_missing_route(&cli(&d, &["tasks", "-j"]));
        assert_reports_missing_route(&cli(&d, &["task", "get", "t1"]));
        assert_reports_missing_route(&cli(&d, &["task", "wait", "t1"]));
        assert_reports_missing_route(&cli(&d, &["task", "cancel", "t1"]));
        return;
    }
    let v = cli(&d, &["tasks", "-j"]).ok().json();
    assert!(v.is_array(), "{v}");
    cli(&d, &["tasks", "-H", "-o", "id,status"]).ok();
    for verb in [
        &["task", "get", "no-such-task"][..],
        &["task", "wait", "no-such-task"],
        &["task", "cancel", "no-such-task"],
    ] {
        cli(&d, verb).code(1).stderr_has("imgstore: error (");
    }
}

#[test]
fn install_follows_the_task_or_reports_the_missing_api() {
    let d = Daemon::start();
    let data = b"this is not a zfs send stream".to_vec();
    let mut m = minimal("inst", "1.0");
    m["uuid"] = json!("7d3cf3e6-78d4-4e77-a07e-9d4dc5e2c719");
    m["files"] = json!([{"sha1": sha1_hex(&data), "size": data.len(), "compression": "none"}]);
    let (mp, fp) = write_image(d.dir.path(), "inst", m, &data);
    // Local files are checked first, naming the path.
    cli(
        &d,
        &[
            "install",
            "-m",
            "/nonexistent/m.json",
            "-f",
            fp.to_str().unwrap(),
        ],
    )
    .code(1)
    .stderr_has("manifest /nonexistent/m.json");
    let args = [
        "install",
        "-m",
        mp.to_str().unwrap(),
        "-f",
        fp.to_str().unwrap(),
    ];
    if !images_action_exists(&d, "install-from-files") {
        cli(&d, &args)
            .code(1)
            .stderr_has("imgstore: error (InvalidParameter):")
            .stderr_has("install-from-files");
        return;
    }
    // With no -P the daemon's default pool is used; it does not exist here.
    cli(&d, &args)
        .code(1)
        .stderr_has("imgstore: error (PoolNotFound):")
        .stderr_has("zones");
    // The daemon runs it as a task; the file is no ZFS stream, so the task
    // fails and the CLI exits 1 with the task's code and message.
    let pool = crate::zfs::pool().to_string();
    let args = [
        "install",
        "-m",
        mp.to_str().unwrap(),
        "-f",
        fp.to_str().unwrap(),
        "-P",
        pool.as_str(),
    ];
    let mut c = cli_command(&d.sock, &args);
    c.env("IMGSTORE_PROGRESS_INTERVAL", "0");
    let r = run_command(c, &args);
    r.code(1)
        .stderr_has("imgstore: error (")
        .stderr_has("task ");
    let t = cli(
        &d,
        &[
            "install",
            "--detach",
            "-j",
            "-m",
            mp.to_str().unwrap(),
            "-f",
            fp.to_str().unwrap(),
            "-P",
            pool.as_str(),
        ],
    )
    .ok()
    .json();
    let id = t["id"].as_str().unwrap().to_string();
    cli(&d, &["task", "wait", &id, "-q"]).code(1);
    assert!(cli(&d, &["task", "get", &id]).ok().json()["status"].is_string());
}

#[test]
fn create_export_import_avail_vacuum_report_the_daemons_answer() {
    let d = Daemon::start();
    let uuid = cli_add(&d, "exp", "1.0", b"exported bytes");
    let out = tempfile::tempdir().unwrap();
    let export = ["export", &uuid, "-d", out.path().to_str().unwrap(), "-q"];
    let r = cli(&d, &export);
    if route_exists(&d, "GET", "/tasks") && r.code == Some(0) {
        r.stdout_has(&format!("Exported image {uuid}"));
        let files: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
        assert!(!files.is_empty(), "export wrote nothing");
        cli(&d, &["export", NO_SUCH, "-d", out.path().to_str().unwrap()]).code(3);
    } else {
        // Today: an unknown action on an image is refused by the daemon.
        r.code(1)
            .stderr_has("imgstore: error (InvalidParameter):")
            .stderr_has("export");
    }

    let r = cli(
        &d,
        &[
            "create",
            "zones/no-such-dataset",
            "name=x",
            "version=1",
            "-c",
            "gzip",
        ],
    );
    r.code(1).stderr_has("imgstore: error (");
    if !images_action_exists(&d, "create-from-dataset") {
        r.stderr_has("create-from-dataset");
    }

    let r = cli(&d, &["avail"]);
    if route_exists(&d, "GET", "/sources/images") {
        r.ok();
        assert!(cli(&d, &["avail", "-j"]).ok().json().is_array());
    } else {
        assert_reports_missing_route(&r);
    }

    let r = cli(&d, &["import", NO_SUCH]);
    r.code(1).stderr_has("imgstore: error (");

    let r = cli(&d, &["vacuum", "-n"]);
    if route_exists(&d, "POST", "/vacuum?dry_run=true") {
        r.ok();
    } else {
        assert_reports_missing_route(&r);
    }
    // Uninstalling images without a terminal to confirm on wants -f.
    cli(&d, &["vacuum", "--uninstall-unused-days", "30"])
        .code(2)
        .stderr_has("-f");
    // The store's own garbage collection needs no confirmation.
    cli(&d, &["vacuum"]).ok();
}

// ---- following tasks, against a scripted daemon
//
// Until the daemon has tasks (issue 7), these check the client side of
// that decided API (202 + task, GET /tasks/ID?wait=, DELETE /tasks/ID)
// with a stand-in that answers on a Unix socket. The tests above run the
// same verbs against the real daemon.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    body: Value,
}

/// A stand-in daemon: each GET of the task returns the next state from
/// `states` (the last one repeats); DELETE /tasks/ID marks it cancelled.
struct FakeTasks {
    sock: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
    _dir: tempfile::TempDir,
}

fn task_json(status: &str, done: u64, total: u64, extra: Value) -> Value {
    let mut t = json!({
        "id": "t-1", "type": "install", "status": status,
        "progress": {"bytes_done": done, "bytes_total": total},
        "created_at": "2024-01-01T00:00:00.000Z",
    });
    for (k, v) in extra.as_object().unwrap() {
        t[k] = v.clone();
    }
    t
}

impl FakeTasks {
    fn start(states: Vec<Value>) -> FakeTasks {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            let mut states: VecDeque<Value> = states.into();
            let mut cancelled = false;
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                }
                let mut body = vec![0u8; len];
                r.read_exact(&mut body).unwrap();
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                seen2.lock().unwrap().push(Seen {
                    method: method.clone(),
                    path: path.clone(),
                    body,
                });
                let (status, v) = if method == "POST" {
                    (202, task_json("pending", 0, 0, json!({})))
                } else if method == "DELETE" {
                    cancelled = true;
                    (200, task_json("processing", 0, 0, json!({})))
                } else if cancelled {
                    (200, task_json("cancelled", 0, 0, json!({})))
                } else {
                    // A long poll that returns after a while.
                    std::thread::sleep(Duration::from_millis(100));
                    let s = if states.len() > 1 {
                        states.pop_front().unwrap()
                    } else {
                        states[0].clone()
                    };
                    (200, s)
                };
                let text = v.to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        FakeTasks {
            sock,
            seen,
            _dir: dir,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn install_files(dir: &Path) -> (PathBuf, PathBuf) {
    let mut m = minimal("fake", "9.9");
    m["uuid"] = json!("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d");
    write_image(dir, "fake", m, b"not really an image")
}

#[test]
fn install_follows_a_task_to_success_with_progress() {
    let gib = 1u64 << 30;
    let fake = FakeTasks::start(vec![
        task_json("processing", gib / 4, gib, json!({})),
        task_json("processing", gib / 2, gib, json!({})),
        task_json("processing", gib, gib, json!({})),
        task_json(
            "success",
            gib,
            gib,
            json!({"result": {"image_uuid": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "pool": "data"}}),
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (m, f) = install_files(dir.path());
    // Relative paths: the daemon gets absolute ones.
    let mut c = cli_command(
        &fake.sock,
        &[
            "install",
            "-m",
            "fake.json",
            "-f",
            "fake.file",
            "-P",
            "data",
        ],
    );
    c.current_dir(dir.path())
        .env("IMGSTORE_PROGRESS_INTERVAL", "0");
    let r = run_command(c, &["install", "..."]);
    r.ok()
        .stdout_has("Installed image 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d (fake 9.9) in pool data");
    r.stderr_has("imgstore: install 9a8b7c6d (waiting to start): 0 B")
        .stderr_has("imgstore: install 9a8b7c6d: 256.00 MiB of 1.00 GiB (25%), ")
        .stderr_has("imgstore: install 9a8b7c6d: 512.00 MiB of 1.00 GiB (50%), ")
        .stderr_has("imgstore: install 9a8b7c6d: done, 1.00 GiB in ");
    let seen = fake.seen();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/images?action=install-from-files");
    assert_eq!(
        seen[0].body,
        json!({"manifest": m.to_str().unwrap(), "file": f.to_str().unwrap(), "pool": "data"})
    );
    assert!(seen[1..]
        .iter()
        .all(|s| s.method == "GET" && s.path == "/tasks/t-1?wait=1"));
}

#[test]
fn a_failed_task_fails_the_command_with_its_code() {
    let fake = FakeTasks::start(vec![task_json(
        "failure",
        10,
        100,
        json!({"error": {"code": "ZfsCommandFailed", "message": "cannot receive: out of space"}}),
    )]);
    let dir = tempfile::tempdir().unwrap();
    let (m, f) = install_files(dir.path());
    let r = run_cli(
        &fake.sock,
        &[
            "install",
            "-q",
            "-m",
            m.to_str().unwrap(),
            "-f",
            f.to_str().unwrap(),
        ],
    );
    r.code(1).stderr_has(
        "imgstore: error (ZfsCommandFailed): task t-1 failed: cannot receive: out of space",
    );
    assert_eq!(r.stdout, "");
    // -j prints the final task, still failing the command.
    let r = run_cli(
        &fake.sock,
        &[
            "install",
            "-q",
            "-j",
            "-m",
            m.to_str().unwrap(),
            "-f",
            f.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code(1).json()["status"], "failure");
    // task wait on it: the same.
    run_cli(&fake.sock, &["task", "wait", "t-1", "-q"])
        .code(1)
        .stderr_has("(ZfsCommandFailed)");
}

#[test]
fn detach_prints_the_task_and_returns() {
    let fake = FakeTasks::start(vec![task_json("processing", 1, 2, json!({}))]);
    let dir = tempfile::tempdir().unwrap();
    let (m, f) = install_files(dir.path());
    let args = [
        "install",
        "--detach",
        "-m",
        m.to_str().unwrap(),
        "-f",
        f.to_str().unwrap(),
    ];
    assert_eq!(run_cli(&fake.sock, &args).ok().stdout, "t-1\n");
    let mut args = args.to_vec();
    args.push("-j");
    assert_eq!(run_cli(&fake.sock, &args).ok().json()["id"], "t-1");
    // task wait --timeout: gives up, the task goes on.
    run_cli(
        &fake.sock,
        &["task", "wait", "t-1", "--timeout", "0.5", "-q"],
    )
    .code(1)
    .stderr_has("still processing after the timeout");
}

#[test]
fn ctrl_c_without_a_terminal_cancels_the_task() {
    let fake = FakeTasks::start(vec![task_json("processing", 5, 100, json!({}))]);
    let dir = tempfile::tempdir().unwrap();
    let (m, f) = install_files(dir.path());
    let mut c = cli_command(
        &fake.sock,
        &[
            "install",
            "-m",
            m.to_str().unwrap(),
            "-f",
            f.to_str().unwrap(),
        ],
    );
    c.env("IMGSTORE_PROGRESS_INTERVAL", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("5 B of 100 B") {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "{seen}");
        seen.push_str(&line);
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(30));
    stderr.read_to_string(&mut seen).unwrap();
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(seen.contains("cancelling task t-1"), "{seen}");
    assert!(
        seen.contains("(TaskCancelled): task t-1 was cancelled"),
        "{seen}"
    );
    assert!(fake
        .seen()
        .iter()
        .any(|s| s.method == "DELETE" && s.path == "/tasks/t-1"));
}

#[test]
fn ctrl_c_on_a_terminal_asks_and_can_detach() {
    use nix::pty::{openpty, Winsize};
    let fake = FakeTasks::start(vec![task_json("processing", 5, 100, json!({}))]);
    let dir = tempfile::tempdir().unwrap();
    let (m, f) = install_files(dir.path());
    let mut c = cli_command(
        &fake.sock,
        &[
            "install",
            "-m",
            m.to_str().unwrap(),
            "-f",
            f.to_str().unwrap(),
        ],
    );
    c.env("TERM", "xterm");
    let ws = Winsize {
        ws_row: 24,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&ws), None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    c.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    let mut child = c.spawn().unwrap();
    drop(c);
    let master = std::fs::File::from(pty.master);
    let mut writer = master.try_clone().unwrap();
    let out = Arc::new(Mutex::new(String::new()));
    let out2 = out.clone();
    let reader = std::thread::spawn(move || {
        let mut master = master;
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            out2.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !out.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "never saw {needle:?} in {:?}",
                out.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("5 B/100 B");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    wait_for("[c/d/W]");
    writer.write_all(b"d\n").unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(30));
    wait_for("imgstore task wait t-1");
    drop(writer);
    let text = out.lock().unwrap().clone();
    assert!(status.success(), "{status}: {text:?}");
    assert!(text.contains("detached; task t-1 goes on"), "{text:?}");
    assert!(
        !fake.seen().iter().any(|s| s.method == "DELETE"),
        "detaching must not cancel"
    );
    reader.join().unwrap();
}

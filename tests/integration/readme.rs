//! README.md's commands, so they cannot rot:
//!
//! - every `imgstore ...` command in a shell block (also inside `$(...)`,
//!   and `cargo run --release -- ...`) must parse with the real CLI
//!   definitions;
//! - blocks marked `<!-- readme-test: try -->`, `with-daemon` and
//!   `bootstrap` are run with `sh -e`, in a temp directory, with the built
//!   binary first on PATH, and their output checked.

use crate::common::*;
use crate::service_files::tool;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

struct Block {
    /// The `readme-test` tag on the line before the fence, if any.
    tag: Option<String>,
    lang: String,
    body: String,
    line: usize,
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut prev = "";
    let mut lines = text.lines().enumerate();
    while let Some((i, l)) = lines.next() {
        if let Some(lang) = l.strip_prefix("```") {
            let tag = prev
                .trim()
                .strip_prefix("<!-- readme-test:")
                .and_then(|t| t.strip_suffix("-->"))
                .map(|t| t.trim().to_string());
            let mut body = String::new();
            for (_, b) in lines.by_ref() {
                if b.starts_with("```") {
                    break;
                }
                body.push_str(b);
                body.push('\n');
            }
            out.push(Block {
                tag,
                lang: lang.trim().to_string(),
                body,
                line: i + 1,
            });
            prev = "";
            continue;
        }
        if !l.trim().is_empty() {
            prev = l;
        }
    }
    out
}

/// Logical lines: continuations joined, `#` comments (outside quotes) cut.
fn logical_lines(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in body.lines() {
        if let Some(head) = l.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
            continue;
        }
        cur.push_str(l);
        out.push(strip_comment(&cur).trim().to_string());
        cur.clear();
    }
    out.retain(|l| !l.is_empty());
    out
}

fn strip_comment(l: &str) -> String {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in l.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return l[..i].to_string(),
            _ => {}
        }
        prev = c;
    }
    l.to_string()
}

/// The imgstore argument lists in a logical line.
fn imgstore_commands(line: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("$(imgstore ") {
        let inner = &rest[at + 2..];
        let end = inner.find(')').expect("closing parenthesis");
        found.push(inner[..end].to_string());
        rest = &inner[end..];
    }
    found.push(line.to_string());
    found
        .into_iter()
        .filter_map(|cmd| {
            let words = shell_words::split(&cmd).expect("shell words");
            let args: Vec<String> = words
                .into_iter()
                .take_while(|w| {
                    !matches!(w.as_str(), "&" | "&&" | "||" | "|" | ";")
                        && !w.starts_with('>')
                        && !w.starts_with("2>")
                        && !w.starts_with('<')
                })
                .collect();
            let skip = if args
                .first()
                .is_some_and(|a| a == "imgstore" || a.ends_with("/imgstore"))
            {
                1
            } else if args.starts_with(&[
                "cargo".into(),
                "run".into(),
                "--release".into(),
                "--".into(),
            ]) {
                4
            } else {
                return None;
            };
            // A uuid variable stands for a uuid; other variables (paths)
            // parse as they are.
            Some(
                args[skip..]
                    .iter()
                    .map(|a| match a.as_str() {
                        "$UUID" | "${UUID}" => "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9".to_string(),
                        _ => a.clone(),
                    })
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn readme_starts_with_the_two_commands() {
    let text = readme();
    let first = &blocks(&text)[0];
    assert_eq!(
        first.body, "cargo run --release -- serve\n./scripts/test\n",
        "the first block of README.md"
    );
    let before: String = text.lines().take(first.line - 1).collect();
    assert_eq!(
        before.trim(),
        "# imgstore",
        "nothing but the title before them"
    );
}

#[test]
fn every_imgstore_command_in_the_readme_parses() {
    use clap::{CommandFactory, Parser};
    let text = readme();
    let mut parsed = 0;
    for b in blocks(&text).iter().filter(|b| b.lang == "sh") {
        for line in logical_lines(&b.body) {
            for args in imgstore_commands(&line) {
                let mut argv = vec!["imgstore".to_string()];
                argv.extend(args);
                if let Err(e) = imgstore::cli::Cli::try_parse_from(&argv) {
                    panic!(
                        "README.md block at line {}: {line:?} does not parse:\n{e}",
                        b.line
                    );
                }
                parsed += 1;
            }
        }
    }
    assert!(parsed >= 15, "only {parsed} commands found");
    // Every verb is documented.
    for sc in imgstore::cli::Cli::command().get_subcommands() {
        let name = sc.get_name();
        assert!(
            text.contains(&format!("`{name}")) || text.contains(&format!("`imgstore {name}")),
            "README.md does not mention the verb {name}"
        );
    }
}

fn block(tag: &str) -> String {
    let text = readme();
    let found: Vec<Block> = blocks(&text)
        .into_iter()
        .filter(|b| b.tag.as_deref() == Some(tag))
        .collect();
    assert_eq!(found.len(), 1, "one block tagged readme-test: {tag}");
    found.into_iter().next().unwrap().body
}

/// A shell with the built binary first on PATH and no IMGSTORE_* from the
/// caller, in `cwd`.
fn shell(cwd: &Path, script: &Path) -> Command {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("sh");
    for (k, _) in std::env::vars() {
        if k.starts_with("IMGSTORE_") {
            c.env_remove(k);
        }
    }
    c.arg("-e")
        .arg(script)
        .current_dir(cwd)
        .env("PATH", path)
        .stdin(Stdio::null());
    c
}

struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `c` with stdout and stderr in files: a daemon started in the
/// background keeps them open, so pipes would never reach EOF.
fn run(mut c: Command, dir: &Path) -> Ran {
    let out = dir.join("script.out");
    let err = dir.join("script.err");
    c.stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = c.spawn().unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(120));
    Ran {
        status,
        stdout: std::fs::read_to_string(out).unwrap(),
        stderr: std::fs::read_to_string(err).unwrap(),
    }
}

/// Stops a daemon a script left running, found by its socket's lock file.
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        let mut lock = self.0.clone().into_os_string();
        lock.push(".lock");
        let Ok(pid) = std::fs::read_to_string(&lock) else {
            return;
        };
        let Ok(pid) = pid.trim().parse::<i32>() else {
            return;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains("imgstore") {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while nix::sys::signal::kill(pid, None).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

fn context(r: &Ran) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        r.status, r.stdout, r.stderr
    )
}

#[test]
fn readme_try_out_runs() {
    let dir = tempfile::tempdir().unwrap();
    let try_dir = dir.path().join("try");
    let _reaper = Reaper(try_dir.join("imgstore.sock"));
    let script = dir.path().join("try.sh");
    std::fs::write(&script, block("try")).unwrap();
    let mut c = shell(dir.path(), &script);
    c.env("TRY", &try_dir).env("IMGSTORE_CONFIG", "/dev/null");
    let r = run(c, dir.path());
    assert!(r.status.success(), "{}", context(&r));
    assert!(r.stdout.contains("pong: imgstore"), "{}", context(&r));
    assert!(r.stdout.contains("Added image "), "{}", context(&r));
    assert!(r.stdout.contains("my-base"), "{}", context(&r));
    // The daemon was stopped by the block's own `kill`.
    let deadline = Instant::now() + Duration::from_secs(30);
    while try_dir.join("imgstore.sock").exists() {
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn readme_curl_examples_run_against_a_daemon() {
    if tool("curl", "curl").is_none() {
        return;
    }
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("api.sh");
    std::fs::write(&script, block("with-daemon")).unwrap();
    let mut c = shell(dir.path(), &script);
    c.env("IMGSTORE_SOCKET", &d.sock);
    let r = run(c, dir.path());
    assert!(r.status.success(), "{}", context(&r));
    assert!(r.stdout.contains("\"ping\":\"pong\""), "{}", context(&r));
    assert!(r.stdout.contains("\"name\":\"demo\""), "{}", context(&r));
    assert!(r.stdout.contains("\"state\":\"active\""), "{}", context(&r));
    assert!(r.stdout.contains("HTTP/1.1 404"), "{}", context(&r));
    assert!(
        r.stdout.contains("x-request-id: my-req-1"),
        "{}",
        context(&r)
    );
    assert_eq!(
        std::fs::read(dir.path().join("demo.copy")).unwrap(),
        std::fs::read(dir.path().join("demo.file")).unwrap()
    );
    assert!(d.log_text().contains("\"req_id\":\"my-req-1\""));
}

/// The bootstrap script, with the daemon's config, the image directory and
/// the log pointed into a temp directory. Until the daemon installs images
/// (issue 7), the script must get as far as `install` and fail there with
/// the daemon's clear refusal; once it does, `install` must follow a task
/// to its end (the test image is not a ZFS stream, so that task may fail).
#[test]
fn readme_bootstrap_script_runs() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("boot.sock");
    let _reaper = Reaper(sock.clone());
    let pool = crate::zfs::pool().to_string();
    let cfg = dir.path().join("imgstore.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\nsocket = {:?}\ndefault_pool = {pool:?}\n",
            dir.path().join("data"),
            sock
        ),
    )
    .unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&[7u8; 100_000]).unwrap();
    let file = gz.finish().unwrap();
    std::fs::write(images.join("base-64.zfs.gz"), &file).unwrap();
    let manifest = json!({
        "v": 2, "uuid": "8e4f0a1b-2c3d-4e5f-8a9b-0c1d2e3f4a5b",
        "name": "base-64", "version": "24.4.0", "type": "zone-dataset", "os": "smartos",
        "files": [{"sha1": sha1_hex(&file), "size": file.len(), "compression": "gzip"}]
    });
    std::fs::write(images.join("base-64.imgmanifest"), manifest.to_string()).unwrap();

    let script = dir.path().join("bootstrap.sh");
    std::fs::write(&script, block("bootstrap")).unwrap();
    let mut c = shell(dir.path(), &script);
    c.env("IMGSTORE_CONFIG", &cfg)
        .env("IMAGES", &images)
        .env("LOG", dir.path().join("imgstore.log"));
    let r = run(c, dir.path());
    assert!(
        r.stdout.contains("pong: imgstore"),
        "ping --wait: {}",
        context(&r)
    );
    let log = std::fs::read_to_string(dir.path().join("imgstore.log")).unwrap_or_default();
    assert!(
        log.contains("imgstore ready"),
        "the daemon logs to $LOG: {log}"
    );
    if r.stderr
        .contains("unknown action \\\"install-from-files\\\"")
        || r.stderr.contains("unknown action \"install-from-files\"")
    {
        assert_eq!(r.status.code(), Some(1), "{}", context(&r));
        assert!(
            r.stderr.contains("imgstore: error (InvalidParameter)"),
            "{}",
            context(&r)
        );
        return;
    }
    assert!(
        r.status.success()
            || (r.status.code() == Some(1)
                && r.stderr.contains("imgstore: error (")
                && r.stderr.contains("task ")),
        "install neither succeeded nor followed a task to its failure: {}",
        context(&r)
    );
}

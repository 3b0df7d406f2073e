//! The daemon under test: [`Daemon`] runs the real `imgstore serve` ([`BIN`])
//! on a socket and data dir in a temp dir of its own, waits until it
//! answers `/ping`, and stops it (SIGTERM) when dropped. It also offers the
//! requests most tests make (GET, POST JSON, upload, create an image), waits
//! for the daemon's tasks, and reads a process's memory use.

use super::http::{request, sha1_hex, try_request, Resp};
use super::wait::wait_timeout;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_imgstore");

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub data: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
    /// Run the daemon as this uid and gid (root tests only).
    pub run_as: Option<(u32, u32)>,
    /// Extra environment of the daemon (e.g. `SSL_CERT_FILE`).
    pub env: Vec<(String, String)>,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Daemon {
        let mut d = Daemon::new(extra);
        d.spawn();
        d
    }

    /// Starts a daemon whose config file holds `toml` from its first start.
    pub fn start_config(toml: &str) -> Daemon {
        let mut d = Daemon::new(&[]);
        std::fs::write(d.config_path(), toml).unwrap();
        d.spawn();
        d
    }

    /// Starts a daemon on the given config file text.
    pub fn start_configured(config: &str) -> Daemon {
        let mut d = Daemon::new(&[]);
        std::fs::write(d.config_path(), config).unwrap();
        d.spawn();
        d
    }

    /// A daemon not yet started (write its config, then `spawn`).
    pub fn new(extra: &[&str]) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("imgstore-test")
            .tempdir()
            .unwrap();
        let sock = dir.path().join("d.sock");
        let data = dir.path().join("data");
        let log = dir.path().join("daemon.log");
        Daemon {
            dir,
            sock,
            data,
            log,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            run_as: None,
            env: Vec::new(),
        }
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--socket")
            .arg(&self.sock)
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            c.uid(uid).gid(gid);
        }
        c
    }

    /// The config file the daemon reads (written empty on first start, so
    /// the daemon runs on defaults unless a test writes one).
    pub fn config_path(&self) -> PathBuf {
        let p = self.dir.path().join("imgstore.toml");
        if !p.exists() {
            std::fs::write(&p, "").unwrap();
        }
        p
    }

    /// Starts the daemon (again) and waits until it answers `/ping`.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning imgstore");
        self.child = Some(child);
        self.wait_ready();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = try_request(&self.sock, "GET", "/ping", &[], b"") {
                if r.status == 200 && r.json()["pid"] == self.pid() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "daemon exited before it was ready ({status}); log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "daemon not ready after 30 s; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig).unwrap();
    }

    /// Whether this handle still has a daemon process (not yet stopped).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGTERM, then waits for the exit and returns its status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        wait_timeout(&mut child, Duration::from_secs(60))
    }

    /// Waits for a daemon that was already signalled to exit.
    pub fn stop_after_signal(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        wait_timeout(&mut child, Duration::from_secs(60))
    }

    /// SIGKILL: a crash, as far as the store can tell.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("daemon running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn get(&self, path: &str) -> Resp {
        request(&self.sock, "GET", path, &[], b"")
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Resp {
        request(
            &self.sock,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    pub fn post(&self, path: &str) -> Resp {
        request(&self.sock, "POST", path, &[], b"")
    }

    pub fn put(&self, path: &str, body: &[u8]) -> Resp {
        request(
            &self.sock,
            "PUT",
            path,
            &[("Content-Type", "application/octet-stream")],
            body,
        )
    }

    pub fn delete(&self, path: &str) -> Resp {
        request(&self.sock, "DELETE", path, &[], b"")
    }

    /// Creates an image from a minimal manifest plus `extra` fields and
    /// returns its uuid.
    pub fn create(&self, name: &str, extra: Value) -> String {
        let mut m = serde_json::json!({"name": name, "version": "1.0.0", "type": "zone-dataset", "os": "smartos"});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        let v = self.post_json("/images", &m).expect(200, None);
        v["uuid"].as_str().unwrap().to_string()
    }

    /// Creates, uploads `data` and activates; returns the uuid.
    pub fn create_active(&self, name: &str, data: &[u8], extra: Value) -> String {
        let uuid = self.create(name, extra);
        self.put(
            &format!(
                "/images/{uuid}/file?compression=none&sha1={}",
                sha1_hex(data)
            ),
            data,
        )
        .expect(200, None);
        self.post(&format!("/images/{uuid}?action=activate"))
            .expect(200, None);
        uuid
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            wait_timeout(&mut child, Duration::from_secs(30));
        }
    }
}

/// Resident set size of a process, in KiB (Linux /proc).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Peak resident set size (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Waits for a task to end and returns it.
pub fn wait_task(d: &Daemon, task: &Value) -> Value {
    let id = task["id"]
        .as_str()
        .unwrap_or_else(|| panic!("not a task: {task}"));
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let t = d.get(&format!("/tasks/{id}?wait=30")).expect(200, None);
        if matches!(
            t["status"].as_str(),
            Some("success" | "failure" | "cancelled")
        ) {
            return t;
        }
        assert!(Instant::now() < deadline, "task did not end: {t}");
    }
}

pub fn expect_success(d: &Daemon, task: &Value) -> Value {
    let t = wait_task(d, task);
    assert_eq!(
        t["status"],
        "success",
        "task failed: {t}\nlog:\n{}",
        d.log_text()
    );
    t
}

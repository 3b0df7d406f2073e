//! A full disk: the data dir on a 32 MiB tmpfs. An upload that does not fit
//! fails with 507 InsufficientStorage, leaves no temp file, and nothing else
//! is affected; the daemon keeps serving and accepts what fits again.
//!
//! Needs root (it mounts the tmpfs); the mount is undone by a guard even
//! when an assertion fails.

use crate::common::*;
// Lives in common/zfs.rs; re-exported for `crate::fullness::SmallPool`.
pub use crate::common::zfs::SmallPool;
use serde_json::json;
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, unmounted on drop (lazily if still busy).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Uploads `len` pattern bytes with chunked encoding (no length announced,
/// so the daemon cannot refuse up front and runs out of space mid-ingest).
fn upload_chunked(sock: &Path, path: &str, len: u64) -> Resp {
    let mut s = UnixStream::connect(sock).unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        pattern(&mut buf[..n], off);
        let chunk = [format!("{n:x}\r\n").as_bytes(), &buf[..n], b"\r\n"].concat();
        if s.write_all(&chunk).is_err() {
            // The daemon answered early and stopped reading.
            break;
        }
        off += n as u64;
    }
    let _ = s.write_all(b"0\r\n\r\n");
    read_response(&mut BufReader::new(s)).unwrap()
}

/// A daemon whose data dir is a small tmpfs. Taken down in the order that
/// leaves nothing behind: the daemon, then the mount, then its temp dir
/// (fields drop in declaration order, after `drop`).
struct Env {
    _mnt: Tmpfs,
    d: Daemon,
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.d.running() {
            self.d.stop();
        }
    }
}

/// Uploads `len` pattern bytes with a Content-Length, tolerating a daemon
/// that answers before reading them all.
fn upload_sized(sock: &Path, path: &str, len: u64) -> Resp {
    let mut s = UnixStream::connect(sock).unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        pattern(&mut buf[..n], off);
        if s.write_all(&buf[..n]).is_err() {
            break;
        }
        off += n as u64;
    }
    read_response(&mut BufReader::new(s)).unwrap()
}

fn temp_files(d: &Daemon) -> usize {
    std::fs::read_dir(d.data.join("ingest")).unwrap().count()
}

#[test]
fn full_data_dir_gives_507_removes_the_temp_file_and_keeps_serving() {
    let d = Daemon::new(&[]);
    let mnt = Tmpfs::mount(&d.data, "32m");
    // Fields drop in order: the daemon stops before the unmount.
    let mut env = Env { d, _mnt: mnt };
    env.d.spawn();
    let d = &env.d;

    let first: Vec<u8> = {
        let mut v = vec![0u8; 8 << 20];
        pattern(&mut v, 1);
        v
    };
    let a = d.create_active("first", &first, json!({}));

    // Declared size over the free space: refused before a byte is written.
    let b = d.create("too-big", json!({}));
    let v = upload_sized(
        &d.sock,
        &format!("/images/{b}/file?compression=none"),
        40 << 20,
    )
    .expect(507, Some("InsufficientStorage"));
    assert!(v["message"].as_str().unwrap().contains("bytes free"), "{v}");
    assert_eq!(temp_files(d), 0);

    // No size announced: the disk fills mid-ingest.
    let r = upload_chunked(
        &d.sock,
        &format!("/images/{b}/file?compression=none"),
        40 << 20,
    );
    let v = r.expect(507, Some("InsufficientStorage"));
    assert!(
        v["message"].as_str().unwrap().contains("no space left"),
        "{v}"
    );
    assert_eq!(temp_files(d), 0, "temp file left after ENOSPC");
    let m = d.get(&format!("/images/{b}")).expect(200, None);
    assert_eq!(m["files"], serde_json::json!([]), "{m}");

    // Everything else is intact, and what fits is accepted again.
    assert_eq!(d.get(&format!("/images/{a}/file")).body, first);
    let small = vec![5u8; 1 << 20];
    d.put(&format!("/images/{b}/file?compression=none"), &small)
        .expect(200, None);
    d.post(&format!("/images/{b}?action=activate"))
        .expect(200, None);
    assert_eq!(d.get(&format!("/images/{b}/file")).body, small);
    let state = d.get("/state?verify=true").expect(200, None);
    assert_eq!(state["ok"], true, "{state}");
    println!(
        "full disk: 507 InsufficientStorage up front and mid-ingest, 0 temp files left, {} images intact",
        d.get("/images").json().as_array().unwrap().len()
    );
}

#[test]
fn full_pool_fails_the_install_with_507_and_leaves_nothing() {
    use crate::zfs::{create_image, destroy, exists, mountpoint, pool, wait_task, zfs};
    let d = Daemon::start();
    let small = SmallPool::create(d.dir.path(), 80);
    // An image larger than the small pool, created from the test pool.
    let src = format!("{}/full-{}", pool(), &uuid::Uuid::new_v4().to_string()[..8]);
    zfs(&["create", &src]);
    {
        let mut f = std::fs::File::create(mountpoint(&src).join("big.bin")).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        for i in 0..120u64 {
            pattern(&mut buf, i << 20);
            f.write_all(&buf).unwrap();
        }
        f.sync_all().unwrap();
    }
    let uuid = create_image(&d, &src, "too-big-for-the-pool", "zstd", false);
    destroy(&src);
    let t = d
        .post(&format!(
            "/images/{uuid}?action=install&pool={}",
            small.name
        ))
        .expect(202, None);
    let t = wait_task(&d, &t);
    assert_eq!(t["status"], "failure", "{t}");
    assert_eq!(t["error"]["code"], "InsufficientStorage", "{t}");
    assert!(
        t["error"]["message"].as_str().unwrap().contains("is full"),
        "{t}"
    );
    let target = format!("{}/{uuid}", small.name);
    assert!(!exists(&target) && !exists(&format!("{target}-partial")));
    d.get("/ping").expect(200, None);
    let state = d.get("/state").expect(200, None);
    assert_eq!(state["ok"], true, "{state}");
    println!("full pool: install of a 120 MiB image into an 80 MiB pool failed with 507 InsufficientStorage; no dataset left");
}

/// Posts create-from-dataset for `ds` and waits for the task to end.
fn create_task(d: &Daemon, ds: &str, name: &str) -> serde_json::Value {
    let t = d
        .post_json(
            "/images?action=create-from-dataset",
            &json!({"dataset": ds, "compression": "none",
                    "manifest": {"name": name, "version": "1.0.0", "type": "zone-dataset", "os": "smartos"}}),
        )
        .expect(202, None);
    crate::zfs::wait_task(d, &t)
}

/// Fills `dir` with incompressible data until `limit` bytes or ENOSPC.
fn fill(dir: &Path, limit: u64) {
    let mut f = std::fs::File::create(dir.join("fill.bin")).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    while written < limit {
        pattern(&mut buf, written);
        if f.write_all(&buf).is_err() {
            break;
        }
        written += buf.len() as u64;
    }
    let _ = f.sync_all();
}

fn snapshots_of(ds: &str) -> Vec<String> {
    crate::zfs::zfs(&["list", "-H", "-o", "name", "-t", "snapshot", "-r", ds])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn create_with_no_room_in_the_pool_or_the_data_dir_fails_with_507() {
    use crate::zfs::{destroy, pool, zfs};

    // A full pool: the @final snapshot cannot be taken.
    let d = Daemon::start();
    let small = SmallPool::create(d.dir.path(), 64);
    let vm = format!("{}/vm", small.name);
    let mnt = d.dir.path().join("vm-mnt");
    zfs(&[
        "create",
        "-o",
        &format!("mountpoint={}", mnt.display()),
        &vm,
    ]);
    fill(&mnt, 256 << 20);
    let t = create_task(&d, &vm, "no-room-in-pool");
    assert_eq!(t["status"], "failure", "{t}");
    assert_eq!(t["error"]["code"], "InsufficientStorage", "{t}");
    let msg = t["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("out of space") && msg.contains(&small.name),
        "{msg}"
    );
    assert_eq!(snapshots_of(&vm), Vec::<String>::new(), "snapshot left");
    assert_eq!(d.get("/images?state=all").json(), json!([]), "image left");
    assert_eq!(temp_files(&d), 0);
    d.get("/ping").expect(200, None);
    // The pool first: its file is in the daemon's temp dir, which cannot
    // be removed while the pool is imported and mounted in it.
    drop(small);
    drop(d);

    // A full data dir: the stream does not fit in the store.
    let d = Daemon::new(&[]);
    let tmpfs = Tmpfs::mount(&d.data, "32m");
    let mut env = Env { d, _mnt: tmpfs };
    env.d.spawn();
    let d = &env.d;
    let src = format!(
        "{}/nofit-{}",
        pool(),
        &uuid::Uuid::new_v4().to_string()[..8]
    );
    let src_mnt = d.dir.path().join("src-mnt");
    zfs(&[
        "create",
        "-o",
        &format!("mountpoint={}", src_mnt.display()),
        &src,
    ]);
    fill(&src_mnt, 48 << 20);
    let t = create_task(d, &src, "no-room-in-data-dir");
    assert_eq!(t["status"], "failure", "{t}");
    assert_eq!(t["error"]["code"], "InsufficientStorage", "{t}");
    assert!(
        t["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no space left"),
        "{t}"
    );
    assert_eq!(temp_files(d), 0, "temp file left");
    assert_eq!(snapshots_of(&src), Vec::<String>::new(), "snapshot left");
    assert_eq!(d.get("/images?state=all").json(), json!([]), "image left");
    let state = d.get("/state").expect(200, None);
    assert_eq!(state["ok"], true, "{state}");
    destroy(&src);
    println!("full pool and full data dir: create-from-dataset failed with 507 InsufficientStorage; no snapshot, temp file or image left");
}

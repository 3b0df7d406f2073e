//! ZFS for the tests that need a real pool (zfs-fuse here; see
//! scripts/zfs-vm-test for OpenZFS 2.3): the test pool ([`pool`], from
//! `IMGSTORE_TEST_POOL` or made by `tests/zfs-fuse-setup.sh`; without one
//! the tests fail with a message saying how to get one, they never skip),
//! `zfs` commands, source datasets with known contents and their [`tree`],
//! images created from them and installed, and pools of a test's own
//! ([`SmallPool`]).

use super::daemon::{expect_success, Daemon};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

pub fn pool() -> &'static str {
    static POOL: OnceLock<String> = OnceLock::new();
    POOL.get_or_init(|| {
        if let Ok(p) = std::env::var("IMGSTORE_TEST_POOL") {
            if !p.is_empty() {
                return p;
            }
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/zfs-fuse-setup.sh");
        let out = Command::new("bash").arg(&script).output().expect("running tests/zfs-fuse-setup.sh");
        assert!(
            out.status.success(),
            "ZFS tests need a pool: set IMGSTORE_TEST_POOL, or run as root with zfs-fuse installed (scripts/test does both).\n{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

pub fn zfs(args: &[&str]) -> String {
    let out = Command::new("zfs")
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .expect("running zfs");
    assert!(
        out.status.success(),
        "zfs {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn zfs_ok(args: &[&str]) -> bool {
    Command::new("zfs")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

pub fn exists(name: &str) -> bool {
    zfs_ok(&["list", "-H", "-o", "name", "-t", "all", name])
}

/// Destroys a dataset tree, unmounting first (zfs-fuse refuses to destroy
/// a mounted filesystem, see tests/zfs-fuse-setup.sh).
pub fn destroy(name: &str) {
    for _ in 0..5 {
        if !exists(name) {
            return;
        }
        let _ = Command::new("zfs").args(["umount", name]).output();
        if zfs_ok(&["destroy", "-r", name]) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    zfs(&["destroy", "-r", name]);
}

pub fn mountpoint(ds: &str) -> PathBuf {
    if zfs(&["get", "-H", "-o", "value", "mounted", ds]).trim() != "yes" {
        zfs(&["mount", ds]);
    }
    PathBuf::from(zfs(&["get", "-H", "-o", "value", "mountpoint", ds]).trim())
}

/// A unique name for this test run.
pub fn uniq(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().to_string()[..8])
}

/// A filesystem with a regular file, a large sparse file, modes and a
/// symlink; returns its name.
pub fn make_source(label: &str) -> String {
    let ds = format!("{}/{}", pool(), uniq(label));
    zfs(&["create", &ds]);
    let dir = mountpoint(&ds);
    let data: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(dir.join("data.bin"), &data).unwrap();
    std::fs::create_dir(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/motd"), format!("hello from {label}\n")).unwrap();
    std::fs::set_permissions(dir.join("etc/motd"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::set_permissions(dir.join("etc"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("etc/motd", dir.join("motd-link")).unwrap();
    let f = std::fs::File::create(dir.join("sparse.img")).unwrap();
    f.set_len(1 << 30).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"middle of a sparse file", 512 << 20)
        .unwrap();
    f.sync_all().unwrap();
    ds
}

/// path -> (kind, mode, size, content digest or link target).
pub fn tree(dir: &Path) -> BTreeMap<String, (String, u32, u64, String)> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (String, u32, u64, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let mode = md.mode() & 0o7777;
            if md.file_type().is_symlink() {
                out.insert(
                    rel,
                    (
                        "link".into(),
                        mode,
                        0,
                        std::fs::read_link(&p).unwrap().to_string_lossy().into(),
                    ),
                );
            } else if md.is_dir() {
                out.insert(rel, ("dir".into(), mode, 0, String::new()));
                walk(root, &p, out);
            } else {
                let digest = content_digest(&p);
                out.insert(rel, ("file".into(), mode, md.len(), digest));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// A digest of a file's content that reads only its data: holes (found
/// with SEEK_DATA/SEEK_HOLE where the filesystem has them) and all-zero
/// 1 MiB blocks count as nothing, so equal contents give equal digests
/// whatever their hole layout, and the 1 GiB sparse file of every
/// `make_source` costs what its data costs. (Reading those zeros, several
/// times per test, was most of the OpenZFS guest's run under emulation.)
pub fn content_digest(p: &Path) -> String {
    use nix::errno::Errno;
    use nix::unistd::{lseek, Whence};
    use sha1::Digest;
    use std::os::unix::fs::FileExt;
    const BLOCK: u64 = 1 << 20;
    let f = std::fs::File::open(p).unwrap();
    let len = f.metadata().unwrap().len();
    let mut h = sha1::Sha1::new();
    let zeros = vec![0u8; BLOCK as usize];
    let mut buf = vec![0u8; BLOCK as usize];
    let mut next = 0u64;
    while next < len {
        let at = i64::try_from(next).unwrap();
        // Where data starts at or after `next` and where it stops; a
        // filesystem without hole reporting has data everywhere.
        let data = match lseek(&f, at, Whence::SeekData) {
            Ok(o) => u64::try_from(o).unwrap(),
            Err(Errno::ENXIO) => break,
            Err(_) => next,
        };
        let hole = lseek(&f, i64::try_from(data).unwrap(), Whence::SeekHole)
            .map_or(len, |o| u64::try_from(o).unwrap());
        // Whole blocks around the data, each once: the next search starts
        // at the first block after them.
        let mut block = data / BLOCK * BLOCK;
        while block < hole.min(len) {
            let n = usize::try_from(BLOCK.min(len - block)).unwrap();
            f.read_exact_at(&mut buf[..n], block).unwrap();
            if buf[..n] != zeros[..n] {
                h.update(block.to_le_bytes());
                h.update(&buf[..n]);
            }
            block += BLOCK;
        }
        next = block.max(next + BLOCK);
    }
    hex::encode(h.finalize())
}

pub fn sha1_file(p: &Path) -> String {
    use sha1::Digest;
    use std::io::Read;
    let mut h = sha1::Sha1::new();
    let mut f = std::fs::File::open(p).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

pub fn create_image(
    d: &Daemon,
    ds: &str,
    name: &str,
    compression: &str,
    incremental: bool,
) -> String {
    let r = d.post_json(
        "/images?action=create-from-dataset",
        &json!({"dataset": ds, "compression": compression, "incremental": incremental,
                "manifest": {"name": name, "version": "1.0.0", "type": "zone-dataset", "os": "smartos"}}),
    );
    let task = r.expect(202, None);
    assert_eq!(task["type"], "create");
    let t = expect_success(d, &task);
    t["result"]["image_uuid"].as_str().unwrap().to_string()
}

pub fn install(d: &Daemon, uuid: &str) -> Value {
    let r = d.post(&format!("/images/{uuid}?action=install&pool={}", pool()));
    let task = r.expect(202, None);
    expect_success(d, &task)
}

/// A pool of our own on a file, destroyed on drop (never the test pool).
/// Tests that install use one, so that their transient `-partial` datasets
/// never meet another test's "no partial dataset in the pool" check.
pub struct SmallPool {
    pub name: String,
    file: PathBuf,
}

impl SmallPool {
    pub fn create(dir: &Path, mib: u64) -> SmallPool {
        let name = format!("imgstore-own-{}", &uuid::Uuid::new_v4().to_string()[..8]);
        let file = dir.join(format!("{name}.img"));
        std::fs::File::create(&file)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let out = Command::new("zpool")
            .args(["create", "-m", "none", &name])
            .arg(&file)
            .output()
            .expect("running zpool");
        assert!(
            out.status.success(),
            "zpool create {name} on {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallPool { name, file }
    }
}

impl Drop for SmallPool {
    fn drop(&mut self) {
        // zfs-fuse can answer "busy" just after a daemon that used the
        // pool has gone; say so if the pool outlives the test.
        let destroyed = (0..5).any(|i| {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(200));
            }
            Command::new("zpool")
                .args(["destroy", "-f", &self.name])
                .status()
                .is_ok_and(|s| s.success())
        });
        if !destroyed {
            eprintln!("test pool {} was not destroyed", self.name);
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

/// `content_digest` sees every byte of data and nothing of the layout:
/// the trees the ZFS tests compare are only as strong as it is.
#[test]
fn content_digest_tells_contents_apart_and_ignores_holes() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let sparse = dir.path().join("sparse");
    let f = std::fs::File::create(&sparse).unwrap();
    f.set_len(8 << 20).unwrap();
    f.write_all_at(b"data in the middle", 5 << 20).unwrap();
    let mut dense = vec![0u8; 8 << 20];
    dense[5 << 20..(5 << 20) + 18].copy_from_slice(b"data in the middle");
    let dense_path = dir.path().join("dense");
    std::fs::write(&dense_path, &dense).unwrap();
    assert_eq!(content_digest(&sparse), content_digest(&dense_path));
    dense[(5 << 20) + 3] ^= 1;
    std::fs::write(&dense_path, &dense).unwrap();
    assert_ne!(content_digest(&sparse), content_digest(&dense_path));
    // The same bytes at another offset are another content.
    let moved = dir.path().join("moved");
    let g = std::fs::File::create(&moved).unwrap();
    g.set_len(8 << 20).unwrap();
    g.write_all_at(b"data in the middle", 6 << 20).unwrap();
    assert_ne!(content_digest(&sparse), content_digest(&moved));
}

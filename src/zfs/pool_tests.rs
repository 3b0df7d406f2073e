//! Round trips against a real pool: set `IMGSTORE_TEST_POOL` to an
//! imported pool (CI and `tests/zfs-fuse-setup.sh` use zfs-fuse). Each
//! test works below its own `<pool>/imgstore-zfs-test-<pid>-<n>`, which is
//! destroyed afterwards. Without the variable these tests print that they
//! did not run, and fail if `CI` is set.

use super::*;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

fn test_pool() -> Option<String> {
    match std::env::var("IMGSTORE_TEST_POOL") {
        Ok(pool) if !pool.is_empty() => Some(pool),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "CI is set but IMGSTORE_TEST_POOL is not: the real-ZFS tests of src/zfs/pool_tests.rs \
                     must run in CI (create a pool first, e.g. with tests/zfs-fuse-setup.sh)"
                );
            }
            // Straight to stderr, which the test harness does not
            // capture, so the skip is visible in every `cargo test`.
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                let _ = writeln!(
                    io::stderr(),
                    "NOT RUN: zfs::pool_tests (real ZFS round trips) were skipped: \
                     IMGSTORE_TEST_POOL is not set (create a pool, e.g. with \
                     tests/zfs-fuse-setup.sh, and set it to the pool's name)"
                );
            });
            None
        }
    }
}

/// A scratch filesystem below the test pool, destroyed with everything
/// in it on drop.
struct Scratch {
    zfs: Zfs,
    pool: String,
    root: String,
}

impl Scratch {
    fn new() -> Option<Scratch> {
        static N: AtomicU32 = AtomicU32::new(0);
        let pool = test_pool()?;
        let zfs = Zfs::default();
        let n = N.fetch_add(1, Ordering::SeqCst);
        let root = format!("{pool}/imgstore-zfs-test-{}-{n}", std::process::id());
        zfs.create_filesystem(&dn(&root))
            .unwrap_or_else(|e| panic!("creating {root} on IMGSTORE_TEST_POOL={pool}: {e}"));
        Some(Scratch { zfs, pool, root })
    }

    fn ds(&self, name: &str) -> String {
        format!("{}/{name}", self.root)
    }

    /// Creates a mounted filesystem holding one file of `len`
    /// pseudo-random bytes.
    fn filesystem_with_data(&self, name: &str, len: usize, seed: u64) -> String {
        let ds = self.ds(name);
        self.zfs.create_filesystem(&dn(&ds)).unwrap();
        self.write_file(&ds, "data", len, seed);
        ds
    }

    fn write_file(&self, ds: &str, file: &str, len: usize, seed: u64) {
        let mnt = self.zfs.get_property(ds, "mountpoint").unwrap().unwrap();
        fs::write(Path::new(&mnt).join(file), pseudo_random(len, seed)).unwrap();
    }

    /// Full or incremental stream of `snapshot`, in memory.
    fn stream(&self, snapshot: &str, from: Option<&str>) -> Vec<u8> {
        let mut send = self.zfs.send(snapshot, from, SendOpts::default()).unwrap();
        let mut out = Vec::new();
        send.read_to_end(&mut out).unwrap();
        send.finish().unwrap();
        out
    }

    fn receive(&self, target: &str, stream: &[u8]) -> Result<()> {
        let opts = ReceiveOpts {
            no_mount: true,
            ..ReceiveOpts::default()
        };
        let mut recv = self.zfs.receive(target, opts)?;
        // A write error (zfs gave up) is reported better by finish().
        let _ = recv.write_all(stream);
        recv.finish()
    }

    /// `zfs send | zfs receive`, piped through this process.
    fn pipe(&self, snapshot: &str, from: Option<&str>, target: &str) {
        let mut send = self.zfs.send(snapshot, from, SendOpts::default()).unwrap();
        let opts = ReceiveOpts {
            no_mount: true,
            ..ReceiveOpts::default()
        };
        let mut recv = self.zfs.receive(target, opts).unwrap();
        io::copy(&mut send, &mut recv).unwrap();
        send.finish().unwrap();
        recv.finish().unwrap();
    }

    fn snapshot_names(&self, ds: &str) -> Vec<String> {
        self.zfs
            .list_snapshots(&dn(ds))
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = self.zfs.destroy(&self.root, true) {
            eprintln!("cleanup: could not destroy {}: {e}", self.root);
        }
    }
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn assert_code<T: fmt::Debug>(r: Result<T>, code: &str) -> ZfsError {
    match r {
        Ok(v) => panic!("expected {code}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.code(), code, "{e}");
            e
        }
    }
}

#[test]
fn features_and_pool() {
    let Some(s) = Scratch::new() else { return };
    let f = s.zfs.available().unwrap();
    eprintln!("features of the test pool's ZFS: {f:?}");
    assert!(s.zfs.pool_exists(&PoolName::new(&s.pool).unwrap()).unwrap());
    assert!(!s
        .zfs
        .pool_exists(&PoolName::new("zdrvnosuchpool").unwrap())
        .unwrap());
    if !f.resumable_receive {
        assert!(!s
            .zfs
            .supports_resumable_receive(&PoolName::new(&s.pool).unwrap())
            .unwrap());
    }
    let roots = s.zfs.list_datasets(&dn(&s.pool), Some(0)).unwrap();
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0].name, s.pool);
    let mine = s.zfs.list_datasets(&dn(&s.root), None).unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].kind, DatasetType::Filesystem);
    assert!(mine[0].creation > 1_500_000_000, "{:?}", mine[0]);
    assert!(s.zfs.exists(&s.root).unwrap());
    assert!(!s.zfs.exists(&s.ds("nope")).unwrap());
    assert_eq!(s.zfs.get_property(&s.root, "origin").unwrap(), None);
    s.zfs.set_property(&s.root, "imgstore:test", "yes").unwrap();
    assert_eq!(
        s.zfs
            .get_property(&s.root, "imgstore:test")
            .unwrap()
            .as_deref(),
        Some("yes")
    );
}

/// imgadm's install (receive `-partial`, one snapshot renamed to
/// `@final`, rename into place), clone, incremental and
/// clone-incremental (`imgadm create -i`) streams, destroy rules.
#[test]
fn snapshot_send_receive_rename_clone_destroy() {
    let Some(s) = Scratch::new() else { return };
    let z = &s.zfs;
    let src = s.filesystem_with_data("src", 200_000, 1);
    z.snapshot(&format!("{src}@final")).unwrap();

    let partial = s.ds("img-partial");
    s.pipe(&format!("{src}@final"), None, &partial);
    assert_eq!(s.snapshot_names(&partial), [format!("{partial}@final")]);
    let img = s.ds("img");
    z.rename(&partial, &img).unwrap();
    z.rename(&format!("{img}@final"), &format!("{img}@tmp"))
        .unwrap();
    z.rename(&format!("{img}@tmp"), &format!("{img}@final"))
        .unwrap();
    assert_eq!(s.snapshot_names(&img), [format!("{img}@final")]);
    assert!(!z.exists(&partial).unwrap());

    let names: Vec<String> = z
        .list_datasets(&dn(&s.root), Some(1))
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, [s.root.clone(), img.clone(), src.clone()]);

    // clone, clones_of, dependent-clone refusal
    let vm = s.ds("vm");
    let final_snap = format!("{img}@final");
    z.clone_snapshot(&final_snap, &dn(&vm)).unwrap();
    assert_eq!(
        z.get_property(&vm, "origin").unwrap().as_deref(),
        Some(final_snap.as_str())
    );
    assert_eq!(z.clones_of(&final_snap).unwrap(), std::slice::from_ref(&vm));
    let e = assert_code(z.destroy(&final_snap, false), "ImageHasDependentClones");
    assert!(
        matches!(&e, ZfsError::HasDependentClones { name, clones } if name == &final_snap && clones == std::slice::from_ref(&vm)),
        "{e:?}"
    );
    assert_code(z.destroy(&img, true), "ImageHasDependentClones");

    // incremental onto the installed image
    s.write_file(&src, "more", 50_000, 2);
    z.snapshot(&format!("{src}@s2")).unwrap();
    s.pipe(&format!("{src}@s2"), Some(&format!("{src}@final")), &img);
    assert_eq!(
        s.snapshot_names(&img),
        [final_snap.clone(), format!("{img}@s2")]
    );

    // clone-incremental: what `imgadm create -i` sends. The origin is
    // found by guid; src@final has the same guid as img@final and
    // zfs-fuse may pick either, so src goes first.
    z.destroy(&src, true).unwrap();
    s.write_file(&vm, "vm-file", 30_000, 3);
    z.snapshot(&format!("{vm}@final")).unwrap();
    let img2 = s.ds("img2");
    s.pipe(&format!("{vm}@final"), Some(&final_snap), &img2);
    assert_eq!(
        z.get_property(&img2, "origin").unwrap().as_deref(),
        Some(final_snap.as_str())
    );
    let mut clones = z.clones_of(&final_snap).unwrap();
    clones.sort();
    assert_eq!(clones, [img2.clone(), vm.clone()]);

    z.destroy(&img2, true).unwrap();
    z.destroy(&vm, true).unwrap();
    assert!(z.clones_of(&final_snap).unwrap().is_empty());
    z.destroy(&format!("{img}@s2"), false).unwrap();
    z.destroy(&img, true).unwrap();
    assert!(!z.exists(&img).unwrap());
}

#[test]
fn errors_from_real_zfs() {
    let Some(s) = Scratch::new() else { return };
    let z = &s.zfs;
    let src = s.filesystem_with_data("src", 20_000, 4);
    let snap = format!("{src}@final");
    z.snapshot(&snap).unwrap();
    let full = s.stream(&snap, None);

    let e = assert_code(z.snapshot(&snap), "DatasetExists");
    assert!(
        matches!(&e, ZfsError::DatasetExists { name } if name == &snap),
        "{e:?}"
    );
    assert_code(z.create_filesystem(&dn(&src)), "DatasetExists");

    let copy = s.ds("copy");
    s.receive(&copy, &full).unwrap();
    let e = assert_code(s.receive(&copy, &full), "DatasetExists");
    assert!(
        matches!(&e, ZfsError::DatasetExists { name } if name == &copy),
        "{e:?}"
    );
    z.snapshot(&format!("{src}@s2")).unwrap();
    let e = assert_code(z.rename(&snap, &format!("{src}@s2")), "DatasetExists");
    assert!(
        matches!(&e, ZfsError::DatasetExists { name } if name == &format!("{src}@s2")),
        "{e:?}"
    );

    let bad = s.ds("bad");
    let e = assert_code(
        s.receive(&bad, &pseudo_random(64 * 1024, 5)),
        "ZfsCommandFailed",
    );
    assert!(e.to_string().contains("invalid stream"), "{e}");
    let e = assert_code(s.receive(&bad, &full[..full.len() / 2]), "ZfsCommandFailed");
    eprintln!("truncated stream: {e}");
    assert!(!z.exists(&bad).unwrap());

    let e = assert_code(s.receive(&s.ds("no/such/parent"), &full), "DatasetNotFound");
    assert!(
        matches!(&e, ZfsError::DatasetNotFound { name } if name == &s.ds("no/such")),
        "{e:?}"
    );
    let e = assert_code(s.receive("zdrvnosuchpool/x", &full), "PoolNotFound");
    assert!(
        matches!(&e, ZfsError::PoolNotFound { pool } if pool == "zdrvnosuchpool"),
        "{e:?}"
    );
    assert_code(z.snapshot("zdrvnosuchpool/x@s"), "PoolNotFound");
    assert_code(z.create_filesystem(&dn("zdrvnosuchpool/x")), "PoolNotFound");

    let missing = s.ds("missing");
    let e = assert_code(z.get_property(&missing, "used"), "DatasetNotFound");
    assert!(
        matches!(&e, ZfsError::DatasetNotFound { name } if name == &missing),
        "{e:?}"
    );
    assert_code(z.destroy(&missing, true), "DatasetNotFound");
    assert_code(z.destroy(&format!("{src}@nope"), false), "DatasetNotFound");
    assert_code(z.rename(&missing, &s.ds("x")), "DatasetNotFound");
    assert_code(z.list_snapshots(&dn(&missing)), "DatasetNotFound");
    let e = assert_code(
        z.send(&format!("{src}@nope"), None, SendOpts::default())
            .unwrap()
            .finish(),
        "DatasetNotFound",
    );
    eprintln!("send of a missing snapshot: {e}");
    let mut send = z
        .send(&snap, Some(&format!("{src}@nope")), SendOpts::default())
        .unwrap();
    let _ = io::copy(&mut send, &mut io::sink());
    let e = assert_code(send.finish(), "DatasetNotFound");
    assert!(
        matches!(&e, ZfsError::DatasetNotFound { name } if name == &format!("{src}@nope")),
        "{e:?}"
    );
    let e = assert_code(z.rename(&src, &copy), "DatasetExists");
    assert!(
        matches!(&e, ZfsError::DatasetExists { name } if name == &copy),
        "{e:?}"
    );
}

#[test]
fn cancelled_receive_leaves_no_dataset() {
    let Some(s) = Scratch::new() else { return };
    let z = &s.zfs;
    let src = s.filesystem_with_data("src", 4_000_000, 6);
    z.snapshot(&format!("{src}@final")).unwrap();
    let full = s.stream(&format!("{src}@final"), None);
    let target = s.ds("cancelled");
    let mut recv = z
        .receive(
            &target,
            ReceiveOpts {
                no_mount: true,
                ..Default::default()
            },
        )
        .unwrap();
    recv.write_all(&full[..full.len() / 3]).unwrap();
    recv.canceller().cancel();
    assert!(recv.write_all(&full[full.len() / 3..]).is_err());
    assert_code(recv.finish(), "Cancelled");
    // zfs-fuse's daemon notices the closed pipe on its own time.
    let deadline = Instant::now() + Duration::from_secs(10);
    while z.exists(&target).unwrap() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !z.exists(&target).unwrap(),
        "a cancelled receive left {target}"
    );
    // and the name is free for a new attempt
    s.receive(&target, &full).unwrap();
}

#[test]
fn cancelled_send() {
    let Some(s) = Scratch::new() else { return };
    let src = s.filesystem_with_data("src", 4_000_000, 7);
    s.zfs.snapshot(&format!("{src}@final")).unwrap();
    let mut send = s
        .zfs
        .send(&format!("{src}@final"), None, SendOpts::default())
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    send.read_exact(&mut buf).unwrap();
    send.canceller().cancel();
    assert!(send.read(&mut buf).is_err());
    assert_code(send.finish(), "Cancelled");
}

/// `receive -s`, interrupted, then resumed from its token with `send -t`
/// where ZFS and the pool have it (OpenZFS, see scripts/zfs-vm-test);
/// elsewhere (zfs-fuse) the feature is detected as absent and
/// `resumable: true` receives without `-s`.
#[test]
fn interrupted_resumable_receive_resumes_from_its_token() {
    let Some(s) = Scratch::new() else { return };
    let z = &s.zfs;
    let f = z.available().unwrap();
    let resumable = z
        .supports_resumable_receive(&PoolName::new(&s.pool).unwrap())
        .unwrap();
    const LEN: usize = 6_000_000;
    let src = s.filesystem_with_data("src", LEN, 9);
    z.snapshot(&format!("{src}@final")).unwrap();
    let full = s.stream(&format!("{src}@final"), None);
    let target = s.ds("resumed");
    let opts = ReceiveOpts {
        no_mount: true,
        resumable: true,
        ..ReceiveOpts::default()
    };

    if !f.resumable_receive {
        assert!(!resumable);
        let mut recv = z.receive(&target, opts).unwrap();
        assert!(!recv.proc_.argv.contains(" -s"), "{}", recv.proc_.argv);
        recv.write_all(&full).unwrap();
        recv.finish().unwrap();
        assert_eq!(z.resume_token(&dn(&target)).unwrap(), None);
        assert_code(z.resume_token(&dn(&s.ds("missing"))), "DatasetNotFound");
        let e = assert_code(
            z.send_resume("1-e604ea4bf-e0-789c63a2").unwrap().finish(),
            "ZfsCommandFailed",
        );
        eprintln!("send -t without resumable receive: {e}");
        return;
    }
    if !resumable {
        let why = format!(
            "{} lacks feature@extensible_dataset although zfs has receive -s",
            s.pool
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set: the resume test must run; {why}"
        );
        eprintln!("NOT RUN: resume: {why}");
        return;
    }

    // Part of the stream, then the receive is killed: with -s the
    // partial dataset stays, with a token saying where to go on.
    let mut recv = z.receive(&target, opts).unwrap();
    assert!(recv.proc_.argv.contains(" -s "), "{}", recv.proc_.argv);
    recv.write_all(&full[..full.len() / 2]).unwrap();
    recv.canceller().cancel();
    assert_code(recv.finish(), "Cancelled");
    let deadline = Instant::now() + Duration::from_secs(30);
    let token = loop {
        if let Some(t) = z.resume_token(&dn(&target)).unwrap() {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "no receive_resume_token on {target} after the interrupted receive"
        );
        thread::sleep(Duration::from_millis(200));
    };
    eprintln!("resume token: {}...", &token[..token.len().min(40)]);
    assert!(token.starts_with("1-"), "{token}");
    validate_resume_token(&token).unwrap();
    assert!(s.snapshot_names(&target).is_empty(), "not received yet");

    // The rest, from the token.
    let mut send = z.send_resume(&token).unwrap();
    let mut recv = z.receive(&target, opts).unwrap();
    let copied = io::copy(&mut send, &mut recv).unwrap();
    send.finish().unwrap();
    recv.finish().unwrap();
    assert!(
        (copied as usize) < full.len(),
        "resumed stream ({copied} bytes) should be shorter than the full one ({})",
        full.len()
    );
    assert_eq!(z.resume_token(&dn(&target)).unwrap(), None);
    assert_eq!(s.snapshot_names(&target), [format!("{target}@final")]);
    z.runner
        .run(Bin::Zfs, &["mount", &target], &target)
        .unwrap();
    let mnt = z.get_property(&target, "mountpoint").unwrap().unwrap();
    let got = fs::read(Path::new(&mnt).join("data")).unwrap();
    assert!(got == pseudo_random(LEN, 9), "resumed data differs");

    // Partial state that will not be resumed is cleared with receive -A.
    let again = s.ds("aborted");
    let mut recv = z.receive(&again, opts).unwrap();
    recv.write_all(&full[..full.len() / 2]).unwrap();
    recv.canceller().cancel();
    assert_code(recv.finish(), "Cancelled");
    z.abort_resumable_receive(&dn(&again)).unwrap();
    assert!(
        !z.exists(&again).unwrap(),
        "receive -A destroys a new dataset"
    );
}

/// zfs-fuse needs the busy retries and the unmounted rename here.
#[test]
fn mounted_filesystems_rename_and_destroy() {
    let Some(s) = Scratch::new() else { return };
    let z = &s.zfs;
    let m = s.filesystem_with_data("m", 1000, 8);
    assert_eq!(
        z.get_property(&m, "mounted").unwrap().as_deref(),
        Some("yes")
    );
    let m2 = s.ds("m2");
    z.rename(&m, &m2).unwrap();
    assert_eq!(
        z.get_property(&m2, "mounted").unwrap().as_deref(),
        Some("yes")
    );
    for d in ["p", "p/q", "p/q/r"] {
        z.create_filesystem(&dn(&s.ds(d))).unwrap();
    }
    z.snapshot(&s.ds("p/q@s")).unwrap();
    z.destroy(&s.ds("p"), true).unwrap();
    z.destroy(&m2, false).unwrap();
    assert_eq!(z.list_datasets(&dn(&s.root), None).unwrap().len(), 1);
}

fn dn(name: &str) -> DatasetName {
    DatasetName::new(name).unwrap()
}

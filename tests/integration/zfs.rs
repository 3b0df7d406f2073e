//! ZFS install, create, export, tasks and failure handling against a real
//! pool (zfs-fuse here; see scripts/zfs-vm-test for OpenZFS 2.3).
//!
//! The pool comes from `IMGSTORE_TEST_POOL`, or is made by
//! `tests/zfs-fuse-setup.sh` (root, zfs-fuse installed). Without one these
//! tests fail with a message saying how to get one: they never skip.

use crate::common::*;
// The ZFS helpers live in common/zfs.rs; re-exported so that other test
// modules keep naming them `crate::zfs::...`.
pub use crate::common::zfs::*;
pub use crate::common::{expect_success, wait_task};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

fn no_partials() {
    let list = zfs(&["list", "-H", "-o", "name", "-r", pool()]);
    let partial: Vec<&str> = list.lines().filter(|l| l.ends_with("-partial")).collect();
    assert!(partial.is_empty(), "partial datasets left: {partial:?}");
}

#[test]
fn create_install_round_trip_with_every_compression() {
    let d = Daemon::start();
    let src = make_source("rt");
    let want = tree(&mountpoint(&src));
    for compression in ["zstd", "gzip", "bzip2", "xz", "none"] {
        let uuid = create_image(&d, &src, &format!("rt-{compression}"), compression, false);
        let m = d.get(&format!("/images/{uuid}")).expect(200, None);
        assert_eq!(m["state"], "active");
        assert_eq!(m["files"][0]["compression"], compression);
        assert!(m.get("origin").is_none());
        let t = install(&d, &uuid);
        let ds = format!("{}/{uuid}", pool());
        assert_eq!(t["result"]["dataset"], ds.as_str());
        assert!(exists(&format!("{ds}@final")));
        assert_eq!(
            tree(&mountpoint(&ds)),
            want,
            "{compression}: installed files differ"
        );
        // Listed as installed, then uninstalled, then installed again from the store.
        let v = d
            .get(&format!("/pools/{}/images/{uuid}", pool()))
            .expect(200, None);
        assert_eq!(v["manifest"]["uuid"], uuid.as_str());
        assert_eq!(v["clones"], 0);
        d.delete(&format!("/pools/{}/images/{uuid}", pool()))
            .expect(204, None);
        assert!(!exists(&ds));
        d.get(&format!("/pools/{}/images/{uuid}", pool()))
            .expect(404, Some("ImageNotInstalled"));
        install(&d, &uuid);
        assert_eq!(
            tree(&mountpoint(&ds)),
            want,
            "{compression}: reinstalled files differ"
        );
        destroy(&ds);
    }
    // Each create moved the previous @final aside.
    let snaps = zfs(&["list", "-H", "-o", "name", "-t", "snapshot", "-r", &src]);
    assert_eq!(
        snaps.lines().filter(|l| l.contains("@final-")).count(),
        4,
        "{snaps}"
    );
    no_partials();
    destroy(&src);
}

#[test]
fn incremental_image_installs_with_its_origin() {
    let d = Daemon::start();
    let src = make_source("base");
    let base = create_image(&d, &src, "inc-base", "zstd", false);
    install(&d, &base);
    let base_ds = format!("{}/{base}", pool());
    // A "VM" cloned from the base image, changed, then imaged incrementally.
    let vm = format!("{}/{}", pool(), uniq("vm"));
    zfs(&["clone", &format!("{base_ds}@final"), &vm]);
    let dir = mountpoint(&vm);
    std::fs::write(dir.join("etc/added"), b"added in the vm").unwrap();
    std::fs::remove_file(dir.join("data.bin")).unwrap();
    std::fs::write(dir.join("etc/motd"), b"changed").unwrap();
    let want = tree(&dir);
    let child = create_image(&d, &vm, "inc-child", "zstd", true);
    let m = d.get(&format!("/images/{child}")).expect(200, None);
    assert_eq!(m["origin"], base.as_str());
    assert_eq!(m["type"], "zone-dataset", "inherited from the origin");
    // Uninstalling the base is refused while the VM clone exists, and changes nothing.
    let v = d
        .delete(&format!("/pools/{}/images/{base}", pool()))
        .expect(422, Some("ImageHasDependentClones"));
    assert!(v["message"].as_str().unwrap().contains(&vm), "{v}");
    assert!(exists(&base_ds));
    assert_eq!(
        d.get(&format!("/pools/{}/images/{base}", pool())).json()["clones"],
        1
    );
    destroy(&vm);
    d.delete(&format!("/pools/{}/images/{base}", pool()))
        .expect(204, None);
    // Installing the child alone installs the base first.
    install(&d, &child);
    assert!(
        exists(&format!("{base_ds}@final")),
        "origin installed automatically"
    );
    let child_ds = format!("{}/{child}", pool());
    assert_eq!(tree(&mountpoint(&child_ds)), want);
    let ancestry: Vec<String> = d
        .get(&format!("/pools/{}/images", pool()))
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v["manifest"]["uuid"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(ancestry.contains(&base) && ancestry.contains(&child));
    // The store refuses to delete the base while the child names it.
    d.delete(&format!("/images/{base}"))
        .expect(422, Some("ImageHasDependentImages"));
    destroy(&child_ds);
    destroy(&base_ds);
    destroy(&src);
    no_partials();
}

#[test]
fn corrupted_blob_fails_the_install_and_leaves_no_dataset() {
    let d = Daemon::start();
    let src = make_source("corrupt");
    let uuid = create_image(&d, &src, "corrupt", "none", false);
    let m = d.get(&format!("/images/{uuid}")).json();
    let blob = d
        .data
        .join("blobs/sha256")
        .join(&m["files"][0]["digest"].as_str().unwrap()[7..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::set_permissions(&blob, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&blob, &bytes).unwrap();
    let task = d
        .post(&format!("/images/{uuid}?action=install&pool={}", pool()))
        .expect(202, None);
    let t = wait_task(&d, &task);
    assert_eq!(t["status"], "failure", "{t}");
    let code = t["error"]["code"].as_str().unwrap();
    assert!(code == "ChecksumMismatch", "{t}");
    assert!(!exists(&format!("{}/{uuid}", pool())));
    no_partials();
    destroy(&src);
}

#[test]
fn install_requests_are_checked_before_a_task_starts() {
    let d = Daemon::start();
    let u = d.create_active("x", b"not a stream", json!({}));
    d.post(&format!(
        "/images/{u}?action=install&pool=no-such-pool-{}",
        &uuid::Uuid::new_v4().to_string()[..6]
    ))
    .expect(404, Some("PoolNotFound"));
    d.post(&format!("/images/{u}?action=install&pool=bad@name"))
        .expect(422, Some("InvalidParameter"));
    d.post(&format!(
        "/images/{}?action=install&pool={}",
        "66666666-6666-4666-8666-666666666666",
        pool()
    ))
    .expect(404, Some("ResourceNotFound"));
    let pending = d.create("nofile", json!({}));
    d.post(&format!("/images/{pending}?action=install&pool={}", pool()))
        .expect(422, Some("NoActivationNoFile"));
    // Not a ZFS stream: the receive fails, nothing is left.
    let task = d
        .post(&format!("/images/{u}?action=install&pool={}", pool()))
        .expect(202, None);
    let t = wait_task(&d, &task);
    assert_eq!(t["status"], "failure");
    assert_eq!(t["error"]["code"], "ZfsCommandFailed", "{t}");
    assert!(
        t["error"]["message"].as_str().unwrap().contains("receive"),
        "{t}"
    );
    assert!(!exists(&format!("{}/{u}", pool())));
    no_partials();
    d.post_json("/images?action=create-from-dataset", &json!({"dataset": format!("{}/nope-{}", pool(), uniq("x")), "manifest": {"name": "n", "version": "1"}}))
        .expect(404, Some("DatasetNotFound"));
    d.get("/tasks/00000000-0000-4000-8000-000000000000")
        .expect(404, Some("ResourceNotFound"));
}

/// A dataset big enough that receiving it takes a few seconds on zfs-fuse.
fn big_image(d: &Daemon, label: &str) -> (String, String) {
    let ds = format!("{}/{}", pool(), uniq(label));
    zfs(&["create", &ds]);
    let dir = mountpoint(&ds);
    let mut f = std::fs::File::create(dir.join("big.bin")).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    use std::io::Write;
    for i in 0..192u64 {
        pattern(&mut buf, i << 20);
        f.write_all(&buf).unwrap();
    }
    f.sync_all().unwrap();
    let uuid = create_image(d, &ds, label, "none", false);
    (ds, uuid)
}

fn wait_progress(d: &Daemon, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let t = d.get(&format!("/tasks/{id}")).json();
        if t["progress"]["bytes_done"].as_u64().unwrap_or(0) > 0 {
            assert_eq!(
                t["status"], "processing",
                "task ended before it could be interrupted: {t}"
            );
            return;
        }
        assert!(Instant::now() < deadline, "no progress: {t}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn cancel_and_kill_during_install_leave_no_dataset() {
    let mut d = Daemon::start();
    let (src, uuid) = big_image(&d, "cancel");
    let target = format!("{}/{uuid}", pool());

    // Two requests for the same install share one task.
    let t1 = d
        .post(&format!("/images/{uuid}?action=install&pool={}", pool()))
        .expect(202, None);
    let t2 = d
        .post(&format!("/images/{uuid}?action=install&pool={}", pool()))
        .expect(202, None);
    assert_eq!(t1["id"], t2["id"], "same install, same task");
    let id = t1["id"].as_str().unwrap().to_string();
    wait_progress(&d, &id);
    let c = d.delete(&format!("/tasks/{id}")).expect(200, None);
    assert_eq!(c["id"], id.as_str());
    let t = wait_task(&d, &t1);
    assert_eq!(t["status"], "cancelled", "{t}");
    assert!(!exists(&target));
    no_partials();
    d.delete(&format!("/tasks/{id}"))
        .expect(409, Some("Conflict"));

    // Killed mid-install: after the restart the partial dataset is gone
    // and the task is marked failed.
    let t = d
        .post(&format!("/images/{uuid}?action=install&pool={}", pool()))
        .expect(202, None);
    let id = t["id"].as_str().unwrap().to_string();
    wait_progress(&d, &id);
    d.kill9();
    d.spawn();
    let t = d.get(&format!("/tasks/{id}")).expect(200, None);
    assert_eq!(t["status"], "failure", "{t}");
    assert_eq!(t["error"]["code"], "Interrupted", "{t}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while exists(&format!("{target}-partial")) {
        assert!(
            Instant::now() < deadline,
            "partial dataset not cleaned up after restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!exists(&target));
    // And a fresh install still works.
    install(&d, &uuid);
    assert!(exists(&format!("{target}@final")));
    destroy(&target);
    destroy(&src);
    no_partials();
}

#[test]
fn export_and_install_from_files_round_trip() {
    let d = Daemon::start();
    let src = make_source("export");
    let want = tree(&mountpoint(&src));
    let uuid = create_image(&d, &src, "exported", "gzip", false);
    let dir = d.dir.path().join("export");
    std::fs::create_dir(&dir).unwrap();
    let task = d
        .post(&format!(
            "/images/{uuid}?action=export&path={}",
            dir.display()
        ))
        .expect(202, None);
    let t = expect_success(&d, &task);
    let mpath = dir.join("exported-1.0.0.imgmanifest");
    let fpath = dir.join("exported-1.0.0.zfs.gz");
    assert_eq!(t["result"]["manifest_path"], mpath.to_str().unwrap());
    assert_eq!(t["result"]["file_path"], fpath.to_str().unwrap());
    let m: Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    assert_eq!(m["uuid"], uuid.as_str());
    assert_eq!(sha1_file(&fpath), m["files"][0]["sha1"].as_str().unwrap());
    d.post(&format!("/images/{uuid}?action=export&path=relative/dir"))
        .expect(422, Some("InvalidParameter"));

    // A second node: install from the exported files in one call.
    let d2 = Daemon::start();
    let task = d2
        .post_json(
            "/images?action=install-from-files",
            &json!({"manifest": mpath, "file": fpath, "pool": pool()}),
        )
        .expect(202, None);
    destroy(&format!("{}/{uuid}", pool()));
    let t = wait_task(&d2, &task);
    assert_eq!(t["status"], "success", "{t}");
    assert_eq!(t["result"]["image_uuid"], uuid.as_str());
    let m2 = d2.get(&format!("/images/{uuid}")).expect(200, None);
    assert_eq!(m2["state"], "active");
    assert_eq!(m2["published_at"], m["published_at"]);
    assert_eq!(tree(&mountpoint(&format!("{}/{uuid}", pool()))), want);
    // A file that does not match its manifest is refused whole.
    let d3 = Daemon::start();
    let bad = dir.join("bad.gz");
    std::fs::write(&bad, b"not the file").unwrap();
    let task = d3
        .post_json(
            "/images?action=install-from-files",
            &json!({"manifest": mpath, "file": bad, "pool": pool()}),
        )
        .expect(202, None);
    let t = wait_task(&d3, &task);
    assert_eq!(t["status"], "failure");
    assert_eq!(t["error"]["code"], "Download", "{t}");
    d3.get(&format!("/images/{uuid}"))
        .expect(404, Some("ResourceNotFound"));
    destroy(&format!("{}/{uuid}", pool()));
    destroy(&src);
}

/// Whether this ZFS has `zfs send -c`, asked the way the driver asks.
fn has_compressed_send() -> bool {
    let out = Command::new("zfs")
        .args(["send", "-c"])
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    !String::from_utf8_lossy(&out.stderr).contains("invalid option")
}

#[test]
fn compressed_send_is_used_where_zfs_has_it_and_refused_where_not() {
    let d = Daemon::start();
    let src = make_source("sendc");
    let body = json!({"dataset": src, "send_compressed": true,
        "manifest": {"name": "sendc", "version": "1", "type": "zone-dataset", "os": "smartos"}});
    let r = d.post_json("/images?action=create-from-dataset", &body);
    if has_compressed_send() {
        let t = expect_success(&d, &r.expect(202, None));
        let uuid = t["result"]["image_uuid"].as_str().unwrap().to_string();
        install(&d, &uuid);
        let ds = format!("{}/{uuid}", pool());
        assert_eq!(tree(&mountpoint(&ds)), tree(&mountpoint(&src)));
        destroy(&ds);
    } else {
        let v = r.expect(422, Some("NotSupported"));
        assert!(v["message"].as_str().unwrap().contains("send -c"), "{v}");
        assert!(!exists(&format!("{src}@final")), "nothing was done");
    }
    destroy(&src);
}

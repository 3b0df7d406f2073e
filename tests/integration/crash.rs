//! Crash safety, proven by killing the real daemon with SIGKILL at random
//! moments while clients create, upload, activate and delete images (and,
//! against a real pool, install and create from datasets), restarting it
//! each time and checking after every restart:
//! - every image the API acknowledged is there, in a state the client could
//!   have caused (an unacknowledged operation may or may not have happened,
//!   never half), and its blob verifies (SHA-1 and size through the API,
//!   SHA-256 on disk, each blob once; fsck checks sizes every round and
//!   every digest at the end);
//! - no image is visible that no client created, and none with a file that
//!   does not verify;
//! - no temp file in `ingest/` or `manifests/`, no `-partial` dataset;
//! - no task is left pending or processing: interrupted ones are failed.
//!
//! Each run prints its seed; `IMGSTORE_CRASH_SEED` replays one, and
//! `IMGSTORE_CRASH_ROUNDS` / `IMGSTORE_CRASH_ZFS_ROUNDS` change the number
//! of kills (defaults 120 and 30).

use crate::common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// xorshift64*: enough randomness for choosing operations and delays.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn seeded(name: &str) -> (Rng, u64) {
        let seed = std::env::var("IMGSTORE_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("{name}: seed {seed} (IMGSTORE_CRASH_SEED={seed} replays it)");
        (Rng(seed | 1), seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What a client operation does to a state (`None`: not allowed from it).
type Transition = Box<dyn Fn(&State) -> Option<State>>;

/// One state an image can be in, as far as clients can tell.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct State {
    exists: bool,
    /// (sha1, size) of files[0].
    file: Option<(String, u64)>,
    active: bool,
}

/// What the client side knows about an image: every state it could be in
/// after the operations it sent (acknowledged ones narrow it to one).
#[derive(Debug, Clone)]
struct Img {
    name: String,
    possible: BTreeSet<State>,
}

enum Outcome {
    /// The daemon answered.
    Answered(Resp),
    /// Never reached the daemon (connect failed): nothing happened.
    NotSent,
    /// Sent, no answer: it may or may not have happened.
    Unknown,
}

fn send(sock: &std::path::Path, head: &str, body: &[u8], upload: Option<(u64, u64)>) -> Outcome {
    let Ok(mut s) = UnixStream::connect(sock) else {
        return Outcome::NotSent;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    if s.write_all(head.as_bytes()).is_err() || s.write_all(body).is_err() {
        return Outcome::Unknown;
    }
    if let Some((len, seed)) = upload {
        let mut buf = vec![0u8; 256 * 1024];
        let mut off = 0;
        while off < len {
            let n = (len - off).min(buf.len() as u64) as usize;
            pattern(&mut buf[..n], seed + off);
            if s.write_all(&buf[..n]).is_err() {
                return Outcome::Unknown;
            }
            off += n as u64;
        }
    }
    match read_response(&mut BufReader::new(s)) {
        Ok(r) => Outcome::Answered(r),
        Err(_) => Outcome::Unknown,
    }
}

fn sha1_of_pattern(len: u64, seed: u64) -> String {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        pattern(&mut buf[..n], seed + off);
        h.update(&buf[..n]);
        off += n as u64;
    }
    hex::encode(h.finalize())
}

/// Counters shared by the workers.
#[derive(Default)]
struct Stats {
    acked: AtomicUsize,
    unknown: AtomicUsize,
}

/// One worker's round: random operations on its own images until the
/// daemon dies under it.
fn worker(
    sock: std::path::PathBuf,
    mut rng: Rng,
    mut imgs: BTreeMap<String, Img>,
    pending_creates: Arc<Mutex<BTreeSet<String>>>,
    tag: String,
    dead: Arc<AtomicBool>,
    stats: Arc<Stats>,
) -> BTreeMap<String, Img> {
    let mut n = 0;
    while !dead.load(Ordering::SeqCst) {
        n += 1;
        let live: Vec<String> = imgs
            .iter()
            .filter(|(_, i)| i.possible.iter().any(|s| s.exists))
            .map(|(u, _)| u.clone())
            .collect();
        let op = if live.is_empty() { 0 } else { rng.below(100) };
        if op < 25 || live.len() < 2 {
            // Create.
            let name = format!("c{tag}-{n}");
            let body =
                json!({"name": name, "version": "1.0.0", "type": "zone-dataset", "os": "smartos"})
                    .to_string();
            let head = format!(
                "POST /images HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            pending_creates.lock().unwrap().insert(name.clone());
            match send(&sock, &head, body.as_bytes(), None) {
                Outcome::Answered(r) if r.status == 200 => {
                    let uuid = r.json()["uuid"].as_str().unwrap().to_string();
                    let mut possible = BTreeSet::new();
                    possible.insert(State {
                        exists: true,
                        file: None,
                        active: false,
                    });
                    imgs.insert(
                        uuid,
                        Img {
                            name: name.clone(),
                            possible,
                        },
                    );
                    pending_creates.lock().unwrap().remove(&name);
                    stats.acked.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Answered(r) => panic!(
                    "create refused: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ),
                Outcome::NotSent => {
                    pending_creates.lock().unwrap().remove(&name);
                }
                Outcome::Unknown => {
                    stats.unknown.fetch_add(1, Ordering::Relaxed);
                }
            }
            continue;
        }
        let uuid = live[rng.below(live.len() as u64) as usize].clone();
        let img = imgs.get_mut(&uuid).unwrap();
        let (head, body, upload, next): (String, Vec<u8>, Option<(u64, u64)>, Transition) = if op
            < 60
        {
            // Upload a new file (only allowed while unactivated).
            let len = 1 + rng.below(3 << 20);
            let seed = rng.next() & 0xffff_ffff_ffff;
            let sha1 = sha1_of_pattern(len, seed);
            let head = format!(
                "PUT /images/{uuid}/file?compression=none&sha1={sha1} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n"
            );
            let file = (sha1, len);
            (
                head,
                Vec::new(),
                Some((len, seed)),
                Box::new(move |s: &State| {
                    (s.exists && !s.active).then(|| State {
                        file: Some(file.clone()),
                        ..s.clone()
                    })
                }),
            )
        } else if op < 80 {
            let head = format!("POST /images/{uuid}?action=activate HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
            (
                head,
                Vec::new(),
                None,
                Box::new(|s: &State| {
                    (s.exists && !s.active && s.file.is_some()).then(|| State {
                        active: true,
                        ..s.clone()
                    })
                }),
            )
        } else {
            let head =
                format!("DELETE /images/{uuid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            (
                head,
                Vec::new(),
                None,
                Box::new(|s: &State| {
                    s.exists.then_some(State {
                        exists: false,
                        file: None,
                        active: false,
                    })
                }),
            )
        };
        match send(&sock, &head, &body, upload) {
            Outcome::NotSent => {}
            Outcome::Answered(r) if r.status < 300 => {
                // Acknowledged: exactly the successor of a possible state.
                let after: BTreeSet<State> = img.possible.iter().filter_map(&next).collect();
                assert!(!after.is_empty(), "acked {head:?} from {:?}", img.possible);
                img.possible = after;
                stats.acked.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Answered(r) => {
                // A refusal (e.g. activating without a file): nothing changed
                // unless it was a refusal of a state we only thought possible.
                let code = r.json()["code"].as_str().unwrap_or_default().to_string();
                assert!(
                    matches!(
                        code.as_str(),
                        "ImageFilesImmutable"
                            | "NoActivationNoFile"
                            | "ImageAlreadyActivated"
                            | "ResourceNotFound"
                    ),
                    "unexpected refusal of {head:?}: {}",
                    String::from_utf8_lossy(&r.body)
                );
            }
            Outcome::Unknown => {
                let extra: Vec<State> = img.possible.iter().filter_map(&next).collect();
                img.possible.extend(extra);
                stats.unknown.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    imgs
}

/// Checks the restarted daemon against the model; returns anomalies and
/// narrows the model to what was observed.
fn verify(
    d: &Daemon,
    model: &mut BTreeMap<String, Img>,
    pending_creates: &mut BTreeSet<String>,
    verified_blobs: &mut BTreeSet<String>,
) -> Vec<String> {
    let mut anomalies = Vec::new();
    let listed = d.get("/images?state=all").expect(200, None);
    let listed: BTreeMap<String, Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["uuid"].as_str().unwrap().to_string(), m.clone()))
        .collect();
    for (uuid, m) in &listed {
        let name = m["name"].as_str().unwrap_or_default().to_string();
        if !model.contains_key(uuid) {
            if pending_creates.remove(&name) {
                // An unacknowledged create that happened.
                let mut possible = BTreeSet::new();
                possible.insert(State {
                    exists: true,
                    file: None,
                    active: false,
                });
                model.insert(uuid.clone(), Img { name, possible });
            } else {
                anomalies.push(format!(
                    "image {uuid} ({name}) was never created by a client"
                ));
                continue;
            }
        }
        let file = m["files"][0].as_object().map(|f| {
            (
                f["sha1"].as_str().unwrap_or_default().to_string(),
                f["size"].as_u64().unwrap_or(0),
            )
        });
        let observed = State {
            exists: true,
            file: file.clone(),
            active: m["state"] == "active",
        };
        let img = model.get_mut(uuid).unwrap();
        if !img.possible.contains(&observed) {
            anomalies.push(format!(
                "image {uuid} is {observed:?}, but only {:?} were possible",
                img.possible
            ));
        }
        img.possible = [observed].into();
        if let (Some((sha1, size)), Some(digest)) = (file, m["files"][0]["digest"].as_str()) {
            if verified_blobs.insert(digest.to_string()) {
                let r = d.get(&format!("/images/{uuid}/file"));
                if r.status != 200 || r.body.len() as u64 != size || sha1_hex(&r.body) != sha1 {
                    anomalies.push(format!(
                        "file of {uuid} does not verify: status {} {} bytes",
                        r.status,
                        r.body.len()
                    ));
                }
                use sha2::Digest;
                let on_disk = std::fs::read(d.data.join("blobs/sha256").join(&digest[7..]))
                    .unwrap_or_default();
                if format!("sha256:{}", hex::encode(sha2::Sha256::digest(&on_disk))) != digest {
                    anomalies.push(format!("blob {digest} of {uuid} does not hash to its name"));
                }
            }
        }
    }
    for (uuid, img) in model.iter_mut() {
        if !listed.contains_key(uuid) {
            if img.possible.iter().all(|s| s.exists) {
                anomalies.push(format!("acknowledged image {uuid} ({}) is gone", img.name));
            }
            img.possible = [State {
                exists: false,
                file: None,
                active: false,
            }]
            .into();
        }
    }
    model.retain(|_, i| i.possible.iter().any(|s| s.exists));
    pending_creates.clear();
    for dir in ["ingest", "manifests"] {
        for e in std::fs::read_dir(d.data.join(dir)).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if dir == "ingest" || n.ends_with(".tmp") {
                anomalies.push(format!("temp file {dir}/{n} left after restart"));
            }
        }
    }
    for t in d.get("/tasks").json().as_array().unwrap() {
        if matches!(t["status"].as_str(), Some("pending" | "processing")) {
            anomalies.push(format!(
                "task {} still {} after restart",
                t["id"], t["status"]
            ));
        }
    }
    let state = d.get("/state").expect(200, None);
    if state["errors"] != 0 {
        anomalies.push(format!("fsck found errors: {}", state["findings"]));
    }
    anomalies
}

#[test]
fn kill9_during_uploads_creates_activations_and_deletes() {
    let rounds = env_usize("IMGSTORE_CRASH_ROUNDS", 120);
    let (mut rng, _) = Rng::seeded("crash");
    let mut d = Daemon::start();
    let mut model: BTreeMap<String, Img> = BTreeMap::new();
    let mut pending = BTreeSet::new();
    let mut verified = BTreeSet::new();
    let stats = Arc::new(Stats::default());
    let mut anomalies = Vec::new();
    let mut garbage = 0u64;
    let start = Instant::now();
    const WORKERS: usize = 3;
    for round in 0..rounds {
        let dead = Arc::new(AtomicBool::new(false));
        let pending_creates = Arc::new(Mutex::new(BTreeSet::new()));
        let mut shares: Vec<BTreeMap<String, Img>> = vec![BTreeMap::new(); WORKERS];
        for (i, (u, img)) in std::mem::take(&mut model).into_iter().enumerate() {
            shares[i % WORKERS].insert(u, img);
        }
        let handles: Vec<_> = shares
            .into_iter()
            .enumerate()
            .map(|(w, share)| {
                let (sock, dead, stats, pc) = (
                    d.sock.clone(),
                    dead.clone(),
                    stats.clone(),
                    pending_creates.clone(),
                );
                let wrng = Rng(rng.next() | 1);
                std::thread::spawn(move || {
                    worker(sock, wrng, share, pc, format!("{round}-{w}"), dead, stats)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(10 + rng.below(300)));
        d.kill9();
        dead.store(true, Ordering::SeqCst);
        for h in handles {
            model.extend(h.join().expect("worker panicked"));
        }
        pending.extend(pending_creates.lock().unwrap().iter().cloned());
        d.spawn();
        let found = verify(&d, &mut model, &mut pending, &mut verified);
        for a in &found {
            eprintln!("round {round}: ANOMALY {a}");
        }
        anomalies.extend(found);
        if round % 25 == 24 {
            let v = d.post("/vacuum").expect(200, None);
            garbage += v["removed"].as_array().unwrap().len() as u64;
        }
    }
    let state = d.get("/state?verify=true").expect(200, None);
    if state["errors"] != 0 {
        anomalies.push(format!("final fsck with digests: {}", state["findings"]));
    }
    println!(
        "crash: {rounds} kills survived in {:.1} s, {} operations acknowledged, {} unacknowledged (in flight at a kill), {} images at the end, {} blobs verified, {} garbage items vacuumed, anomalies: {}",
        start.elapsed().as_secs_f64(),
        stats.acked.load(Ordering::Relaxed),
        stats.unknown.load(Ordering::Relaxed),
        model.len(),
        verified.len(),
        garbage,
        anomalies.len()
    );
    assert!(
        anomalies.is_empty(),
        "anomalies: {anomalies:#?}\nlog tail:\n{}",
        tail(&d.log_text())
    );
}

/// Copies a directory tree (a stopped daemon's sled database).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A clean stop leaves `manifests/.clean`, and the next start may trust
/// sled instead of reading every record. That marker must be gone once the
/// daemon serves again: here changes are made after a clean restart, the
/// daemon is killed, and sled comes back as the clean stop left it (older
/// than the records, as a damaged log may leave it). The next start must
/// find no marker, read every record and serve the changes.
#[test]
fn kill9_after_a_clean_restart_does_not_trust_a_stale_index() {
    let mut d = Daemon::start();
    let marker = d.data.join("manifests/.clean");
    let a = d.create_active("a", b"a bytes", json!({"description": "before"}));
    let gone = d.create("gone", json!({}));
    let kept = d.create("kept", json!({}));
    d.stop();
    assert!(marker.exists(), "a clean stop marks the metadata clean");
    let saved = d.dir.path().join("db.saved");
    copy_tree(&d.data.join("db"), &saved);
    d.spawn();
    assert!(
        !marker.exists(),
        "a start removes the marker before serving"
    );
    d.post_json(
        &format!("/images/{a}?action=update"),
        &json!({"description": "after"}),
    )
    .expect(200, None);
    d.delete(&format!("/images/{gone}")).expect(204, None);
    let added = d.create("added", json!({}));
    let before = d.get("/images?state=all").expect(200, None);
    d.kill9();
    assert!(!marker.exists(), "no marker after a crash");
    std::fs::remove_dir_all(d.data.join("db")).unwrap();
    copy_tree(&saved, &d.data.join("db"));
    d.spawn();
    assert_eq!(
        d.get("/images?state=all").expect(200, None),
        before,
        "log:\n{}",
        tail(&d.log_text())
    );
    assert_eq!(
        d.get(&format!("/images/{a}")).expect(200, None)["description"],
        "after"
    );
    d.get(&format!("/images/{gone}"))
        .expect(404, Some("ResourceNotFound"));
    d.get(&format!("/images/{added}")).expect(200, None);
    d.get(&format!("/images/{kept}")).expect(200, None);
    assert_eq!(d.get(&format!("/images/{a}/file")).body, b"a bytes");
    let state = d.get("/state").expect(200, None);
    assert_eq!(state["errors"], 0, "{state}");
    // sled was repaired: a clean stop and a start that trusts it agree.
    d.stop();
    assert!(marker.exists());
    d.spawn();
    assert_eq!(d.get("/images?state=all").expect(200, None), before);
    assert_eq!(d.get("/state").expect(200, None)["errors"], 0);
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// ZFS: kills during installs and creates from a dataset.
#[test]
fn kill9_during_zfs_installs_and_creates() {
    use crate::zfs::{create_image, destroy, exists, mountpoint, pool, zfs};
    let rounds = env_usize("IMGSTORE_CRASH_ZFS_ROUNDS", 30);
    let (mut rng, _) = Rng::seeded("crash-zfs");
    // The source lives in the test pool; installs go to a pool of the
    // test's own, so their -partial datasets are checked in isolation.
    let src = format!(
        "{}/crash-{}",
        pool(),
        &uuid::Uuid::new_v4().to_string()[..8]
    );
    let scratch = tempfile::tempdir().unwrap();
    let own = crate::fullness::SmallPool::create(scratch.path(), 256);
    let pool = own.name.as_str();
    zfs(&["create", &src]);
    let mut data = vec![0u8; 3 << 20];
    pattern(&mut data, 42);
    std::fs::write(mountpoint(&src).join("data.bin"), &data).unwrap();
    let mut d = Daemon::start_configured(&format!("default_pool = \"{pool}\"\n"));
    let base = create_image(&d, &src, "crash-base", "gzip", false);
    let mut anomalies = Vec::new();
    let (mut installs, mut creates, mut interrupted, mut created) = (0, 0, 0, vec![base.clone()]);
    let start = Instant::now();
    for round in 0..rounds {
        let target = format!("{pool}/{base}");
        let mut tasks = Vec::new();
        if !exists(&target) {
            let t = d
                .post(&format!("/images/{base}?action=install&pool={pool}"))
                .expect(202, None);
            tasks.push(t["id"].as_str().unwrap().to_string());
            installs += 1;
        }
        if round % 2 == 0 || tasks.is_empty() {
            let r = d.post_json(
                "/images?action=create-from-dataset",
                &json!({"dataset": src, "compression": "gzip",
                        "manifest": {"name": format!("crash-{round}"), "version": "1.0.0", "type": "zone-dataset", "os": "smartos"}}),
            );
            let t = r.expect(202, None);
            tasks.push(t["id"].as_str().unwrap().to_string());
            creates += 1;
        }
        std::thread::sleep(Duration::from_millis(50 + rng.below(1500)));
        let before: BTreeMap<String, String> = tasks
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    d.get(&format!("/tasks/{id}")).json()["status"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        d.kill9();
        d.spawn();
        for (id, status_before) in &before {
            let t = d.get(&format!("/tasks/{id}")).expect(200, None);
            match t["status"].as_str() {
                Some("success") => {
                    if let Some(u) = t["result"]["image_uuid"].as_str() {
                        created.push(u.to_string());
                    }
                }
                Some("failure") if status_before == "processing" && t["error"]["code"] == "Interrupted" => interrupted += 1,
                other => anomalies.push(format!("round {round}: task {id} was {status_before} before the kill and is {other:?} after: {t}")),
            }
        }
        // Interrupted tasks' datasets are undone in the background.
        let deadline = Instant::now() + Duration::from_secs(90);
        while d.get("/state").json()["recovering"] == true {
            assert!(
                Instant::now() < deadline,
                "start-up recovery did not finish"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        loop {
            let list = zfs(&["list", "-H", "-o", "name", "-t", "all", "-r", pool]);
            let partial: Vec<&str> = list.lines().filter(|l| l.contains("-partial")).collect();
            if partial.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                anomalies.push(format!("round {round}: partial datasets left: {partial:?}"));
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if exists(&target) && !exists(&format!("{target}@final")) {
            anomalies.push(format!("round {round}: {target} is visible without @final"));
        }
        for u in &created {
            d.get(&format!("/images/{u}")).expect(200, None);
        }
        let state = d.get("/state").expect(200, None);
        if state["errors"] != 0 {
            anomalies.push(format!("round {round}: fsck: {}", state["findings"]));
        }
        if exists(&target) && rng.below(2) == 0 {
            d.delete(&format!("/pools/{pool}/images/{base}"))
                .expect(204, None);
        }
    }
    let state = d.get("/state?verify=true").expect(200, None);
    if state["errors"] != 0 {
        anomalies.push(format!("final fsck: {}", state["findings"]));
    }
    println!(
        "crash-zfs: {rounds} kills survived in {:.1} s during {installs} installs and {creates} creates; {interrupted} tasks interrupted and marked failed, {} images created, anomalies: {}",
        start.elapsed().as_secs_f64(),
        created.len(),
        anomalies.len()
    );
    d.stop();
    destroy(&src);
    assert!(
        anomalies.is_empty(),
        "anomalies: {anomalies:#?}\nlog tail:\n{}",
        tail(&d.log_text())
    );
}

//! Image metadata: sled is the index, one JSON record file per image is the
//! durable truth it can be rebuilt from.
//!
//! sled 0.34 is beta-quality (peers.md section D: corruption after abrupt
//! stops, writes not durable until a flush). So every change is written
//! twice, in this order: `manifests/<uuid>.json` (temp file, fsync, rename,
//! directory fsync), then the sled tree `images`, then `flush()`. Only then is
//! the change acknowledged. At open, sled is compared with the record files;
//! where they disagree, or sled cannot be opened at all, the records win and
//! sled is rebuilt from them. A record file that cannot be parsed is
//! restored from sled's copy when that one is good.
//!
//! Reading every record file at each start costs seconds with tens of
//! thousands of images, and is only needed after a crash. So a clean
//! shutdown leaves a marker (`manifests/.clean`, written after sled's last
//! flush, holding a token that sled got in that flush); a start that finds
//! it, with sled holding the same token, trusts sled's copies and only
//! compares the record file names with sled's keys (a directory listing),
//! reading just the files sled lacks. The marker is removed, durably, as
//! the first thing a start does (whether or not it found it), and again
//! before the first change after a clean shutdown was marked, so a crash
//! can never leave a stale one: after a kill -9 the next start always
//! reads every record. The marker is not a record: everything that lists
//! `manifests/` goes through [`records::uuid_stems`], which only takes
//! `<uuid>.json`.
//!
//! All records are also held in memory (`cache`), so reads never touch the
//! disk; the store is small (a node keeps hundreds of images, tens of
//! thousands at most) and listing must be fast. The cache is indexed twice:
//! by uuid (GetImage) and in list order, `published_at` then uuid, so a
//! ListImages page walks the records in order and stops once the page is
//! full instead of sorting every record per request.
//!
//! The cache is compact: per image it keeps the manifest as JSON bytes
//! (what GetImage sends, shared, never re-serialised) and the few fields
//! that listing filters and the store's own checks need ([`Fields`]); the
//! full [`ImageRecord`] is parsed from the bytes when a caller asks for it
//! (a mutation, an install, a download's file lookup, fsck). A parsed
//! `serde_json` manifest takes several kilobytes of small allocations, so
//! holding tens of thousands parsed would cost tens of MiB and seconds of
//! start-up.
//!
//! Writes are blocking: callers run them on the blocking pool.

use super::{layout, records};
use crate::manifest::{self, FileEntry, Manifest};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// What the store keeps about one image: the manifest as served, plus the
/// fields IMGAPI stores but never outputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub manifest: Manifest,
    /// IMGAPI's `activated`: state is derived from it and `disabled`.
    #[serde(default)]
    pub activated: bool,
    /// Base64 MD5 of the file, served as `Content-MD5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_md5: Option<String>,
    /// The image's icon (AddImageIcon), a blob of the content-addressed
    /// store like the image file; the manifest says `icon: true` while it
    /// is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<Icon>,
}

/// An image's icon: which blob holds it and what GetImageIcon answers
/// with (IMGAPI keeps the same facts in its raw `icon` object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Icon {
    /// Hex SHA-256 of the icon: its blob's key.
    pub sha256: String,
    /// Hex SHA-1, served as `ETag`.
    pub sha1: String,
    /// Base64 MD5, served as `Content-MD5`.
    pub content_md5: String,
    pub size: u64,
    /// `image/png`, `image/jpeg` or `image/gif`, as uploaded.
    pub content_type: String,
    /// When it was uploaded (RFC 3339), served as `Last-Modified`.
    pub mtime: String,
}

impl ImageRecord {
    pub fn uuid(&self) -> &str {
        manifest::uuid_of(&self.manifest).unwrap_or_default()
    }

    /// `origin`, when set (see [`manifest::origin_of`]).
    pub fn origin(&self) -> Option<&str> {
        manifest::origin_of(&self.manifest)
    }

    /// `state`, when it is a string.
    pub fn state(&self) -> Option<&str> {
        manifest::state_of(&self.manifest)
    }

    /// `name`, when it is a string.
    pub fn name(&self) -> Option<&str> {
        manifest::name_of(&self.manifest)
    }

    /// `version`, when it is a string.
    pub fn version(&self) -> Option<&str> {
        manifest::version_of(&self.manifest)
    }

    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.manifest.get(name).and_then(|v| v.as_str())
    }

    /// `files[0]`, typed, if the image has a file.
    pub fn file(&self) -> Option<FileEntry> {
        FileEntry::of(&self.manifest)
    }

    /// Where the record sorts in a list: `published_at` (empty when
    /// unset), then uuid.
    pub fn sort_key(&self) -> SortKey {
        (
            self.str_field("published_at")
                .unwrap_or_default()
                .to_string(),
            self.uuid().to_string(),
        )
    }

    /// The fields the list filters use.
    pub fn fields(&self) -> Fields {
        Fields::of(&self.manifest)
    }

    /// The SHA-256 hex of the image's blob, from `files[0].digest`.
    pub fn blob_sha256(&self) -> Option<&str> {
        FileEntry::sha256_of(&self.manifest)
    }
}

/// List order: `published_at`, then uuid (so paging by a uuid marker is
/// stable).
pub type SortKey = (String, String);

/// The fields that ListImages filters on and the store's own scans use,
/// kept parsed for every image. String fields hold the manifest's value
/// only when it is a string (as `ImageRecord::str_field` reads it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields {
    pub uuid: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub os: Option<String>,
    pub type_: Option<String>,
    pub state: Option<String>,
    pub owner: Option<String>,
    pub origin: Option<String>,
    pub published_at: Option<String>,
    pub public: Option<bool>,
    pub tags: Option<serde_json::Map<String, serde_json::Value>>,
    /// What a package fit (the `package` filter) reads of `requirements`.
    pub requirements: Requirements,
    /// `files[0].digest` without `sha256:`.
    pub blob_sha256: Option<String>,
    /// The string items of `acl` (accounts a private image is shared with).
    pub acl: Vec<String>,
    /// The string items of `channels`; `None` when the manifest has none.
    pub channels: Option<Vec<String>>,
    /// The icon's blob (from the record, not the manifest).
    pub icon_sha256: Option<String>,
    /// The strings of `billing_tags` (the `billing_tag` filter).
    pub billing_tags: Vec<String>,
}

/// The parts of a manifest's `requirements` that decide whether a package
/// fits (see `service::filter::PackageFit`): each is `None` when absent,
/// of another type, or when `requirements` is not an object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirements {
    pub min_ram: Option<u64>,
    pub max_ram: Option<u64>,
    pub brand: Option<String>,
}

impl Requirements {
    pub fn of(m: &Manifest) -> Requirements {
        Requirements::of_value(m.get("requirements"))
    }

    fn of_value(v: Option<&serde_json::Value>) -> Requirements {
        let Some(reqs) = v.and_then(|v| v.as_object()) else {
            return Requirements::default();
        };
        let ram = |k: &str| reqs.get(k).and_then(|v| v.as_u64());
        Requirements {
            min_ram: ram("min_ram"),
            max_ram: ram("max_ram"),
            brand: reqs
                .get("brand")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        }
    }
}

/// The manifest keys [`Fields`] holds, parsed on their own: every other
/// key is skipped without building values.
#[derive(Deserialize)]
struct FieldsDe {
    uuid: Option<serde_json::Value>,
    name: Option<serde_json::Value>,
    version: Option<serde_json::Value>,
    os: Option<serde_json::Value>,
    #[serde(rename = "type")]
    type_: Option<serde_json::Value>,
    state: Option<serde_json::Value>,
    owner: Option<serde_json::Value>,
    origin: Option<serde_json::Value>,
    published_at: Option<serde_json::Value>,
    public: Option<serde_json::Value>,
    tags: Option<serde_json::Value>,
    requirements: Option<serde_json::Value>,
    files: Option<serde_json::Value>,
    acl: Option<serde_json::Value>,
    channels: Option<serde_json::Value>,
    billing_tags: Option<serde_json::Value>,
}

/// The string items of a JSON array (`acl`, `channels`, `billing_tags`);
/// `None` when it is not an array.
fn strings_of(v: Option<&serde_json::Value>) -> Option<Vec<String>> {
    v.and_then(|v| v.as_array()).map(|a| {
        a.iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    })
}

impl Fields {
    /// From a manifest's JSON, parsing only the keys it keeps.
    fn parse(json: &str) -> serde_json::Result<Fields> {
        let d: FieldsDe = serde_json::from_str(json)?;
        let s = |v: Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => Some(s),
            _ => None,
        };
        Ok(Fields {
            uuid: s(d.uuid).unwrap_or_default(),
            name: s(d.name),
            version: s(d.version),
            os: s(d.os),
            type_: s(d.type_),
            state: s(d.state),
            owner: s(d.owner),
            origin: s(d.origin),
            published_at: s(d.published_at),
            public: d.public.and_then(|v| v.as_bool()),
            tags: match d.tags {
                Some(serde_json::Value::Object(m)) => Some(m),
                _ => None,
            },
            requirements: Requirements::of_value(d.requirements.as_ref()),
            blob_sha256: d.files.as_ref().and_then(blob_of_files),
            acl: strings_of(d.acl.as_ref()).unwrap_or_default(),
            channels: strings_of(d.channels.as_ref()),
            icon_sha256: None,
            billing_tags: strings_of(d.billing_tags.as_ref()).unwrap_or_default(),
        })
    }

    pub fn of(m: &Manifest) -> Fields {
        let s = |k: &str| m.get(k).and_then(|v| v.as_str()).map(str::to_string);
        Fields {
            uuid: manifest::uuid_of(m).unwrap_or_default().to_string(),
            name: manifest::name_of(m).map(str::to_string),
            version: manifest::version_of(m).map(str::to_string),
            os: s("os"),
            type_: s("type"),
            state: manifest::state_of(m).map(str::to_string),
            owner: s("owner"),
            origin: manifest::origin_of(m).map(str::to_string),
            published_at: s("published_at"),
            public: m.get("public").and_then(|v| v.as_bool()),
            tags: m.get("tags").and_then(|v| v.as_object()).cloned(),
            requirements: Requirements::of(m),
            blob_sha256: FileEntry::sha256_of(m).map(str::to_string),
            acl: strings_of(m.get("acl")).unwrap_or_default(),
            channels: strings_of(m.get("channels")),
            icon_sha256: None,
            billing_tags: strings_of(m.get("billing_tags")).unwrap_or_default(),
        }
    }

    /// Whether the image refers to the blob `sha256` (its file or its icon).
    pub fn uses_blob(&self, sha256: &str) -> bool {
        self.blob_sha256.as_deref() == Some(sha256) || self.icon_sha256.as_deref() == Some(sha256)
    }

    pub fn sort_key(&self) -> SortKey {
        (
            self.published_at.clone().unwrap_or_default(),
            self.uuid.clone(),
        )
    }
}

/// `files[0].digest` without `sha256:` (as [`ImageRecord::blob_sha256`]).
fn blob_of_files(files: &serde_json::Value) -> Option<String> {
    FileEntry::sha256_in(files).map(str::to_string)
}

/// A record as the cache holds it: the manifest's JSON and its [`Fields`].
/// Immutable: a change replaces the whole entry.
#[derive(Debug)]
pub struct Cached {
    pub fields: Fields,
    pub activated: bool,
    pub content_md5: Option<String>,
    pub icon: Option<Icon>,
    /// The manifest as compact JSON followed by a newline.
    json_line: Bytes,
}

/// A stored record as read back, with the manifest left unparsed.
#[derive(Deserialize)]
struct RawRecord<'a> {
    #[serde(borrow)]
    manifest: &'a serde_json::value::RawValue,
    #[serde(default)]
    activated: bool,
    #[serde(default)]
    content_md5: Option<String>,
    #[serde(default)]
    icon: Option<Icon>,
}

impl Cached {
    fn from_record(rec: &ImageRecord) -> serde_json::Result<Arc<Cached>> {
        let mut json = serde_json::to_vec(&rec.manifest)?;
        json.push(b'\n');
        let mut fields = Fields::of(&rec.manifest);
        fields.icon_sha256 = rec.icon.as_ref().map(|i| i.sha256.clone());
        Ok(Arc::new(Cached {
            fields,
            activated: rec.activated,
            content_md5: rec.content_md5.clone(),
            icon: rec.icon.clone(),
            json_line: Bytes::from(json),
        }))
    }

    /// From a record's bytes as [`Meta::put`] writes them to sled (the
    /// manifest inside is compact JSON, exactly what GetImage sends). Only
    /// sled's copies are read this way: a record file may have been written
    /// by hand, and is parsed in full ([`Cached::from_record`]).
    fn from_stored(bytes: &[u8]) -> serde_json::Result<Arc<Cached>> {
        let raw: RawRecord = serde_json::from_slice(bytes)?;
        if !raw.manifest.get().starts_with('{') {
            return Err(serde::de::Error::custom("the manifest is not an object"));
        }
        let mut fields = Fields::parse(raw.manifest.get())?;
        fields.icon_sha256 = raw.icon.as_ref().map(|i| i.sha256.clone());
        let mut json = Vec::with_capacity(raw.manifest.get().len() + 1);
        json.extend_from_slice(raw.manifest.get().as_bytes());
        json.push(b'\n');
        Ok(Arc::new(Cached {
            fields,
            activated: raw.activated,
            content_md5: raw.content_md5,
            icon: raw.icon,
            json_line: Bytes::from(json),
        }))
    }

    /// The manifest's JSON followed by `\n` (a GetImage body).
    pub fn json_line(&self) -> &Bytes {
        &self.json_line
    }

    /// The manifest's JSON, without the newline.
    pub fn json(&self) -> &[u8] {
        &self.json_line[..self.json_line.len() - 1]
    }

    /// The full record, parsed from the JSON (a fresh copy per call).
    pub fn record(&self) -> ImageRecord {
        ImageRecord {
            manifest: serde_json::from_slice(self.json()).unwrap_or_default(),
            activated: self.activated,
            content_md5: self.content_md5.clone(),
            icon: self.icon.clone(),
        }
    }
}

/// The in-memory indexes: by uuid (the record's file name, which is also
/// sled's key), and in list order.
#[derive(Default)]
struct Index {
    by_uuid: BTreeMap<String, Arc<Cached>>,
    sorted: BTreeMap<SortKey, Arc<Cached>>,
}

/// Where an image stored under `uuid` sorts in a list.
fn list_key(uuid: &str, c: &Cached) -> SortKey {
    (
        c.fields.published_at.clone().unwrap_or_default(),
        uuid.to_string(),
    )
}

impl Index {
    fn insert(&mut self, uuid: String, c: Arc<Cached>) {
        let key = list_key(&uuid, &c);
        if let Some(old) = self.by_uuid.insert(uuid.clone(), c.clone()) {
            self.sorted.remove(&list_key(&uuid, &old));
        }
        self.sorted.insert(key, c);
    }

    fn remove(&mut self, uuid: &str) {
        if let Some(old) = self.by_uuid.remove(uuid) {
            self.sorted.remove(&list_key(uuid, &old));
        }
    }
}

pub struct Meta {
    db: sled::Db,
    images: sled::Tree,
    records: PathBuf,
    cache: RwLock<Index>,
    /// Whether `manifests/.clean` may exist (set by [`Meta::mark_clean`]).
    marked_clean: AtomicBool,
}

/// The clean-shutdown marker, in the records directory. Not a record (its
/// name is not `<uuid>.json`), never reported by fsck. It holds a random
/// token that the same shutdown stored in sled (under `CLEAN_TOKEN_KEY`
/// in the default tree) before its last flush: a marker is only trusted
/// with the database it was written with.
pub const CLEAN_MARKER: &str = ".clean";

/// Where sled keeps the token of the last clean shutdown.
const CLEAN_TOKEN_KEY: &[u8] = b"clean-shutdown-token";

/// sled's page cache. Reads are served from [`Index`]; sled is read once at
/// start and then only written, so its cache need not hold the tree (its
/// default, 1 GiB, would keep every page read at start resident).
const SLED_CACHE_BYTES: u64 = 4 << 20;

impl Meta {
    /// Opens the database under `data_dir/db` and the records under
    /// `data_dir/manifests`, reconciling the two (records win).
    ///
    /// # Errors
    /// The records directory cannot be read or the clean marker cannot be
    /// removed, or sled cannot be opened even after moving a broken
    /// database aside.
    pub fn open(data_dir: &Path) -> Result<Meta, MetaError> {
        let records = layout::records(data_dir);
        records::open_dir(&records)?;
        // Before anything can change: from here on, whatever happens, the
        // next start runs the full check unless this run stops cleanly.
        let marker = take_clean_marker(&records).map_err(|source| MetaError::File {
            path: records.clone(),
            source,
        })?;
        let db_path = layout::db(data_dir);
        // sled 0.34 may panic rather than return an error on a damaged
        // database (peers.md section D, #1533): both count as "cannot be
        // opened", and so does a panic while reading it back.
        let first = catch(|| {
            let db = open_db(&db_path)?;
            Meta::with_db(db, records.clone(), marker.as_deref())
        });
        match first {
            Ok(meta) => Ok(meta),
            Err(Broken::Records(e)) => Err(e),
            Err(Broken::Db(e)) => {
                // The records are the truth: keep the broken database for a
                // post-mortem and start a fresh one, rebuilt from them.
                let aside = layout::broken_db(data_dir);
                tracing::error!(error = %e, moved_to = %aside.display(), "sled database cannot be opened; rebuilding it from the manifest records");
                if db_path.exists() {
                    fs::rename(&db_path, &aside).map_err(|aside_error| MetaError::MoveAside {
                        path: db_path.clone(),
                        source: Box::new(e),
                        aside_error,
                    })?;
                }
                catch(|| {
                    let db = open_db(&db_path)?;
                    Meta::with_db(db, records.clone(), None)
                })
                .map_err(|e| match e {
                    Broken::Db(e) | Broken::Records(e) => e,
                })
            }
        }
    }

    /// `marker`: the clean marker's token, if the start found one. sled's
    /// copies are trusted (see [`Meta::load`]) only when sled holds the
    /// same token, i.e. it is the database that stopped cleanly with those
    /// records, not an older copy or one from elsewhere.
    fn with_db(db: sled::Db, records: PathBuf, marker: Option<&[u8]>) -> Result<Meta, Broken> {
        let images = db.open_tree(layout::tree::IMAGES).map_err(Broken::db)?;
        let token = db.get(CLEAN_TOKEN_KEY).map_err(Broken::db)?;
        let clean = marker.is_some_and(|m| !m.is_empty() && token.is_some_and(|t| *t == *m));
        if marker.is_some() && !clean {
            tracing::warn!(
                "the clean-shutdown marker does not match the sled database; checking every record"
            );
        }
        let meta = Meta {
            db,
            images,
            records,
            cache: RwLock::new(Index::default()),
            marked_clean: AtomicBool::new(false),
        };
        meta.load(clean)?;
        Ok(meta)
    }

    /// Makes sled and the cache agree with the record files again (records
    /// win), reading every record as a start after a crash does; returns
    /// how many entries were repaired.
    ///
    /// # Errors
    /// The clean marker cannot be removed, the records cannot be listed,
    /// or sled failed.
    pub fn reindex(&self) -> Result<usize, MetaError> {
        self.unmark_clean().map_err(|source| MetaError::File {
            path: self.records.clone(),
            source,
        })?;
        match catch(|| self.load(false)) {
            Ok(n) => Ok(n),
            Err(Broken::Db(e) | Broken::Records(e)) => Err(e),
        }
    }

    /// Records that sled and the record files agree (call after the last
    /// change, at shutdown, with writers locked out); the next open can
    /// then skip reading every record. A later change removes the marker
    /// first.
    ///
    /// # Errors
    /// The flush or the marker write failed (the next start then reads
    /// every record, which is always safe).
    pub fn mark_clean(&self) -> io::Result<()> {
        let token = uuid::Uuid::new_v4().to_string();
        self.db
            .insert(CLEAN_TOKEN_KEY, token.as_bytes())
            .map_err(io::Error::other)?;
        self.db.flush().map_err(io::Error::other)?;
        // Set first: a change racing the marker's creation removes it.
        self.marked_clean.store(true, Ordering::SeqCst);
        let mut f = File::create(self.records.join(CLEAN_MARKER))?;
        f.write_all(token.as_bytes())?;
        f.sync_all()?;
        records::sync_dir(&self.records)
    }

    /// Removes the clean marker, durably, if it may exist.
    fn unmark_clean(&self) -> io::Result<()> {
        if !self.marked_clean.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let r = records::remove(&self.records, CLEAN_MARKER);
        if r.is_err() {
            self.marked_clean.store(true, Ordering::SeqCst);
        }
        r
    }

    /// Loads the cache from sled, after making sled agree with the records.
    ///
    /// After a clean shutdown (`clean`), sled's copies are trusted and only
    /// the key sets are compared: a record sled lacks (or whose sled copy
    /// does not parse) is read, an entry without a record is dropped.
    /// Otherwise every record file is read and compared byte for byte with
    /// sled's copy (both are written from the same bytes); only records
    /// that differ are parsed in full.
    ///
    /// A record file that cannot be parsed is restored from sled's copy
    /// when that one is good, and otherwise left out (and reported by
    /// fsck), so one damaged file does not keep the daemon from starting.
    fn load(&self, clean: bool) -> Result<usize, Broken> {
        let db_err = Broken::db;
        let on_disk: HashSet<String> = self
            .record_uuids()
            .map_err(Broken::Records)?
            .into_iter()
            .collect();
        let mut cache: BTreeMap<String, Arc<Cached>> = BTreeMap::new();
        // sled's good copies of the records that must be read (crash path).
        let mut from_sled: HashMap<String, Arc<Cached>> = HashMap::new();
        let mut repaired = 0usize;
        for item in self.images.iter() {
            let (k, v) = item.map_err(db_err)?;
            let uuid = String::from_utf8_lossy(&k).into_owned();
            if !on_disk.contains(&uuid) {
                // Deleted: the record goes first, so sled's copy is stale.
                self.images.remove(&k).map_err(db_err)?;
                repaired += 1;
                continue;
            }
            // Otherwise the record is read below.
            let Ok(c) = Cached::from_stored(&v) else {
                continue;
            };
            // After a crash, only a copy equal to the record's bytes.
            if clean || fs::read(self.record_path(&uuid)).is_ok_and(|b| b == *v) {
                cache.insert(uuid, c);
            } else if c.fields.uuid == uuid {
                from_sled.insert(uuid, c);
            }
        }
        for uuid in &on_disk {
            if cache.contains_key(uuid) {
                continue;
            }
            let sled_copy = from_sled.remove(uuid);
            match self.read_record(uuid) {
                Ok(rec) => {
                    // Equal once parsed: a record written in another layout
                    // (by hand), sled's copy is good.
                    if sled_copy.as_ref().is_none_or(|c| c.record() != rec) {
                        let bytes = serde_json::to_vec(&rec)
                            .map_err(|e| Broken::Records(MetaError::Encode(e)))?;
                        self.images.insert(uuid.as_bytes(), bytes).map_err(db_err)?;
                        repaired += 1;
                    }
                    let c = Cached::from_record(&rec).map_err(|source| {
                        Broken::Records(MetaError::Record {
                            uuid: uuid.clone(),
                            source,
                        })
                    })?;
                    cache.insert(uuid.clone(), c);
                }
                Err(e) => match sled_copy {
                    Some(good) => {
                        tracing::error!(image = %uuid, error = %e, "manifest record is damaged; restoring it from the sled index");
                        self.write(&good.record()).map_err(|source| {
                            Broken::Records(MetaError::Restore {
                                uuid: uuid.clone(),
                                source,
                            })
                        })?;
                        cache.insert(uuid.clone(), good);
                        repaired += 1;
                    }
                    None => {
                        tracing::error!(image = %uuid, error = %e, "manifest record is damaged and sled has no good copy; the image is left out (see `imgstore fsck`)");
                        if self
                            .images
                            .remove(uuid.as_bytes())
                            .map_err(db_err)?
                            .is_some()
                        {
                            repaired += 1;
                        }
                    }
                },
            }
        }
        if repaired > 0 {
            tracing::warn!(
                repaired,
                "sled index disagreed with the manifest records; rebuilt from the records"
            );
            self.db.flush().map_err(db_err)?;
        }
        let mut index = Index::default();
        for (uuid, c) in cache {
            index.insert(uuid, c);
        }
        *self.cache.write().unwrap() = index;
        release_free_memory();
        Ok(repaired)
    }

    /// The records directory (`manifests/`).
    pub fn records_dir(&self) -> &Path {
        &self.records
    }

    /// Every record file, parsed, in uuid order (for checks).
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn read_records(&self) -> Result<Vec<RecordFile>, MetaError> {
        read_records(&self.records)
    }

    /// Every entry of the sled index, parsed (`None` if it does not parse).
    ///
    /// # Errors
    /// sled failed (or panicked) while reading.
    pub fn index_entries(&self) -> Result<Vec<(String, Option<ImageRecord>)>, MetaError> {
        match catch(|| index_entries(&self.images).map_err(Broken::Db)) {
            Ok(v) => Ok(v),
            Err(Broken::Db(e) | Broken::Records(e)) => Err(e),
        }
    }

    fn record_uuids(&self) -> Result<Vec<String>, MetaError> {
        Ok(records::uuid_stems(&self.records)?)
    }

    fn record_path(&self, uuid: &str) -> PathBuf {
        self.records.join(format!("{uuid}.json"))
    }

    fn read_record(&self, uuid: &str) -> Result<ImageRecord, MetaError> {
        read_record_file(&self.record_path(uuid))
    }

    /// The record, parsed from the cache (a fresh copy per call; see
    /// [`Meta::get_cached`] for request paths).
    pub fn get(&self, uuid: &str) -> Option<Arc<ImageRecord>> {
        self.get_cached(uuid).map(|c| Arc::new(c.record()))
    }

    /// Whether an image exists (no parsing).
    pub fn contains(&self, uuid: &str) -> bool {
        self.cache.read().unwrap().by_uuid.contains_key(uuid)
    }

    /// The cached record, with its serialised manifest.
    pub fn get_cached(&self, uuid: &str) -> Option<Arc<Cached>> {
        self.cache.read().unwrap().by_uuid.get(uuid).cloned()
    }

    /// A snapshot of every record, in uuid order (each parsed: for checks
    /// and tools, not for request paths; see [`Meta::any`]).
    pub fn all(&self) -> Vec<Arc<ImageRecord>> {
        let cached: Vec<Arc<Cached>> = self
            .cache
            .read()
            .unwrap()
            .by_uuid
            .values()
            .cloned()
            .collect();
        cached.iter().map(|c| Arc::new(c.record())).collect()
    }

    /// Whether any image's [`Fields`] satisfy `f`.
    pub fn any(&self, f: impl Fn(&Fields) -> bool) -> bool {
        self.cache
            .read()
            .unwrap()
            .by_uuid
            .values()
            .any(|c| f(&c.fields))
    }

    /// The uuids of the images whose [`Fields`] satisfy `f`, in uuid order.
    pub fn uuids_where(&self, f: impl Fn(&Fields) -> bool) -> Vec<String> {
        self.cache
            .read()
            .unwrap()
            .by_uuid
            .iter()
            .filter(|(_, c)| f(&c.fields))
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// `f` on every image's uuid and [`Fields`], in uuid order, keeping
    /// what it returns (under the read lock: `f` must not call back into
    /// `Meta` for writing).
    pub fn scan<T>(&self, mut f: impl FnMut(&str, &Fields) -> Option<T>) -> Vec<T> {
        self.cache
            .read()
            .unwrap()
            .by_uuid
            .iter()
            .filter_map(|(u, c)| f(u, &c.fields))
            .collect()
    }

    /// Runs `f` on the records in list order, under the read lock (so
    /// `f` must not call back into `Meta` for writing).
    pub fn with_sorted<R>(&self, f: impl FnOnce(&BTreeMap<SortKey, Arc<Cached>>) -> R) -> R {
        f(&self.cache.read().unwrap().sorted)
    }

    /// Where the image stored under `uuid` sorts in a list.
    pub fn sort_key(&self, uuid: &str) -> Option<SortKey> {
        self.get_cached(uuid).map(|c| list_key(uuid, &c))
    }

    pub fn len(&self) -> usize {
        self.cache.read().unwrap().by_uuid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Durably stores a record (record file, then sled, then flush).
    ///
    /// # Errors
    /// Any write or fsync failed (the clean marker's removal included).
    /// The cache is updated only on success.
    pub fn put(&self, rec: ImageRecord) -> io::Result<Arc<ImageRecord>> {
        self.unmark_clean()?;
        self.write(&rec)?;
        let cached = Cached::from_record(&rec).map_err(io::Error::other)?;
        self.cache
            .write()
            .unwrap()
            .insert(rec.uuid().to_string(), cached);
        Ok(Arc::new(rec))
    }

    /// Writes a record file, then sled, then flushes; the cache is left to
    /// the caller.
    fn write(&self, rec: &ImageRecord) -> io::Result<()> {
        let uuid = rec.uuid();
        let bytes = serde_json::to_vec(rec).map_err(io::Error::other)?;
        records::write_atomic(&self.records, &format!("{uuid}.json"), &bytes)?;
        self.images
            .insert(uuid.as_bytes(), bytes)
            .map_err(io::Error::other)?;
        self.db.flush().map_err(io::Error::other)?;
        Ok(())
    }

    /// Durably removes a record (record file first, so a crash in between
    /// can only leave a stale sled entry, which `open` drops).
    pub fn delete(&self, uuid: &str) -> io::Result<()> {
        self.unmark_clean()?;
        records::remove(&self.records, &format!("{uuid}.json"))?;
        self.images
            .remove(uuid.as_bytes())
            .map_err(io::Error::other)?;
        self.db.flush().map_err(io::Error::other)?;
        self.cache.write().unwrap().remove(uuid);
        Ok(())
    }

    /// Opens another sled tree in the same database (tasks, packages, ...).
    pub fn tree(&self, name: &str) -> sled::Result<sled::Tree> {
        self.db.open_tree(name)
    }

    /// Flushes sled (at shutdown and after writes to other trees).
    pub fn flush(&self) -> sled::Result<usize> {
        self.db.flush()
    }
}

/// Removes the clean marker and fsyncs the directory (also when there was
/// none, so that an earlier removal whose fsync did not happen is durable
/// too). Returns the marker's content (its token) if it was there.
fn take_clean_marker(records: &Path) -> io::Result<Option<Vec<u8>>> {
    let path = records.join(CLEAN_MARKER);
    let found = match fs::read(&path) {
        Ok(token) => {
            fs::remove_file(&path)?;
            Some(token)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    records::sync_dir(records)?;
    Ok(found)
}

/// Gives the heap's free pages back to the system. Loading parses every
/// record, and the parser's temporaries leave the heap fragmented and
/// several times larger than the records it keeps; glibc does not trim
/// such a heap by itself.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heap metadata; it is safe
    // to call at any time from any thread.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A record file's uuid and its parsed content (or why it does not parse).
pub type RecordFile = (String, Result<ImageRecord, MetaError>);

/// Why the image store's database or records failed. The messages name
/// the file or the database; the `source()` chain keeps the cause.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A records directory cannot be created or listed.
    #[error(transparent)]
    Dir(#[from] records::DirError),
    /// A record file (or the records directory) cannot be read or changed.
    #[error("{}: {source}", .path.display())]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A record file that is not a record.
    #[error("{}: {source}", .path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A record that cannot be encoded again.
    #[error(transparent)]
    Encode(serde_json::Error),
    /// A record whose manifest cannot be indexed.
    #[error("record {uuid}: {source}")]
    Record {
        uuid: String,
        #[source]
        source: serde_json::Error,
    },
    /// A damaged record could not be rewritten from sled's copy.
    #[error("restoring record {uuid}: {source}")]
    Restore {
        uuid: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error("sled database {}: {source}", .path.display())]
    OpenDb {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    /// sled panicked (its way of reporting some corruption).
    #[error("sled panicked: {0}")]
    Panicked(String),
    /// The database could not be opened, nor moved aside to start afresh.
    #[error("sled database {}: {source}; moving it aside failed: {aside_error}", .path.display())]
    MoveAside {
        path: PathBuf,
        #[source]
        source: Box<MetaError>,
        aside_error: io::Error,
    },
    #[error("sled database {} does not exist", .0.display())]
    Missing(PathBuf),
}

/// Why opening failed: the database (rebuildable) or the records (not).
enum Broken {
    Db(MetaError),
    Records(MetaError),
}

impl Broken {
    fn db(e: sled::Error) -> Broken {
        Broken::Db(MetaError::Sled(e))
    }
}

/// Runs `f`, turning a panic (sled's way of reporting some corruption) into
/// [`Broken::Db`].
fn catch<T>(f: impl FnOnce() -> Result<T, Broken>) -> Result<T, Broken> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into());
        Err(Broken::Db(MetaError::Panicked(msg)))
    })
}

fn open_db(path: &Path) -> Result<sled::Db, Broken> {
    sled::Config::new()
        .path(path)
        .cache_capacity(SLED_CACHE_BYTES)
        .open()
        .map_err(|source| {
            Broken::Db(MetaError::OpenDb {
                path: path.to_path_buf(),
                source,
            })
        })
}

fn index_entries(tree: &sled::Tree) -> Result<Vec<(String, Option<ImageRecord>)>, MetaError> {
    let mut out = Vec::new();
    for item in tree.iter() {
        let (k, v) = item?;
        let uuid = String::from_utf8_lossy(&k).into_owned();
        out.push((uuid, serde_json::from_slice(&v).ok()));
    }
    Ok(out)
}

/// Every record file in `dir`, parsed, in uuid order.
///
/// # Errors
/// The directory cannot be listed.
pub fn read_records(dir: &Path) -> Result<Vec<RecordFile>, MetaError> {
    let mut uuids = records::uuid_stems(dir)?;
    uuids.sort();
    Ok(uuids
        .into_iter()
        .map(|u| {
            let rec = read_record_file(&dir.join(format!("{u}.json")));
            (u, rec)
        })
        .collect())
}

/// One record file, parsed.
fn read_record_file(path: &Path) -> Result<ImageRecord, MetaError> {
    let bytes = fs::read(path).map_err(|source| MetaError::File {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| MetaError::Decode {
        path: path.to_path_buf(),
        source,
    })
}

/// The raw key/value pairs of sled trees (the database under
/// `data_dir/db`), read without reconciling anything with the records: for
/// a check that must not repair. sled may still replay its own log while
/// opening.
pub type RawTree = Vec<(Vec<u8>, Vec<u8>)>;

/// Reads `trees` from the database under `data_dir/db`, one [`RawTree`]
/// each, in order.
///
/// # Errors
/// The database does not exist, cannot be opened or read (a panic counts
/// as an error).
pub fn inspect_trees(data_dir: &Path, trees: &[&str]) -> Result<Vec<RawTree>, MetaError> {
    let path = layout::db(data_dir);
    if !path.exists() {
        return Err(MetaError::Missing(path));
    }
    let r = catch(|| {
        let db = open_db(&path)?;
        let mut out = Vec::new();
        for name in trees {
            let tree = db.open_tree(name).map_err(Broken::db)?;
            let mut kv = Vec::new();
            for item in tree.iter() {
                let (k, v) = item.map_err(Broken::db)?;
                kv.push((k.to_vec(), v.to_vec()));
            }
            out.push(kv);
        }
        Ok(out)
    });
    match r {
        Ok(v) => Ok(v),
        Err(Broken::Db(e) | Broken::Records(e)) => Err(e),
    }
}

/// Parses raw `images` entries as [`Meta::index_entries`] does.
pub fn parse_index(raw: &RawTree) -> Vec<(String, Option<ImageRecord>)> {
    raw.iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                serde_json::from_slice(v).ok(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(uuid: &str, name: &str) -> ImageRecord {
        ImageRecord {
            manifest: json!({"uuid": uuid, "name": name})
                .as_object()
                .unwrap()
                .clone(),
            activated: false,
            content_md5: None,
            icon: None,
        }
    }

    const U1: &str = "11111111-1111-4111-8111-111111111111";
    const U2: &str = "22222222-2222-4222-8222-222222222222";

    #[test]
    fn put_get_delete_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let m = Meta::open(dir.path()).unwrap();
            m.put(rec(U1, "a")).unwrap();
            m.put(rec(U2, "b")).unwrap();
            m.delete(U2).unwrap();
        }
        let m = Meta::open(dir.path()).unwrap();
        assert_eq!(m.get(U1).unwrap().name(), Some("a"));
        assert!(m.get(U2).is_none());
    }

    #[test]
    fn lost_database_is_rebuilt_from_records() {
        let dir = tempfile::tempdir().unwrap();
        {
            let m = Meta::open(dir.path()).unwrap();
            m.put(rec(U1, "a")).unwrap();
            m.put(rec(U2, "b")).unwrap();
        }
        fs::remove_dir_all(dir.path().join("db")).unwrap();
        let m = Meta::open(dir.path()).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(U2).unwrap().name(), Some("b"));
    }

    #[test]
    fn corrupt_database_is_moved_aside_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        {
            let m = Meta::open(dir.path()).unwrap();
            m.put(rec(U1, "a")).unwrap();
        }
        // Overwrite every sled file with garbage.
        for e in fs::read_dir(dir.path().join("db")).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                fs::write(&p, vec![0xffu8; 4096]).unwrap();
            }
        }
        let m = Meta::open(dir.path()).unwrap();
        assert_eq!(m.get(U1).unwrap().name(), Some("a"));
    }

    #[test]
    fn damaged_record_is_restored_from_sled_or_left_out() {
        let dir = tempfile::tempdir().unwrap();
        {
            let m = Meta::open(dir.path()).unwrap();
            m.put(rec(U1, "a")).unwrap();
        }
        let p = dir.path().join(format!("manifests/{U1}.json"));
        fs::write(&p, b"{not json").unwrap();
        {
            let m = Meta::open(dir.path()).unwrap();
            assert_eq!(m.get(U1).unwrap().name(), Some("a"));
        }
        assert!(serde_json::from_slice::<ImageRecord>(&fs::read(&p).unwrap()).is_ok());
        // Without a good sled copy the daemon still opens, without the image.
        fs::write(&p, b"{not json").unwrap();
        fs::remove_dir_all(dir.path().join("db")).unwrap();
        let m = Meta::open(dir.path()).unwrap();
        assert!(m.get(U1).is_none());
        assert!(m.read_records().unwrap()[0].1.is_err());
    }

    #[test]
    fn stale_sled_entry_without_record_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let m = Meta::open(dir.path()).unwrap();
            m.put(rec(U1, "a")).unwrap();
        }
        // A crash between removing the record and the sled entry.
        fs::remove_file(dir.path().join(format!("manifests/{U1}.json"))).unwrap();
        let m = Meta::open(dir.path()).unwrap();
        assert!(m.is_empty());
    }

    /// Copies a stopped store's sled database.
    fn copy_db(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy_db(&e.path(), &to.join(e.file_name()));
            } else {
                fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    #[test]
    fn clean_shutdown_marker_is_used_once_and_removed_before_changes() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("manifests").join(CLEAN_MARKER);
        {
            let m = Meta::open(dir.path()).unwrap();
            m.put(rec(U1, "a")).unwrap();
            m.mark_clean().unwrap();
            assert!(marker.exists());
        }
        // A record sled lacks (written by hand here) is still found on the
        // fast path, which compares the names.
        let r2 = serde_json::to_vec(&rec(U2, "b")).unwrap();
        fs::write(dir.path().join(format!("manifests/{U2}.json")), r2).unwrap();
        let m = Meta::open(dir.path()).unwrap();
        assert!(!marker.exists(), "open removes the marker");
        assert_eq!(m.get(U1).unwrap().name(), Some("a"));
        assert_eq!(m.get(U2).unwrap().name(), Some("b"));
        m.mark_clean().unwrap();
        m.delete(U2).unwrap();
        assert!(!marker.exists(), "a change removes the marker first");
        m.mark_clean().unwrap();
        m.put(rec(U2, "c")).unwrap();
        assert!(!marker.exists(), "a put removes the marker first");
        m.mark_clean().unwrap();
        m.reindex().unwrap();
        assert!(!marker.exists(), "a reindex removes the marker first");
        // Neither the marker nor temp files are records.
        m.mark_clean().unwrap();
        fs::write(dir.path().join(format!("manifests/.{U1}.json.tmp")), b"{").unwrap();
        let listed: Vec<String> = m.read_records().unwrap().into_iter().map(|r| r.0).collect();
        assert_eq!(listed, [U1, U2]);
        assert!(m.read_records().unwrap().iter().all(|r| r.1.is_ok()));
    }

    /// The marker of a clean stop is gone once the store opens again: a
    /// crash after a change made since then must not let the next start
    /// trust a sled database that misses the change.
    #[test]
    fn a_crash_after_a_clean_start_reads_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("manifests").join(CLEAN_MARKER);
        {
            let m = Meta::open(dir.path()).unwrap();
            m.put(rec(U1, "old")).unwrap();
            m.put(rec(U2, "kept")).unwrap();
            m.mark_clean().unwrap();
        }
        // sled as a clean stop left it.
        let saved = dir.path().join("db.saved");
        copy_db(&dir.path().join("db"), &saved);
        {
            let m = Meta::open(dir.path()).unwrap();
            assert!(!marker.exists());
            m.put(rec(U1, "new")).unwrap();
            // Dropped without mark_clean: a kill -9.
        }
        assert!(!marker.exists());
        // sled comes back older than the records (as a damaged log may).
        fs::remove_dir_all(dir.path().join("db")).unwrap();
        copy_db(&saved, &dir.path().join("db"));
        let m = Meta::open(dir.path()).unwrap();
        assert_eq!(m.get(U1).unwrap().name(), Some("new"));
        assert_eq!(m.get(U2).unwrap().name(), Some("kept"));
        let index = m.index_entries().unwrap();
        assert_eq!(
            index[0].1.as_ref().unwrap().name(),
            Some("new"),
            "sled is repaired from the records"
        );
        m.mark_clean().unwrap();
        drop(m);
        // A marker is only trusted with the database it was written with:
        // not with an older copy (the one saved above, from an earlier
        // clean stop), nor with one made by hand.
        fs::remove_dir_all(dir.path().join("db")).unwrap();
        copy_db(&saved, &dir.path().join("db"));
        let m = Meta::open(dir.path()).unwrap();
        assert!(!marker.exists());
        assert_eq!(m.get(U1).unwrap().name(), Some("new"));
        drop(m);
        fs::remove_dir_all(dir.path().join("db")).unwrap();
        copy_db(&saved, &dir.path().join("db"));
        File::create(&marker).unwrap();
        let m = Meta::open(dir.path()).unwrap();
        assert!(!marker.exists());
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(U1).unwrap().name(), Some("new"));
    }

    /// After a clean stop the start trusts sled and does not read the
    /// records it has (the point of the marker): a record changed behind
    /// the store's back meanwhile is not seen until a full check.
    #[test]
    fn a_clean_start_trusts_sled() {
        let dir = tempfile::tempdir().unwrap();
        {
            let m = Meta::open(dir.path()).unwrap();
            m.put(rec(U1, "a")).unwrap();
            m.mark_clean().unwrap();
        }
        let r = serde_json::to_vec(&rec(U1, "changed by hand")).unwrap();
        fs::write(dir.path().join(format!("manifests/{U1}.json")), r).unwrap();
        let m = Meta::open(dir.path()).unwrap();
        assert_eq!(m.get(U1).unwrap().name(), Some("a"));
        assert_eq!(m.reindex().unwrap(), 1);
        assert_eq!(m.get(U1).unwrap().name(), Some("changed by hand"));
    }

    #[test]
    fn cached_json_is_the_manifest_and_fields_match() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = rec(U1, "a");
        r.manifest.insert("tags".into(), json!({"role": "db"}));
        r.manifest.insert(
            "files".into(),
            json!([{"sha1": "x", "size": 1, "compression": "none", "digest": format!("sha256:{}", "a".repeat(64))}]),
        );
        r.manifest.insert("public".into(), json!(true));
        r.manifest.insert(
            "requirements".into(),
            json!({"min_ram": 512, "brand": "bhyve", "networks": [{"name": "net0"}]}),
        );
        r.manifest
            .insert("description".into(), json!("é \"quoted\" \u{1}"));
        {
            let m = Meta::open(dir.path()).unwrap();
            m.put(r.clone()).unwrap();
            let c = m.get_cached(U1).unwrap();
            assert_eq!(c.fields, r.fields());
            assert_eq!(c.json(), serde_json::to_vec(&r.manifest).unwrap());
            m.mark_clean().unwrap();
        }
        // Read back from sled's bytes (clean start), the same.
        let m = Meta::open(dir.path()).unwrap();
        let c = m.get_cached(U1).unwrap();
        assert_eq!(c.fields, r.fields());
        assert_eq!(
            c.fields.blob_sha256.as_deref(),
            Some("a".repeat(64).as_str())
        );
        assert_eq!(
            c.fields.requirements,
            Requirements {
                min_ram: Some(512),
                max_ram: None,
                brand: Some("bhyve".into())
            }
        );
        assert_eq!(c.json_line().last(), Some(&b'\n'));
        assert_eq!(c.json(), serde_json::to_vec(&r.manifest).unwrap());
        assert_eq!(*m.get(U1).unwrap(), r);
        drop(m);
        // And from the record after a crash.
        let m = Meta::open(dir.path()).unwrap();
        assert_eq!(m.get_cached(U1).unwrap().fields, r.fields());
        assert_eq!(*m.get(U1).unwrap(), r);
    }

    /// A record in another layout (written by hand, pretty-printed) is
    /// served as compact JSON, and sled's copy of it is not rewritten at
    /// every start.
    #[test]
    fn hand_written_record_is_served_compact() {
        let dir = tempfile::tempdir().unwrap();
        {
            let m = Meta::open(dir.path()).unwrap();
            m.put(rec(U1, "a")).unwrap();
        }
        let pretty = serde_json::to_vec_pretty(&rec(U1, "a")).unwrap();
        fs::write(dir.path().join(format!("manifests/{U1}.json")), &pretty).unwrap();
        for _ in 0..2 {
            let m = Meta::open(dir.path()).unwrap();
            assert_eq!(m.reindex().unwrap(), 0);
            let c = m.get_cached(U1).unwrap();
            assert_eq!(
                c.json(),
                serde_json::to_vec(&rec(U1, "a").manifest).unwrap()
            );
            assert_eq!(c.fields.name.as_deref(), Some("a"));
        }
    }

    #[test]
    fn list_order_follows_changes() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(dir.path()).unwrap();
        let mut a = rec(U1, "a");
        a.manifest
            .insert("published_at".into(), json!("2024-02-01T00:00:00.000Z"));
        let b = rec(U2, "b");
        m.put(a.clone()).unwrap();
        m.put(b).unwrap();
        let order = |m: &Meta| -> Vec<String> {
            m.with_sorted(|s| s.values().map(|c| c.fields.uuid.clone()).collect())
        };
        // No published_at sorts first.
        assert_eq!(order(&m), [U2, U1]);
        a.manifest
            .insert("published_at".into(), json!("2023-01-01T00:00:00.000Z"));
        m.put(a).unwrap();
        assert_eq!(order(&m), [U2, U1]);
        assert_eq!(m.with_sorted(|s| s.len()), 2, "the old position is gone");
        assert_eq!(
            m.sort_key(U1),
            Some(("2023-01-01T00:00:00.000Z".into(), U1.into()))
        );
        m.delete(U2).unwrap();
        assert_eq!(order(&m), [U1]);
        assert!(m.uuids_where(|f| f.name.as_deref() == Some("a")) == [U1]);
        assert!(!m.any(|f| f.name.as_deref() == Some("b")));
    }
}

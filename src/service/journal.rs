//! The undo journal: how to undo every ZFS side effect of a running task.
//!
//! Before a task creates anything in ZFS it records how to undo it (sled
//! tree `journal`, key `TASK/NANOS-SEQ`, value one [`Undo`] as JSON,
//! flushed). On success the task's entries are dropped; on failure the undo
//! runs at once; after a crash it runs at the next start
//! ([`Service::recover_journal`]). fsck reads pending steps through
//! [`by_task`] (online: [`Service::journal_pending`]).

use super::Service;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One undo step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Undo {
    /// `zfs destroy -r NAME` if it exists.
    Destroy { name: String },
    /// `zfs rename FROM TO` if FROM exists (puts a moved-aside snapshot back).
    Rename { from: String, to: String },
}

impl Undo {
    /// The dataset (or snapshot) the step acts on.
    pub fn dataset(&self) -> &str {
        match self {
            Undo::Destroy { name } => name,
            Undo::Rename { from, .. } => from,
        }
    }
}

fn encode(undo: &Undo) -> std::result::Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(undo)
}

fn decode(bytes: &[u8]) -> Option<Undo> {
    serde_json::from_slice(bytes).ok()
}

/// The task id a journal key belongs to.
fn task_of(key: &[u8]) -> String {
    String::from_utf8_lossy(key)
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Journal entries (`TASK/SEQ` -> undo step) grouped by task, in key order;
/// entries that do not decode are left out.
pub fn by_task(raw: &[(Vec<u8>, Vec<u8>)]) -> BTreeMap<String, Vec<Undo>> {
    let mut out: BTreeMap<String, Vec<Undo>> = BTreeMap::new();
    for (k, v) in raw {
        if let Some(undo) = decode(v) {
            out.entry(task_of(k)).or_default().push(undo);
        }
    }
    out
}

impl Service {
    /// Every pending undo step, by task (see [`by_task`]).
    pub fn journal_pending(&self) -> BTreeMap<String, Vec<Undo>> {
        let raw: Vec<(Vec<u8>, Vec<u8>)> = self
            .journal
            .iter()
            .filter_map(|r| r.ok())
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        by_task(&raw)
    }

    /// Records an undo step for `task` (durably, before the side effect).
    pub fn journal_push(&self, task: &str, undo: Undo) -> Result<()> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let key = format!("{task}/{nanos:020}-{seq:010}");
        let v = encode(&undo).map_err(|e| Error::internal("journal", e))?;
        self.journal.insert(key.as_bytes(), v)?;
        self.journal.flush()?;
        Ok(())
    }

    /// Forgets a task's undo steps (its work is committed).
    pub fn journal_clear(&self, task: &str) -> Result<()> {
        for k in self
            .journal
            .scan_prefix(format!("{task}/").as_bytes())
            .keys()
        {
            self.journal.remove(k?)?;
        }
        self.journal.flush()?;
        Ok(())
    }

    /// Runs a task's undo steps, newest first, then forgets them. Failures
    /// are logged and the step is kept for the next start.
    pub fn journal_undo(&self, task: &str) {
        let entries: Vec<_> = self
            .journal
            .scan_prefix(format!("{task}/").as_bytes())
            .filter_map(|r| r.ok())
            .collect();
        for (k, v) in entries.into_iter().rev() {
            let Some(undo) = decode(&v) else {
                let _ = self.journal.remove(k);
                continue;
            };
            match self.apply_undo(&undo) {
                Ok(()) => {
                    tracing::info!(task, ?undo, "undid partial ZFS state");
                    let _ = self.journal.remove(k);
                }
                Err(e) => {
                    tracing::error!(task, ?undo, error = %e, "could not undo partial ZFS state; will retry at next start")
                }
            }
        }
        let _ = self.journal.flush();
    }

    fn apply_undo(&self, undo: &Undo) -> Result<()> {
        match undo {
            Undo::Destroy { name } => {
                if self.zfs.exists(name)? {
                    self.zfs.destroy(name, true)?;
                }
            }
            Undo::Rename { from, to } => {
                if self.zfs.exists(from)? && !self.zfs.exists(to)? {
                    self.zfs.rename(from, to)?;
                }
            }
        }
        Ok(())
    }

    /// At start: undo what interrupted tasks left in ZFS. Runs on the
    /// blocking pool after the socket is up; a node without ZFS keeps its
    /// journal for a start where ZFS is there.
    pub fn recover_journal(&self) {
        self.recover_journal_steps();
        self.recovering
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    fn recover_journal_steps(&self) {
        let tasks: BTreeSet<String> = self
            .journal
            .iter()
            .keys()
            .filter_map(|k| k.ok())
            .map(|k| task_of(&k))
            .collect();
        if tasks.is_empty() {
            return;
        }
        if let Err(e) = self.zfs.available() {
            tracing::warn!(error = %e, pending = tasks.len(), "ZFS unavailable: partial datasets of interrupted tasks are cleaned up at a later start");
            return;
        }
        for t in tasks {
            self.journal_undo(&t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_their_bytes_and_group_by_task() {
        let d = Undo::Destroy {
            name: "p/u-partial".into(),
        };
        let r = Undo::Rename {
            from: "p/u@a".into(),
            to: "p/u@b".into(),
        };
        assert_eq!(
            encode(&d).unwrap(),
            br#"{"op":"destroy","name":"p/u-partial"}"#
        );
        assert_eq!(
            encode(&r).unwrap(),
            br#"{"op":"rename","from":"p/u@a","to":"p/u@b"}"#
        );
        let raw = vec![
            (b"t1/1".to_vec(), encode(&d).unwrap()),
            (b"t1/2".to_vec(), b"not json".to_vec()),
            (b"t2/1".to_vec(), encode(&r).unwrap()),
        ];
        let by = by_task(&raw);
        assert_eq!(by["t1"], vec![d]);
        assert_eq!(by["t2"][0].dataset(), "p/u@a");
    }
}

//! The task record: what the sled tree `tasks` holds under each task id,
//! and its one encoder and decoder. The runner ([`crate::tasks`]) writes
//! and reads it; offline fsck reads it without a runner.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Processing,
    Success,
    Failure,
    Cancelled,
}

impl Status {
    pub fn is_finished(self) -> bool {
        matches!(self, Status::Success | Status::Failure | Status::Cancelled)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub bytes_done: u64,
    pub bytes_total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: Status,
    pub input: Value,
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub error: Option<TaskError>,
    #[serde(default)]
    pub progress: Progress,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// The bytes stored for a task.
///
/// # Errors
/// serde could not encode the record (a non-string map key in `input`).
pub fn encode(t: &Task) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(t)
}

/// A stored task, or `None` when the bytes are not a task record.
pub fn decode(bytes: &[u8]) -> Option<Task> {
    serde_json::from_slice(bytes).ok()
}

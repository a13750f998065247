//! The consumer's checkpoint: the engine's state, the last event it covers, and how far the
//! audit trail and the output stream had got when it was written. Written atomically (a new
//! file synced, then renamed over the old one), so a crash leaves the old checkpoint or the new
//! one, never half of either.
//!
//! The file holds pseudonymised vitals (samples held for reordering, each patient's latest
//! values): it is the site's data, kept on the site with owner-only permissions.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::TransportError;
use crate::engine::Snapshot;

/// The format's version; a file of another version is refused rather than misread.
const VERSION: u32 = 1;

/// What a restarted consumer goes on from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version.
    pub version: u32,
    /// Every event with a stream sequence up to this is reflected in `engine`.
    pub events_seq: u64,
    /// The output stream's last sequence when this was written: what comes after it was
    /// released by a run that did not checkpoint it.
    pub out_seq: u64,
    /// The audit trail's last sequence when this was written, likewise.
    pub audit_seq: i64,
    /// The engine.
    pub engine: Snapshot,
}

impl Checkpoint {
    /// A checkpoint of these positions.
    pub fn new(events_seq: u64, out_seq: u64, audit_seq: i64, engine: Snapshot) -> Self {
        Self {
            version: VERSION,
            events_seq,
            out_seq,
            audit_seq,
            engine,
        }
    }
}

/// Where one consumer's checkpoint lives.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    path: PathBuf,
}

impl CheckpointStore {
    /// The checkpoint of consumer `name` in `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        Self {
            path: dir.join(format!("{name}.checkpoint.json")),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, reason: impl std::fmt::Display) -> TransportError {
        TransportError::Checkpoint {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// The last checkpoint, if one was written.
    pub fn load(&self) -> Result<Option<Checkpoint>, TransportError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        let cp: Checkpoint = serde_json::from_slice(&bytes).map_err(|e| self.err(e))?;
        if cp.version != VERSION {
            return Err(self.err(format!(
                "format version {} (this medfed reads {VERSION})",
                cp.version
            )));
        }
        Ok(Some(cp))
    }

    /// Replaces the checkpoint with `cp`, durably.
    pub fn save(&self, cp: &Checkpoint) -> Result<(), TransportError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.err(e))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        // One write, not one per JSON token.
        let bytes = serde_json::to_vec(cp).map_err(|e| self.err(e))?;
        let mut file = options.open(&tmp).map_err(|e| self.err(e))?;
        file.write_all(&bytes).map_err(|e| self.err(e))?;
        file.sync_all().map_err(|e| self.err(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.err(e))?;
        // The rename itself is durable once the directory is synced.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Engine, RuleSet};

    #[test]
    fn a_checkpoint_round_trips_and_a_foreign_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path(), "c");
        assert_eq!(store.load().unwrap(), None);
        let mut engine = Engine::new(RuleSet::default());
        engine.push_line(r#"{"patient": "p", "ts": "2026-01-01T10:00:00Z", "hr": 130}"#);
        let cp = Checkpoint::new(7, 3, 12, engine.snapshot());
        store.save(&cp).unwrap();
        assert_eq!(store.load().unwrap(), Some(cp.clone()));
        let mut other = serde_json::to_value(&cp).unwrap();
        other["version"] = 99.into();
        std::fs::write(store.path(), other.to_string()).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("version 99"), "{err}");
        std::fs::write(store.path(), "{half").unwrap();
        assert!(store.load().is_err());
    }
}

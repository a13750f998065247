//! The tamper-evident audit trail every hub and site keeps.
//!
//! Each entry records who did what, under which study, at which sites, the decision and why, a
//! digest of what was released and the privacy budget spent. Entries form a hash chain: each
//! holds the SHA-256 of the one before it, so changing, deleting, reordering or inserting an entry
//! breaks the chain at that entry. Because whoever can write the database could also recompute the
//! whole chain, the node periodically signs a checkpoint (sequence number + hash) with its Ed25519
//! key; [`verify`] checks the chain against those signatures, and a compliance officer holding the
//! node's public key can run it without trusting the node.
//!
//! Entries never carry row-level data. The trail lives in SQLite by default and in PostgreSQL when
//! configured, through the same code ([`db`]).

pub mod db;
mod entry;
mod log;
mod read;

pub use db::{Backend, Database};
pub use entry::{Decision, Entry, GENESIS, Record, checkpoint_message, record_hash};
pub use log::{AuditLog, AuditOptions, Pending, Receipt, migrate};
pub use read::{Break, BreakKind, VerifyReport, export_jsonl, records, verify};

/// What can go wrong reading or writing the trail.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database refused.
    #[error("audit database: {0}")]
    Db(#[from] sqlx::Error),
    /// Schema migration failed.
    #[error("audit schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A write failed; the entries were not recorded (and the action must not go ahead).
    #[error("audit write failed: {0}")]
    Write(String),
    /// A stored entry cannot be read back.
    #[error("audit entry {seq}: {reason}")]
    Corrupt {
        /// Which entry.
        seq: i64,
        /// What is wrong.
        reason: String,
    },
    /// The writer has stopped.
    #[error("audit log is closed")]
    Closed,
    /// Exporting failed.
    #[error("audit export: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests;

//! What one audit entry says, and how it is hashed into the chain.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash a chain starts from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The outcome recorded for an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The action was allowed and done.
    Allow,
    /// Policy, authentication or disclosure control refused it.
    Deny,
    /// It was allowed but failed.
    Error,
}

impl Decision {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Error => "error",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(Decision::Allow),
            "deny" => Some(Decision::Deny),
            "error" => Some(Decision::Error),
            _ => None,
        }
    }
}

/// An event to record: who did what, under which study, at which sites, and what came of it.
///
/// Never put row-level data in an entry: `result_digest` is a hash of the released result, so an
/// auditor can match a result to its entry without the trail holding the result itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Entry {
    /// The authenticated principal (user name, token id or JWT subject; `hub` for the hub itself).
    pub actor: String,
    /// The role(s) the actor acted in.
    pub role: String,
    /// What was attempted, e.g. `query`, `study.approve`, `auth`.
    pub action: String,
    /// The study it was done under, if any.
    pub study: Option<String>,
    /// The sites involved.
    pub sites: Vec<String>,
    /// Allowed, denied or failed.
    pub decision: Decision,
    /// Why (the policy's reasons, the error, or what was released).
    pub reason: String,
    /// SHA-256 of the released result, if something was released.
    pub result_digest: Option<String>,
    /// Privacy budget spent, if any.
    pub epsilon: Option<f64>,
    /// Correlates hub and site entries for one request.
    pub request_id: Option<String>,
}

impl Entry {
    /// An entry with the required fields; the rest can be set with the builder methods.
    pub fn new(
        actor: impl Into<String>,
        role: impl Into<String>,
        action: impl Into<String>,
        decision: Decision,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            actor: actor.into(),
            role: role.into(),
            action: action.into(),
            study: None,
            sites: Vec::new(),
            decision,
            reason: reason.into(),
            result_digest: None,
            epsilon: None,
            request_id: None,
        }
    }

    /// Sets the study.
    pub fn study(mut self, study: impl Into<String>) -> Self {
        self.study = Some(study.into());
        self
    }

    /// Sets the sites.
    pub fn sites<I: IntoIterator<Item = S>, S: Into<String>>(mut self, sites: I) -> Self {
        self.sites = sites.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the result digest.
    pub fn result_digest(mut self, digest: impl Into<String>) -> Self {
        self.result_digest = Some(digest.into());
        self
    }

    /// Sets the privacy budget spent.
    pub fn epsilon(mut self, epsilon: f64) -> Self {
        self.epsilon = Some(epsilon);
        self
    }

    /// Sets the request id.
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }
}

/// An entry as stored: its place in the chain, time and hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Record {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// When it was appended (µs since the Unix epoch).
    pub at_us: i64,
    /// The entry.
    #[serde(flatten)]
    pub entry: Entry,
    /// Hash of the previous record ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

/// The hashed form: every field, in a fixed order, as JSON. Changing the wording of any field,
/// its position in the chain or its predecessor changes the hash.
#[derive(Serialize, utoipa::ToSchema)]
struct Hashed<'a> {
    v: u32,
    seq: i64,
    at_us: i64,
    entry: &'a Entry,
    prev_hash: &'a str,
}

/// The hash of a record with these contents.
pub fn record_hash(seq: i64, at_us: i64, entry: &Entry, prev_hash: &str) -> String {
    let bytes = serde_json::to_vec(&Hashed {
        v: 1,
        seq,
        at_us,
        entry,
        prev_hash,
    })
    .expect("entries serialise");
    hex::encode(Sha256::digest(bytes))
}

impl Record {
    /// Seals `entry` as the record after (`seq - 1`, `prev_hash`).
    pub fn seal(seq: i64, at_us: i64, entry: Entry, prev_hash: String) -> Self {
        let hash = record_hash(seq, at_us, &entry, &prev_hash);
        Self {
            seq,
            at_us,
            entry,
            prev_hash,
            hash,
        }
    }

    /// Whether the stored hash matches the contents.
    pub fn hash_matches(&self) -> bool {
        record_hash(self.seq, self.at_us, &self.entry, &self.prev_hash) == self.hash
    }
}

/// The message a checkpoint signature covers.
pub fn checkpoint_message(seq: i64, hash: &str, at_us: i64) -> Vec<u8> {
    format!("medfed-audit-checkpoint/v1\n{seq}\n{hash}\n{at_us}").into_bytes()
}

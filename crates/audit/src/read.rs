//! The reading side: paging through records, re-walking the chain, exporting for a SIEM.

use std::collections::BTreeMap;
use std::io::Write;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::AuditError;
use crate::db::{Database, rfc3339_us};
use crate::entry::{Decision, Entry, GENESIS, Record, checkpoint_message};

const PAGE: i64 = 5000;

/// (seq, hash) of the last record, or (0, GENESIS) for an empty trail.
pub(crate) async fn head(db: &Database) -> Result<(i64, String), AuditError> {
    head_in(&db.pool).await
}

/// The last record's (seq, hash), read through `executor` (a pool, or inside a transaction).
pub(crate) async fn head_in<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
) -> Result<(i64, String), AuditError> {
    let row = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(executor)
        .await?;
    Ok(match row {
        Some(r) => (r.try_get(0)?, r.try_get(1)?),
        None => (0, GENESIS.to_string()),
    })
}

/// Records with `seq > after`, oldest first.
pub async fn records(db: &Database, after: i64, limit: i64) -> Result<Vec<Record>, AuditError> {
    let rows = sqlx::query(
        "SELECT seq, at_us, actor, role, action, study, sites, decision, reason, result_digest, \
         epsilon, request_id, prev_hash, hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(decode).collect()
}

fn decode(r: &AnyRow) -> Result<Record, AuditError> {
    let seq: i64 = r.try_get("seq")?;
    let bad = |what: &str| AuditError::Corrupt {
        seq,
        reason: format!("unreadable {what}"),
    };
    let sites: String = r.try_get("sites")?;
    let decision: String = r.try_get("decision")?;
    Ok(Record {
        seq,
        at_us: r.try_get("at_us")?,
        entry: Entry {
            actor: r.try_get("actor")?,
            role: r.try_get("role")?,
            action: r.try_get("action")?,
            study: r.try_get("study")?,
            sites: serde_json::from_str(&sites).map_err(|_| bad("sites"))?,
            decision: Decision::parse(&decision).ok_or_else(|| bad("decision"))?,
            reason: r.try_get("reason")?,
            result_digest: r.try_get("result_digest")?,
            epsilon: r.try_get("epsilon")?,
            request_id: r.try_get("request_id")?,
        },
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone)]
struct Checkpoint {
    seq: i64,
    hash: String,
    at_us: i64,
    public_key: String,
    signature: String,
}

async fn checkpoints(db: &Database) -> Result<Vec<Checkpoint>, AuditError> {
    let rows = sqlx::query(
        "SELECT seq, hash, at_us, public_key, signature FROM audit_checkpoint ORDER BY seq",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Checkpoint {
                seq: r.try_get(0)?,
                hash: r.try_get(1)?,
                at_us: r.try_get(2)?,
                public_key: r.try_get(3)?,
                signature: r.try_get(4)?,
            })
        })
        .collect()
}

/// What kind of damage `verify` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// The entry's contents no longer match its hash.
    Changed,
    /// A sequence number is missing: an entry was deleted.
    Missing,
    /// The entry does not follow its predecessor: entries were reordered, or one was inserted.
    Unlinked,
    /// The chain is internally consistent but disagrees with a signed checkpoint: it was rewritten.
    Rewritten,
    /// A checkpoint's signature is not the node's.
    BadSignature,
    /// A checkpoint covers entries that are no longer there: the end of the trail was cut off.
    Truncated,
}

/// The first place the trail is broken.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Break {
    /// The first entry (sequence number) found broken.
    pub seq: i64,
    /// How.
    pub kind: BreakKind,
    /// In words.
    pub detail: String,
}

/// The outcome of re-walking a trail.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    /// Entries read.
    pub entries: i64,
    /// Signed checkpoints checked.
    pub checkpoints: usize,
    /// Sequence number of the last valid checkpoint (entries after it rely on the chain alone).
    pub last_checkpoint: Option<i64>,
    /// Whether signatures were checked against a key the caller supplied (rather than the key
    /// recorded next to each checkpoint, which an attacker could also replace).
    pub key_supplied: bool,
    /// The first break, if any.
    pub first_break: Option<Break>,
}

impl VerifyReport {
    /// Whether the trail is intact.
    pub fn is_intact(&self) -> bool {
        self.first_break.is_none()
    }
}

/// Re-walks the whole chain and checks every checkpoint; reports the first break.
///
/// Checkpoint signatures are checked against `key` when given (the node's published
/// `signing.pub`), otherwise against the key stored with each checkpoint.
pub async fn verify(db: &Database, key: Option<&VerifyingKey>) -> Result<VerifyReport, AuditError> {
    let cps = checkpoints(db).await?;
    let mut report = VerifyReport {
        entries: 0,
        checkpoints: cps.len(),
        last_checkpoint: None,
        key_supplied: key.is_some(),
        first_break: None,
    };
    let mut by_seq: BTreeMap<i64, &Checkpoint> = BTreeMap::new();
    for cp in &cps {
        if let Err(detail) = check_signature(cp, key) {
            report.first_break = Some(Break {
                seq: cp.seq,
                kind: BreakKind::BadSignature,
                detail,
            });
            return Ok(report);
        }
        by_seq.insert(cp.seq, cp);
    }
    let (mut expected, mut prev) = (1_i64, GENESIS.to_string());
    let mut after = 0;
    loop {
        let page = match records(db, after, PAGE).await {
            Ok(p) => p,
            Err(AuditError::Corrupt { seq, reason }) => {
                report.first_break = Some(Break {
                    seq,
                    kind: BreakKind::Changed,
                    detail: reason,
                });
                return Ok(report);
            }
            Err(e) => return Err(e),
        };
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in page {
            report.entries += 1;
            if let Some(b) = check_record(&r, expected, &prev, by_seq.get(&r.seq).copied()) {
                report.first_break = Some(b);
                return Ok(report);
            }
            if by_seq.contains_key(&r.seq) {
                report.last_checkpoint = Some(r.seq);
            }
            expected = r.seq + 1;
            prev = r.hash;
        }
    }
    if let Some((&seq, _)) = by_seq.range(expected..).next() {
        report.first_break = Some(Break {
            seq: expected,
            kind: BreakKind::Truncated,
            detail: format!(
                "a checkpoint signs entry {seq}, but the trail ends at entry {}",
                expected - 1
            ),
        });
    }
    Ok(report)
}

fn check_record(r: &Record, expected: i64, prev: &str, cp: Option<&Checkpoint>) -> Option<Break> {
    let at = |kind, detail: String| {
        Some(Break {
            seq: r.seq.min(expected),
            kind,
            detail,
        })
    };
    if r.seq != expected {
        return at(
            BreakKind::Missing,
            format!("entry {expected} is missing (the next entry is {})", r.seq),
        );
    }
    if r.prev_hash != prev {
        return at(
            BreakKind::Unlinked,
            format!(
                "entry {} does not follow entry {} (reordered, inserted or deleted)",
                r.seq,
                r.seq - 1
            ),
        );
    }
    if !r.hash_matches() {
        return at(
            BreakKind::Changed,
            format!("entry {} was changed after it was written", r.seq),
        );
    }
    match cp {
        Some(cp) if cp.hash != r.hash => at(
            BreakKind::Rewritten,
            format!(
                "entry {} differs from the signed checkpoint: the trail up to it was rewritten",
                r.seq
            ),
        ),
        _ => None,
    }
}

fn check_signature(cp: &Checkpoint, key: Option<&VerifyingKey>) -> Result<(), String> {
    let stored = || -> Option<VerifyingKey> {
        let bytes: [u8; 32] = hex::decode(&cp.public_key).ok()?.try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok()
    };
    let key = match key {
        Some(k) => *k,
        None => stored().ok_or("checkpoint carries an unreadable public key")?,
    };
    let sig: [u8; 64] = hex::decode(&cp.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("checkpoint signature is unreadable")?;
    key.verify(
        &checkpoint_message(cp.seq, &cp.hash, cp.at_us),
        &Signature::from_bytes(&sig),
    )
    .map_err(|_| {
        format!(
            "checkpoint at entry {} is not signed by the node's key",
            cp.seq
        )
    })
}

/// One exported line: the record plus a human-readable time.
#[derive(Serialize, utoipa::ToSchema)]
struct ExportLine<'a> {
    at: String,
    #[serde(flatten)]
    record: &'a Record,
}

/// Writes every record as one JSON object per line (JSONL), oldest first; returns how many.
pub async fn export_jsonl(db: &Database, out: &mut dyn Write) -> Result<i64, AuditError> {
    let (mut after, mut n) = (0, 0);
    loop {
        let page = records(db, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for record in &page {
            let line = ExportLine {
                at: rfc3339_us(record.at_us),
                record,
            };
            serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
            n += 1;
        }
    }
    out.flush()?;
    Ok(n)
}

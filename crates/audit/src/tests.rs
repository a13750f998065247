//! Tamper detection on both backends. PostgreSQL runs when `MEDFED_TEST_PG` is set.

use std::time::Duration;

use ed25519_dalek::SigningKey;

use crate::db::Backend;
use crate::*;

fn key(b: u8) -> SigningKey {
    SigningKey::from_bytes(&[b; 32])
}

fn options(every: i64) -> AuditOptions {
    AuditOptions {
        checkpoint_every: every,
        checkpoint_interval: Duration::from_secs(3600),
    }
}

fn entry(i: usize) -> Entry {
    Entry::new(
        "alice",
        "researcher",
        "query",
        Decision::Allow,
        format!("released result {i}"),
    )
    .study("s1")
    .sites(["north", "south"])
    .result_digest(format!("{i:064x}"))
    .epsilon(0.1)
    .request_id(format!("r{i}"))
}

/// A database for one test: a temp SQLite file, or a fresh schema in the test PostgreSQL.
pub(crate) async fn test_db(
    backend: Backend,
    tag: &str,
) -> Option<(Database, Option<tempfile::TempDir>)> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.db");
            let db = Database::connect(path.to_str().unwrap(), 4).await.unwrap();
            Some((db, Some(dir)))
        }
        Backend::Postgres => {
            let Ok(url) = std::env::var("MEDFED_TEST_PG") else {
                eprintln!("skipped: MEDFED_TEST_PG is not set");
                return None;
            };
            let schema = format!("audit_{tag}_{}", std::process::id());
            let url = db::isolated_postgres(&url, &schema).await.unwrap();
            Some((Database::connect(&url, 4).await.unwrap(), None))
        }
    }
}

/// Runs `sql` as an attacker with database access would: with the append-only triggers dropped.
async fn tamper(db: &Database, sql: &str) {
    let drop = match db.backend {
        Backend::Sqlite => "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;",
        Backend::Postgres => "DROP TRIGGER audit_log_append_only ON audit_log;",
    };
    sqlx::raw_sql(drop).execute(&db.pool).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&db.pool)
        .await
        .unwrap();
}

async fn fresh_log(
    backend: Backend,
    tag: &str,
    n: usize,
    every: i64,
) -> Option<(AuditLog, Option<tempfile::TempDir>)> {
    let (db, dir) = test_db(backend, tag).await?;
    let log = AuditLog::with_database(db, key(1), options(every))
        .await
        .unwrap();
    for i in 0..n {
        log.append(entry(i)).await.unwrap();
    }
    Some((log, dir))
}

async fn first_break(log: &AuditLog) -> Option<Break> {
    let pubkey = key(1).verifying_key();
    verify(log.database(), Some(&pubkey))
        .await
        .unwrap()
        .first_break
}

async fn detects_each_kind_of_tampering(backend: Backend) {
    let tag = |t: &str| format!("{t}_{:?}", backend).to_lowercase();
    // Intact.
    let Some((log, _d)) = fresh_log(backend, &tag("ok"), 20, 5).await else {
        return;
    };
    let report = verify(log.database(), Some(&key(1).verifying_key()))
        .await
        .unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.entries, report.checkpoints), (20, 4));

    // Change one byte of one entry.
    let (log, _d) = fresh_log(backend, &tag("chg"), 20, 5).await.unwrap();
    tamper(
        log.database(),
        "UPDATE audit_log SET reason = 'released result 8!' WHERE seq = 9",
    )
    .await;
    let b = first_break(&log).await.unwrap();
    assert_eq!((b.seq, b.kind), (9, BreakKind::Changed), "{b:?}");

    // Delete one.
    let (log, _d) = fresh_log(backend, &tag("del"), 20, 5).await.unwrap();
    tamper(log.database(), "DELETE FROM audit_log WHERE seq = 7").await;
    let b = first_break(&log).await.unwrap();
    assert_eq!((b.seq, b.kind), (7, BreakKind::Missing), "{b:?}");

    // Swap two (their contents trade places; sequence numbers stay).
    let (log, _d) = fresh_log(backend, &tag("swp"), 20, 5).await.unwrap();
    tamper(
        log.database(),
        "UPDATE audit_log SET seq = -1 WHERE seq = 12; UPDATE audit_log SET seq = 12 WHERE seq = 13; \
         UPDATE audit_log SET seq = 13 WHERE seq = -1;",
    )
    .await;
    let b = first_break(&log).await.unwrap();
    assert_eq!((b.seq, b.kind), (12, BreakKind::Unlinked), "{b:?}");

    // Insert one (renumbering the rest, as an attacker must to keep sequence numbers gapless).
    let (log, _d) = fresh_log(backend, &tag("ins"), 20, 5).await.unwrap();
    tamper(
        log.database(),
        "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 4; UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1004; \
         INSERT INTO audit_log SELECT 4, at_us, 'mallory', role, action, study, sites, decision, reason, \
         result_digest, epsilon, request_id, hash, hash FROM audit_log WHERE seq = 3;",
    )
    .await;
    let b = first_break(&log).await.unwrap();
    assert_eq!(b.seq, 4, "{b:?}");

    // Rewrite the whole chain consistently after a change: only the signed checkpoints catch it.
    let (log, _d) = fresh_log(backend, &tag("rw"), 10, 5).await.unwrap();
    let mut records = log.records(0, 100).await.unwrap();
    records[1].entry.reason = "nothing happened".into();
    let mut prev = GENESIS.to_string();
    let mut sql = String::new();
    for r in &records {
        let h = record_hash(r.seq, r.at_us, &r.entry, &prev);
        sql += &format!(
            "UPDATE audit_log SET reason = '{}', prev_hash = '{prev}', hash = '{h}' WHERE seq = {};",
            r.entry.reason, r.seq
        );
        prev = h;
    }
    tamper(log.database(), &sql).await;
    let b = first_break(&log).await.unwrap();
    assert_eq!((b.seq, b.kind), (5, BreakKind::Rewritten), "{b:?}");
    // A forger's key does not help: checkpoints signed by another key are refused.
    let report = verify(log.database(), Some(&key(2).verifying_key()))
        .await
        .unwrap();
    assert_eq!(report.first_break.unwrap().kind, BreakKind::BadSignature);

    // Cut off the end: a checkpoint still signs entries that are gone.
    let (log, _d) = fresh_log(backend, &tag("cut"), 10, 5).await.unwrap();
    tamper(log.database(), "DELETE FROM audit_log WHERE seq >= 9").await;
    let b = first_break(&log).await.unwrap();
    assert_eq!((b.seq, b.kind), (9, BreakKind::Truncated), "{b:?}");
}

#[tokio::test]
async fn sqlite_detects_change_delete_swap_insert_rewrite_truncate() {
    detects_each_kind_of_tampering(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_detects_change_delete_swap_insert_rewrite_truncate() {
    detects_each_kind_of_tampering(Backend::Postgres).await;
}

#[tokio::test]
async fn the_database_refuses_updates_and_deletes() {
    let (log, _d) = fresh_log(Backend::Sqlite, "ro", 3, 100).await.unwrap();
    for sql in ["UPDATE audit_log SET reason = 'x'", "DELETE FROM audit_log"] {
        let err = sqlx::query(sql)
            .execute(&log.database().pool)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
}

#[tokio::test]
async fn reopening_continues_the_chain_and_concurrent_appends_keep_one_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let path = path.to_str().unwrap();
    {
        let log = AuditLog::open(path, key(1), options(7)).await.unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.append(entry(i)).await.unwrap() })
            })
            .collect();
        let mut seqs: Vec<i64> = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap().seq);
        }
        seqs.sort();
        assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
        log.checkpoint().await.unwrap();
    }
    let log = AuditLog::open(path, key(1), options(7)).await.unwrap();
    assert_eq!(log.append(entry(99)).await.unwrap().seq, 51);
    let report = verify(log.database(), Some(&key(1).verifying_key()))
        .await
        .unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.entries, 51);

    let mut out = Vec::new();
    assert_eq!(export_jsonl(log.database(), &mut out).await.unwrap(), 51);
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[50]["seq"], 51);
    assert_eq!(lines[0]["actor"], "alice");
    assert!(lines[0]["at"].as_str().unwrap().ends_with('Z'));
}

/// Two writers on one trail — two processes of one site (the node and its vitals consumer) —
/// appending at the same time still make one unbroken chain.
async fn two_writers_make_one_chain(backend: Backend) {
    let Some((db, _dir)) = test_db(backend, "writers").await else {
        return;
    };
    let a = AuditLog::with_database(db.clone(), key(1), options(5))
        .await
        .unwrap();
    let b = AuditLog::with_database(db, key(1), options(5))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let log = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { log.append(entry(i)).await.unwrap().seq })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=60).collect::<Vec<_>>());
    a.checkpoint().await.unwrap();
    b.checkpoint().await.unwrap();
    let report = verify(a.database(), Some(&key(1).verifying_key()))
        .await
        .unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.entries, 60);
}

#[tokio::test]
async fn sqlite_two_writers_make_one_chain() {
    two_writers_make_one_chain(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_two_writers_make_one_chain() {
    two_writers_make_one_chain(Backend::Postgres).await;
}

//! `medfed bench audit` and `medfed bench policy`: what governance costs per request.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use medfed_audit::{AuditLog, AuditOptions, Database, Decision, Entry};
use medfed_core::study::{PrivacyMode, StudyTerms};
use medfed_policy::input::*;
use medfed_policy::{DEFAULT_HUB_POLICY, DEFAULT_SITE_POLICY, HUB_RULE, Policy, SITE_RULE};
use serde_json::json;

use super::stats;

#[derive(clap::Args)]
pub struct AuditArgs {
    /// Entries appended per run.
    #[arg(long, default_value_t = 20_000)]
    entries: usize,
    /// Concurrent appenders in the concurrent run (a busy hub: many requests at once).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Also measure PostgreSQL (a fresh schema `medfed_bench_audit` is created there).
    #[arg(long, env = "MEDFED_BENCH_PG")]
    postgres: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct PolicyArgs {
    /// Timed evaluations per policy.
    #[arg(long, default_value_t = 5_000)]
    iterations: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn entry(i: usize) -> Entry {
    Entry::new(
        "rita",
        "researcher",
        "query",
        Decision::Allow,
        "released 12 row(s) merged from 3 site(s)",
    )
    .study("st-0123456789ab")
    .sites(["north", "south", "east"])
    .result_digest(format!("{i:064x}"))
    .request_id(format!("q-{i:016x}"))
}

/// Appends `n` entries from `tasks` concurrent appenders; returns (entries/s, per-append ms).
async fn append_run(log: &AuditLog, n: usize, tasks: usize) -> anyhow::Result<(f64, Vec<f64>)> {
    let start = Instant::now();
    let per_task = n / tasks;
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut ms = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let t0 = Instant::now();
                    log.append(entry(t * per_task + i)).await?;
                    ms.push(t0.elapsed().as_secs_f64() * 1e3);
                }
                anyhow::Ok(ms)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for h in handles {
        all.extend(h.await??);
    }
    Ok((all.len() as f64 / start.elapsed().as_secs_f64(), all))
}

pub async fn audit(a: AuditArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let mut targets = vec![("sqlite", dir.join("bench-audit.db").display().to_string())];
    if let Some(pg) = &a.postgres {
        let url = medfed_audit::db::isolated_postgres(pg, "medfed_bench_audit").await?;
        targets.push(("postgres", url));
    }
    let key = medfed_protocol::signing::generate();
    let mut rows = Vec::new();
    for (backend, url) in targets {
        let db = Database::connect(&url, 4).await?;
        let options = AuditOptions {
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(3600),
        };
        let log = AuditLog::with_database(db.clone(), key.clone(), options).await?;
        for tasks in [1, a.concurrency] {
            let n = if tasks == 1 {
                a.entries.min(2_000)
            } else {
                a.entries
            };
            let (rate, ms) = append_run(&log, n, tasks).await?;
            let (p50, p99) = stats(ms);
            rows.push(json!({"backend": backend, "appenders": tasks, "entries": n,
                "entries_per_s": rate, "append_p50_ms": p50, "append_p99_ms": p99}));
        }
        log.checkpoint().await?;
        let t = Instant::now();
        let report = medfed_audit::verify(&db, Some(&key.verifying_key())).await?;
        anyhow::ensure!(
            report.is_intact(),
            "benchmark trail does not verify: {report:?}"
        );
        let verify_rate = report.entries as f64 / t.elapsed().as_secs_f64();
        rows.push(json!({"backend": backend, "verify_entries": report.entries, "verify_entries_per_s": verify_rate}));
    }
    let _ = std::fs::remove_dir_all(&dir);
    if a.json {
        println!("{}", json!({ "audit": rows }));
        return Ok(());
    }
    println!(
        "medfed bench audit (hash chain + Ed25519 checkpoint every 1000 entries, group commit)"
    );
    for r in rows {
        if let Some(rate) = r["entries_per_s"].as_f64() {
            println!(
                "{:<9} {:>3} appender(s) {:>6} entries: {:>8.0} entries/s | append p50 {:>6.2} ms p99 {:>6.2} ms",
                r["backend"].as_str().unwrap_or(""),
                r["appenders"],
                r["entries"],
                rate,
                r["append_p50_ms"].as_f64().unwrap_or(0.0),
                r["append_p99_ms"].as_f64().unwrap_or(0.0)
            );
        } else {
            println!(
                "{:<9} verify {} entries: {:.0} entries/s",
                r["backend"].as_str().unwrap_or(""),
                r["verify_entries"],
                r["verify_entries_per_s"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("medfed-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn terms() -> StudyTerms {
    StudyTerms {
        analyses: vec!["sql".into(), "glm".into()],
        tables: [
            "person",
            "condition_occurrence",
            "measurement",
            "drug_exposure",
        ]
        .map(String::from)
        .to_vec(),
        columns: vec![
            "person.gender_concept_id".into(),
            "person.year_of_birth".into(),
            "person.person_id".into(),
        ],
        privacy: PrivacyMode::Exact,
        epsilon: None,
    }
}

fn time_policy(
    policy: &Policy,
    input: &impl serde::Serialize,
    n: usize,
) -> anyhow::Result<(f64, f64)> {
    for _ in 0..50 {
        anyhow::ensure!(
            policy.evaluate(input)?.allow,
            "benchmark input must be allowed"
        );
    }
    let mut us = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        policy.evaluate(input)?;
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(stats(us))
}

pub fn policy(a: PolicyArgs) -> anyhow::Result<()> {
    let subject = |roles: &[&str], sites: &[&str]| Subject {
        id: "rita".into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        sites: sites.iter().map(|s| s.to_string()).collect(),
        via: "token".into(),
    };
    let hub_input = HubInput {
        version: INPUT_VERSION,
        action: "query".into(),
        subject: subject(&["researcher"], &[]),
        study: Some(StudyDoc {
            id: "st-1".into(),
            title: "T2D outcomes".into(),
            proposer: "rita".into(),
            members: vec!["carl".into()],
            sites: ["north", "south", "east"].map(String::from).to_vec(),
            approvals: [
                ("north", "approved"),
                ("south", "approved"),
                ("east", "pending"),
            ]
            .map(|(s, d)| (s.to_string(), d.to_string()))
            .into_iter()
            .collect(),
            terms: terms(),
        }),
        site: None,
        now: Now::current(),
    };
    let site_input = SiteInput {
        version: INPUT_VERSION,
        site: "north".into(),
        researcher: subject(&["researcher"], &[]),
        study: SiteStudyDoc {
            id: "st-1".into(),
            title: "T2D outcomes".into(),
            approval: "approved".into(),
            approved_by: Some("cust-north".into()),
            terms: terms(),
        },
        request: RequestDoc {
            id: "q-1".into(),
            analysis: "sql".into(),
            tables: vec!["condition_occurrence".into(), "person".into()],
            columns: BTreeMap::from([
                (
                    "person".to_string(),
                    vec!["gender_concept_id".to_string(), "person_id".to_string()],
                ),
                (
                    "condition_occurrence".to_string(),
                    vec!["condition_concept_id".to_string(), "person_id".to_string()],
                ),
            ]),
            secure_aggregation: true,
        },
        now: Now::current(),
    };
    let hub = Policy::from_source("hub.rego", DEFAULT_HUB_POLICY, HUB_RULE)?;
    let site = Policy::from_source("site.rego", DEFAULT_SITE_POLICY, SITE_RULE)?;
    let (h50, h99) = time_policy(&hub, &hub_input, a.iterations)?;
    let (s50, s99) = time_policy(&site, &site_input, a.iterations)?;
    if a.json {
        println!(
            "{}",
            json!({"policy": {"hub_query": {"p50_us": h50, "p99_us": h99}, "site_partial": {"p50_us": s50, "p99_us": s99}, "iterations": a.iterations}})
        );
    } else {
        println!(
            "medfed bench policy ({} evaluations each, regorus, default policies)",
            a.iterations
        );
        println!("hub.rego  query decision      p50 {h50:>7.1} µs  p99 {h99:>7.1} µs");
        println!("site.rego partial decision    p50 {s50:>7.1} µs  p99 {s99:>7.1} µs");
    }
    Ok(())
}

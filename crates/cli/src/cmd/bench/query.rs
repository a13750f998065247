//! `medfed bench query`: federated latency against the same SQL on pooled data, in one run, and
//! the same federated query summed under secure aggregation (six signed rounds per site), and
//! what re-reading the network's catalogue costs.

use std::path::PathBuf;

use medfed_devnet::{Devnet, DevnetConfig};
use serde_json::json;

use super::{stats, time};
use crate::client::HubClient;

#[derive(clap::Args)]
pub struct QueryArgs {
    /// Number of sites.
    #[arg(long, default_value_t = 15)]
    sites: usize,
    /// Synthetic patients per site.
    #[arg(long, default_value_t = 100_000)]
    patients_per_site: usize,
    /// Timed runs per query (after 3 warm-up runs).
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// Working directory (data is reused between runs of the same size).
    #[arg(long, default_value = "bench-net")]
    dir: PathBuf,
    /// Run only these queries (repeatable): count_by_gender_decade, join_condition_person.
    #[arg(long = "query")]
    only: Vec<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The benchmark's queries: an aggregate over one table, and a join with a filter. `{floor}` is
/// a no-op bound (`year_of_birth > -1`); "fresh" runs give it a new value each time so that no
/// site can reuse a cached plan.
const QUERIES: [(&str, &str); 2] = [
    (
        "count_by_gender_decade",
        "SELECT gender_concept_id, (year_of_birth / 10) * 10 AS decade, COUNT(*) AS n \
         FROM person WHERE year_of_birth > {floor} GROUP BY 1, 2",
    ),
    (
        "join_condition_person",
        "SELECT c.condition_concept_id, COUNT(DISTINCT c.person_id) AS patients, AVG(2025 - p.year_of_birth) AS mean_age \
         FROM condition_occurrence c JOIN person p ON c.person_id = p.person_id \
         WHERE 2025 - p.year_of_birth BETWEEN 40 AND 80 AND c.condition_concept_id IN (201826, 320128, 316139) \
         AND p.year_of_birth > {floor} GROUP BY c.condition_concept_id",
    ),
];

pub async fn run(a: QueryArgs) -> anyhow::Result<()> {
    let cfg = DevnetConfig {
        sites: a.sites,
        patients_per_site: a.patients_per_site,
        ..DevnetConfig::new(&a.dir)
    };
    if !a.json {
        eprintln!(
            "starting {} sites x {} patients (synthesising on first run)...",
            a.sites, a.patients_per_site
        );
    }
    let net = Devnet::start(&cfg, |_, _| {}).await?;
    let client = HubClient::new(&net.hub_url, Some(net.token.clone()));
    let study = net.studies["exact"].as_str();

    // Pooled baseline: every site's Parquet as one table, one context with all cores.
    let pooled =
        medfed_devnet::pooled_context(&net.omop_dirs, &["person", "condition_occurrence"]).await?;

    let mut queries = serde_json::Map::new();
    let mut lines = Vec::new();
    for (name, template) in QUERIES
        .into_iter()
        .filter(|(n, _)| a.only.is_empty() || a.only.iter().any(|o| o == n))
    {
        let sql = template.replace("{floor}", "-1");
        let plain = || json!({ "secure_aggregation": false });
        let federated = time(a.iterations, || async {
            let r = client.query_with(&sql, study, &[], plain()).await?;
            anyhow::ensure!(!r.is_partial(), "a site did not answer: {:?}", r.sites);
            Ok(())
        })
        .await?;
        let fresh_counter = std::cell::Cell::new(1u64);
        let fresh = time(a.iterations, || {
            fresh_counter.set(fresh_counter.get() + 1);
            let sql = template.replace("{floor}", &format!("-{}", fresh_counter.get()));
            let client = &client;
            async move {
                let r = client.query_with(&sql, study, &[], plain()).await?;
                anyhow::ensure!(!r.is_partial(), "a site did not answer: {:?}", r.sites);
                Ok(())
            }
        })
        .await?;
        let secure = time(a.iterations, || async {
            let options = json!({ "secure_aggregation": true });
            let r = client.query_with(&sql, study, &[], options).await?;
            anyhow::ensure!(!r.is_partial(), "a site did not answer: {:?}", r.sites);
            anyhow::ensure!(r.privacy.secure_aggregation, "not securely aggregated");
            Ok(())
        })
        .await?;
        let pooled_ms = time(a.iterations, || async {
            pooled.sql(&sql).await?.collect().await?;
            Ok(())
        })
        .await?;
        let (f50, f99) = stats(federated);
        let (n50, n99) = stats(fresh);
        let (s50, s99) = stats(secure);
        let (p50, p99) = stats(pooled_ms);
        let (ratio, ratio_fresh) = (f50 / p50, n50 / p50);
        lines.push(format!(
            "{name:<24} federated p50 {f50:>6.1} ms p99 {f99:>6.1} | fresh p50 {n50:>6.1} p99 {n99:>6.1} | pooled p50 {p50:>6.1} p99 {p99:>6.1} | ratio p50 {ratio:.2} (fresh {ratio_fresh:.2})\n{:<24} secure    p50 {s50:>6.1} ms p99 {s99:>6.1} | secure / federated p50 {:.2}",
            "", s50 / f50
        ));
        queries.insert(
            name.into(),
            json!({"federated": {"p50_ms": f50, "p99_ms": f99}, "federated_fresh": {"p50_ms": n50, "p99_ms": n99},
                   "secure": {"p50_ms": s50, "p99_ms": s99},
                   "pooled": {"p50_ms": p50, "p99_ms": p99}, "ratio_p50": ratio, "ratio_p50_fresh": ratio_fresh}),
        );
    }
    // What a catalogue re-read costs (at start, on an unknown table, every catalog_refresh_s):
    // every site's tables and published person counts over mTLS Flight, each site auditing it.
    let listing = time(a.iterations, || async {
        let report = net.hub.refresh_catalog().await;
        anyhow::ensure!(
            report.values().all(Result::is_ok),
            "a site did not list: {report:?}"
        );
        Ok(())
    })
    .await?;
    let (l50, l99) = stats(listing);
    lines.push(format!(
        "{:<24} all sites  p50 {l50:>6.1} ms p99 {l99:>6.1} (tables + person counts, counts cached at the sites)",
        "catalogue_listing"
    ));
    net.shutdown().await;
    if a.json {
        println!(
            "{}",
            json!({"sites": a.sites, "patients_per_site": a.patients_per_site, "queries": queries,
                   "catalogue_listing": {"p50_ms": l50, "p99_ms": l99}})
        );
    } else {
        println!(
            "medfed bench query: {} sites x {} patients, {} runs each (mTLS Flight + HTTP, one machine)",
            a.sites, a.patients_per_site, a.iterations
        );
        lines.iter().for_each(|l| println!("{l}"));
    }
    Ok(())
}

//! `medfed bench airlock`: how much of the pooled answer each disclosure-control level withholds.
//!
//! Synthetic sites with realistic skew — one large hospital and several small ones — hold one
//! row per patient with a diagnosis drawn from a long-tailed (Zipf) list of conditions, a sex
//! and an age band. For grouped counts over them, the share of the pooled total withheld is
//! measured under (a) k applied to each site's groups (secure aggregation off), (b) k applied
//! to the network's total under secure aggregation (the default), and (c) the same output rules
//! (k, class disclosure in two-way tables, complementary suppression against the earlier
//! queries of the same cohort) applied to the pooled rows themselves (the
//! oracle no federation can beat). Target: (b) ≤ 1.1 × (c).

use std::collections::BTreeMap;
use std::path::PathBuf;

use medfed_core::result::QueryResult;
use medfed_devnet::{Devnet, DevnetConfig};
use medfed_privacy::complementary::{self, Earlier, Table};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde_json::{Value, json};

use crate::client::HubClient;

#[derive(clap::Args)]
pub struct AirlockArgs {
    /// Number of sites: the first is the large hospital.
    #[arg(long, default_value_t = 8)]
    sites: usize,
    /// Patients at the large hospital.
    #[arg(long, default_value_t = 40_000)]
    large: usize,
    /// Patients at each small one.
    #[arg(long, default_value_t = 2_500)]
    small: usize,
    /// Distinct conditions (Zipf-distributed, exponent 1.1: a few common, many rare).
    #[arg(long, default_value_t = 600)]
    conditions: u64,
    /// Working directory.
    #[arg(long, default_value = "bench-airlock")]
    dir: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The grouped counts measured, over the `dx` table.
const QUERIES: [(&str, &str); 4] = [
    (
        "by_condition",
        "SELECT condition, COUNT(*) AS n FROM dx GROUP BY condition",
    ),
    (
        "by_condition_sex",
        "SELECT condition, sex, COUNT(*) AS n FROM dx GROUP BY condition, sex",
    ),
    (
        "by_age_band_sex",
        "SELECT age_band, sex, COUNT(*) AS n FROM dx GROUP BY age_band, sex",
    ),
    (
        "rare_by_age_band",
        "SELECT condition, age_band, COUNT(*) AS n FROM dx WHERE condition > 100 \
         GROUP BY condition, age_band",
    ),
];

/// One site's rows: (condition, sex, age band).
type Rows = Vec<(u64, u8, u8)>;

fn site_rows(seed: u64, n: usize, conditions: u64) -> Rows {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let zipf = Zipf::new(conditions as f64, 1.1).expect("valid Zipf");
    (0..n)
        .map(|_| {
            let c = zipf.sample(&mut rng) as u64;
            (c, rng.random_range(0..2), rng.random_range(0..9))
        })
        .collect()
}

/// The pooled count of each group of `query`'s grouping (see [`shape`]).
fn pooled_groups(query: &str, rows: &[Rows]) -> BTreeMap<Vec<u64>, u64> {
    let mut out = BTreeMap::new();
    for &(c, s, a) in rows.iter().flatten() {
        let key = match query {
            "by_condition" => vec![c],
            "by_condition_sex" => vec![c, u64::from(s)],
            "by_age_band_sex" => vec![u64::from(a), u64::from(s)],
            _ if c > 100 => vec![c, u64::from(a)],
            _ => continue,
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// The group keys of each query, and the cohort it aggregates (releases of one cohort with nested
/// keys are margins of each other).
fn shape(query: &str) -> (&'static [&'static str], &'static str) {
    match query {
        "by_condition" => (&["condition"], "all"),
        "by_condition_sex" => (&["condition", "sex"], "all"),
        "by_age_band_sex" => (&["age_band", "sex"], "all"),
        _ => (&["condition", "age_band"], "rare"),
    }
}

/// What the output rules release of the pooled groups: those with at least k people, less the
/// class-disclosing cells of a two-way table and the complements that protect the rest against
/// `earlier` releases of the same cohort (the rules the hub applies to the network's table).
/// Returns the people released and the release, as a later query's margin.
fn oracle(
    pooled: &BTreeMap<Vec<u64>, u64>,
    k: u64,
    dims: &[&str],
    earlier: &[Earlier],
) -> anyhow::Result<(u64, Earlier)> {
    use medfed_analysis::sql::{Merged, MergedCell, class};
    let text = |key: &[u64]| key.iter().map(u64::to_string).collect::<Vec<_>>();
    let mut table = Merged {
        batches: Vec::new(),
        // As under secure aggregation: groups under k are withheld without a row.
        cells: pooled
            .iter()
            .filter(|(_, n)| **n >= k)
            .map(|(key, n)| MergedCell {
                status: 0,
                contributors: Some(*n as i64),
                key: text(key).join("\u{1f}"),
            })
            .collect(),
    };
    let flagged = class::class_disclosures(&table, dims.len());
    table.withhold(&flagged)?;
    let protected = Table {
        dims: dims.iter().map(|d| d.to_string()).collect(),
        cells: table
            .cells
            .iter()
            .map(|c| {
                (
                    c.key.split('\u{1f}').map(String::from).collect(),
                    c.contributors,
                )
            })
            .collect(),
        gaps: true,
    };
    let complements = complementary::protect(&protected, earlier, k as i64)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    table.withhold(&complements.into_iter().collect())?;
    let released: Vec<(Vec<String>, i64)> = table
        .cells
        .iter()
        .filter_map(|c| {
            c.contributors
                .map(|n| (c.key.split('\u{1f}').map(String::from).collect(), n))
        })
        .collect();
    let total = released.iter().map(|c| c.1).sum::<i64>() as u64;
    let release = Earlier {
        dims: protected.dims,
        cells: released,
    };
    Ok((total, release))
}

/// What a released answer adds up to: the sum of its non-withheld counts (last column).
fn released(r: &QueryResult) -> u64 {
    r.rows
        .iter()
        .filter_map(|row| row.last().and_then(Value::as_u64))
        .sum()
}

pub async fn run(a: AirlockArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.sites >= 2, "the airlock bench needs at least two sites");
    std::fs::create_dir_all(&a.dir)?;
    let mut rows = Vec::new();
    let mut files = Vec::new();
    for i in 0..a.sites {
        let n = if i == 0 { a.large } else { a.small };
        let site = site_rows(7_000 + i as u64, n, a.conditions);
        let mut csv = String::from("condition,sex,age_band\n");
        for (c, s, b) in &site {
            csv.push_str(&format!("{c},{s},{b}\n"));
        }
        let path = std::fs::canonicalize(&a.dir)?.join(format!("dx{i}.csv"));
        std::fs::write(&path, csv)?;
        files.push(path);
        rows.push(site);
    }
    let cfg = DevnetConfig {
        sites: a.sites,
        patients_per_site: 200,
        extra_tables: vec![("dx".into(), files)],
        ..DevnetConfig::new(a.dir.join("net"))
    };
    if !a.json {
        eprintln!(
            "starting {} sites (1 x {} patients, {} x {})...",
            a.sites,
            a.large,
            a.sites - 1,
            a.small
        );
    }
    let net = Devnet::start(&cfg, |_, _| {}).await?;
    // The devnet's hub and sites apply the default k.
    let k = medfed_privacy::rules::DEFAULT_MIN_CELL_COUNT;
    let client = HubClient::new(&net.hub_url, Some(net.token.clone()));
    let study = net.studies["exact"].as_str();
    let mut lines = vec![
        "share of the pooled total withheld under k applied to (a) each site's groups, \
         (b) the network's total (secure aggregation), (c) the pooled rows (oracle)"
            .to_string(),
        format!(
            "{:<18} {:>8} {:>7} {:>10} {:>10} {:>10} {:>8}",
            "query", "total", "groups", "(a) site", "(b) net", "(c) pool", "(b)/(c)"
        ),
    ];
    let mut out = serde_json::Map::new();
    let mut history: Vec<(&str, Earlier)> = Vec::new();
    for (name, sql) in QUERIES {
        let pooled = pooled_groups(name, &rows);
        let total: u64 = pooled.values().sum();
        let (dims, cohort) = shape(name);
        let earlier: Vec<Earlier> = history
            .iter()
            .filter(|(c, _)| *c == cohort)
            .map(|(_, e)| e.clone())
            .collect();
        let (oracle, release) = oracle(&pooled, k, dims, &earlier)?;
        history.push((cohort, release));
        let per_site = client
            .query_with(sql, study, &[], json!({ "secure_aggregation": false }))
            .await?;
        let network = client
            .query_with(sql, study, &[], json!({ "secure_aggregation": true }))
            .await?;
        anyhow::ensure!(
            network.privacy.secure_aggregation && !per_site.privacy.secure_aggregation,
            "the two runs were not protected as asked"
        );
        let share = |kept: u64| 1.0 - kept as f64 / total as f64;
        let (sa, sb, sc) = (
            share(released(&per_site)),
            share(released(&network)),
            share(oracle),
        );
        // Nothing withheld from the pooled rows either: (b) meets the target when it is 0 too.
        let ratio = if sc > 0.0 {
            sb / sc
        } else if sb == 0.0 {
            1.0
        } else {
            f64::INFINITY
        };
        lines.push(format!(
            "{name:<18} {total:>8} {:>7} {:>9.2}% {:>9.2}% {:>9.2}% {ratio:>8.3}",
            pooled.len(),
            sa * 100.0,
            sb * 100.0,
            sc * 100.0
        ));
        out.insert(
            name.into(),
            json!({"total": total, "groups": pooled.len(), "withheld_per_site_k": sa,
                   "withheld_network_k": sb, "withheld_pooled_k": sc, "network_over_pooled": ratio}),
        );
    }
    net.shutdown().await;
    if a.json {
        println!("{}", Value::Object(out));
    } else {
        println!("{}", lines.join("\n"));
    }
    Ok(())
}

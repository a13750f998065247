//! `medfed demo`: the whole network on this machine, with worked examples.

use std::path::PathBuf;

use indicatif::{MultiProgress, ProgressBar};
use medfed_devnet::{Devnet, DevnetConfig};

use crate::client::HubClient;
use crate::output::{privacy_lines, site_line, table};

#[derive(clap::Args)]
pub struct Args {
    /// Working directory for certificates, data and configs (reused on the next run).
    #[arg(long, default_value = "demo-net")]
    dir: PathBuf,
    /// Number of hospitals.
    #[arg(long, default_value_t = 3)]
    sites: usize,
    /// Synthetic patients per hospital.
    #[arg(long, default_value_t = 20_000)]
    patients_per_site: usize,
    /// Run the examples and exit instead of serving until Ctrl-C.
    #[arg(long)]
    once: bool,
    /// Add your own table to the sites: NAME=FILE1,FILE2,... (one CSV or Parquet file per site).
    #[arg(long = "table", value_parser = parse_table)]
    tables: Vec<(String, Vec<PathBuf>)>,
    /// Accept your hospital's single sign-on: a TOML file with an `[oidc]` section as in
    /// hub.toml (issuer, audience, jwks, and portal_client_id for the portal's sign-in).
    #[arg(long, value_name = "FILE")]
    oidc: Option<PathBuf>,
    /// Hold releases for custodians' review when these checks fire, instead of withholding or
    /// refusing (comma-separated: class_disclosure, complementary, differencing).
    #[arg(long, value_delimiter = ',')]
    review: Vec<String>,
}

fn parse_table(s: &str) -> Result<(String, Vec<PathBuf>), String> {
    let (name, files) = s.split_once('=').ok_or("expected NAME=FILE1,FILE2,...")?;
    Ok((
        name.to_string(),
        files.split(',').map(PathBuf::from).collect(),
    ))
}

/// Worked examples: what a researcher would ask first.
pub const EXAMPLES: [(&str, &str); 6] = [
    (
        "Patients by sex",
        "SELECT gender_concept_id AS gender, COUNT(*) AS patients FROM person GROUP BY 1 ORDER BY 1",
    ),
    (
        "Patients by sex and decade of birth",
        "SELECT gender_concept_id AS gender, (year_of_birth / 10) * 10 AS decade, COUNT(*) AS patients \
         FROM person GROUP BY 1, 2 ORDER BY 1, 2",
    ),
    (
        "Patients with each cardiometabolic condition",
        "SELECT condition_concept_id AS condition, COUNT(DISTINCT person_id) AS patients, COUNT(*) AS records \
         FROM condition_occurrence \
         WHERE condition_concept_id IN (201826, 320128, 4329847, 316139, 46271022, 255573) \
         GROUP BY 1 ORDER BY patients DESC",
    ),
    (
        "HbA1c (%) in patients with type 2 diabetes, by sex and age band",
        "SELECT p.gender_concept_id AS gender, CASE WHEN 2025 - p.year_of_birth < 65 THEN '<65' ELSE '65+' END AS age, \
         COUNT(*) AS tests, AVG(m.value_as_number) AS mean_hba1c, STDDEV(m.value_as_number) AS sd \
         FROM measurement m JOIN person p ON m.person_id = p.person_id \
         WHERE m.measurement_concept_id = 3004410 \
           AND m.person_id IN (SELECT person_id FROM condition_occurrence WHERE condition_concept_id = 201826) \
         GROUP BY 1, 2 ORDER BY 1, 2",
    ),
    (
        "30-day readmission rate after an inpatient stay",
        "SELECT COUNT(DISTINCT a.visit_occurrence_id) AS stays, \
                COUNT(DISTINCT b.visit_occurrence_id) AS readmissions, \
                COUNT(DISTINCT b.person_id) AS readmitted_patients, \
                CAST(COUNT(DISTINCT b.visit_occurrence_id) AS DOUBLE) \
                  / COUNT(DISTINCT a.visit_occurrence_id) AS readmissions_per_stay \
         FROM visit_occurrence a LEFT JOIN visit_occurrence b \
           ON b.person_id = a.person_id AND b.visit_concept_id = 9201 \
          AND b.visit_start_date > a.visit_end_date \
          AND b.visit_start_date <= a.visit_end_date + INTERVAL '30 days' \
         WHERE a.visit_concept_id = 9201",
    ),
    (
        "A row-level query, which the network refuses",
        "SELECT person_id, year_of_birth FROM person",
    ),
];

/// Prints an answer (table, sites, privacy) or why there is none.
fn show(answer: anyhow::Result<medfed_core::result::QueryResult>) {
    match answer {
        Ok(r) => println!(
            "{}\n{}\n{}\n",
            table(&r),
            site_line(&r),
            privacy_lines(&r).join("\n")
        ),
        Err(e) => println!("   -> {e}\n"),
    }
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let cfg = DevnetConfig {
        sites: a.sites,
        patients_per_site: a.patients_per_site,
        extra_tables: a.tables,
        oidc: a
            .oidc
            .as_deref()
            .map(medfed_hub::HubConfig::load_oidc)
            .transpose()?,
        hub_privacy: medfed_hub::config::NetworkPrivacy {
            review: medfed_privacy::Review::try_from(a.review).map_err(anyhow::Error::msg)?,
            ..Default::default()
        },
        ..DevnetConfig::new(&a.dir)
    };
    println!(
        "medfed demo: {} hospitals x {} synthetic patients under {}",
        a.sites,
        a.patients_per_site,
        a.dir.display()
    );
    let bars = MultiProgress::new();
    let per_site: Vec<ProgressBar> = (0..a.sites)
        .map(|i| {
            bars.add(
                ProgressBar::new(a.patients_per_site as u64)
                    .with_style(super::synth::progress_style())
                    .with_prefix(medfed_devnet::site_name(i).to_string()),
            )
        })
        .collect();
    let net = Devnet::start(&cfg, |i, done| per_site[i].set_position(done as u64)).await?;
    per_site.iter().for_each(ProgressBar::finish);
    println!(
        "network up: hub {} <- mTLS -> sites {}\n",
        net.hub_url,
        net.site_names
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let exact = &net.studies["exact"];
    let client = HubClient::new(&net.hub_url, Some(net.token.clone()));
    for (title, sql) in EXAMPLES {
        println!(
            "== {title}\n   {}",
            sql.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        show(client.query(sql, exact, &[]).await);
    }
    println!(
        "== Differential privacy: mean birth year by sex under study `dp` (ε = 0.1 of each \
         site's 0.5, birth years clamped to [1900, 2030])"
    );
    let dp_sql = "SELECT gender_concept_id, AVG(year_of_birth) AS mean_birth_year, COUNT(*) AS n \
                  FROM person GROUP BY gender_concept_id";
    let options =
        serde_json::json!({ "epsilon": 0.1, "bounds": { "year_of_birth": [1900, 2030] } });
    show(
        client
            .query_with(dp_sql, &net.studies["dp"], &[], options)
            .await,
    );
    println!(
        "== Secure aggregation: patients by sex, the hub sees only the masked sum of the sites' \
         partials (k applies to the sum)"
    );
    let secure = serde_json::json!({ "secure_aggregation": true });
    let sex_sql = "SELECT gender_concept_id AS gender, COUNT(*) AS patients, \
                   AVG(year_of_birth) AS mean_birth_year FROM person GROUP BY 1 ORDER BY 1";
    show(client.query_with(sex_sql, exact, &[], secure).await);
    println!(
        "== Distributed DP: the same under study `dp`, each site adding a Gaussian share of the \
         noise inside the secure sum (ε = 0.1)"
    );
    let options = serde_json::json!({
        "epsilon": 0.1, "secure_aggregation": true, "bounds": { "year_of_birth": [1900, 2030] },
    });
    show(
        client
            .query_with(sex_sql, &net.studies["dp"], &[], options)
            .await,
    );
    println!(
        "== Pooling small numbers: heart failure by decade of birth. With k applied to each \
         site's groups (secure aggregation off), a decade with fewer than k patients at some \
         site is hidden; with k applied to the network's total (the default), it is released \
         once the sites together hold k"
    );
    let rare_sql = "SELECT (p.year_of_birth / 10) * 10 AS decade, COUNT(DISTINCT c.person_id) AS patients \
                    FROM condition_occurrence c JOIN person p ON c.person_id = p.person_id \
                    WHERE c.condition_concept_id = 316139 GROUP BY 1 ORDER BY 1";
    let per_site = serde_json::json!({ "secure_aggregation": false });
    show(client.query_with(rare_sql, exact, &[], per_site).await);
    show(client.query(rare_sql, exact, &[]).await);
    println!("== Governance: the same question under a study no custodian has approved");
    match client
        .query(
            "SELECT COUNT(*) AS n FROM person",
            &net.studies["unapproved"],
            &[],
        )
        .await
    {
        Ok(_) => println!("   -> answered (unexpected)\n"),
        Err(e) => println!("   -> {e}\n"),
    }
    println!(
        "== Vitals alerting at a site: a simulated ward's monitors through the rule engine \
         (thresholds, sustained windows, NEWS2), the first alerts as they fire"
    );
    tokio::task::block_in_place(|| super::vitals::demo(6));
    println!("People (tokens in {}):", a.dir.join("demo.json").display());
    println!("  rita       researcher: proposes studies, queries approved ones");
    println!("  cust-<site> custodian: approves or rejects studies for their own site only");
    println!("  alan       auditor: reads and verifies the audit trail, nothing else");
    println!("  ada        admin: manages users\n");

    let demo_json = a.dir.join("demo.json");
    if a.once {
        net.shutdown().await;
        return Ok(());
    }
    println!("The network keeps running. Ask it yourself:");
    println!(
        "  medfed query --hub {} --token {} --study {exact} \"SELECT COUNT(*) FROM person\"",
        net.hub_url, net.token
    );
    println!(
        "  medfed query --hub {} --token {} --study {} --epsilon 0.1 --bounds year_of_birth=1900:2030 \"SELECT AVG(year_of_birth) FROM person\"",
        net.hub_url, net.token, net.studies["dp"]
    );
    println!(
        "  medfed query --hub {} --token {} --study {exact} --secure-aggregation \"SELECT gender_concept_id, COUNT(*) FROM person GROUP BY 1\"",
        net.hub_url, net.token
    );
    println!(
        "  medfed study list --hub {} --token {}",
        net.hub_url, net.tokens["custodian:north"]
    );
    println!(
        "  medfed audit verify --db {} --key {}",
        a.dir.join("hub/audit.db").display(),
        a.dir.join("pki/hub/signing.pub").display()
    );
    println!(
        "  curl -s -H 'Authorization: Bearer {}' {}/v1/catalog",
        net.token, net.hub_url
    );
    println!(
        "\nResearch portal: {}/ (sign in with a token from {}: researcher, custodian:<site>, \
         auditor)",
        net.hub_url,
        demo_json.display()
    );
    if let Some(oidc) = &cfg.oidc {
        println!("  or with single sign-on at {}", oidc.issuer);
    }
    println!(
        "Connection details for scripts: {}. Ctrl-C stops.",
        demo_json.display()
    );
    super::shutdown_signal().await;
    net.shutdown().await;
    Ok(())
}

//! `medfed train readmission`: the 30-day readmission study end to end on a network of
//! synthetic hospitals — features from each site's OMOP data (its `readmission` feature
//! table), federated logistic regression and MLP by FedAvg, the same models trained on each
//! site alone and on all rows pooled, and the federated model personalised by each site on its
//! own patients, each scored on every site's held-out patients (AUROC, AUPRC, Brier score,
//! calibration) by the sites themselves. Logistic regression is also trained by DP-FedAvg in
//! the DP study at ε = 0.5 per hospital (seed 001's setting).

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::catalog::MemTable;
use datafusion::prelude::SessionContext;
use medfed_analysis::glm::pooled::run_local;
use medfed_analysis::kernel::{self, KernelRound};
use medfed_analysis::learn::{self, Architecture, EvaluateSpec, FedAvgSpec, RoundRequest};
use medfed_core::kernel::{FineTune, Metrics};
use medfed_core::learn::TrainedModel;
use medfed_core::result::{SiteOutcome, SiteStatus};
use medfed_devnet::{Devnet, DevnetConfig};
use medfed_hub::auth::Principal;
use serde_json::json;

/// The study's inputs, from the `readmission` feature table.
pub const FORMULA: &str = "readmitted_30d ~ age + male + prior_admissions + heart_failure + ckd \
                           + copd + diabetes + myocardial_infarction + pneumonia + length_of_stay \
                           + hba1c + hba1c_measured";

#[derive(clap::Args)]
pub struct ReadmissionArgs {
    /// Where the network lives.
    #[arg(long, default_value = "readmission-net")]
    dir: PathBuf,
    /// Hospitals.
    #[arg(long, default_value_t = 3)]
    sites: usize,
    /// Synthetic patients per hospital.
    #[arg(long, default_value_t = 20_000)]
    patients_per_site: usize,
    /// FedAvg rounds.
    #[arg(long, default_value_t = 30)]
    rounds: u32,
    /// DP-FedAvg rounds (of one full-batch step each): fewer steps, less noise per step.
    #[arg(long, default_value_t = 10)]
    dp_rounds: u32,
    /// MLP hidden units.
    #[arg(long, default_value_t = 16)]
    hidden: u32,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

fn spec(model: Architecture, rounds: u32) -> FedAvgSpec {
    FedAvgSpec {
        table: "readmission".into(),
        formula: FORMULA.into(),
        model,
        rounds,
        local_epochs: 1,
        batch_size: 64,
        learning_rate: if model == Architecture::Logistic {
            0.1
        } else {
            0.05
        },
        l2: 1e-3,
        proximal_mu: 0.0,
        fraction: 1.0,
        min_sites: 1,
        tolerance: 0.0,
        seed: 7,
        clip: None,
        bounds: Default::default(),
        filter: Some("holdout = 0".into()),
    }
}

/// Declared ranges of the inputs (DP training scales from these instead of asking the network).
const BOUNDS: [(&str, [f64; 2]); 12] = [
    ("age", [0.0, 110.0]),
    ("male", [0.0, 1.0]),
    ("prior_admissions", [0.0, 20.0]),
    ("heart_failure", [0.0, 1.0]),
    ("ckd", [0.0, 1.0]),
    ("copd", [0.0, 1.0]),
    ("diabetes", [0.0, 1.0]),
    ("myocardial_infarction", [0.0, 1.0]),
    ("pneumonia", [0.0, 1.0]),
    ("length_of_stay", [0.0, 60.0]),
    ("hba1c", [3.0, 15.0]),
    ("hba1c_measured", [0.0, 1.0]),
];

/// DP-FedAvg's settings: full-batch DP gradient descent, one step a round, rows' gradients
/// clipped to 1.
fn dp_spec(rounds: u32) -> FedAvgSpec {
    FedAvgSpec {
        local_epochs: 1,
        learning_rate: 2.0,
        clip: Some(1.0),
        bounds: BOUNDS.iter().map(|(n, b)| (n.to_string(), *b)).collect(),
        ..spec(Architecture::Logistic, rounds)
    }
}

/// The same model trained in this process on every site's training rows together: only a
/// simulation can do this (it reads every hospital's data), which is why it is the baseline.
async fn pooled(net: &Devnet, s: &FedAvgSpec, k: u64) -> anyhow::Result<TrainedModel> {
    let mut batches = Vec::new();
    let mut schema = None;
    for dir in &net.omop_dirs {
        let store =
            medfed_store::SiteStore::open(&medfed_store::StoreConfig::omop_dir(dir)).await?;
        let df = store.context().table("readmission").await?;
        schema.get_or_insert_with(|| Arc::new(df.schema().as_arrow().clone()));
        batches.extend(df.collect().await?);
    }
    let ctx = SessionContext::new();
    let table = MemTable::try_new(schema.expect("at least one site"), vec![batches])?;
    ctx.register_table("readmission", Arc::new(table))?;
    let ctx = &ctx;
    let run_sql =
        |_, sql: String| async move { run_local(ctx, &sql).await.map_err(|e| e.to_string()) };
    let run_round = |r: RoundRequest| async move {
        let rows = kernel::prepare(&ctx.state(), &r.task.rows)
            .await
            .map_err(|e| e.to_string())?;
        let answer = kernel::run(ctx, &rows, &r.task.step, k, None)
            .await
            .map_err(|e| e.to_string())?;
        let mut round = KernelRound::default();
        round.answers.insert("pooled".into(), answer);
        round.sites.insert(
            "pooled".into(),
            SiteOutcome {
                status: SiteStatus::Answered,
                elapsed_ms: 0.0,
                message: None,
            },
        );
        Ok(round)
    };
    let state = ctx.state();
    learn::train(
        &state,
        s,
        k,
        &["pooled".to_string()],
        None,
        run_sql,
        run_round,
    )
    .await
    .map_err(|e| match e {
        learn::FitError::Glm(g) => anyhow::anyhow!("pooled training: {g}"),
        learn::FitError::Run(r) => anyhow::anyhow!("pooled training: {r}"),
    })
}

/// Scores `m` on the held-out patients of `sites` (all of the study's when `None`); with
/// `fine_tune`, each site first personalises it on its own training patients.
async fn score(
    net: &Devnet,
    who: &Principal,
    m: &TrainedModel,
    sites: Option<Vec<String>>,
    fine_tune: Option<FineTune>,
) -> anyhow::Result<std::collections::BTreeMap<String, Metrics>> {
    let req = medfed_hub::EvaluateRequest {
        study: net.studies["exact"].clone(),
        spec: EvaluateSpec {
            table: "readmission".into(),
            formula: m.formula.clone(),
            model: m.model,
            weights: m.weights.clone(),
            scaling: m.scaling.clone(),
            filter: fine_tune.is_none().then(|| "holdout = 1".into()),
            split: fine_tune.map(|_| "holdout".into()),
            fine_tune,
        },
        sites,
    };
    Ok(net.hub.evaluate(who, &req).await?.metrics)
}

/// Largest gap between predicted and observed risk over the calibration bins.
fn calibration_gap(m: &Metrics) -> f64 {
    m.calibration
        .iter()
        .map(|b| (b.predicted - b.observed).abs())
        .fold(0.0, f64::max)
}

pub async fn run(a: ReadmissionArgs) -> anyhow::Result<()> {
    let cfg = DevnetConfig {
        sites: a.sites,
        patients_per_site: a.patients_per_site,
        ..DevnetConfig::new(&a.dir)
    };
    eprintln!(
        "readmission study: {} hospitals x {} synthetic patients under {}",
        a.sites,
        a.patients_per_site,
        a.dir.display()
    );
    let net = Devnet::start(&cfg, |_, _| {}).await?;
    let who = net
        .hub
        .authenticate(Some(&format!("Bearer {}", net.token)), "readmission")
        .await?;
    let study = net.studies["exact"].clone();
    let k = 10;
    let sites: Vec<String> = net.site_names.iter().map(|s| s.to_string()).collect();
    let mut rows = Vec::new();
    for model in [
        Architecture::Logistic,
        Architecture::Mlp { hidden: a.hidden },
    ] {
        let name = match model {
            Architecture::Logistic => "logistic".to_string(),
            Architecture::Mlp { hidden } => format!("mlp({hidden})"),
        };
        let s = spec(model, a.rounds);
        eprintln!("training {name}: federated, each site alone, pooled…");
        let request = |sites: Option<Vec<String>>| medfed_hub::FedAvgRequest {
            study: study.clone(),
            spec: s.clone(),
            sites,
            register: None,
            epsilon: None,
            secure_aggregation: None,
        };
        let federated = net.hub.fedavg(&who, &request(None)).await?.model;
        let fed_scores = score(&net, &who, &federated, None, None).await?;
        let tune = FineTune {
            epochs: 2,
            batch_size: s.batch_size,
            learning_rate: s.learning_rate,
            l2: s.l2,
            proximal_mu: 0.1,
            seed: 11,
        };
        let tuned_scores = score(&net, &who, &federated, None, Some(tune)).await?;
        let pool = pooled(&net, &s, k).await?;
        let pool_scores = score(&net, &who, &pool, None, None).await?;
        // The study's whole budget (ε = 0.5 a site) goes to one DP run: logistic regression.
        let dp_scores = if model == Architecture::Logistic {
            eprintln!("training {name} by DP-FedAvg at ε = 0.5 per hospital…");
            let dp = medfed_hub::FedAvgRequest {
                study: net.studies["dp"].clone(),
                spec: dp_spec(a.dp_rounds),
                epsilon: Some(0.5),
                ..request(None)
            };
            let m = net.hub.fedavg(&who, &dp).await?.model;
            score(&net, &who, &m, None, None).await?
        } else {
            Default::default()
        };
        for site in &sites {
            let alone = net
                .hub
                .fedavg(&who, &request(Some(vec![site.clone()])))
                .await?
                .model;
            let alone_scores = score(&net, &who, &alone, Some(vec![site.clone()]), None).await?;
            for (training, scores) in [
                ("federated", &fed_scores),
                ("federated, DP ε = 0.5", &dp_scores),
                ("federated + local fine-tuning", &tuned_scores),
                ("site alone", &alone_scores),
                ("pooled", &pool_scores),
            ] {
                let Some(m) = scores.get(site) else { continue };
                rows.push(json!({
                    "site": site, "model": name, "training": training, "n": m.n,
                    "positives": m.positives, "auroc": m.auroc, "auprc": m.auprc,
                    "brier": m.brier, "calibration_gap": calibration_gap(m),
                }));
            }
        }
    }
    if a.json {
        println!("{}", json!({ "formula": FORMULA, "results": rows }));
    } else {
        println!(
            "30-day readmission, held-out patients of each hospital (a fifth, by id)\n{FORMULA}"
        );
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
            .set_header([
                "site",
                "model",
                "trained on",
                "stays",
                "readmitted",
                "AUROC",
                "AUPRC",
                "Brier",
                "max calib. gap",
            ]);
        for r in &rows {
            let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
            t.add_row([
                r["site"].as_str().unwrap_or("").to_string(),
                r["model"].as_str().unwrap_or("").to_string(),
                r["training"].as_str().unwrap_or("").to_string(),
                r["n"].to_string(),
                r["positives"].to_string(),
                format!("{:.3}", f("auroc")),
                format!("{:.3}", f("auprc")),
                format!("{:.4}", f("brier")),
                format!("{:.3}", f("calibration_gap")),
            ]);
        }
        println!("{t}");
    }
    net.shutdown().await;
    Ok(())
}

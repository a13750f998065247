//! Federated GLMs over a real network equal the pooled fit; the refusals and failure paths.

use std::path::{Path, PathBuf};

use medfed_analysis::glm::{Family, GlmSpec, pooled};
use medfed_core::glm::GlmFit;
use medfed_devnet::{Devnet, DevnetConfig};
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::support::post;

/// One CSV per site: x (continuous), sex (0/1), grp (a/b/c), exposure t, three outcomes drawn
/// from known models, and follow-up days `fu` with a death indicator `died`. Sites differ in size and in their covariate mix.
pub fn simulated_sites(dir: &Path) -> Vec<PathBuf> {
    use rand_distr::{Distribution, Normal, Poisson};
    (0..3)
        .map(|site| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(100 + site);
            let mut csv = String::from("x,sex,grp,t,yg,yb,yc,fu,died\n");
            let noise = Normal::new(0.0, 1.5).unwrap();
            for _ in 0..(400 + 300 * site) {
                let x: f64 = rng.random_range(-2.0..2.0) + site as f64 * 0.3;
                let sex = u8::from(rng.random_bool(0.3 + 0.2 * site as f64));
                let grp = ["a", "b", "c"][rng.random_range(0..3)];
                let g = match grp {
                    "a" => 0.0,
                    "b" => 0.5,
                    _ => -0.4,
                };
                let t: f64 = rng.random_range(0.5..2.0);
                let lin = -0.3 + 0.8 * x + 0.6 * f64::from(sex) + g;
                let yb = u8::from(rng.random_bool(1.0 / (1.0 + (-lin).exp())));
                let yc = Poisson::new((0.5 * lin + t.ln()).exp())
                    .unwrap()
                    .sample(&mut rng);
                let yg = 2.0 + lin + noise.sample(&mut rng);
                // Survival: exponential death time (hazard doubles for sex = 1), censored
                // uniformly over a year.
                let hazard = 0.002 * if sex == 1 { 2.0 } else { 1.0 };
                let death = -rng.random::<f64>().ln() / hazard;
                let censor: f64 = rng.random_range(30.0..365.0);
                let (fu, died) = (death.min(censor).floor(), u8::from(death <= censor));
                csv.push_str(&format!("{x},{sex},{grp},{t},{yg},{yb},{yc},{fu},{died}\n"));
            }
            let path = dir.join(format!("sim{site}.csv"));
            std::fs::write(&path, csv).unwrap();
            path
        })
        .collect()
}

/// The sites' CSVs concatenated and loaded by the store exactly as a site loads its extract.
async fn pooled_extract(
    net: &Devnet,
    files: &[PathBuf],
    name: &str,
    dir: &Path,
) -> medfed_store::SiteStore {
    let mut all = String::new();
    for (i, f) in files.iter().enumerate() {
        let text = std::fs::read_to_string(f).unwrap();
        let body = if i == 0 {
            text.as_str()
        } else {
            text.split_once('\n').unwrap().1
        };
        all.push_str(body);
        if !all.ends_with('\n') {
            all.push('\n');
        }
    }
    let path = dir.join(format!("{name}-pooled.csv"));
    std::fs::write(&path, all).unwrap();
    let cfg = medfed_store::StoreConfig {
        extra_tables: vec![medfed_store::ExtraTable {
            name: name.into(),
            path,
            identifiers: vec![],
            null_regex: None,
        }],
        ..medfed_store::StoreConfig::omop_dir(net.omop_dirs[0].clone())
    };
    medfed_store::SiteStore::open(&cfg).await.unwrap()
}

fn spec(table: &str, formula: &str, family: Family) -> GlmSpec {
    GlmSpec {
        table: table.into(),
        formula: formula.into(),
        family,
        weights: None,
        filter: None,
    }
}

pub async fn start(dir: &Path, name: &str, files: Vec<PathBuf>) -> Devnet {
    let cfg = DevnetConfig {
        sites: 3,
        patients_per_site: 200,
        extra_tables: vec![(name.into(), files)],
        ..DevnetConfig::new(dir)
    };
    Devnet::start(&cfg, |_, _| {}).await.unwrap()
}

/// The demo researcher, signed in at the hub in-process.
async fn researcher(net: &Devnet) -> medfed_hub::auth::Principal {
    net.hub
        .authenticate(Some(&format!("Bearer {}", net.token)), "test")
        .await
        .unwrap()
}

/// Federated estimates and standard errors equal the pooled ones to `tol` (relative).
fn assert_equal(f: &GlmFit, p: &pooled::PooledFit, tol: f64) {
    assert_eq!(f.n as usize, p.n, "{}", f.formula);
    for ((name, c), (b, se)) in f
        .coefficients
        .0
        .iter()
        .zip(p.beta.iter().zip(&p.std_errors))
    {
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-3);
        assert!(
            rel(c.estimate, *b) < tol,
            "{} {name}: {} vs pooled {b}",
            f.formula,
            c.estimate
        );
        assert!(
            rel(c.std_error, *se) < tol,
            "{} {name} se: {} vs {se}",
            f.formula,
            c.std_error
        );
    }
    assert!((f.deviance - p.deviance).abs() / p.deviance < tol);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_glms_equal_the_pooled_fit_on_simulated_sites() {
    let dir = tempfile::tempdir().unwrap();
    let files = simulated_sites(dir.path());
    let net = start(&dir.path().join("net"), "sim", files.clone()).await;
    let store = pooled_extract(&net, &files, "sim", dir.path()).await;
    let rita = researcher(&net).await;
    let study = net.studies["exact"].clone();
    for (formula, family) in [
        ("yg ~ x * sex + grp", Family::Gaussian),
        ("yb ~ x + factor(sex) + grp", Family::Binomial),
        ("yc ~ x + sex + grp + offset(log(t))", Family::Poisson),
    ] {
        let s = spec("sim", formula, family);
        let req = medfed_hub::GlmRequest {
            study: study.clone(),
            spec: s.clone(),
            sites: None,
            secure_aggregation: None,
            register: None,
        };
        let fed = net.hub.glm(&rita, &req).await.unwrap();
        let pool = pooled::fit(store.context(), &s)
            .await
            .map_err(|_| "pooled")
            .unwrap();
        assert_equal(&fed, &pool, 1e-8);
        assert!(fed.converged && fed.sites.len() == 3, "{fed:?}");
        // The truth is inside the interval (x = 0.8 on every scale here, 0.4 for poisson).
        let x = fed.coefficients.get("x").unwrap();
        let truth = if family == Family::Poisson { 0.4 } else { 0.8 };
        assert!(x.ci95[0] < truth && truth < x.ci95[1], "{formula}: {x:?}");

        // Under secure aggregation the hub sees only the sums: same fit to fixed-point precision.
        let secure = medfed_hub::GlmRequest {
            secure_aggregation: Some(true),
            register: None,
            ..req
        };
        let sec = net.hub.glm(&rita, &secure).await.unwrap();
        assert!(sec.privacy.secure_aggregation);
        assert_equal(&sec, &pool, 1e-5);
    }

    // Every iteration is audited at the hub as a glm step, and the release too.
    let entries = net.hub.audit().records(0, 10_000).await.unwrap();
    assert!(entries.iter().filter(|e| e.entry.action == "glm").count() >= 10);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glm_over_http_speaks_rs_names_and_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let files = simulated_sites(dir.path());
    let mut net = start(&dir.path().join("net"), "sim", files).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/analyses/glm", net.hub_url);
    let call = async |body: serde_json::Value, token: &str| {
        let (status, text) = post(&http, &url, token, &body).await;
        let value = serde_json::from_str::<serde_json::Value>(&text).unwrap();
        (status, value, text)
    };
    let rita = net.tokens["researcher"].clone();
    let auditor = net.tokens["auditor"].clone();
    let studies = net.studies.clone();
    let body = |study: &str, formula: &str| {
        json!({"study": studies[study], "table": "sim", "formula": formula,
               "family": "binomial"})
    };
    let (status, fit, text) = call(body("exact", "yb ~ x + factor(grp)"), &rita).await;
    assert_eq!(status, 200, "{fit}");
    // Model order (a plain serde_json::Value sorts keys, so read the text as the client does).
    let typed: GlmFit = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> = typed
        .coefficients
        .0
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(names, ["(Intercept)", "x", "factor(grp)b", "factor(grp)c"]);
    for key in ["n", "df_residual", "iterations", "deviance", "aic", "sites"] {
        assert!(fit.get(key).is_some(), "{key} missing: {fit}");
    }
    let coefs = fit["coefficients"].as_object().unwrap();
    for c in coefs.values() {
        for k in ["estimate", "std_error", "z", "p"] {
            assert!(c[k].is_f64(), "{k}: {c}");
        }
    }
    assert_eq!(fit["reference_levels"]["factor(grp)"], "a");

    let refused = [
        (
            json!({"study": studies["exact"], "table": "person",
                   "formula": "year_of_birth ~ person_id", "family": "gaussian"}),
            &rita,
            422,
            "identifies a person",
        ),
        (
            json!({"study": studies["exact"], "table": "sim", "formula": "yg ~ x",
                   "family": "gaussian", "where": "x > 2.58"}),
            &rita,
            0, // 403 (sites suppressed a small cell) or 422 (no rows at all)
            "fewer than k",
        ),
        (
            json!({"study": studies["exact"], "table": "sim", "formula": "yg ~ x",
                   "family": "binomial"}),
            &rita,
            400,
            "coded 0/1",
        ),
        (body("dp", "yb ~ x"), &rita, 403, "exact studies only"),
        (body("unapproved", "yb ~ x"), &rita, 403, ""),
        (body("exact", "yb ~ x"), &auditor, 403, ""),
    ];
    for (b, token, want, says) in refused {
        let (status, answer, _) = call(b.clone(), token).await;
        if want == 0 {
            assert!(status == 403 || status == 422, "{b}: {answer}");
        } else {
            assert_eq!(status, want, "{b}: {answer}");
        }
        assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
    }

    // A site that is down: the model is fitted on the others and says so.
    let south = net.site_names[1].clone();
    assert!(net.stop_site(&south).await);
    let (status, partial, _) = call(body("exact", "yb ~ x"), &rita).await;
    assert_eq!(status, 200, "{partial}");
    assert_ne!(partial["sites"][south.as_str()]["status"], "answered");
    assert!(partial["n"].as_u64().unwrap() < fit["n"].as_u64().unwrap());
    net.shutdown().await;
}

/// DataSHIELD's CNSIM cohort as its three sites: the federated fits equal the pooled ones
/// (GPL-3 data, so read from ../shared; skipped where that is absent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cnsim_glms_equal_the_pooled_fit() {
    let cnsim = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/cnsim");
    if !cnsim.join("CNSIM1.csv").exists() {
        eprintln!("skipped: {} not present", cnsim.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = (1..=3)
        .map(|i| cnsim.join(format!("CNSIM{i}.csv")))
        .collect();
    let net = start(&dir.path().join("net"), "cnsim", files.clone()).await;
    let store = pooled_extract(&net, &files, "cnsim", dir.path()).await;
    let rita = researcher(&net).await;
    // One analysis cohort for every model: two releases over cohorts that differ by fewer than
    // k people would be refused as differencing (as they should be).
    let cohort = "lab_tsc IS NOT NULL AND lab_hdl IS NOT NULL AND pm_bmi_continuous IS NOT NULL \
                  AND pm_bmi_categorical IS NOT NULL AND dis_diab IS NOT NULL \
                  AND medi_lpd IS NOT NULL AND dis_cva IS NOT NULL AND gender IS NOT NULL";
    let spec = |table: &str, formula: &str, family| GlmSpec {
        filter: Some(cohort.into()),
        ..spec(table, formula, family)
    };
    for (formula, family) in [
        (
            "LAB_TSC ~ LAB_HDL + GENDER + factor(PM_BMI_CATEGORICAL)",
            Family::Gaussian,
        ),
        (
            "DIS_DIAB ~ PM_BMI_CONTINUOUS + LAB_TSC + GENDER",
            Family::Binomial,
        ),
        (
            "MEDI_LPD ~ LAB_HDL * GENDER + PM_BMI_CONTINUOUS",
            Family::Poisson,
        ),
    ] {
        let s = spec("cnsim", formula, family);
        let req = medfed_hub::GlmRequest {
            study: net.studies["exact"].clone(),
            spec: s.clone(),
            sites: None,
            secure_aggregation: None,
            register: None,
        };
        let fed = match net.hub.glm(&rita, &req).await {
            Ok(f) => f,
            Err(e) => panic!("{formula}: {e}"),
        };
        let pool = pooled::fit(store.context(), &s)
            .await
            .map_err(|_| "pooled")
            .unwrap();
        assert_equal(&fed, &pool, 1e-8);
    }
    // A rare outcome (one site has two strokes among its complete cases): the sum of the
    // outcome there is a count of two, which that site's own dominance rule withholds; in the
    // network's sum (secure aggregation, the default) the strokes are not concentrated.
    let rare = medfed_hub::GlmRequest {
        study: net.studies["exact"].clone(),
        spec: spec("cnsim", "DIS_CVA ~ LAB_HDL + GENDER", Family::Poisson),
        sites: None,
        secure_aggregation: Some(false),
        register: None,
    };
    let e = net.hub.glm(&rita, &rare).await.unwrap_err().to_string();
    assert!(e.contains("dominance"), "{e}");
    let network = medfed_hub::GlmRequest {
        secure_aggregation: None,
        ..rare
    };
    let fit = net.hub.glm(&rita, &network).await.unwrap();
    let pool = pooled::fit(store.context(), &network.spec)
        .await
        .map_err(|_| "pooled")
        .unwrap();
    assert_equal(&fit, &pool, 1e-5);
    net.shutdown().await;
}

/// The same CNSIM logistic regression against an outside implementation: statsmodels 0.15
/// (`smf.glm(..., family=Binomial())` on the three files pooled, complete cases), whose
/// figures R's `glm` also gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cnsim_logistic_regression_matches_statsmodels() {
    let cnsim = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/cnsim");
    if !cnsim.join("CNSIM1.csv").exists() {
        eprintln!("skipped: {} not present", cnsim.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = (1..=3)
        .map(|i| cnsim.join(format!("CNSIM{i}.csv")))
        .collect();
    let net = start(&dir.path().join("net"), "cnsim", files).await;
    let rita = researcher(&net).await;
    let req = medfed_hub::GlmRequest {
        study: net.studies["exact"].clone(),
        spec: spec(
            "cnsim",
            "DIS_DIAB ~ PM_BMI_CONTINUOUS + LAB_TSC * GENDER + factor(PM_BMI_CATEGORICAL)",
            Family::Binomial,
        ),
        sites: None,
        secure_aggregation: None,
        register: None,
    };
    let fit = net.hub.glm(&rita, &req).await.unwrap();
    let reference = [
        ("(Intercept)", -9.19825534365542, 0.879467477749278),
        ("PM_BMI_CONTINUOUS", 0.182127682887385, 0.0328845863460496),
        ("LAB_TSC", 0.0335256391238143, 0.101760327218583),
        ("GENDER", 1.48737332748861, 1.11910609694055),
        (
            "factor(PM_BMI_CATEGORICAL)2",
            -0.21398987008245,
            0.363412835609367,
        ),
        (
            "factor(PM_BMI_CATEGORICAL)3",
            -0.630474687254,
            0.498347225682328,
        ),
        ("LAB_TSC:GENDER", -0.351930846226394, 0.196925942962911),
    ];
    assert_eq!(fit.coefficients.0.len(), reference.len());
    for (name, estimate, se) in reference {
        let c = fit.coefficients.get(name).unwrap();
        // statsmodels stops at its own tolerance (1e-8 on the deviance) and takes its SEs from
        // the weights of that last iterate: estimates agree to 1e-7, SEs to 1e-6.
        assert!(
            (c.estimate - estimate).abs() < 1e-7 * estimate.abs().max(1.0),
            "{name}: {c:?}"
        );
        assert!((c.std_error - se).abs() < 1e-6 * se, "{name}: {c:?}");
    }
    assert_eq!(fit.n, 7501);
    assert!((fit.deviance - 1052.80959005437).abs() < 1e-7);
    assert!((fit.aic - 1066.80959005437).abs() < 1e-7);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_secure_aggregation_k_and_saturation_count_the_networks_rows() {
    // A cohort (x > 2.25) that one site holds none of, another a handful, the third most:
    // per site, the handful is too few rows for six coefficients; in the network it is not.
    let dir = tempfile::tempdir().unwrap();
    let files = simulated_sites(dir.path());
    let net = start(&dir.path().join("net"), "sim", files.clone()).await;
    let store = pooled_extract(&net, &files, "sim", dir.path()).await;
    let rita = researcher(&net).await;
    let s = GlmSpec {
        filter: Some("x > 2.25".into()),
        ..spec("sim", "yg ~ x * sex + grp", Family::Gaussian)
    };
    let req = |secure| medfed_hub::GlmRequest {
        study: net.studies["exact"].clone(),
        spec: s.clone(),
        sites: None,
        secure_aggregation: Some(secure),
        register: None,
    };
    let fit = net.hub.glm(&rita, &req(true)).await.unwrap();
    let pool = pooled::fit(store.context(), &s)
        .await
        .map_err(|_| "pooled")
        .unwrap();
    assert_equal(&fit, &pool, 1e-5);
    assert!(fit.privacy.secure_aggregation);
    // Without secure aggregation each site judges its own rows, and the small ones say no.
    let plain = net.hub.glm(&rita, &req(false)).await;
    assert!(plain.is_err(), "{plain:?}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_that_refuses_the_model_is_left_out_from_the_first_step_with_its_reason() {
    // A cohort (x above a threshold) in which the first site has 14 rows: at least k, but too
    // few for the model's 8 coefficients (8 > 37 % of 14), judged per site without secure
    // aggregation. The model is fitted on the other two sites, equal to their pooled fit, and
    // the result says why north is missing.
    let dir = tempfile::tempdir().unwrap();
    let files = simulated_sites(dir.path());
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let mut xs: Vec<f64> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    xs.sort_by(|a, b| b.total_cmp(a));
    let threshold = (xs[13] + xs[14]) / 2.0;
    let net = start(&dir.path().join("net"), "sim", files.clone()).await;
    let store = pooled_extract(&net, &files[1..], "sim", dir.path()).await;
    let rita = researcher(&net).await;
    let s = GlmSpec {
        filter: Some(format!("x > {threshold}")),
        ..spec("sim", "yg ~ x * sex * t", Family::Gaussian)
    };
    let req = medfed_hub::GlmRequest {
        study: net.studies["exact"].clone(),
        spec: s.clone(),
        sites: None,
        secure_aggregation: Some(false),
        register: None,
    };
    let fit = net.hub.glm(&rita, &req).await.unwrap();
    let north = &fit.sites["north"];
    assert_eq!(
        north.status,
        medfed_core::result::SiteStatus::Refused,
        "{fit:?}"
    );
    let why = north.message.clone().unwrap_or_default();
    assert!(why.contains("8 coefficients are more than 37%"), "{why}");
    assert!(
        !why.contains("14"),
        "a refusal never states the site's count: {why}"
    );
    for site in ["south", "east"] {
        assert_eq!(
            fit.sites[site].status,
            medfed_core::result::SiteStatus::Answered
        );
    }
    let pool = pooled::fit(store.context(), &s)
        .await
        .map_err(|_| "pooled")
        .unwrap();
    assert_equal(&fit, &pool, 1e-8);
    net.shutdown().await;
}

//! The `medfed` binary as a user runs it.

use std::process::{Command, Output};

use crate::support::network;

pub fn medfed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medfed"))
        .args(args)
        .env("MEDFED_LOG", "error")
        .output()
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["demo", "--help"],
        vec!["query", "--help"],
        vec!["synth", "--help"],
        vec!["site", "serve", "--help"],
        vec!["hub", "serve", "--help"],
        vec!["pki", "init", "--help"],
        vec!["bench", "query", "--help"],
        vec!["hub", "user", "add", "--help"],
        vec!["study", "propose", "--help"],
        vec!["study", "approve", "--help"],
        vec!["audit", "verify", "--help"],
        vec!["audit", "export", "--help"],
        vec!["ingest", "--help"],
        vec!["deid", "--help"],
        vec!["site", "listen-hl7", "--help"],
        vec!["site", "rotate-key", "--help"],
        vec!["bench", "ingest", "--help"],
        vec!["bench", "deid", "--help"],
        vec!["bench", "describe", "--help"],
        vec!["describe", "summary", "--help"],
        vec!["describe", "histogram", "--help"],
        vec!["describe", "table", "--help"],
        vec!["describe", "correlation", "--help"],
        vec!["model", "list", "--help"],
        vec!["model", "show", "--help"],
        vec!["model", "export", "--help"],
        vec!["vitals", "run", "--help"],
        vec!["vitals", "simulate", "--help"],
        vec!["bench", "vitals", "--help"],
    ] {
        let o = medfed(&args);
        assert!(o.status.success(), "{args:?}");
        assert!(stdout(&o).contains("Usage"), "{args:?}");
    }
    assert!(stdout(&medfed(&["synth", "--help"])).contains("--patients"));
}

#[test]
fn synth_and_pki_write_their_files_and_refuse_to_clobber_a_ca() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("site");
    let o = medfed(&[
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--patients",
        "500",
        "--seed",
        "3",
        "--profile",
        "rural",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for t in medfed_synth::TABLES {
        assert!(
            out.join("omop").join(format!("{t}.parquet")).exists(),
            "{t}"
        );
    }
    let bad = medfed(&["synth", "--out", out.to_str().unwrap(), "--profile", "mars"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cardiac"));

    let pki = dir.path().join("pki");
    let args = [
        "pki",
        "init",
        "--out",
        pki.to_str().unwrap(),
        "--hub",
        "hub",
        "--sites",
        "a,b",
    ];
    assert!(medfed(&args).status.success());
    assert!(pki.join("sites/b/cert.pem").exists() && pki.join("hub/key.pem").exists());
    let again = medfed(&args);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing"));
    assert!(
        !medfed(&[
            "pki",
            "init",
            "--out",
            pki.to_str().unwrap(),
            "--sites",
            "Bad_Name"
        ])
        .status
        .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_prints_json_csv_and_tables_and_fails_loudly_on_refusal() {
    let net = network(2, 5_000).await;
    let (url, token) = (net.net.hub_url.clone(), net.net.token.clone());
    let study = net.net.studies["exact"].clone();
    let run = move |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            medfed(&a)
        })
    };
    let base = |fmt: &str, sql: &str| {
        vec![
            "query".into(),
            "--hub".into(),
            url.clone(),
            "--token".into(),
            token.clone(),
            "--study".into(),
            study.clone(),
            "--format".into(),
            fmt.into(),
            sql.into(),
        ]
    };

    let o = run(base(
        "json",
        "SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY 1 ORDER BY 1",
    ))
    .await
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["columns"], serde_json::json!(["gender_concept_id", "n"]));
    assert_eq!(v["rows"].as_array().unwrap().len(), 2);
    assert_eq!(v["sites"]["north"]["status"], "answered");

    let o = run(base("csv", "SELECT COUNT(*) AS n FROM person"))
        .await
        .unwrap();
    assert_eq!(stdout(&o), "n\n4000\n");

    let o = run(base("table", "SELECT COUNT(*) AS n FROM person"))
        .await
        .unwrap();
    assert!(
        stdout(&o).contains("4000") && stdout(&o).contains("north answered"),
        "{}",
        stdout(&o)
    );

    let o = run(base("table", "SELECT * FROM person")).await.unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("individual rows"));

    let mut no_token = base("json", "SELECT COUNT(*) FROM person");
    no_token.drain(3..5);
    let o = run(no_token).await.unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("401"));
    net.net.shutdown().await;
}

#[test]
fn demo_once_runs_the_examples_and_writes_demo_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("net");
    let o = medfed(&[
        "demo",
        "--once",
        "--dir",
        d.to_str().unwrap(),
        "--sites",
        "2",
        "--patients-per-site",
        "1500",
    ]);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "{}\n{}",
        out,
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("30-day readmission rate"), "{out}");
    assert!(
        out.contains("north answered") && out.contains("south answered"),
        "{out}"
    );
    assert!(
        out.contains("refused: the query returns individual rows"),
        "{out}"
    );
    // The DP example states its mechanism and what each site has left.
    assert!(out.contains("discrete Laplace (OpenDP)"), "{out}");
    assert!(out.contains("ε left: north 0.400, south 0.400"), "{out}");
    // Secure aggregation, exact and with distributed DP noise.
    assert!(
        out.contains("secure aggregation: the hub saw only the sum"),
        "{out}"
    );
    assert!(
        out.contains("distributed discrete Gaussian (OpenDP)"),
        "{out}"
    );
    assert!(out.contains("ε left: north 0.300, south 0.300"), "{out}");
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("demo.json")).unwrap()).unwrap();
    assert!(
        info["hub_url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert!(info["token"].as_str().unwrap().starts_with("mf_"));
    for role in [
        "researcher",
        "auditor",
        "admin",
        "custodian:north",
        "custodian:south",
    ] {
        assert!(
            info["tokens"][role].as_str().unwrap().starts_with("mf_"),
            "{role}"
        );
    }
    assert!(info["studies"]["dp"].as_str().is_some(), "{info}");
    assert!(
        info["studies"]["exact"]
            .as_str()
            .unwrap()
            .starts_with("st-")
    );
    assert!(out.contains("no site has approved study"), "{out}");
    // The trails the demo wrote verify, at the hub and at a site, against the published keys.
    for (db, key) in [
        ("hub/audit.db", "pki/hub/signing.pub"),
        ("sites/north/audit.db", "pki/sites/north/signing.pub"),
    ] {
        let o = medfed(&[
            "audit",
            "verify",
            "--db",
            d.join(db).to_str().unwrap(),
            "--key",
            d.join(key).to_str().unwrap(),
        ]);
        assert!(
            o.status.success(),
            "{db}: {}{}",
            stdout(&o),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(stdout(&o).contains("intact"));
    }
    assert!(
        std::path::Path::new(info["sites"]["north"].as_str().unwrap())
            .join("person.parquet")
            .exists()
    );
    assert!(d.join("hub/hub.toml").exists() && d.join("sites/south/site.toml").exists());
}

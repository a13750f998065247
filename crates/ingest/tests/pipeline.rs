//! Ingestion end to end on public samples: counts, quarantine, Safe Harbor, idempotence,
//! encryption at rest and key rotation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use medfed_ingest::{Inputs, Report, run};
use medfed_store::{SiteStore, StoreConfig};
use serde_json::Value;

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 25).unwrap()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn ingest(site: &Path, inputs: &Inputs) -> Report {
    let report = run(site, inputs, today(), &|_, _, _| {}).unwrap();
    assert!(
        report.balanced(),
        "in ≠ loaded + quarantined: {:#?}",
        report.tables
    );
    report
}

async fn rows(site: &Path, sql: &str) -> Vec<Vec<String>> {
    let store = SiteStore::open(&StoreConfig::omop_dir(site.join("omop")))
        .await
        .unwrap();
    let batches = store
        .context()
        .sql(sql)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| datafusion::arrow::util::display::array_value_to_string(c, r).unwrap())
                    .collect(),
            );
        }
    }
    out
}

async fn count(site: &Path, table: &str) -> usize {
    rows(site, &format!("SELECT COUNT(*) FROM {table}")).await[0][0]
        .parse()
        .unwrap()
}

/// Resources per type in Synthea bundles, counted independently of the parser.
fn resource_counts(files: &[PathBuf]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for f in files {
        let v: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        for e in v["entry"].as_array().unwrap() {
            *out.entry(e["resource"]["resourceType"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    out
}

/// Every name, phone number, SSN and street line of the bundles' patients.
fn identifiers(files: &[PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    for f in files {
        let v: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        for e in v["entry"].as_array().unwrap() {
            let r = &e["resource"];
            if r["resourceType"] != "Patient" {
                continue;
            }
            for n in r["name"].as_array().into_iter().flatten() {
                out.extend(
                    n["given"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|g| g.as_str().map(String::from)),
                );
                out.extend(n["family"].as_str().map(String::from));
            }
            for t in r["telecom"].as_array().into_iter().flatten() {
                out.extend(t["value"].as_str().map(String::from));
            }
            for i in r["identifier"].as_array().into_iter().flatten() {
                out.extend(i["value"].as_str().map(String::from));
            }
            for a in r["address"].as_array().into_iter().flatten() {
                out.extend(
                    a["line"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|l| l.as_str().map(String::from)),
                );
            }
        }
    }
    out
}

/// Every string in every gold table, decrypted.
async fn gold_strings(site: &Path) -> Vec<String> {
    let store = SiteStore::open(&StoreConfig::omop_dir(site.join("omop")))
        .await
        .unwrap();
    let mut out = Vec::new();
    for (table, schema) in store.schemas().await {
        let cols: Vec<&str> = schema
            .fields()
            .iter()
            .filter(|f| f.data_type() == &DataType::Utf8)
            .map(|f| f.name().as_str())
            .collect();
        if cols.is_empty() {
            continue;
        }
        let sql = format!("SELECT {} FROM {table}", cols.join(", "));
        for b in store
            .context()
            .sql(&sql)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
        {
            for c in b.columns() {
                let s = c.as_string::<i32>();
                out.extend(
                    (0..s.len())
                        .filter(|&i| s.is_valid(i))
                        .map(|i| s.value(i).to_string()),
                );
            }
        }
    }
    out
}

fn bundles(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("hospital")
        })
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("practitioner")
        })
        .collect();
    v.sort();
    v
}

async fn synthea_counts_match(files: Vec<PathBuf>) {
    let site = tempfile::tempdir().unwrap();
    let report = ingest(
        site.path(),
        &Inputs {
            fhir: files.clone(),
            ..Inputs::default()
        },
    );
    let want = resource_counts(&files);
    assert_eq!(count(site.path(), "person").await, want["Patient"]);
    assert_eq!(
        count(site.path(), "visit_occurrence").await,
        want["Encounter"]
    );
    assert_eq!(
        count(site.path(), "condition_occurrence").await,
        want["Condition"]
    );
    assert_eq!(
        count(site.path(), "procedure_occurrence").await,
        want.get("Procedure").copied().unwrap_or(0)
    );
    // Immunizations are drug exposures in OMOP.
    assert_eq!(
        count(site.path(), "drug_exposure").await,
        want["Immunization"]
    );
    // Claims, care plans and the like are out of scope: quarantined as unsupported, not lost.
    let unsupported: usize = want
        .iter()
        .filter(|(k, _)| {
            ![
                "Patient",
                "Encounter",
                "Condition",
                "Observation",
                "Procedure",
                "Immunization",
                "MedicationRequest",
            ]
            .contains(&k.as_str())
        })
        .map(|(_, v)| v)
        .sum();
    // (Organizations and Practitioners repeated across bundles are quarantined as duplicates.)
    assert_eq!(report.tables[Report::RECORD].quarantined, unsupported);
    let records: usize = report.records.values().sum();
    assert_eq!(records, want.values().sum::<usize>());
    // Safe Harbor: no name, phone, SSN, MRN or street line of any patient is anywhere in gold.
    let gold = gold_strings(site.path()).await;
    let ids = identifiers(&files);
    assert!(ids.len() >= files.len() * 5);
    for id in ids.iter().filter(|i| i.len() >= 4) {
        assert!(
            !gold.iter().any(|g| g.contains(id.as_str())),
            "`{id}` reached gold"
        );
    }
    // Mapped codes carry standard concepts (COVID-19 → 37311061, body weight → 3025315).
    let covid = rows(
        site.path(),
        "SELECT COUNT(*) FROM condition_occurrence WHERE condition_concept_id = 37311061",
    )
    .await;
    let want_covid: usize = files
        .iter()
        .map(|f| {
            let v: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
            v["entry"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| {
                    e["resource"]["resourceType"] == "Condition"
                        && e["resource"]["code"]["coding"][0]["code"] == "840539006"
                })
                .count()
        })
        .sum();
    assert_eq!(covid[0][0], want_covid.to_string());
    let coverage = report.tables["measurement"].coverage.as_ref().unwrap();
    assert!(
        coverage.mapped > 0
            && coverage
                .unmapped
                .iter()
                .any(|(c, _)| c.starts_with("LOINC:"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn synthea_fixture_bundles_load_with_counts_equal_to_the_inputs() {
    synthea_counts_match(bundles(&fixtures().join("fhir"))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn all_shared_synthea_bundles_load_with_counts_equal_to_the_inputs() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/fhir/synthea_bundles");
    if !dir.exists() {
        eprintln!("skipped: {} is absent", dir.display());
        return;
    }
    synthea_counts_match(bundles(&dir)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reingesting_is_idempotent_and_gold_is_deterministic() {
    let site = tempfile::tempdir().unwrap();
    let inputs = Inputs {
        fhir: bundles(&fixtures().join("fhir")),
        ..Inputs::default()
    };
    let first = ingest(site.path(), &inputs);
    let snapshot = |site: PathBuf| async move {
        let mut all = Vec::new();
        for t in [
            "person",
            "visit_occurrence",
            "measurement",
            "drug_exposure",
            "observation_period",
        ] {
            all.push(rows(&site, &format!("SELECT * FROM {t} ORDER BY 1")).await);
        }
        all
    };
    let before = snapshot(site.path().to_path_buf()).await;
    let again = ingest(site.path(), &inputs);
    assert_eq!(first.new_inputs, 2);
    assert_eq!(again.new_inputs, 0, "same content is stored once");
    assert_eq!(again.duplicates, first.duplicates);
    assert_eq!(snapshot(site.path().to_path_buf()).await, before);
    // A copy of the same bundle under another name: its resources are exact duplicates.
    let copy = site.path().join("copy.json");
    std::fs::copy(&inputs.fhir[0], &copy).unwrap();
    let std::result::Result::Ok(bytes) = std::fs::read(&copy) else {
        panic!()
    };
    std::fs::write(&copy, [bytes, b"\n".to_vec()].concat()).unwrap();
    let dup = ingest(
        site.path(),
        &Inputs {
            fhir: vec![copy],
            ..Inputs::default()
        },
    );
    assert!(dup.duplicates > 0);
    assert_eq!(
        snapshot(site.path().to_path_buf()).await,
        before,
        "duplicates change nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_quarantined_with_reasons_and_crashes_nothing() {
    let site = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let malformed = w(
        "broken.json",
        b"{\"resourceType\": \"Bundle\", \"entry\": [{\"resource\": ",
    );
    let latin1 = w(
        "latin1.json",
        b"{\"resourceType\":\"Patient\",\"id\":\"x\",\"name\":[{\"family\":\"M\xfcller\"}]}",
    );
    let ndjson = w(
        "Patient.000.ndjson",
        b"{\"resourceType\":\"Patient\",\"id\":\"p1\",\"gender\":\"female\",\"birthDate\":\"1970-02-03\"}\n\
          {\"resourceType\":\"Patient\",\"id\":\"p2\",\"birthDate\":\"2199-01-01\"}\n\
          {\"resourceType\":\"Observation\",\"id\":\"o1\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"8480-6\"}]},\"subject\":{\"reference\":\"Patient/p1\"},\"effectiveDateTime\":\"2020-01-01\",\"valueQuantity\":{\"value\":1200,\"code\":\"mm[Hg]\"}}\n\
          {\"resourceType\":\"Observation\",\"id\":\"o2\",\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"2345-7\"}]},\"subject\":{\"reference\":\"Patient/p1\"},\"effectiveDateTime\":\"2020-01-01\",\"valueQuantity\":{\"value\":5.5,\"unit\":\"mmol/L\"}}\n\
          {\"resourceType\":\"Condition\",\"id\":\"c1\",\"code\":{\"coding\":[{\"system\":\"http://snomed.info/sct\",\"code\":\"44054006\"}]},\"subject\":{\"reference\":\"Patient/nobody\"},\"onsetDateTime\":\"2020-01-01\"}\n\
          not json at all\n",
    );
    let hl7 = w(
        "feed.hl7",
        b"MSH|^~\\&|LAB|H|||20200101||ORU^R01|M1|P|2.5\rPID|1||p9^^^^MR||DOE^JANE||19800101|F\rOBX|1|NM|2345-7^Glucose^LN||abc|mg/dL\rOBX|2|NM|8867-4^HR^LN||72|/min\r\nMSH|^~\\&|LAB|H|||2020",
    );
    let report = ingest(
        site.path(),
        &Inputs {
            fhir: vec![malformed, latin1, ndjson],
            hl7: vec![hl7],
            ..Inputs::default()
        },
    );
    let q = &report.quarantine;
    for rule in [
        "parse",
        "encoding",
        "birth_date_range",
        "lab_range",
        "unknown_patient",
        "value_format",
    ] {
        assert!(q.contains_key(rule), "no `{rule}` in {q:?}");
    }
    // The good facts made it: p1 and p9, glucose converted to mg/dL, heart rate from the ORU.
    assert_eq!(count(site.path(), "person").await, 2);
    let glucose = rows(site.path(), "SELECT value_as_number, unit_source_value, unit_concept_id FROM measurement WHERE measurement_concept_id = 3004501").await;
    assert_eq!(glucose.len(), 1);
    assert!(glucose[0][0].starts_with("99.08"), "{glucose:?}");
    assert_eq!(glucose[0][1..], ["mg/dL".to_string(), "8840".to_string()]);
    // The quarantine holds every reject, with its reason, readable only with the key.
    let qstore = {
        let ctx = datafusion::prelude::SessionContext::new();
        let ring =
            medfed_keys::keyring::Keyring::load(&site.path().join("quarantine/keyring.json"))
                .unwrap()
                .unwrap();
        let kek =
            medfed_keys::keyring::KeyFile::open(&medfed_ingest::key_path(site.path())).unwrap();
        let keys = ring.unwrap_table(&kek, "quarantine").unwrap();
        let opts = datafusion::prelude::ParquetReadOptions::default()
            .file_decryption_properties(medfed_store::decryption(&keys));
        ctx.register_parquet(
            "q",
            site.path()
                .join("quarantine/quarantine.parquet")
                .to_str()
                .unwrap(),
            opts,
        )
        .await
        .unwrap();
        ctx
    };
    let n = qstore
        .sql("SELECT COUNT(*) FROM q")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let n = n[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .value(0) as usize;
    assert_eq!(n, q.values().sum::<usize>());
    let reasons = qstore
        .sql("SELECT reason FROM q WHERE rule = 'lab_range'")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let reason =
        datafusion::arrow::util::display::array_value_to_string(reasons[0].column(0), 0).unwrap();
    assert!(
        reason.contains("1200") && reason.contains("8480-6"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hl7_samples_load_and_csv_with_a_mapping() {
    let site = tempfile::tempdir().unwrap();
    let hl7: Vec<PathBuf> = std::fs::read_dir(fixtures().join("hl7"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hl7"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("labs.csv");
    std::fs::write(&csv, "mrn,taken,loinc,result,unit\n10006579,2021-03-04,2345-7,6.1,mmol/L\n10006579,2021-03-05,4548-4,7.2,%\n").unwrap();
    let mapping = dir.path().join("labs.toml");
    std::fs::write(&mapping, "table = \"measurement\"\n[columns]\npatient = \"mrn\"\nstart = \"taken\"\ncode = \"loinc\"\nvalue = \"result\"\nunit = \"unit\"\n[constants]\nvocabulary = \"LOINC\"\n").unwrap();
    let report = ingest(
        site.path(),
        &Inputs {
            hl7: hl7.clone(),
            csv: vec![(csv, mapping)],
            ..Inputs::default()
        },
    );
    // Patients: PATID1234 (three ADT samples: merged, MR-typed PID-3), 10006579 (ADT01-23, also
    // the CSV's patient), 14 (ORU-R01-01), 555-44-4444 (ORU-R01-RMGEAD). The Epic template's
    // PID-7 is the literal `DOB`: quarantined.
    assert_eq!(
        count(site.path(), "person").await,
        4,
        "{:#?}",
        report.tables
    );
    assert_eq!(report.quarantine["date_format"], 1);
    assert!(report.tables["person"].merged >= 2);
    assert!(count(site.path(), "visit_occurrence").await >= 3);
    let hba1c = rows(
        site.path(),
        "SELECT COUNT(*) FROM measurement WHERE measurement_concept_id = 3004410",
    )
    .await;
    assert_eq!(hba1c[0][0], "1");
    // PID names never reach gold.
    let gold = gold_strings(site.path()).await;
    for name in ["DUCK", "DONALD", "EVERYWOMAN", "EVERYMAN"] {
        assert!(
            !gold.iter().any(|g| g.to_uppercase().contains(name)),
            "{name} reached gold"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_are_unreadable_without_the_key_and_survive_rotation() {
    let site = tempfile::tempdir().unwrap();
    ingest(
        site.path(),
        &Inputs {
            fhir: bundles(&fixtures().join("fhir")),
            ..Inputs::default()
        },
    );
    let person = site.path().join("omop/person.parquet");
    // A copy off the machine, without the key: not Parquet any reader can open.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::copy(&person, elsewhere.path().join("person.parquet")).unwrap();
    let file = std::fs::File::open(elsewhere.path().join("person.parquet")).unwrap();
    let Err(err) = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
    else {
        panic!("an encrypted file opened without its key");
    };
    assert!(err.to_string().to_lowercase().contains("encrypt"), "{err}");
    let ctx = datafusion::prelude::SessionContext::new();
    let plain = ctx
        .read_parquet(
            elsewhere.path().join("person.parquet").to_str().unwrap(),
            Default::default(),
        )
        .await;
    assert!(plain.is_err() || plain.unwrap().collect().await.is_err());
    // The bronze copy of the inputs is sealed too.
    let raw = std::fs::read_to_string(&bundles(&fixtures().join("fhir"))[0]).unwrap();
    for f in medfed_ingest::bronze::Bronze::new(site.path()).sealed_files() {
        let b = std::fs::read(f).unwrap();
        assert!(!b.windows(12).any(|w| w == &raw.as_bytes()[..12][..]) || raw.len() < 12);
        assert!(!String::from_utf8_lossy(&b).contains("Schowalter414"));
    }
    // Without the key file the site refuses clearly.
    let key = medfed_ingest::key_path(site.path());
    let saved = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let err = SiteStore::open(&StoreConfig::omop_dir(site.path().join("omop")))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("key file"), "{err}");
    std::fs::write(&key, &saved).unwrap();
    let before = count(site.path(), "person").await;
    let r = medfed_ingest::rotate_key(site.path()).unwrap();
    assert_ne!(r.old, r.new);
    assert!(r.keyrings == 2 && r.sealed >= 2, "{r:?}");
    assert_eq!(
        count(site.path(), "person").await,
        before,
        "rotated tables read transparently"
    );
    // The old key no longer opens anything.
    std::fs::write(&key, &saved).unwrap();
    let err = SiteStore::open(&StoreConfig::omop_dir(site.path().join("omop")))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("wrapped by key"), "{err}");
}

//! Sites whose data came through `medfed ingest` (FHIR Bulk Data NDJSON here) answer federated
//! queries like any other site, from their encrypted tables.

use medfed_devnet::{Devnet, DevnetConfig};
use medfed_ingest::Inputs;
use serde_json::Value;

use crate::support::Net;

/// Writes a Bulk Data export of `n` patients: every third male, every second with type 2
/// diabetes (SNOMED 44054006), one encounter each.
fn export(dir: &std::path::Path, site: usize, n: usize) -> std::path::PathBuf {
    let out = dir.join(format!("export-{site}"));
    std::fs::create_dir_all(&out).unwrap();
    let (mut patients, mut conditions, mut encounters) =
        (String::new(), String::new(), String::new());
    for j in 0..n {
        let id = format!("s{site}-p{j}");
        let gender = if j % 3 == 0 { "male" } else { "female" };
        patients.push_str(&format!(
            "{{\"resourceType\":\"Patient\",\"id\":\"{id}\",\"gender\":\"{gender}\",\"birthDate\":\"{}-05-0{}\",\"name\":[{{\"family\":\"Family{j}\",\"given\":[\"Given{j}\"]}}]}}\n",
            1950 + j % 40,
            1 + j % 9
        ));
        encounters.push_str(&format!(
            "{{\"resourceType\":\"Encounter\",\"id\":\"{id}-e\",\"class\":{{\"code\":\"AMB\"}},\"subject\":{{\"reference\":\"Patient/{id}\"}},\"period\":{{\"start\":\"2021-02-0{}T09:00:00Z\",\"end\":\"2021-02-0{}T10:00:00Z\"}}}}\n",
            1 + j % 9,
            1 + j % 9
        ));
        if j % 2 == 0 {
            conditions.push_str(&format!(
                "{{\"resourceType\":\"Condition\",\"id\":\"{id}-c\",\"code\":{{\"coding\":[{{\"system\":\"http://snomed.info/sct\",\"code\":\"44054006\"}}]}},\"subject\":{{\"reference\":\"Patient/{id}\"}},\"encounter\":{{\"reference\":\"Encounter/{id}-e\"}},\"onsetDateTime\":\"2021-02-01\"}}\n"
            ));
        }
    }
    std::fs::write(out.join("Patient.000.ndjson"), patients).unwrap();
    std::fs::write(out.join("Encounter.000.ndjson"), encounters).unwrap();
    std::fs::write(out.join("Condition.000.ndjson"), conditions).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_federated_query_runs_over_two_ingested_sites() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [30, 45];
    let ingest: Vec<Inputs> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| Inputs {
            fhir: vec![export(dir.path(), i, n)],
            ..Inputs::default()
        })
        .collect();
    let cfg = DevnetConfig {
        sites: 2,
        ingest,
        site_deadline_ms: 20_000,
        ..DevnetConfig::new(dir.path().join("net"))
    };
    let net = Devnet::start(&cfg, |_, _| {}).await.unwrap();
    // The tables on disk are encrypted; the sites read them with their key files.
    assert!(parquet_without_key_fails(
        &net.omop_dirs[0].join("person.parquet")
    ));
    let net = Net {
        net,
        dir,
        http: reqwest::Client::new(),
    };
    let body = net
        .query_ok("SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY gender_concept_id ORDER BY gender_concept_id")
        .await;
    let rows: Vec<(i64, i64)> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_i64().unwrap(), r[1].as_i64().unwrap()))
        .collect();
    let males: i64 = sizes.iter().map(|&n| n.div_ceil(3) as i64).sum();
    let total: i64 = sizes.iter().sum::<usize>() as i64;
    assert_eq!(rows, vec![(8507, males), (8532, total - males)], "{body}");
    let body = net
        .query_ok(
            "SELECT COUNT(*) AS n FROM condition_occurrence WHERE condition_concept_id = 201826",
        )
        .await;
    let diabetic: i64 = sizes.iter().map(|&n| n.div_ceil(2) as i64).sum();
    assert_eq!(body["rows"][0][0], Value::from(diabetic), "{body}");
    net.net.shutdown().await;
}

fn parquet_without_key_fails(path: &std::path::Path) -> bool {
    let file = std::fs::File::open(path).unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).is_err()
}

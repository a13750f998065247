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

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ingest/tests/fixtures")
}

#[test]
fn medfed_ingest_prints_the_quality_report_and_refuses_a_csv_without_mapping() {
    use crate::cli::{medfed, stdout};
    let site = tempfile::tempdir().unwrap();
    let site_s = site.path().to_str().unwrap();
    let hl7 = fixtures().join("hl7/ADT01-23.hl7");
    let o = medfed(&["ingest", "--site", site_s, "--hl7", hl7.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert!(
        out.contains("every record loaded or quarantined: yes"),
        "{out}"
    );
    assert!(
        out.contains("person") && out.contains("visit_occurrence"),
        "{out}"
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(site.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["tables"]["person"]["rows"], 1);
    let o = medfed(&["ingest", "--site", site_s, "--csv", "x.csv"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("mapping"));
    let o = medfed(&["site", "rotate-key", "--site", site_s]);
    assert!(
        o.status.success() && stdout(&o).contains("retired"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn medfed_deid_jsonl_speaks_presidio_offsets_and_types() {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_medfed"))
        .args(["deid", "--jsonl"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all("{\"text\": \"Zoë called 617-555-0199 from j.doe@example.com\"}\n{\"text\": \"nothing here\"}\n".as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    // "Zoë" is no English word and a verb follows: a person.
    assert_eq!(
        lines[0]["redacted"],
        "<PERSON> called <PHONE_NUMBER> from <EMAIL_ADDRESS>"
    );
    let spans = lines[0]["spans"].as_array().unwrap();
    assert_eq!(spans[0]["type"], "PERSON");
    assert_eq!(
        (spans[0]["start"].as_u64(), spans[0]["end"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(spans[1]["type"], "PHONE_NUMBER");
    assert_eq!(
        (spans[1]["start"].as_u64(), spans[1]["end"].as_u64()),
        (Some(11), Some(23)),
        "characters, not bytes"
    );
    assert!(spans[2]["score"].as_f64().unwrap() > 0.5);
    assert_eq!(lines[1]["spans"], serde_json::json!([]));
}

/// Kills the listener even when an assertion fails.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_mllp_listener_stores_messages_and_acks_or_nacks() {
    use std::io::{Read, Write};
    let site = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_medfed"))
            .args([
                "site",
                "listen-hl7",
                "--site",
                site.path().to_str().unwrap(),
                "--port",
                &port.to_string(),
            ])
            .env("MEDFED_LOG", "error")
            .spawn()
            .unwrap(),
    );
    let mut stream = (0..100)
        .find_map(|_| {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .or_else(|| {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    None
                })
        })
        .expect("listener up");
    let message = std::fs::read_to_string(fixtures().join("hl7/ORU-R01-RMGEAD.hl7")).unwrap();
    for (body, want) in [
        (message.as_str(), "MSA|AA|CNTRL-3456"),
        ("not hl7", "MSA|AR|"),
    ] {
        stream
            .write_all(&medfed_ingest::source::hl7::mllp::frame_bytes(body))
            .unwrap();
        let mut buf = Vec::new();
        while !buf.ends_with(&[0x1c, 0x0d]) {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "listener closed");
            buf.extend_from_slice(&chunk[..n]);
        }
        let reply = String::from_utf8_lossy(&buf);
        assert!(reply.contains(want), "{reply}");
    }
    drop(child);
    // The stored message loads on the next ingest.
    let report = medfed_ingest::run(
        site.path(),
        &Inputs::default(),
        chrono::Utc::now().date_naive(),
        &|_, _, _| {},
    )
    .unwrap();
    assert_eq!(report.tables["measurement"].rows, 1, "{:#?}", report.tables);
}

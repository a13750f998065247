//! `medfed vitals run` as a site engineer runs it: JSON lines in, alerts out, dead letters kept.

use crate::cli::{medfed, stdout};

#[test]
fn vitals_run_writes_alerts_and_dead_letters_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("vitals.jsonl");
    let lines = [
        r#"{"patient": "p1", "ts": "2026-01-01T10:00:00Z", "hr": 80, "spo2": 97}"#,
        r#"{"patient": "p1", "ts": "2026-01-01T10:00:05Z", "hr": 126}"#,
        r#"{"patient": "p1", "ts": "2026-01-01T10:00:10Z", "hr": 127}"#,
        "{broken",
        r#"{"patient": "p2", "ts": "2026-01-01T10:00:08Z", "spo2": 86}"#, // 2 s out of order
    ];
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let dead = dir.path().join("dead.jsonl");
    let out = medfed(&[
        "vitals",
        "run",
        "--input",
        input.to_str().unwrap(),
        "--dead-letters",
        dead.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    // In event-time order: p1's 10:00:05 before p2's 10:00:08, which arrived after 10:00:10.
    assert_eq!(alerts[0]["rule"], "hr_high");
    assert_eq!(alerts[0]["value"], 126.0);
    assert_eq!(alerts[1]["patient"], "p2");
    assert_eq!(alerts[1]["rule"], "spo2_low");
    assert_eq!(alerts[1]["severity"], "critical");
    for key in [
        "patient",
        "rule",
        "severity",
        "value",
        "episode_start",
        "ts",
    ] {
        assert!(alerts[1].get(key).is_some(), "{key} in {}", alerts[1]);
    }
    let dead = std::fs::read_to_string(dead).unwrap();
    let letter: serde_json::Value = serde_json::from_str(dead.trim()).unwrap();
    assert_eq!(letter["raw"], "{broken");
    assert!(letter["reason"].as_str().unwrap().starts_with("malformed"));
    // A rules file that cannot work is refused, not half-applied.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nname = \"x\"\nvital = \"hr\"\nseverity = \"high\"\n",
    )
    .unwrap();
    let out = medfed(&[
        "vitals",
        "run",
        "--config",
        bad.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("above / below"));
}

/// Alerts as (patient, rule, episode start): what makes one alert the same as another.
fn alert_keys(json_lines: &str) -> Vec<(String, String, String)> {
    let mut keys: Vec<_> = json_lines
        .lines()
        .map(|l| {
            let a: serde_json::Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| a[k].as_str().unwrap().to_string();
            (s("patient"), s("rule"), s("episode_start"))
        })
        .collect();
    keys.sort();
    keys
}

/// The site's audit entries for vitals alerts: their request ids (alert ids).
fn audited_alerts(rt: &tokio::runtime::Runtime, db: &str) -> Vec<String> {
    rt.block_on(async {
        let db = medfed_audit::Database::connect(db, 1).await.unwrap();
        // Before the consumer has created the trail there is nothing to read.
        let records = medfed_audit::records(&db, 0, 1_000_000)
            .await
            .unwrap_or_default();
        db.pool.close().await;
        records
            .into_iter()
            .filter(|r| r.entry.action == "vitals.alert")
            .map(|r| r.entry.request_id.unwrap())
            .collect()
    })
}

#[test]
fn vitals_over_nats_survive_a_killed_consumer_with_every_alert_once() {
    let Ok(url) = std::env::var("MEDFED_TEST_NATS") else {
        eprintln!("skipped: set MEDFED_TEST_NATS=nats://127.0.0.1:4222 to run against NATS");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("CLI{}", std::process::id());
    let prefix = tag.to_lowercase();
    let (stream, out_stream) = (format!("{tag}_IN"), format!("{tag}_OUT"));
    let nats = [
        "--nats",
        &url,
        "--prefix",
        &prefix,
        "--stream",
        &stream,
        "--out-stream",
        &out_stream,
    ];
    let sim = [
        "vitals",
        "simulate",
        "--patients",
        "40",
        "--events",
        "8000",
        "--rate",
        "10",
        "--deteriorations-per-hour",
        "3",
        "--seed",
        "5",
        "--start",
        "2026-01-01T00:00:00Z",
    ];
    // What the engine alone makes of the simulated ward.
    let events = dir.path().join("events.jsonl");
    let printed = medfed(&sim);
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    std::fs::write(&events, &printed.stdout).unwrap();
    let alone = medfed(&["vitals", "run", "--input", events.to_str().unwrap()]);
    let want = alert_keys(&stdout(&alone));
    assert!(want.len() >= 20, "{} alerts", want.len());
    // The same ward published to JetStream.
    let published = medfed(&[&sim[..], &nats[..], &["--fast"]].concat());
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );

    // Without the audit trail the consumer refuses to start.
    let refused = medfed(&[&["vitals", "run"][..], &nats[..]].concat());
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--audit-db"));

    let key = medfed_protocol::signing::generate();
    let (key_file, _) = medfed_protocol::signing::write_pair(dir.path(), &key).unwrap();
    let db = dir.path().join("audit.db").to_str().unwrap().to_string();
    let state = dir.path().join("state");
    let consumer = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_medfed"))
            .args(["vitals", "run"])
            .args(nats)
            .args(["--state", state.to_str().unwrap(), "--audit-db", &db])
            .args([
                "--signing-key",
                key_file.to_str().unwrap(),
                "--site",
                "north",
            ])
            .args(["--checkpoint-events", "50", "--checkpoint-ms", "20"])
            .env("MEDFED_LOG", "error")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let wait_for = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let got = audited_alerts(&rt, &db).len();
            if got >= n {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{got} of {n} alerts after 60 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    // SIGKILL halfway: no checkpoint, no goodbye.
    let mut first = consumer();
    wait_for(want.len() / 2);
    first.kill().unwrap();
    first.wait().unwrap();
    let second = consumer();
    wait_for(want.len());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SIGTERM: a clean stop prints the run's figures.
    let term = std::process::Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let done = second.wait_with_output().unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(stats["broker_duplicates"], 0, "{stats}");

    let ids = audited_alerts(&rt, &db);
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(
        (ids.len(), unique.len()),
        (want.len(), want.len()),
        "each alert audited once"
    );
    // The alerts on the output subject: each exactly once, the same as the engine's alone.
    let got = rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(url.as_str()).await.unwrap());
        let out = js.get_stream(&out_stream).await.unwrap();
        let last = out.cached_info().state.last_sequence;
        let mut lines = String::new();
        for seq in 1..=last {
            let m = out.get_raw_message(seq).await.unwrap();
            if m.subject.as_str() == format!("{prefix}.alerts") {
                lines.push_str(std::str::from_utf8(&m.payload).unwrap());
                lines.push('\n');
            }
        }
        js.delete_stream(&stream).await.unwrap();
        js.delete_stream(&out_stream).await.unwrap();
        lines
    });
    assert_eq!(alert_keys(&got), want);
    // The trail still verifies with the site's public key.
    let verify = medfed(&[
        "audit",
        "verify",
        "--db",
        &db,
        "--key",
        dir.path().join("signing.pub").to_str().unwrap(),
    ]);
    assert!(verify.status.success(), "{}", stdout(&verify));
}

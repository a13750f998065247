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
        r#"{"patient": "p2", "ts": "2026-01-01T10:00:02Z", "spo2": 86}"#,
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
    assert_eq!(alerts[0]["patient"], "p2");
    assert_eq!(alerts[0]["rule"], "spo2_low");
    assert_eq!(alerts[0]["severity"], "critical");
    assert_eq!(alerts[1]["rule"], "hr_high");
    assert_eq!(alerts[1]["value"], 126.0);
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

use std::collections::BTreeMap;

use medfed_core::study::StudyTerms;
use regorus::{Engine, Value};

use crate::input::*;
use crate::*;

/// Runs every `test_*` rule of a `*_test.rego` file, as `opa test` would.
fn run_rego_tests(policy: &str, tests: &str, package: &str) {
    let mut engine = Engine::new();
    engine
        .add_policy("policy.rego".into(), policy.into())
        .unwrap();
    engine.add_policy("test.rego".into(), tests.into()).unwrap();
    let names: Vec<&str> = tests
        .lines()
        .filter_map(|l| l.strip_prefix("test_"))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert!(names.len() >= 8, "found only {} tests", names.len());
    let mut failed = Vec::new();
    for name in &names {
        let v = engine
            .eval_rule(format!("data.{package}.test_{name}"))
            .unwrap();
        if v != Value::from(true) {
            failed.push(*name);
        }
    }
    assert!(
        failed.is_empty(),
        "failing Rego tests in {package}: {failed:?}"
    );
}

#[test]
fn hub_policy_tests_pass() {
    run_rego_tests(
        DEFAULT_HUB_POLICY,
        include_str!("../../../policies/hub_test.rego"),
        "medfed.hub_test",
    );
}

#[test]
fn site_policy_tests_pass() {
    run_rego_tests(
        DEFAULT_SITE_POLICY,
        include_str!("../../../policies/site_test.rego"),
        "medfed.site_test",
    );
}

fn terms() -> StudyTerms {
    StudyTerms::exact_sql(&["person"])
}

fn site_input(approval: &str, tables: &[&str]) -> SiteInput {
    SiteInput {
        version: INPUT_VERSION,
        site: "north".into(),
        researcher: Subject {
            id: "rita".into(),
            roles: vec!["researcher".into()],
            sites: vec![],
            via: "token".into(),
        },
        study: SiteStudyDoc {
            id: "s1".into(),
            title: "t".into(),
            approval: approval.into(),
            approved_by: Some("nora".into()),
            terms: terms(),
        },
        request: RequestDoc {
            id: "r1".into(),
            analysis: "sql".into(),
            tables: tables.iter().map(|t| t.to_string()).collect(),
            columns: BTreeMap::new(),
            secure_aggregation: false,
        },
        now: Now::at(1_700_000_000),
    }
}

#[test]
fn the_typed_site_input_is_what_site_rego_reads() {
    let policy = Policy::from_source("site.rego", DEFAULT_SITE_POLICY, SITE_RULE).unwrap();
    let d = policy
        .evaluate(&site_input("approved", &["person"]))
        .unwrap();
    assert!(d.allow, "{d:?}");
    assert_eq!(d.extra["min_cell_count"], 10);
    let d = policy
        .evaluate(&site_input("rejected", &["person", "death"]))
        .unwrap();
    assert!(!d.allow);
    assert_eq!(
        d.reasons,
        [
            "table death is outside study s1's approved tables",
            "this site's custodian has not approved the study"
        ]
    );
}

#[test]
fn the_typed_hub_input_is_what_hub_rego_reads() {
    let policy = Policy::from_source("hub.rego", DEFAULT_HUB_POLICY, HUB_RULE).unwrap();
    let input = |roles: &[&str], action: &str| HubInput {
        version: INPUT_VERSION,
        action: action.into(),
        subject: Subject {
            id: "al".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            sites: vec![],
            via: "jwt".into(),
        },
        study: None,
        site: None,
        now: Now::current(),
    };
    assert!(
        policy
            .evaluate(&input(&["auditor"], "audit.read"))
            .unwrap()
            .allow
    );
    let d = policy
        .evaluate(&input(&["researcher"], "audit.read"))
        .unwrap();
    assert!(!d.allow);
    assert_eq!(d.reason(), "role(s) [\"researcher\"] may not audit.read");
}

#[test]
fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_old_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.rego");
    std::fs::write(&path, DEFAULT_SITE_POLICY).unwrap();
    let policy = Policy::from_file(&path, SITE_RULE).unwrap();
    assert!(!policy.reload_if_changed().unwrap());
    assert!(
        policy
            .evaluate(&site_input("approved", &["person"]))
            .unwrap()
            .allow
    );

    // The custodian blocks the study (the file's length changes, so the stamp does too).
    let blocked =
        DEFAULT_SITE_POLICY.replace("blocked_studies := set()", "blocked_studies := {\"s1\"}");
    std::fs::write(&path, &blocked).unwrap();
    assert!(policy.reload_if_changed().unwrap());
    let d = policy
        .evaluate(&site_input("approved", &["person"]))
        .unwrap();
    assert_eq!(d.reasons, ["study s1 is blocked at this site"]);

    // A typo is refused; the blocking policy stays in force.
    std::fs::write(&path, "package medfed.site\nallow if {").unwrap();
    assert!(policy.reload_if_changed().is_err());
    assert!(
        !policy
            .evaluate(&site_input("approved", &["person"]))
            .unwrap()
            .allow
    );
}

#[test]
fn a_policy_without_a_decision_denies() {
    let p = Policy::from_source(
        "x.rego",
        "package x\nimport rego.v1\nd := 1 if input.never",
        "data.x.d",
    )
    .unwrap();
    let d = p.evaluate(&serde_json::json!({})).unwrap();
    assert!(!d.allow);
    assert!(d.reason().contains("no decision"));
}

#[test]
fn clock_fields() {
    // 2023-11-14T22:13:20Z was a Tuesday.
    let now = Now::at(1_700_000_000);
    assert_eq!((now.hour_utc, now.weekday), (22, 1));
}

use super::*;

/// A sample `s` seconds after 10:00 with the given JSON fields.
fn at(patient: &str, s: i64, fields: &str) -> String {
    let ts = chrono::DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z").unwrap()
        + chrono::TimeDelta::seconds(s);
    let sep = if fields.is_empty() { "" } else { ", " };
    format!(
        r#"{{"patient": "{patient}", "ts": "{}"{sep}{fields}}}"#,
        ts.to_rfc3339()
    )
}

fn run(rules: RuleSet, lines: &[String]) -> Output {
    let mut engine = Engine::new(rules);
    let mut out = Output::default();
    for l in lines {
        out.extend(engine.push_line(l));
    }
    out.extend(engine.flush());
    out
}

fn rules_named(out: &Output) -> Vec<(&str, &str, i64)> {
    out.alerts
        .iter()
        .map(|a| (a.patient.as_str(), a.rule.as_str(), a.value as i64))
        .collect()
}

#[test]
fn the_seeds_thresholds_fire_once_per_episode_and_re_arm() {
    let lines = [
        at("p1", 0, r#""hr": 80"#),
        at("p1", 5, r#""hr": 125"#),  // hr_high opens and alerts
        at("p1", 10, r#""hr": 128"#), // same episode: no second alert
        at("p1", 15, r#""hr": 135"#), // hr_very_high is its own episode
        at("p1", 20, r#""hr": 90"#),  // normal: both start their minute to re-arm
        at("p1", 25, r#""hr": 121"#), // 5 s later: still hr_high's episode, no alert
        at("p2", 0, r#""sbp": 85, "spo2": 88"#),
        at("p2", 1, r#""sbp": 75"#),
        at("p1", 90, r#""hr": 90"#), // hr_very_high re-armed (70 s normal); hr_high's minute starts again
        at("p1", 155, r#""hr": 90"#), // hr_high re-armed
        at("p1", 160, r#""hr": 121"#), // a new episode, a new alert
    ];
    // p2's feed lags p1's by 25 s: within a 30 s allowance (the default 5 s would call it late).
    let rules = RuleSet::from_toml("lateness_s = 30").unwrap();
    let out = run(rules, &lines);
    assert!(out.dead.is_empty(), "{:?}", out.dead);
    // In event-time order across patients.
    assert_eq!(
        rules_named(&out),
        [
            ("p2", "sbp_low", 85),
            ("p2", "spo2_low", 88),
            ("p2", "sbp_very_low", 75),
            ("p1", "hr_high", 125),
            ("p1", "hr_very_high", 135),
            ("p1", "hr_high", 121),
        ]
    );
    let spo2 = out.alerts.iter().find(|a| a.rule == "spo2_low").unwrap();
    assert_eq!(spo2.severity, Severity::Critical);
    // The episode start is when the value first crossed, not when the alert fired.
    let again = out.alerts.iter().find(|a| a.value == 121.0).unwrap();
    assert_eq!(again.episode_start, again.ts);
}

#[test]
fn a_sustained_window_waits_for_event_time_and_a_normal_sample_resets_it() {
    let text = r#"
        [[rule]]
        name = "tachycardia"
        vital = "hr"
        above = 120
        severity = "high"
        sustain_s = 60
    "#;
    let rules = RuleSet::from_toml(text).unwrap();
    let lines = [
        at("p", 0, r#""hr": 130"#),
        at("p", 30, r#""hr": 131"#),
        at("p", 50, r#""hr": 100"#), // interrupted: the window restarts
        at("p", 60, r#""hr": 140"#),
        at("p", 100, r#""hr": 141"#), // 40 s into the new episode: not yet
        at("p", 120, r#""hr": 142"#), // 60 s: alert, with the episode's start
        at("p", 200, r#""hr": 150"#), // still the same episode
    ];
    let out = run(rules, &lines);
    assert_eq!(out.alerts.len(), 1, "{:?}", out.alerts);
    let a = &out.alerts[0];
    assert_eq!((a.rule.as_str(), a.value), ("tachycardia", 142.0));
    assert_eq!((a.ts - a.episode_start).num_seconds(), 60);
}

#[test]
fn out_of_order_samples_are_reordered_and_too_late_ones_dead_lettered() {
    let text = r#"
        lateness_s = 30
        [[rule]]
        name = "tachycardia"
        vital = "hr"
        above = 120
        severity = "high"
        sustain_s = 20
    "#;
    // Arrival order differs from event time; in event time the rate is high from 0 to 25.
    let lines = [
        at("p", 0, r#""hr": 130"#),
        at("p", 25, r#""hr": 130"#),
        at("p", 10, r#""hr": 100"#), // 15 s late, within 30 s: breaks the episode in time
        at("p", 100, r#""hr": 80"#), // watermark moves to 70
        at("p", 40, r#""hr": 150"#), // 30 s behind the watermark: dead-lettered
    ];
    let out = run(RuleSet::from_toml(text).unwrap(), &lines);
    // In event-time order: 130 @0, 100 @10 (reset), 130 @25 (new episode, only 0 s), 80 @100.
    assert!(out.alerts.is_empty(), "{:?}", out.alerts);
    assert_eq!(out.dead.len(), 1);
    assert!(out.dead[0].reason.starts_with("late"), "{:?}", out.dead);
    assert!(out.dead[0].raw.contains("150"));
    // The same samples in time order (no lateness at all) alert: the reordering mattered.
    let ordered = [at("p", 0, r#""hr": 130"#), at("p", 25, r#""hr": 130"#)];
    assert_eq!(
        run(RuleSet::from_toml(text).unwrap(), &ordered)
            .alerts
            .len(),
        1
    );
}

#[test]
fn malformed_events_are_dead_lettered_with_the_reason() {
    let lines = [
        "not json".to_string(),
        r#"{"patient": "p", "ts": "yesterday", "hr": 80}"#.to_string(),
        r#"{"patient": "", "ts": "2026-01-01T10:00:00Z"}"#.to_string(),
        at("p", 0, r#""hr": -5"#),
        at("p", 0, r#""spo2": 140"#),
        at("p", 0, r#""heart": 80"#),
        at("p", 0, r#""hr": 80"#),
    ];
    let out = run(RuleSet::default(), &lines);
    assert_eq!(out.dead.len(), 6, "{:?}", out.dead);
    assert!(out.dead.iter().all(|d| d.reason.starts_with("malformed")));
    assert!(
        out.dead[3].reason.contains("Hr = -5"),
        "{}",
        out.dead[3].reason
    );
    assert!(
        out.dead[5].reason.contains("heart"),
        "{}",
        out.dead[5].reason
    );
    assert!(out.alerts.is_empty());
}

#[test]
fn units_override_thresholds_and_switch_rules_off() {
    let text = r#"
        [units.icu.hr_high]
        threshold = 140
        [units.icu.hr_very_high]
        enabled = false
    "#;
    let rules = RuleSet::from_toml(text).unwrap();
    let lines = [
        at("ward", 0, r#""hr": 135, "unit": "ward3""#),
        at("icu", 0, r#""hr": 135, "unit": "icu""#),
        at("icu", 5, r#""hr": 145, "unit": "icu""#),
    ];
    let out = run(rules, &lines);
    assert_eq!(
        rules_named(&out),
        [
            ("ward", "hr_high", 135),
            ("ward", "hr_very_high", 135),
            ("icu", "hr_high", 145)
        ]
    );
    let err = RuleSet::from_toml("[units.icu.no_such_rule]\nthreshold = 1").unwrap_err();
    assert!(err.to_string().contains("no_such_rule"), "{err}");
    let err = RuleSet::from_toml("[[rule]]\nname = \"x\"\nvital = \"hr\"\nseverity = \"high\"")
        .unwrap_err();
    assert!(err.to_string().contains("above / below"), "{err}");
}

#[test]
fn news2_alerts_from_the_latest_fresh_vitals_of_a_patient() {
    // Each parameter arrives on its own sample; the score exists once all five are fresh.
    let lines = [
        at("p", 0, r#""rr": 22"#),
        at("p", 1, r#""spo2": 94"#),
        at("p", 2, r#""sbp": 105"#),
        at("p", 3, r#""hr": 95"#),
        at("p", 4, r#""temp": 38.4"#), // 2 + 1 + 1 + 1 + 1 = 6: urgent
        at("p", 5, r#""rr": 26"#),     // 3 + 1 + 1 + 1 + 1 = 7: emergency
        at("q", 0, r#""rr": 26, "spo2": 97, "sbp": 120, "hr": 70"#), // no temperature: no score
        at("q", 2000, r#""temp": 37.0"#), // the others are stale by now: still no score
    ];
    let out = run(RuleSet::default(), &lines);
    assert_eq!(
        rules_named(&out),
        [("p", "news2_urgent", 6), ("p", "news2_emergency", 7)]
    );
}

#[test]
fn an_engine_restored_from_its_snapshot_goes_on_exactly_as_the_original() {
    let mut sim = crate::simulate::Simulator::new(&crate::simulate::SimConfig {
        patients: 20,
        deteriorations_per_hour: 6.0,
        seed: 4,
    });
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    // Samples 0.5 s apart, a few of them swapped so the reorder buffer holds some.
    let mut lines: Vec<String> = (0..3000)
        .map(|i| {
            let e = sim.sample(start + chrono::TimeDelta::milliseconds(i * 500));
            serde_json::to_string(&e).unwrap()
        })
        .collect();
    for i in (7..lines.len()).step_by(13) {
        lines.swap(i, i - 3);
    }
    let whole = run(RuleSet::default(), &lines);
    assert!(whole.alerts.len() > 10, "{} alerts", whole.alerts.len());
    for split in [1, 500, 1777, 2999] {
        let mut first = Engine::new(RuleSet::default());
        let mut out = Output::default();
        for l in &lines[..split] {
            out.extend(first.push_line(l));
        }
        let saved = serde_json::to_string(&first.snapshot()).unwrap();
        let mut second = Engine::restore(RuleSet::default(), serde_json::from_str(&saved).unwrap());
        for l in &lines[split..] {
            out.extend(second.push_line(l));
        }
        out.extend(second.flush());
        assert_eq!(out, whole, "split at {split}");
    }
}

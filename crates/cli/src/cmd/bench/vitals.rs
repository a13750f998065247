//! `medfed bench vitals`: the vitals rule engine's events per second on one core, in process
//! (parsing included, and without it), on a synthetic ward whose patients sometimes deteriorate.

use std::time::Instant;

use medfed_stream::{Engine, RuleSet, VitalsEvent};
use rand::{Rng, SeedableRng};
use serde_json::json;

#[derive(clap::Args)]
pub struct VitalsArgs {
    /// Events to push.
    #[arg(long, default_value_t = 2_000_000)]
    events: usize,
    /// Patients they are spread over.
    #[arg(long, default_value_t = 1_000)]
    patients: usize,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    json: bool,
}

/// One sample a second per patient, round robin; a patient in a bad spell (1 % of the time)
/// runs a high heart rate and low saturation.
fn events(a: &VitalsArgs) -> Vec<VitalsEvent> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("a valid time")
        .to_utc();
    let patients = a.patients.max(1);
    (0..a.events)
        .map(|i| {
            let bad = rng.random_bool(0.01);
            VitalsEvent {
                patient: format!("p{}", i % patients),
                ts: start + chrono::TimeDelta::seconds((i / patients) as i64),
                device: None,
                unit: None,
                hr: Some(if bad { 135 } else { rng.random_range(60..100) }),
                sbp: Some(rng.random_range(100..150)),
                dbp: Some(rng.random_range(60..90)),
                spo2: Some(if bad { 88 } else { rng.random_range(94..100) }),
                rr: Some(rng.random_range(12..20)),
                temp: Some(36.5 + rng.random_range(0.0..1.0)),
            }
        })
        .collect()
}

pub fn run(a: VitalsArgs) -> anyhow::Result<()> {
    let samples = events(&a);
    let lines: Vec<String> = samples
        .iter()
        .map(|e| serde_json::to_string(e).expect("events serialise"))
        .collect();
    let time = |f: &mut dyn FnMut(&mut Engine) -> usize| {
        let mut engine = Engine::new(RuleSet::default());
        let t = Instant::now();
        let alerts = f(&mut engine) + engine.flush().alerts.len();
        (t.elapsed().as_secs_f64(), alerts)
    };
    let (typed_s, typed_alerts) =
        time(&mut |e| samples.iter().map(|s| e.push(s.clone()).alerts.len()).sum());
    let (json_s, json_alerts) =
        time(&mut |e| lines.iter().map(|l| e.push_line(l).alerts.len()).sum());
    anyhow::ensure!(typed_alerts == json_alerts, "parsing changed the alerts");
    let n = samples.len() as f64;
    let out = json!({
        "events": samples.len(), "patients": a.patients, "alerts": typed_alerts,
        "events_per_s_engine": n / typed_s, "events_per_s_with_json_parsing": n / json_s,
    });
    if a.json {
        println!("{out}");
    } else {
        println!(
            "vitals rule engine, one core: {} events over {} patients, {} alerts\n  \
             engine only:       {:>12.0} events/s\n  with JSON parsing: {:>12.0} events/s",
            samples.len(),
            a.patients,
            typed_alerts,
            n / typed_s,
            n / json_s
        );
    }
    Ok(())
}

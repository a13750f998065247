//! One patient's life in a hospital's records: demographics, conditions with comorbidity,
//! visits (outpatient, ER, inpatient with 30-day readmissions), drugs, labs and vitals, death.
//!
//! Rates are chosen to be plausible for a Western hospital population (hypertension ~30% of
//! adults over 55, type 2 diabetes ~10–20% by age, all-cause 30-day readmission ~10–20% of
//! admissions, higher with heart failure, CKD and COPD), not fitted to any one dataset.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Poisson};

use crate::chunk::Chunk;
use crate::concepts::*;
use crate::profile::Profile;

/// First day of the simulated record (2015-01-01) as days since the Unix epoch.
pub const RECORD_START: i32 = 16_436;
/// Last day of the simulated record (2025-12-31) as days since the Unix epoch.
pub const RECORD_END: i32 = 20_453;
/// The year ages are computed against.
pub const REFERENCE_YEAR: i32 = 2025;
const DAY_US: i64 = 86_400_000_000;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> usize {
    if lambda <= 0.0 {
        return 0;
    }
    Poisson::new(lambda)
        .map(|p| p.sample(rng) as usize)
        .unwrap_or(0)
}

fn uniform_day(rng: &mut ChaCha8Rng, from: i32, to: i32) -> i32 {
    if to <= from {
        from
    } else {
        rng.random_range(from..=to)
    }
}

/// Base prevalence of each condition at a given age, before profile and comorbidity factors.
fn base_prevalence(c: usize, age: f64) -> f64 {
    let s = |mid: f64, width: f64| sigmoid((age - mid) / width);
    match c {
        C_T2D => 0.01 + 0.22 * s(55.0, 10.0),
        C_HTN => 0.02 + 0.55 * s(55.0, 10.0),
        C_AMI => 0.002 + 0.06 * s(65.0, 8.0),
        C_HF => 0.002 + 0.09 * s(70.0, 8.0),
        C_CKD => 0.005 + 0.12 * s(65.0, 10.0),
        C_COPD => 0.003 + 0.09 * s(60.0, 10.0),
        C_ASTHMA => 0.08,
        C_OBESITY => {
            if age < 18.0 {
                0.12
            } else {
                0.30
            }
        }
        C_AF => 0.001 + 0.10 * s(72.0, 8.0),
        C_HLD => 0.03 + 0.35 * s(55.0, 10.0),
        C_DEPRESSION => 0.08,
        C_PNEUMONIA => 0.02 + 0.06 * s(70.0, 10.0),
        _ => 0.0,
    }
}

/// Comorbidity multiplier: conditions decided earlier (lower index, or obesity) raise later ones.
fn comorbidity(c: usize, has: &[bool; CONDITIONS.len()]) -> f64 {
    let f = |cond: usize, x: f64| if has[cond] { x } else { 1.0 };
    match c {
        C_T2D => f(C_OBESITY, 2.0),
        C_HTN => f(C_OBESITY, 1.4) * f(C_T2D, 1.5),
        C_AMI => f(C_HTN, 1.8) * f(C_T2D, 1.6),
        C_HF => f(C_AMI, 3.0) * f(C_HTN, 1.5),
        C_CKD => f(C_T2D, 2.2) * f(C_HTN, 1.6),
        C_AF => f(C_HF, 2.0) * f(C_HTN, 1.3),
        C_HLD => f(C_T2D, 1.5) * f(C_OBESITY, 1.3),
        C_PNEUMONIA => f(C_COPD, 2.5),
        _ => 1.0,
    }
}

/// Deciding order: obesity first, because it drives diabetes and hypertension.
const DECIDE_ORDER: [usize; CONDITIONS.len()] = [
    C_OBESITY,
    C_T2D,
    C_HTN,
    C_HLD,
    C_AMI,
    C_HF,
    C_CKD,
    C_COPD,
    C_ASTHMA,
    C_AF,
    C_DEPRESSION,
    C_PNEUMONIA,
];

/// Appends one patient to `out`.
pub fn generate(rng: &mut ChaCha8Rng, profile: &Profile, person_id: i32, out: &mut Chunk) {
    let age = Normal::new(profile.age.0, profile.age.1)
        .map(|n| n.sample(rng))
        .unwrap_or(profile.age.0)
        .clamp(0.0, 100.0);
    let female = rng.random_bool(profile.female);
    let year = REFERENCE_YEAR - age as i32;
    let month = rng.random_range(1..=12);
    let day = rng.random_range(1..=28);
    let birth = days_from_civil(year, month, day);
    let race = weighted(rng, &profile.race_weights);
    let hispanic = rng.random_bool(profile.hispanic);

    let p = &mut out.persons;
    p.person_id.push(person_id);
    p.gender.push(if female { FEMALE } else { MALE });
    p.year.push(year);
    p.month.push(month as i32);
    p.day.push(day as i32);
    p.birth_us.push(birth as i64 * DAY_US);
    p.race.push(RACES[race].0);
    p.ethnicity
        .push(if hispanic { HISPANIC } else { NOT_HISPANIC });
    p.source.push(format!("MRN-{person_id:09}"));
    p.gender_source.push(if female { "F" } else { "M" });
    p.race_source.push(RACES[race].1);

    // Conditions.
    let mut has = [false; CONDITIONS.len()];
    for c in DECIDE_ORDER {
        let prob = base_prevalence(c, age) * profile.prevalence[c] * comorbidity(c, &has);
        has[c] = rng.random_bool(prob.min(0.95));
    }

    // Observation period and death.
    let obs_start = uniform_day(rng, RECORD_START.max(birth), RECORD_END - 365).max(birth);
    let mut hazard = 0.0015 * ((age - 50.0) / 11.0).exp();
    for (c, x) in [(C_HF, 3.0), (C_AMI, 2.0), (C_CKD, 1.6), (C_COPD, 1.6)] {
        if has[c] {
            hazard *= x;
        }
    }
    let years = (RECORD_END - obs_start) as f64 / 365.25;
    let dies = rng.random_bool((hazard * years).min(0.6));
    let obs_end = if dies {
        uniform_day(rng, obs_start + 30, RECORD_END)
    } else {
        RECORD_END
    };
    let years = ((obs_end - obs_start) as f64 / 365.25).max(0.1);
    out.periods.id.push(out.periods.id.len() as i32 + 1);
    out.periods.person_id.push(person_id);
    out.periods.start.push(obs_start);
    out.periods.end.push(obs_end);
    if dies {
        out.deaths.person_id.push(person_id);
        out.deaths.date.push(obs_end);
    }

    let onset: Vec<(usize, i32)> = (0..CONDITIONS.len())
        .filter(|&c| has[c])
        .map(|c| (c, uniform_day(rng, obs_start, obs_end)))
        .collect();
    let n_chronic = onset.len() as f64;

    // Visits: (start, end, concept, reason condition for inpatient/ER).
    let mut visits: Vec<(i32, i32, i32, Option<usize>)> = Vec::new();
    let scale = years / 5.0;
    for _ in 0..poisson(rng, (1.5 + 0.8 * n_chronic) * scale).min(24) {
        let d = uniform_day(rng, obs_start, obs_end);
        visits.push((d, d, OUTPATIENT, None));
    }
    for _ in 0..poisson(rng, (0.2 + 0.15 * n_chronic) * scale).min(8) {
        let d = uniform_day(rng, obs_start, obs_end);
        visits.push((d, d, EMERGENCY, onset.first().map(|o| o.0)));
    }
    let flag = |c: usize| if has[c] { 1.0 } else { 0.0 };
    let admit_rate = profile.admissions
        * (0.04
            + 0.14 * flag(C_HF)
            + 0.08 * flag(C_COPD)
            + 0.06 * flag(C_CKD)
            + 0.10 * flag(C_AMI)
            + 0.15 * flag(C_PNEUMONIA)
            + 0.002 * (age - 50.0).max(0.0));
    let readmit = (0.05
        + 0.09 * flag(C_HF)
        + 0.05 * flag(C_CKD)
        + 0.05 * flag(C_COPD)
        + 0.03 * flag(C_T2D)
        + 0.002 * (age - 65.0).max(0.0))
    .min(0.6);
    let acute: Vec<usize> = [C_AMI, C_HF, C_PNEUMONIA, C_COPD, C_CKD]
        .into_iter()
        .filter(|&c| has[c])
        .collect();
    for _ in 0..poisson(rng, admit_rate * scale).min(6) {
        let mut start = uniform_day(rng, obs_start, obs_end);
        let mut p_again = readmit;
        for _ in 0..4 {
            let reason = if acute.is_empty() {
                None
            } else {
                Some(acute[rng.random_range(0..acute.len())])
            };
            let los = 1 + poisson(rng, if reason == Some(C_HF) { 5.0 } else { 3.0 }) as i32;
            let end = (start + los).min(obs_end);
            visits.push((start, end, INPATIENT, reason));
            if !rng.random_bool(p_again) {
                break;
            }
            start = end + rng.random_range(1..=30);
            if start > obs_end {
                break;
            }
            p_again *= 0.8;
        }
    }
    visits.sort_unstable_by_key(|v| (v.0, v.2));

    let first_visit = out.visits.id.len() as i32 + 1;
    for (k, &(start, end, concept, _)) in visits.iter().enumerate() {
        let id = first_visit + k as i32;
        let v = &mut out.visits;
        v.id.push(id);
        v.person_id.push(person_id);
        v.concept.push(concept);
        v.start.push(start);
        v.end.push(end);
        v.source.push(match concept {
            INPATIENT => "IP",
            EMERGENCY => "ER",
            _ => "OP",
        });
        v.discharged_to
            .push((concept == INPATIENT).then_some(DISCHARGED_HOME));
        v.preceding.push((k > 0).then_some(id - 1));
    }

    // Conditions: a first diagnosis at onset, the admission reason at each inpatient/ER stay, and
    // repeat coding at some outpatient visits.
    for &(c, day) in &onset {
        push_condition(out, person_id, c, day, None);
    }
    for (k, &(start, _, concept, reason)) in visits.iter().enumerate() {
        let visit_id = first_visit + k as i32;
        if let Some(c) = reason {
            push_condition(out, person_id, c, start, Some(visit_id));
        }
        if concept == OUTPATIENT {
            for &(c, day) in &onset {
                if day <= start && rng.random_bool(0.25) {
                    push_condition(out, person_id, c, start, Some(visit_id));
                }
            }
            push_vitals(rng, out, person_id, visit_id, start, age, &has);
        }
    }

    // Drugs prompted by conditions.
    for &(cond, drug) in DRUGS.iter() {
        let Some(&(_, onset_day)) = onset.iter().find(|o| o.0 == cond) else {
            continue;
        };
        let p = if drug.name == "insulin glargine" {
            0.25
        } else {
            0.7
        };
        if !rng.random_bool(p) {
            continue;
        }
        let mut start = onset_day + rng.random_range(0..30);
        for _ in 0..rng.random_range(1..=4) {
            if start > obs_end {
                break;
            }
            let supply = if rng.random_bool(0.6) { 90 } else { 30 };
            let d = &mut out.drugs;
            d.id.push(d.id.len() as i32 + 1);
            d.person_id.push(person_id);
            d.concept.push(drug.concept_id);
            d.start.push(start);
            d.end.push((start + supply).min(obs_end));
            d.quantity.push(supply as f64);
            d.days_supply.push(supply);
            d.refills.push(rng.random_range(0..=3));
            d.source.push(drug.rxnorm);
            start += supply + rng.random_range(0..180);
        }
    }
}

fn push_condition(out: &mut Chunk, person_id: i32, c: usize, day: i32, visit: Option<i32>) {
    let o = &mut out.conditions;
    o.id.push(o.id.len() as i32 + 1);
    o.person_id.push(person_id);
    o.concept.push(CONDITIONS[c].concept_id);
    o.start.push(day);
    o.visit.push(visit);
    o.source.push(CONDITIONS[c].snomed);
}

fn push_vitals(
    rng: &mut ChaCha8Rng,
    out: &mut Chunk,
    person_id: i32,
    visit: i32,
    day: i32,
    age: f64,
    has: &[bool; CONDITIONS.len()],
) {
    let flag = |c: usize| if has[c] { 1.0 } else { 0.0 };
    let mut record = |rng: &mut ChaCha8Rng, lab: &Lab, mean: f64, sd: f64, digits: i32| {
        let raw = Normal::new(mean, sd).map(|n| n.sample(rng)).unwrap_or(mean);
        let scale = 10f64.powi(digits);
        let m = &mut out.measurements;
        m.id.push(m.id.len() as i32 + 1);
        m.person_id.push(person_id);
        m.concept.push(lab.concept_id);
        m.date.push(day);
        m.value.push((raw.max(0.0) * scale).round() / scale);
        m.unit.push(lab.unit_concept_id);
        m.low.push(lab.range.0);
        m.high.push(lab.range.1);
        m.visit.push(visit);
        m.source.push(lab.loinc);
        m.unit_source.push(lab.unit);
    };
    let adult = age >= 18.0;
    let sbp = 112.0 + 0.35 * age.min(80.0) + 18.0 * flag(C_HTN);
    record(rng, &SYSTOLIC_BP, sbp, 14.0, 0);
    record(rng, &DIASTOLIC_BP, 70.0 + 8.0 * flag(C_HTN), 9.0, 0);
    record(
        rng,
        &HEART_RATE,
        74.0 + 8.0 * flag(C_HF) + 6.0 * flag(C_AF),
        11.0,
        0,
    );
    if rng.random_bool(0.5) {
        let bmi = if adult {
            26.0 + 7.0 * flag(C_OBESITY) + 2.0 * flag(C_T2D)
        } else {
            19.0
        };
        record(rng, &BMI, bmi, 3.5, 1);
    }
    if has[C_T2D] && rng.random_bool(0.8) {
        record(rng, &HBA1C, 7.6, 1.3, 1);
        record(rng, &GLUCOSE, 155.0, 40.0, 0);
    } else if adult && rng.random_bool(0.15) {
        record(rng, &HBA1C, 5.4, 0.4, 1);
        record(rng, &GLUCOSE, 92.0, 12.0, 0);
    }
}

fn weighted(rng: &mut ChaCha8Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    chrono::NaiveDate::from_ymd_opt(year, month, day)
        .map(|d| (d - chrono::NaiveDate::default()).num_days() as i32)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_window_constants_are_the_dates_they_name() {
        assert_eq!(days_from_civil(2015, 1, 1), RECORD_START);
        assert_eq!(days_from_civil(2025, 12, 31), RECORD_END);
    }
}

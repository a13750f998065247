//! Site profiles: what makes one synthetic hospital differ from another.
//!
//! Real federations are heterogeneous (a rural district hospital is older and sicker than an
//! urban teaching hospital; a cardiac centre sees more infarcts), and analyses must cope with it,
//! so each synthetic site draws from one of these.

use crate::concepts::CONDITIONS;

/// Parameters of one kind of hospital.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Name used on the command line.
    pub name: &'static str,
    /// Mean and standard deviation of patient age in years (truncated to 0..=100).
    pub age: (f64, f64),
    /// Share of female patients.
    pub female: f64,
    /// Weights of the races in [`crate::concepts::RACES`].
    pub race_weights: [f64; 4],
    /// Share of Hispanic patients.
    pub hispanic: f64,
    /// Multiplier on each condition's base prevalence (same order as `CONDITIONS`).
    pub prevalence: [f64; CONDITIONS.len()],
    /// Multiplier on inpatient admission rates.
    pub admissions: f64,
}

/// Every built-in profile.
pub const PROFILES: [Profile; 4] = [
    Profile {
        name: "general",
        age: (48.0, 21.0),
        female: 0.51,
        race_weights: [0.70, 0.14, 0.06, 0.10],
        hispanic: 0.15,
        prevalence: [1.0; CONDITIONS.len()],
        admissions: 1.0,
    },
    Profile {
        name: "urban",
        age: (39.0, 18.0),
        female: 0.52,
        race_weights: [0.45, 0.28, 0.15, 0.12],
        hispanic: 0.30,
        prevalence: [0.8, 0.8, 0.7, 0.7, 0.8, 0.6, 1.3, 1.1, 0.7, 0.8, 1.3, 1.0],
        admissions: 0.9,
    },
    Profile {
        name: "rural",
        age: (58.0, 19.0),
        female: 0.50,
        race_weights: [0.88, 0.05, 0.01, 0.06],
        hispanic: 0.06,
        prevalence: [1.4, 1.3, 1.2, 1.3, 1.3, 1.8, 0.9, 1.3, 1.2, 1.2, 1.1, 1.3],
        admissions: 1.2,
    },
    Profile {
        name: "cardiac",
        age: (63.0, 14.0),
        female: 0.42,
        race_weights: [0.72, 0.13, 0.07, 0.08],
        hispanic: 0.12,
        prevalence: [1.2, 1.5, 3.0, 2.5, 1.2, 1.0, 0.8, 1.1, 2.2, 1.6, 1.0, 0.9],
        admissions: 1.5,
    },
];

impl Profile {
    /// Looks a profile up by name.
    pub fn by_name(name: &str) -> Option<&'static Profile> {
        PROFILES.iter().find(|p| p.name == name)
    }

    /// Names of all profiles, for help texts and errors.
    pub fn names() -> Vec<&'static str> {
        PROFILES.iter().map(|p| p.name).collect()
    }
}

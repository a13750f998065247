//! The National Early Warning Score 2 (Royal College of Physicians, 2017), scale 1, from the
//! parameters a monitor measures (consciousness and supplemental oxygen are not in the feed
//! and score 0).
//!
//! ```
//! use medfed_stream::news2::{Latest, score};
//! let calm = Latest { rr: Some(16.0), spo2: Some(97.0), sbp: Some(120.0), hr: Some(70.0), temp: Some(37.0) };
//! assert_eq!(score(&calm), Some(0));
//! let sick = Latest { rr: Some(26.0), spo2: Some(91.0), sbp: Some(95.0), hr: Some(125.0), temp: Some(38.5) };
//! assert_eq!(score(&sick), Some(3 + 3 + 2 + 2 + 1));
//! ```

/// A patient's most recent value of each scored parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latest {
    /// Respiratory rate.
    pub rr: Option<f64>,
    /// SpO2 (scale 1).
    pub spo2: Option<f64>,
    /// Systolic BP.
    pub sbp: Option<f64>,
    /// Pulse.
    pub hr: Option<f64>,
    /// Temperature.
    pub temp: Option<f64>,
}

fn rr(v: f64) -> u32 {
    match v {
        v if v <= 8.0 => 3,
        v if v <= 11.0 => 1,
        v if v <= 20.0 => 0,
        v if v <= 24.0 => 2,
        _ => 3,
    }
}

fn spo2(v: f64) -> u32 {
    match v {
        v if v <= 91.0 => 3,
        v if v <= 93.0 => 2,
        v if v <= 95.0 => 1,
        _ => 0,
    }
}

fn sbp(v: f64) -> u32 {
    match v {
        v if v <= 90.0 => 3,
        v if v <= 100.0 => 2,
        v if v <= 110.0 => 1,
        v if v <= 219.0 => 0,
        _ => 3,
    }
}

fn hr(v: f64) -> u32 {
    match v {
        v if v <= 40.0 => 3,
        v if v <= 50.0 => 1,
        v if v <= 90.0 => 0,
        v if v <= 110.0 => 1,
        v if v <= 130.0 => 2,
        _ => 3,
    }
}

fn temp(v: f64) -> u32 {
    match v {
        v if v <= 35.0 => 3,
        v if v <= 36.0 => 1,
        v if v <= 38.0 => 0,
        v if v <= 39.0 => 1,
        _ => 2,
    }
}

/// The aggregate score, or `None` until all five parameters have a recent value (a partial
/// score would read as falsely reassuring).
pub fn score(l: &Latest) -> Option<u32> {
    Some(rr(l.rr?) + spo2(l.spo2?) + sbp(l.sbp?) + hr(l.hr?) + temp(l.temp?))
}

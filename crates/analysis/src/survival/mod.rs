//! Federated survival analysis.
//!
//! - [`KmSpec`]: Kaplan–Meier curves from per-bin counts, one aggregate SQL query.
//! - [`cox`]: Cox proportional hazards stratified by site, fitted by Newton–Raphson on the
//!   sites' score and information sums (a site kernel: risk sets are not SQL aggregates).

pub mod cox;
mod km;

pub use km::{KmError, KmSpec, MAX_BINS, pooled_curve};

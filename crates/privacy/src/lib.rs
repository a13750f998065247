//! The privacy layer: what every partial passes through before it leaves a site and every result
//! before it reaches a researcher.
//!
//! - [`rules`]: statistical disclosure control — minimum cell count, dominance — with the rule
//!   that a site may only tighten what the network sets;
//! - [`dp`]: differential privacy, noise from OpenDP's proven samplers;
//! - [`ledger`]: each site's per-study (ε, δ) budget, persisted, refusing overspend;
//! - [`secagg`]: secure aggregation with dropout recovery (Bonawitz et al. 2017).
//!
//! This crate depends on neither the hub nor the site: both use it, and neither can bypass it.

pub mod complementary;
pub mod dp;
pub mod ledger;
pub mod release;
pub mod rules;
pub mod secagg;
pub mod shared;

pub use release::{ColumnRole, DpRelease, PartialReport, Protection};
pub use rules::{DisclosureRules, Dominance, ModelRules, Review, Rounding, Suppression};

//! The privacy section of a query's result: what each site applied (read from its partial's
//! report), the noise on each statistic as the sites declared it, and where k was applied.
//! Built at the hub from reports that carry rules and scales, never values.

use std::collections::BTreeMap;

use medfed_analysis::sql::{FederatedSql, MergedCell};
use medfed_core::result::{NoiseNote, PrivacySummary, SitePrivacy, SuppressedRow};
use medfed_privacy::release::REPORT_METADATA_KEY;
use medfed_privacy::{PartialReport, Protection, Suppression};

/// A site's privacy report, from its partial's schema metadata.
pub(crate) fn site_report(batches: &[arrow::array::RecordBatch]) -> Option<PartialReport> {
    let meta = batches.first()?.schema();
    serde_json::from_str(meta.metadata().get(REPORT_METADATA_KEY)?).ok()
}

/// The privacy section of a result.
pub(crate) fn summary(
    plan: &FederatedSql,
    protection: &Protection,
    cells: &[MergedCell],
    reports: &BTreeMap<String, PartialReport>,
    answered: &[String],
    threshold: Option<usize>,
) -> PrivacySummary {
    let rules = &protection.rules;
    let suppressed = cells
        .iter()
        .enumerate()
        .filter_map(|(row, c)| {
            let why = Suppression::from_code(c.status)?;
            Some(SuppressedRow {
                row,
                reason: why.explain(rules),
            })
        })
        .collect();
    let answered: Vec<&PartialReport> = answered.iter().filter_map(|s| reports.get(s)).collect();
    let distributed = threshold.filter(|_| protection.dp.is_some());
    let mut noise: BTreeMap<String, (String, Vec<f64>)> = BTreeMap::new();
    for r in &answered {
        let scales = if distributed.is_some() {
            &r.sigma
        } else {
            &r.scales
        };
        for (column, scale) in scales {
            let kind = match distributed {
                Some(_) => "discrete Gaussian share (summed over the sites)".to_string(),
                None => r.distributions.get(column).cloned().unwrap_or_default(),
            };
            let entry = noise
                .entry(plan.label(column).to_string())
                .or_insert_with(|| (kind, Vec::new()));
            entry.1.push(*scale);
        }
    }
    let noise = noise
        .into_iter()
        .map(|(k, (distribution, scales))| {
            let note = match distributed {
                // Each survivor added a share of σ/√t; the sum carries √(survivors/t)·σ.
                Some(t) => {
                    let sigma = scales.iter().copied().fold(0.0, f64::max);
                    let share = medfed_privacy::dp::gaussian_share_sigma(sigma, t);
                    NoiseNote {
                        distribution,
                        scale_per_site: share,
                        ci95: 1.96 * share * (scales.len() as f64).sqrt(),
                    }
                }
                None => NoiseNote {
                    distribution,
                    scale_per_site: scales.iter().copied().fold(0.0, f64::max),
                    ci95: medfed_privacy::dp::summed_laplace_ci95(&scales),
                },
            };
            (k, note)
        })
        .collect();
    let sites = reports
        .iter()
        .map(|(name, r)| {
            let p = SitePrivacy {
                suppressed: r.suppressed.values().sum(),
                epsilon_spent: r.epsilon,
                epsilon_remaining: r.budget.as_ref().map(|b| b.epsilon_remaining()),
                delta_remaining: r.budget.as_ref().map(|b| b.delta_remaining()),
                threshold: r.threshold,
            };
            (name.clone(), p)
        })
        .collect();
    let dp = protection.dp.as_ref();
    PrivacySummary {
        mode: if dp.is_some() { "dp" } else { "exact" }.into(),
        min_cell_count: rules.min_cell_count,
        suppressed,
        mechanism: dp.map(|_| {
            if distributed.is_some() {
                "distributed discrete Gaussian (OpenDP): each site adds a share, summed under \
                 secure aggregation, on bounded contributions"
            } else {
                "discrete Laplace (OpenDP), per site, on bounded contributions"
            }
            .into()
        }),
        epsilon: dp.map_or(0.0, |d| d.epsilon),
        delta: reports.values().map(|r| r.delta).fold(0.0, f64::max),
        noise,
        sites,
        secure_aggregation: protection.secure_aggregation,
        k_applied_to: if protection.secure_aggregation {
            "network"
        } else {
            "site"
        }
        .into(),
        withheld_groups: BTreeMap::new(),
        notes: Vec::new(),
        rounding: None,
        evidence: Default::default(),
    }
}

//! A model's discrimination and calibration on each site's held-out rows, computed at the
//! site: AUROC (Mann–Whitney, ties counted half), AUPRC (average precision over tied groups),
//! Brier score, log-loss and a calibration table of equal-count bins of at least k rows each —
//! optionally after the site personalises the model on its own rows (the personal model never
//! leaves it). [`evaluate`] is the hub's side, [`at_site`] the site's.

use std::collections::BTreeMap;
use std::future::Future;

use datafusion::execution::SessionState;
use medfed_core::kernel::{
    CalibrationBin, FineTune, KernelAnswer, KernelStep, KernelTask, Metrics, ModelKind, TrainStep,
};
use medfed_core::result::{QueryResult, SiteOutcome};
use serde::{Deserialize, Serialize};

use super::local::{self, Rows, log_loss};
use super::{inputs, standardised};
use crate::glm::{FitError, GlmError, Step};
use crate::kernel::KernelRound;
use crate::sql::SqlError;

/// Most calibration bins.
pub const CALIBRATION_BINS: usize = 10;

/// Logits of `model` with flat `weights` for every row.
pub(crate) fn logits(rows: &Rows, model: ModelKind, weights: &[f64]) -> Result<Vec<f64>, String> {
    if weights.len() != model.parameters() || rows.x.len() != model.features() {
        return Err("the weights or features do not fit the model".into());
    }
    match model {
        ModelKind::Logistic { .. } => Ok((0..rows.len())
            .map(|i| {
                weights[0]
                    + rows
                        .x
                        .iter()
                        .zip(&weights[1..])
                        .map(|(c, w)| c[i] * w)
                        .sum::<f64>()
            })
            .collect()),
        ModelKind::Mlp { features, hidden } => {
            super::mlp::logits(rows, weights, features as usize, hidden as usize)
        }
    }
}

/// The metrics of logits `z` against outcomes `y`; refused (as disclosive) unless both classes
/// have at least `k` rows.
pub(crate) fn metrics(z: &[f64], y: &[f64], k: u64) -> Result<Metrics, String> {
    let n = y.len();
    let positives = y.iter().filter(|v| **v == 1.0).count();
    let negatives = n - positives;
    if (positives as u64) < k.max(1) || (negatives as u64) < k.max(1) {
        return Err(format!("fewer than k = {k} rows of each outcome here"));
    }
    let p: Vec<f64> = z.iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| z[b].total_cmp(&z[a]));
    // Walk tied groups from the highest score down.
    let (mut tp, mut fp, mut auc, mut ap) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i;
        let (mut dp, mut dn) = (0.0, 0.0);
        while j < n && z[order[j]] == z[order[i]] {
            if y[order[j]] == 1.0 {
                dp += 1.0;
            } else {
                dn += 1.0;
            }
            j += 1;
        }
        // Negatives in this group rank below every positive seen before, level with its own.
        auc += dn * (tp + dp / 2.0);
        tp += dp;
        fp += dn;
        ap += dp * tp / (tp + fp);
        i = j;
    }
    let (pos, neg) = (positives as f64, negatives as f64);
    let brier = p.iter().zip(y).map(|(p, y)| (p - y).powi(2)).sum::<f64>() / n as f64;
    let loss = z.iter().zip(y).map(|(z, y)| log_loss(*z, *y)).sum::<f64>() / n as f64;
    let bins = CALIBRATION_BINS.min(n / k.max(1) as usize).max(1);
    let mut calibration = Vec::with_capacity(bins);
    let ascending: Vec<usize> = order.iter().rev().copied().collect();
    for b in 0..bins {
        let chunk = &ascending[b * n / bins..(b + 1) * n / bins];
        let m = chunk.len() as f64;
        calibration.push(CalibrationBin {
            n: chunk.len() as u64,
            predicted: chunk.iter().map(|&i| p[i]).sum::<f64>() / m,
            observed: chunk.iter().map(|&i| y[i]).sum::<f64>() / m,
        });
    }
    Ok(Metrics {
        n: n as u64,
        positives: positives as u64,
        auroc: auc / (pos * neg),
        auprc: ap / pos,
        brier,
        log_loss: loss,
        calibration,
    })
}

/// A trained model to score on held-out rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EvaluateSpec {
    /// Table of the rows to score.
    pub table: String,
    /// The model's formula (its design gives the inputs).
    pub formula: String,
    /// The model.
    pub model: ModelKind,
    /// Its flat parameters.
    pub weights: Vec<f64>,
    /// Its inputs' standardisation.
    #[schema(schema_with = medfed_core::schema::intervals)]
    pub scaling: Vec<[f64; 2]>,
    /// SQL condition selecting the rows to score (the held-out ones), or with `fine_tune`
    /// the rows to fine-tune on and score.
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
    /// Personalise the model at each site first (the personal model never leaves the site).
    #[serde(default)]
    pub fine_tune: Option<FineTune>,
    /// With `fine_tune`: SQL expression that is 1 for rows to score and 0 for rows to
    /// fine-tune on (e.g. `holdout`).
    #[serde(default)]
    pub split: Option<String>,
}

/// How a model scored at each site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evaluation {
    /// Per site: AUROC, AUPRC, Brier score, log-loss, calibration table.
    pub metrics: BTreeMap<String, Metrics>,
    /// What each site did.
    pub sites: BTreeMap<String, SiteOutcome>,
}

/// Scores `spec` at every site `run_kernel` asks: per site, AUROC, AUPRC, Brier score,
/// log-loss and a calibration table, each computed at the site over its own rows.
pub async fn evaluate<E, F, Fut, K, KFut>(
    state: &SessionState,
    spec: &EvaluateSpec,
    mut run_sql: F,
    run_kernel: K,
) -> Result<Evaluation, FitError<E>>
where
    F: FnMut(Step, String) -> Fut,
    Fut: Future<Output = Result<QueryResult, E>>,
    K: FnOnce(KernelTask) -> KFut,
    KFut: Future<Output = Result<KernelRound, E>>,
{
    let (_, features, raw) = inputs(
        state,
        &spec.table,
        &spec.formula,
        spec.filter.as_deref(),
        &mut run_sql,
    )
    .await?;
    if features.len() != spec.model.features() || spec.scaling.len() != features.len() {
        return Err(GlmError::Model(format!(
            "the formula has {} inputs; the model takes {}",
            features.len(),
            spec.model.features()
        ))
        .into());
    }
    let mut rows = standardised(raw, &spec.scaling);
    match (&spec.fine_tune, &spec.split) {
        (Some(_), Some(split)) => rows.columns.push(split.clone()),
        (Some(_), None) => {
            return Err(GlmError::Model(
                "fine-tuning needs a split: 0 for rows to fine-tune on, 1 for rows to score".into(),
            )
            .into());
        }
        _ => {}
    }
    let task = KernelTask {
        rows,
        step: KernelStep::Evaluate {
            model: spec.model,
            weights: spec.weights.clone(),
            fine_tune: spec.fine_tune,
        },
    };
    let round = run_kernel(task).await.map_err(FitError::Run)?;
    let metrics = round
        .answers
        .into_iter()
        .filter_map(|(site, a)| match a {
            KernelAnswer::Metrics(m) => Some((site, m)),
            _ => None,
        })
        .collect();
    Ok(Evaluation {
        metrics,
        sites: round.sites,
    })
}

/// The site's side of an `evaluate` step over rows given column by column: outcome, features
/// and, with `fine_tune`, the split (0: fine-tune on, 1: score).
pub(crate) fn at_site(
    columns: &[Vec<f64>],
    model: ModelKind,
    weights: &[f64],
    fine_tune: Option<&FineTune>,
    k: u64,
) -> Result<Metrics, SqlError> {
    let invalid = |m: &str| SqlError::Plan(m.into());
    let (columns, split) = match fine_tune {
        Some(_) => {
            let (split, rest) = columns
                .split_last()
                .ok_or_else(|| invalid("fine-tuning reads a split column"))?;
            (rest, Some(split))
        }
        None => (columns, None),
    };
    let [y, _, ..] = columns else {
        return Err(invalid("an evaluation reads the outcome and the features"));
    };
    if y.iter().any(|v| *v != 0.0 && *v != 1.0) {
        return Err(invalid("the outcome must be 0 or 1"));
    }
    let (weights, scored) = match (fine_tune, split) {
        (Some(f), Some(split)) => {
            let side = |s: f64| -> Vec<Vec<f64>> {
                columns
                    .iter()
                    .map(|c| {
                        c.iter()
                            .zip(split)
                            .filter(|(_, v)| **v == s)
                            .map(|(x, _)| *x)
                            .collect()
                    })
                    .collect()
            };
            let (own, held_out) = (side(0.0), side(1.0));
            if (own[0].len() as u64) < k.max(1) {
                return Err(SqlError::Disclosive(format!(
                    "fewer than k = {k} rows to fine-tune on here"
                )));
            }
            let step = TrainStep {
                model,
                weights: weights.to_vec(),
                epochs: f.epochs.clamp(1, 100),
                batch_size: f.batch_size.max(1),
                learning_rate: f.learning_rate,
                l2: f.l2,
                proximal_mu: f.proximal_mu,
                seed: f.seed,
                dp: None,
            };
            let rows = Rows {
                y: &own[0],
                x: &own[1..],
            };
            let (personal, _) = local::fit(&rows, &step).map_err(SqlError::Plan)?;
            (personal, held_out)
        }
        _ => (weights.to_vec(), columns.to_vec()),
    };
    let rows = Rows {
        y: &scored[0],
        x: &scored[1..],
    };
    let z = logits(&rows, model, &weights).map_err(SqlError::Plan)?;
    metrics(&z, &scored[0], k).map_err(SqlError::Disclosive)
}

#[cfg(test)]
mod tests {
    use super::metrics;

    #[test]
    fn auroc_and_auprc_match_their_definitions() {
        // Scores 4 > 3 > 2 = 2 > 1 with outcomes 1, 0, 1, 0, 0: pairs (pos, neg) ordered
        // correctly: (4,3) (4,2) (4,1) (2,1) and (2,2) tied → (4 + 0.5) / (2·3) = 0.75.
        let z = [4.0, 3.0, 2.0, 2.0, 1.0];
        let y = [1.0, 0.0, 1.0, 0.0, 0.0];
        let m = metrics(&z, &y, 1).unwrap();
        assert!((m.auroc - 0.75).abs() < 1e-12, "{}", m.auroc);
        // Precision at the first positive 1/1; at the tied group {2, 2}: 2 of 4.
        assert!((m.auprc - (1.0 + 0.5) / 2.0).abs() < 1e-12, "{}", m.auprc);
        assert_eq!(m.calibration.iter().map(|b| b.n).sum::<u64>(), 5);
        // A perfect ranking has AUROC 1; k larger than a class refuses.
        let m = metrics(&[3.0, 2.0, 1.0, 0.0], &[1.0, 1.0, 0.0, 0.0], 2).unwrap();
        assert_eq!((m.auroc, m.auprc), (1.0, 1.0));
        assert_eq!(m.calibration.len(), 2);
        assert!(metrics(&z, &y, 3).is_err());
    }
}

//! A model's discrimination and calibration on one site's held-out rows, computed at the site:
//! AUROC (Mann–Whitney, ties counted half), AUPRC (average precision over tied groups), Brier
//! score, log-loss and a calibration table of equal-count bins of at least k rows each.

use medfed_core::kernel::{CalibrationBin, Metrics, ModelKind};

use super::local::{Rows, log_loss};

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

//! The site's side of a federated round: train the global model on the site's rows for a few
//! epochs of mini-batch SGD and answer the change (FedAvg), optionally pulled back towards the
//! global model (FedProx's proximal term).
//!
//! Under DP the local training is DP gradient descent (Abadi et al. 2016, full batch): each
//! epoch is one step whose per-row gradients are clipped to the step's bound C and summed, and
//! Gaussian noise of σ (sized by [`crate::kernel::update_sigma`]) is added to the sum before it
//! is averaged; the L2 and proximal terms depend on no row and are added after. Replacing one
//! row moves the sum by at most 2C, so each step is ρ-zCDP and the update — a function of the
//! noisy steps only — is released as it is.
//!
//! Logistic regression has a closed-form gradient, so it is trained here directly; the MLP is
//! trained with candle's autodiff ([`super::mlp`]).

use medfed_core::kernel::{ModelKind, ModelUpdate, TrainStep};
use rand::SeedableRng;
use rand::seq::SliceRandom;

/// Trains `step` over rows given column by column: the 0/1 outcome, then the features. With
/// `sigma` (a DP study), by DP gradient descent with that σ on each step's clipped sum.
pub(crate) fn train(
    columns: &[Vec<f64>],
    step: &TrainStep,
    sigma: Option<f64>,
) -> Result<ModelUpdate, String> {
    let [y, features @ ..] = columns else {
        return Err("a training step reads the outcome and the features".into());
    };
    if features.len() != step.model.features() {
        return Err(format!(
            "{} feature columns for a model of {}",
            features.len(),
            step.model.features()
        ));
    }
    if step.weights.len() != step.model.parameters() {
        return Err(format!(
            "{} weights for a model of {} parameters",
            step.weights.len(),
            step.model.parameters()
        ));
    }
    if y.iter().any(|v| *v != 0.0 && *v != 1.0) {
        return Err("the outcome must be 0 or 1".into());
    }
    let valid = |x: f64| x.is_finite() && x > 0.0;
    if !(valid(step.learning_rate)
        && step.epochs >= 1
        && step.epochs <= 100
        && step.batch_size >= 1)
    {
        return Err("learning rate > 0, 1–100 epochs and batches of at least one row".into());
    }
    if step.l2 < 0.0 || step.proximal_mu < 0.0 {
        return Err("the L2 penalty and the proximal term cannot be negative".into());
    }
    let rows = Rows { y, x: features };
    let (weights, loss) = match sigma {
        None => fit(&rows, step)?,
        Some(sigma) => {
            let bound = step
                .dp
                .as_ref()
                .ok_or("a DP study's training step must state its clip bound")?;
            if !(bound.clip.is_finite() && bound.clip > 0.0) {
                return Err("the clip bound must be positive".into());
            }
            (dp_descent(&rows, step, bound.clip, sigma)?, f64::NAN)
        }
    };
    let delta: Vec<f64> = weights
        .iter()
        .zip(&step.weights)
        .map(|(w, g)| w - g)
        .collect();
    Ok(ModelUpdate {
        // Under DP the row count would be one more release: the hub averages unweighted.
        n: if sigma.is_some() { 0 } else { y.len() as u64 },
        delta,
        loss: sigma.is_none().then_some(loss),
    })
}

/// Trains from `step.weights` over `rows`; the trained weights and the starting model's loss.
pub(crate) fn fit(rows: &Rows, step: &TrainStep) -> Result<(Vec<f64>, f64), String> {
    match step.model {
        ModelKind::Logistic { .. } => Ok(logistic(rows, step)),
        ModelKind::Mlp { hidden, .. } => super::mlp::train(rows, hidden as usize, step),
    }
}

/// A site's rows: outcome and feature columns.
pub(crate) struct Rows<'a> {
    pub y: &'a [f64],
    pub x: &'a [Vec<f64>],
}

impl Rows<'_> {
    pub(crate) fn len(&self) -> usize {
        self.y.len()
    }

    /// Row order for each epoch, shuffled reproducibly from the round's seed.
    pub(crate) fn epochs(&self, step: &TrainStep) -> impl Iterator<Item = Vec<usize>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(step.seed);
        let n = self.len();
        (0..step.epochs).map(move |_| {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut rng);
            order
        })
    }
}

/// Mean log-loss of a logit `z` against outcome `y`, computed stably.
pub(crate) fn log_loss(z: f64, y: f64) -> f64 {
    // −[y ln σ(z) + (1−y) ln(1−σ(z))] = ln(1 + e^z) − y·z
    let softplus = if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    };
    softplus - y * z
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Mini-batch SGD on the mean log-loss + λ/2‖w‖² (not the intercept) + μ/2‖w − w₀‖².
fn logistic(rows: &Rows, step: &TrainStep) -> (Vec<f64>, f64) {
    let p = rows.x.len();
    let global = &step.weights;
    let logit = |w: &[f64], i: usize| w[0] + (0..p).map(|j| w[j + 1] * rows.x[j][i]).sum::<f64>();
    let n = rows.len();
    let loss = (0..n)
        .map(|i| log_loss(logit(global, i), rows.y[i]))
        .sum::<f64>()
        / n.max(1) as f64;
    let mut w = global.clone();
    let mut grad = vec![0.0; p + 1];
    for order in rows.epochs(step) {
        for batch in order.chunks(step.batch_size as usize) {
            grad.iter_mut().for_each(|g| *g = 0.0);
            for &i in batch {
                let r = sigmoid(logit(&w, i)) - rows.y[i];
                grad[0] += r;
                for j in 0..p {
                    grad[j + 1] += r * rows.x[j][i];
                }
            }
            let m = batch.len() as f64;
            for j in 0..=p {
                let penalty = if j == 0 { 0.0 } else { step.l2 * w[j] };
                let prox = step.proximal_mu * (w[j] - global[j]);
                w[j] -= step.learning_rate * (grad[j] / m + penalty + prox);
            }
        }
    }
    (w, loss)
}

/// DP gradient descent from `step.weights`: `step.epochs` full-batch steps on the noisy sum of
/// per-row gradients clipped to `clip`, σ = `sigma` on the sum.
fn dp_descent(rows: &Rows, step: &TrainStep, clip: f64, sigma: f64) -> Result<Vec<f64>, String> {
    let global = &step.weights;
    let n = rows.len().max(1) as f64;
    let mut w = global.clone();
    for _ in 0..step.epochs {
        let sum = match step.model {
            ModelKind::Logistic { .. } => logistic_clipped_sum(rows, &w, clip),
            ModelKind::Mlp { hidden, .. } => {
                super::mlp::clipped_gradient_sum(rows, &w, hidden as usize, clip)?
            }
        };
        let noisy = medfed_privacy::dp::gaussian_f64(&sum, sigma).map_err(|e| e.to_string())?;
        for (j, g) in noisy.iter().enumerate() {
            let penalty = if step.model.is_weight(j) {
                step.l2 * w[j]
            } else {
                0.0
            };
            let prox = step.proximal_mu * (w[j] - global[j]);
            w[j] -= step.learning_rate * (g / n + penalty + prox);
        }
    }
    Ok(w)
}

/// Σᵢ clip(∇ℓᵢ) of the log-loss at `w`: row i's gradient (σ(zᵢ) − yᵢ)·(1, xᵢ) has norm
/// |σ(zᵢ) − yᵢ|·√(1 + ‖xᵢ‖²), scaled down to `clip` when longer.
fn logistic_clipped_sum(rows: &Rows, w: &[f64], clip: f64) -> Vec<f64> {
    let p = rows.x.len();
    let mut sum = vec![0.0; p + 1];
    for i in 0..rows.len() {
        let z = w[0] + (0..p).map(|j| w[j + 1] * rows.x[j][i]).sum::<f64>();
        let r = sigmoid(z) - rows.y[i];
        let norm = r.abs() * (1.0 + (0..p).map(|j| rows.x[j][i].powi(2)).sum::<f64>()).sqrt();
        let scale = if norm > clip { clip / norm } else { 1.0 };
        sum[0] += scale * r;
        for j in 0..p {
            sum[j + 1] += scale * r * rows.x[j][i];
        }
    }
    sum
}

//! The multilayer perceptron a site trains locally: `features → hidden (ReLU) → 1 (logit)`,
//! with candle's autodiff and SGD (no hand-written gradients).
//!
//! The flat parameter vector is laid out as `W₁ (hidden × features, row-major), b₁, W₂
//! (hidden), b₂`, the same everywhere (hub, sites, the registry's export).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::Optimizer;
use medfed_core::kernel::TrainStep;

use super::local::Rows;

/// The parameters of an MLP as candle variables.
pub(crate) struct Mlp {
    w1: Var,
    b1: Var,
    w2: Var,
    b2: Var,
}

fn err(e: candle_core::Error) -> String {
    format!("training failed: {e}")
}

impl Mlp {
    /// The network whose flat parameters are `w`.
    pub(crate) fn from_flat(w: &[f64], features: usize, hidden: usize) -> Result<Self, String> {
        let d = &Device::Cpu;
        let (f, h) = (features, hidden);
        let var = |range: std::ops::Range<usize>, shape: &[usize]| {
            Tensor::from_slice(&w[range], shape, d)
                .and_then(|t| Var::from_tensor(&t))
                .map_err(err)
        };
        Ok(Self {
            w1: var(0..h * f, &[h, f])?,
            b1: var(h * f..h * f + h, &[h])?,
            w2: var(h * f + h..h * f + 2 * h, &[1, h])?,
            b2: var(h * f + 2 * h..h * f + 2 * h + 1, &[1])?,
        })
    }

    pub(crate) fn vars(&self) -> Vec<Var> {
        vec![
            self.w1.clone(),
            self.b1.clone(),
            self.w2.clone(),
            self.b2.clone(),
        ]
    }

    /// The flat parameters.
    pub(crate) fn to_flat(&self) -> Result<Vec<f64>, String> {
        let mut out = Vec::new();
        for v in self.vars() {
            out.extend(
                v.as_tensor()
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f64>())
                    .map_err(err)?,
            );
        }
        Ok(out)
    }

    /// Logits for a batch `x` (rows × features).
    pub(crate) fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let hidden = x.matmul(&self.w1.t()?)?.broadcast_add(&self.b1)?.relu()?;
        hidden.matmul(&self.w2.t()?)?.broadcast_add(&self.b2)
    }
}

/// Mean log-loss of logits `z` against 0/1 targets `y`, stably: softplus(z) − y·z.
fn log_loss(z: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    let softplus = (z.relu()? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    (softplus - (y * z)?)?.mean_all()
}

/// The rows of `order` as a (rows × features) tensor and a (rows × 1) target.
fn batch(rows: &Rows, order: &[usize]) -> candle_core::Result<(Tensor, Tensor)> {
    let f = rows.x.len();
    let mut x = Vec::with_capacity(order.len() * f);
    for &i in order {
        x.extend(rows.x.iter().map(|c| c[i]));
    }
    let y: Vec<f64> = order.iter().map(|&i| rows.y[i]).collect();
    let d = &Device::Cpu;
    Ok((
        Tensor::from_vec(x, (order.len(), f), d)?,
        Tensor::from_vec(y, (order.len(), 1), d)?,
    ))
}

/// The MLP's logits for every row.
pub(crate) fn logits(
    rows: &Rows,
    weights: &[f64],
    features: usize,
    hidden: usize,
) -> Result<Vec<f64>, String> {
    let net = Mlp::from_flat(weights, features, hidden)?;
    let all: Vec<usize> = (0..rows.len()).collect();
    let (x, _) = batch(rows, &all).map_err(err)?;
    net.logits(&x)
        .and_then(|z| z.flatten_all())
        .and_then(|z| z.to_vec1::<f64>())
        .map_err(err)
}

/// Local SGD from `step.weights`; returns the trained parameters and the global model's loss.
pub(crate) fn train(
    rows: &Rows,
    hidden: usize,
    step: &TrainStep,
) -> Result<(Vec<f64>, f64), String> {
    let f = rows.x.len();
    let net = Mlp::from_flat(&step.weights, f, hidden)?;
    let global = Mlp::from_flat(&step.weights, f, hidden)?;
    let all: Vec<usize> = (0..rows.len()).collect();
    let (x, y) = batch(rows, &all).map_err(err)?;
    let loss = net
        .logits(&x)
        .and_then(|z| log_loss(&z, &y))
        .and_then(|l| l.to_scalar::<f64>())
        .map_err(err)?;
    let mut sgd = candle_nn::optim::SGD::new(net.vars(), step.learning_rate).map_err(err)?;
    for order in rows.epochs(step) {
        for chunk in order.chunks(step.batch_size as usize) {
            let objective = || -> candle_core::Result<Tensor> {
                let (x, y) = batch(rows, chunk)?;
                let mut total = log_loss(&net.logits(&x)?, &y)?;
                if step.l2 > 0.0 {
                    let weights = (net.w1.sqr()?.sum_all()? + net.w2.sqr()?.sum_all()?)?;
                    total = (total + (weights * (step.l2 / 2.0))?)?;
                }
                if step.proximal_mu > 0.0 {
                    let mut prox = Tensor::zeros((), DType::F64, &Device::Cpu)?;
                    for (v, g) in net.vars().iter().zip(global.vars()) {
                        prox = (prox + (v.as_tensor() - g.as_tensor())?.sqr()?.sum_all()?)?;
                    }
                    total = (total + (prox * (step.proximal_mu / 2.0))?)?;
                }
                Ok(total)
            };
            let total = objective().map_err(err)?;
            sgd.backward_step(&total).map_err(err)?;
        }
    }
    Ok((net.to_flat()?, loss))
}

/// Σᵢ clip(∇ℓᵢ) at `weights` over every row, each row's gradient scaled down to L2 norm `clip`
/// when longer (DP gradient descent), in the flat layout.
///
/// Per-row gradients come from one batched backward pass: zero variables added to the hidden
/// pre-activations and the logits make candle return ∂ℓᵢ/∂aᵢ and ∂ℓᵢ/∂zᵢ per row, from which
/// each row's gradient and its norm follow (the linear layers' gradients are outer products:
/// ‖∂ℓᵢ/∂W‖ = ‖∂ℓᵢ/∂aᵢ‖·‖inputᵢ‖). No per-row pass and no hand-written backward.
pub(crate) fn clipped_gradient_sum(
    rows: &Rows,
    weights: &[f64],
    hidden: usize,
    clip: f64,
) -> Result<Vec<f64>, String> {
    let f = rows.x.len();
    let net = Mlp::from_flat(weights, f, hidden)?;
    let all: Vec<usize> = (0..rows.len()).collect();
    let (x, y) = batch(rows, &all).map_err(err)?;
    let sums = || -> candle_core::Result<Vec<Tensor>> {
        let d = &Device::Cpu;
        let n = rows.len();
        let at_hidden = Var::zeros((n, hidden), DType::F64, d)?;
        let at_logit = Var::zeros((n, 1), DType::F64, d)?;
        let pre = (x.matmul(&net.w1.t()?)?.broadcast_add(&net.b1)? + at_hidden.as_tensor())?;
        let h = pre.relu()?;
        let z = (h.matmul(&net.w2.t()?)?.broadcast_add(&net.b2)? + at_logit.as_tensor())?;
        // The sum of the rows' losses: its gradient at row i's z and a are row i's own.
        let softplus = (z.relu()? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
        let total = (softplus - (&y * &z)?)?.sum_all()?;
        let grads = total.backward()?;
        let missing = || candle_core::Error::Msg("no per-row gradient".into());
        let da = grads.get(at_hidden.as_tensor()).ok_or_else(missing)?;
        let dz = grads.get(at_logit.as_tensor()).ok_or_else(missing)?;
        // ‖∇ℓᵢ‖² = ‖daᵢ‖²(‖xᵢ‖² + 1) + dzᵢ²(‖hᵢ‖² + 1)
        let norm2 = ((da.sqr()?.sum_keepdim(1)? * (x.sqr()?.sum_keepdim(1)? + 1.0)?)?
            + (dz.sqr()? * (h.sqr()?.sum_keepdim(1)? + 1.0)?)?)?;
        let scale: Vec<f64> = norm2
            .flatten_all()?
            .to_vec1::<f64>()?
            .into_iter()
            .map(|s| {
                let norm = s.sqrt();
                if norm > clip { clip / norm } else { 1.0 }
            })
            .collect();
        let scale = Tensor::from_vec(scale, (n, 1), d)?;
        let da = da.broadcast_mul(&scale)?;
        let dz = (dz * &scale)?;
        Ok(vec![
            da.t()?.matmul(&x)?,
            da.sum(0)?,
            dz.t()?.matmul(&h)?,
            dz.sum(0)?,
        ])
    };
    let mut out = Vec::with_capacity(weights.len());
    for t in sums().map_err(err)? {
        out.extend(
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f64>())
                .map_err(err)?,
        );
    }
    Ok(out)
}

//! Kernel answers under secure aggregation: each site's answer laid out as one keyless row of
//! numbers (the shape [`medfed_privacy::secagg::cells`] masks and sums), and the network's sum
//! read back as one answer.
//!
//! GLM and Cox sums add up as they are. A FedAvg update is sent pre-weighted — its weight w
//! (rows, or 1 under DP, where the hub averages unweighted), w·loss and w·Δ — so the sum gives
//! the weighted average Σ wₖΔₖ / Σ wₖ without the hub seeing any one site's update or count.
//! Model evaluation is per site by design and is not summed.
//!
//! ```
//! use medfed_analysis::kernel::summed;
//! use medfed_core::glm::Family;
//! use medfed_core::kernel::{GlmSums, KernelAnswer, KernelStep};
//! let step = KernelStep::Glm { family: Family::Gaussian, beta: vec![0.0], intercept: false };
//! let site = |n: u64, v: f64| KernelAnswer::Glm(GlmSums { n, xtwx: vec![v], xtwz: vec![v], deviance: v });
//! let schema = summed::schema(&step).unwrap();
//! let a = summed::to_row(&step, &site(10, 1.5), &schema).unwrap();
//! assert_eq!(a.num_columns(), schema.fields().len());
//! let values = summed::values(&step, &site(10, 1.5)).unwrap();
//! let both: Vec<f64> = values.iter().map(|v| 2.0 * v).collect();
//! let KernelAnswer::Glm(sum) = summed::from_values(&step, &both).unwrap() else { panic!() };
//! assert_eq!((sum.n, sum.xtwx[0]), (20, 3.0));
//! ```

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use medfed_core::kernel::{CoxSums, GlmSums, KernelAnswer, KernelStep, ModelUpdate};
use medfed_privacy::release::CONTRIBUTORS;

/// Why an answer cannot be summed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SumError(String);

fn err(m: impl Into<String>) -> SumError {
    SumError(m.into())
}

/// How many numbers `step`'s answer is, or an error for a step that is not summed.
pub fn len(step: &KernelStep) -> Result<usize, SumError> {
    match step {
        KernelStep::Glm { beta, .. } => Ok(2 + beta.len() + beta.len() * beta.len()),
        KernelStep::Cox { beta, .. } => Ok(3 + beta.len() + beta.len() * beta.len()),
        KernelStep::Train(t) => Ok(2 + t.model.parameters()),
        KernelStep::Evaluate { .. } => Err(err(
            "model evaluation reports each site's own metrics, which secure aggregation would \
             hide: run it without secure aggregation",
        )),
    }
}

/// The numbered statistic columns `p0..` of the summed row, then a zero contributor count
/// (the rows behind the sum are not released by it).
pub fn schema(step: &KernelStep) -> Result<SchemaRef, SumError> {
    let mut fields: Vec<Field> = (0..len(step)?)
        .map(|i| Field::new(format!("p{i}"), DataType::Float64, false))
        .collect();
    fields.push(Field::new(CONTRIBUTORS, DataType::Int64, false));
    Ok(Arc::new(Schema::new(fields)))
}

/// The weight of a site's update in the network's average: its rows, or 1 under DP.
fn weight(u: &ModelUpdate) -> f64 {
    if u.n == 0 { 1.0 } else { u.n as f64 }
}

/// `answer` (of `step`) as numbers in the order [`from_values`] reads a sum of them.
pub fn values(step: &KernelStep, answer: &KernelAnswer) -> Result<Vec<f64>, SumError> {
    let out = match answer {
        KernelAnswer::Glm(s) => {
            let mut v = vec![s.n as f64, s.deviance];
            v.extend(&s.xtwz);
            v.extend(&s.xtwx);
            v
        }
        KernelAnswer::Cox(s) => {
            let mut v = vec![s.n as f64, s.events as f64, s.loglik];
            v.extend(&s.score);
            v.extend(&s.information);
            v
        }
        KernelAnswer::Update(u) => {
            let w = weight(u);
            let mut v = vec![w, w * u.loss.unwrap_or(0.0)];
            v.extend(u.delta.iter().map(|d| w * d));
            v
        }
        KernelAnswer::Metrics(_) => return Err(err("metrics are not summed")),
    };
    if out.len() != len(step)? {
        return Err(err("the answer does not have its step's shape"));
    }
    Ok(out)
}

/// `answer` as the one-row table of `schema` (from [`schema`]) a site masks.
pub fn to_row(
    step: &KernelStep,
    answer: &KernelAnswer,
    schema: &SchemaRef,
) -> Result<RecordBatch, SumError> {
    let mut columns: Vec<ArrayRef> = values(step, answer)?
        .into_iter()
        .map(|v| Arc::new(Float64Array::from(vec![v])) as ArrayRef)
        .collect();
    columns.push(Arc::new(Int64Array::from(vec![0])));
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| err(e.to_string()))
}

/// The network's answer from the summed one-row table.
pub fn from_row(step: &KernelStep, row: &RecordBatch) -> Result<KernelAnswer, SumError> {
    let n = len(step)?;
    if row.num_rows() != 1 || row.num_columns() < n {
        return Err(err("the secure sum does not have the step's shape"));
    }
    let values: Vec<f64> = (0..n)
        .map(|i| row.column(i).as_primitive::<Float64Type>().value(0))
        .collect();
    from_values(step, &values)
}

/// The answer a sum of sites' [`values`] stands for: GLM and Cox sums as they are, a model
/// update as the weighted average (rows as n, or n = 0 under DP).
pub fn from_values(step: &KernelStep, v: &[f64]) -> Result<KernelAnswer, SumError> {
    if v.len() != len(step)? {
        return Err(err("the secure sum does not have the step's shape"));
    }
    let count = |x: f64| x.round().max(0.0) as u64;
    Ok(match step {
        KernelStep::Glm { beta, .. } => {
            let p = beta.len();
            KernelAnswer::Glm(GlmSums {
                n: count(v[0]),
                deviance: v[1],
                xtwz: v[2..2 + p].to_vec(),
                xtwx: v[2 + p..].to_vec(),
            })
        }
        KernelStep::Cox { beta, .. } => {
            let p = beta.len();
            KernelAnswer::Cox(CoxSums {
                n: count(v[0]),
                events: count(v[1]),
                loglik: v[2],
                score: v[3..3 + p].to_vec(),
                information: v[3 + p..].to_vec(),
            })
        }
        KernelStep::Train(t) => {
            let w = v[0];
            if w.is_nan() || w < 0.5 {
                return Err(err("no site's update is in the secure sum"));
            }
            let dp = t.dp.is_some();
            KernelAnswer::Update(ModelUpdate {
                n: if dp { 0 } else { count(w) },
                delta: v[2..].iter().map(|d| d / w).collect(),
                loss: (!dp).then(|| v[1] / w),
            })
        }
        KernelStep::Evaluate { .. } => unreachable!("len() refuses evaluation"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use medfed_core::kernel::{ModelKind, TrainStep};

    fn train(dp: bool) -> KernelStep {
        KernelStep::Train(TrainStep {
            model: ModelKind::Logistic { features: 2 },
            weights: vec![0.0; 3],
            epochs: 1,
            batch_size: 8,
            learning_rate: 0.1,
            l2: 0.0,
            proximal_mu: 0.0,
            seed: 0,
            dp: dp.then(|| medfed_core::kernel::UpdateDp {
                clip: 1.0,
                run: "r".into(),
                rounds: 1,
            }),
        })
    }

    fn sum(step: &KernelStep, answers: &[KernelAnswer]) -> KernelAnswer {
        let mut total = vec![0.0; len(step).unwrap()];
        for a in answers {
            for (t, v) in total.iter_mut().zip(values(step, a).unwrap()) {
                *t += v;
            }
        }
        from_values(step, &total).unwrap()
    }

    #[test]
    fn a_summed_update_is_the_row_weighted_average() {
        let step = train(false);
        let a = KernelAnswer::Update(ModelUpdate {
            n: 100,
            delta: vec![1.0, 0.0, -1.0],
            loss: Some(0.5),
        });
        let b = KernelAnswer::Update(ModelUpdate {
            n: 300,
            delta: vec![-1.0, 2.0, 1.0],
            loss: Some(0.7),
        });
        let KernelAnswer::Update(u) = sum(&step, &[a, b]) else {
            panic!()
        };
        assert_eq!(u.n, 400);
        for (got, want) in u.delta.iter().zip([-0.5, 1.5, 0.5]) {
            assert!((got - want).abs() < 1e-12);
        }
        assert!((u.loss.unwrap() - 0.65).abs() < 1e-12);
    }

    #[test]
    fn under_dp_updates_average_unweighted_and_release_no_count() {
        let step = train(true);
        let a = |d: f64| {
            KernelAnswer::Update(ModelUpdate {
                n: 0,
                delta: vec![d; 3],
                loss: None,
            })
        };
        let KernelAnswer::Update(u) = sum(&step, &[a(1.0), a(3.0)]) else {
            panic!()
        };
        assert_eq!((u.n, u.loss), (0, None));
        assert!(u.delta.iter().all(|d| (d - 2.0).abs() < 1e-12));
    }

    #[test]
    fn cox_sums_add_up_and_evaluation_is_not_summed() {
        let step = KernelStep::Cox {
            beta: vec![0.0],
            ties: Default::default(),
        };
        let s = KernelAnswer::Cox(CoxSums {
            n: 10,
            events: 4,
            loglik: -3.0,
            score: vec![1.0],
            information: vec![2.0],
        });
        let KernelAnswer::Cox(t) = sum(&step, &[s.clone(), s]) else {
            panic!()
        };
        assert_eq!((t.n, t.events, t.loglik, t.score[0]), (20, 8, -6.0, 2.0));
        let evaluate = KernelStep::Evaluate {
            model: ModelKind::Logistic { features: 1 },
            weights: vec![0.0; 2],
            fine_tune: None,
        };
        assert!(schema(&evaluate).is_err());
        // A wrong-sized answer is refused, not truncated.
        let wrong = KernelAnswer::Glm(GlmSums {
            n: 1,
            xtwx: vec![1.0; 4],
            xtwz: vec![1.0; 2],
            deviance: 0.0,
        });
        assert!(values(&step, &wrong).is_err());
    }
}

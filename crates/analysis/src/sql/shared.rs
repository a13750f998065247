//! `medfed_shared_sum(x)` and `medfed_shared_squares(x)`: Σe and Σe² of a group's values modulo
//! the prime of [`medfed_privacy::shared`], the inputs (with `COUNT(x)`) of the check that a
//! sum's contributors do not all share one value. Aggregates of their own because the sums are
//! taken in a finite field (a plain `SUM(x * x)` would overflow or round); their state is one
//! number per group, so they merge across partitions like `sum`.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::error::Result;
use datafusion::logical_expr::{Accumulator, AggregateUDF, Expr, Volatility, create_udaf};
use datafusion::scalar::ScalarValue;
use medfed_privacy::shared;

/// Σ eᵖ mod P of the values seen, p = 1 or 2.
#[derive(Debug)]
struct PowerSum {
    squares: bool,
    sum: u64,
}

impl PowerSum {
    fn add(&mut self, e: u64) {
        let term = if self.squares { shared::square(e) } else { e };
        self.sum = shared::add(self.sum, term);
    }
}

impl Accumulator for PowerSum {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let values = arrow::compute::cast(&values[0], &DataType::Float64)?;
        for v in values.as_primitive::<Float64Type>().iter().flatten() {
            self.add(shared::encode(v));
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for s in states[0].as_primitive::<Int64Type>().iter().flatten() {
            self.sum = shared::add(self.sum, s as u64);
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        // Below P < 2^56: always a non-negative i64.
        Ok(ScalarValue::Int64(Some(self.sum as i64)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

fn udaf(name: &str, squares: bool) -> Arc<AggregateUDF> {
    Arc::new(create_udaf(
        name,
        vec![DataType::Float64],
        Arc::new(DataType::Int64),
        Volatility::Immutable,
        Arc::new(move |_| Ok(Box::new(PowerSum { squares, sum: 0 }))),
        Arc::new(vec![DataType::Int64]),
    ))
}

static SUM: LazyLock<Arc<AggregateUDF>> = LazyLock::new(|| udaf("medfed_shared_sum", false));
static SQUARES: LazyLock<Arc<AggregateUDF>> = LazyLock::new(|| udaf("medfed_shared_squares", true));

/// `(Σe, Σe²)` of `x`'s non-null values, modulo P.
pub(crate) fn power_sums(x: Expr) -> (Expr, Expr) {
    let x = datafusion::logical_expr::cast(x, DataType::Float64);
    (SUM.call(vec![x.clone()]), SQUARES.call(vec![x]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Float64Array;

    fn run(squares: bool, batches: &[Vec<Option<f64>>]) -> u64 {
        let mut parts: Vec<PowerSum> = batches
            .iter()
            .map(|b| {
                let mut acc = PowerSum { squares, sum: 0 };
                acc.update_batch(&[Arc::new(Float64Array::from(b.clone()))])
                    .unwrap();
                acc
            })
            .collect();
        let mut first = parts.remove(0);
        for mut p in parts {
            let state: Vec<ArrayRef> = p
                .state()
                .unwrap()
                .into_iter()
                .map(|s| s.to_array().unwrap())
                .collect();
            first.merge_batch(&state).unwrap();
        }
        match first.evaluate().unwrap() {
            ScalarValue::Int64(Some(v)) => v as u64,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn partitions_merge_to_the_sums_of_all_values_and_skip_nulls() {
        let parts = [vec![Some(7.0), None], vec![Some(7.0), Some(7.0)]];
        let (s1, s2) = (run(false, &parts), run(true, &parts));
        assert!(shared::shares_one_value(3, s1, s2));
        let parts = [vec![Some(7.0)], vec![Some(8.0), Some(7.0)]];
        let (s1, s2) = (run(false, &parts), run(true, &parts));
        assert!(!shared::shares_one_value(3, s1, s2));
    }
}

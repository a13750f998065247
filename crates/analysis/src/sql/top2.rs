//! `medfed_top2(x)`: the sum of the two largest values of a group, the input of the (2, p)
//! dominance rule.
//!
//! An aggregate of its own rather than `max(x) + nth_value(x, 2 ORDER BY x DESC)`: DataFusion
//! cannot plan two ordered aggregates with different orderings in one query (so a query with
//! two sums would fail), and ordering sorts every group's values where two running maxima do.
//! Its state is two numbers per group, so it merges across partitions like `max`.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use datafusion::error::Result;
use datafusion::logical_expr::{Accumulator, AggregateUDF, Expr, Volatility, create_udaf};
use datafusion::scalar::ScalarValue;

/// The two largest values seen (`NEG_INFINITY` until seen).
#[derive(Debug)]
struct Top2([f64; 2]);

impl Default for Top2 {
    fn default() -> Self {
        Self([f64::NEG_INFINITY; 2])
    }
}

impl Top2 {
    fn push(&mut self, v: f64) {
        let [a, b] = &mut self.0;
        if v > *a {
            *b = *a;
            *a = v;
        } else if v > *b {
            *b = v;
        }
    }

    fn push_array(&mut self, values: &ArrayRef) -> Result<()> {
        let values = arrow::compute::cast(values, &DataType::Float64)?;
        for v in values.as_primitive::<Float64Type>().iter().flatten() {
            self.push(v);
        }
        Ok(())
    }

    fn value(&self, i: usize) -> Option<f64> {
        Some(self.0[i]).filter(|v| v.is_finite())
    }
}

impl Accumulator for Top2 {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.push_array(&values[0])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        states.iter().try_for_each(|s| self.push_array(s))
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Float64(self.value(0)),
            ScalarValue::Float64(self.value(1)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(
            self.value(0).map(|a| a + self.value(1).unwrap_or(0.0)),
        ))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

static TOP2: LazyLock<Arc<AggregateUDF>> = LazyLock::new(|| {
    Arc::new(create_udaf(
        "medfed_top2",
        vec![DataType::Float64],
        Arc::new(DataType::Float64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(Top2::default()))),
        Arc::new(vec![DataType::Float64, DataType::Float64]),
    ))
});

/// `medfed_top2(x)`: the largest plus the second largest non-null value of `x` (null when none).
pub(crate) fn top2(x: Expr) -> Expr {
    TOP2.call(vec![x])
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Float64Array;

    #[test]
    fn keeps_the_two_largest_across_batches_and_merges() {
        let mut a = Top2::default();
        a.update_batch(&[Arc::new(Float64Array::from(vec![
            Some(3.0),
            None,
            Some(9.0),
        ]))])
        .unwrap();
        let mut b = Top2::default();
        b.update_batch(&[Arc::new(Float64Array::from(vec![5.0, 1.0]))])
            .unwrap();
        let state: Vec<ArrayRef> = b
            .state()
            .unwrap()
            .into_iter()
            .map(|s| s.to_array().unwrap())
            .collect();
        a.merge_batch(&state).unwrap();
        assert_eq!(a.evaluate().unwrap(), ScalarValue::Float64(Some(14.0)));
        let mut one = Top2::default();
        one.update_batch(&[Arc::new(Float64Array::from(vec![4.0]))])
            .unwrap();
        assert_eq!(one.evaluate().unwrap(), ScalarValue::Float64(Some(4.0)));
        assert_eq!(
            Top2::default().evaluate().unwrap(),
            ScalarValue::Float64(None)
        );
    }
}

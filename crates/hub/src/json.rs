//! Arrow results → JSON rows for researchers.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt32Type,
    UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::Value;

/// Column names and rows of JSON scalars.
pub fn to_rows(batches: &[RecordBatch]) -> (Vec<String>, Vec<Vec<Value>>) {
    let columns = batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default();
    let mut rows = Vec::new();
    for b in batches {
        let cols: Vec<Vec<Value>> = b.columns().iter().map(|c| column(c.as_ref())).collect();
        for r in 0..b.num_rows() {
            rows.push(cols.iter().map(|c| c[r].clone()).collect());
        }
    }
    (columns, rows)
}

fn num<T: Into<serde_json::Number>>(v: T) -> Value {
    Value::Number(v.into())
}

fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn column(a: &dyn Array) -> Vec<Value> {
    let n = a.len();
    // Logical nulls: a column of NULLs (a rolled-up key) has no null buffer of its own.
    let nulls = a.logical_nulls();
    let is_null = |i: usize| nulls.as_ref().is_some_and(|b| b.is_null(i));
    let pick = |f: &dyn Fn(usize) -> Value| {
        (0..n)
            .map(|i| if is_null(i) { Value::Null } else { f(i) })
            .collect()
    };
    match a.data_type() {
        DataType::Int8 => pick(&|i| num(a.as_primitive::<Int8Type>().value(i))),
        DataType::Int16 => pick(&|i| num(a.as_primitive::<Int16Type>().value(i))),
        DataType::Int32 => pick(&|i| num(a.as_primitive::<Int32Type>().value(i))),
        DataType::Int64 => pick(&|i| num(a.as_primitive::<Int64Type>().value(i))),
        DataType::UInt32 => pick(&|i| num(a.as_primitive::<UInt32Type>().value(i))),
        DataType::UInt64 => pick(&|i| num(a.as_primitive::<UInt64Type>().value(i))),
        DataType::Float32 => pick(&|i| float(a.as_primitive::<Float32Type>().value(i) as f64)),
        DataType::Float64 => pick(&|i| float(a.as_primitive::<Float64Type>().value(i))),
        DataType::Boolean => pick(&|i| Value::Bool(a.as_boolean().value(i))),
        _ => match ArrayFormatter::try_new(a, &FormatOptions::default()) {
            Ok(f) => pick(&|i| Value::String(f.value(i).to_string())),
            Err(_) => vec![Value::Null; n],
        },
    }
}

//! Arrow columns of the gold tables, from iterators of optional values.

use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Int32Array, StringArray};

/// The CDM definition of gold table `name`.
pub(super) fn table(name: &str) -> &'static medfed_core::omop::TableDef {
    medfed_core::omop::table(name).expect("gold writes CDM tables")
}

pub(super) fn i32s(v: impl Iterator<Item = Option<i32>>) -> ArrayRef {
    Arc::new(Int32Array::from_iter(v))
}

pub(super) fn dates(v: impl Iterator<Item = Option<i32>>) -> ArrayRef {
    Arc::new(Date32Array::from_iter(v))
}

pub(super) fn strs<'a>(v: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(v))
}

pub(super) fn strs_owned(v: impl Iterator<Item = Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(v))
}

pub(super) fn constant(value: i32, n: usize) -> ArrayRef {
    Arc::new(Int32Array::from(vec![value; n]))
}

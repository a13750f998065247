//! Splitting an accepted aggregate into per-site partials and the hub's merge.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::MemTable;
use datafusion::common::TableReference;
use datafusion::datasource::provider_as_source;
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::functions::string::expr_fn::concat_ws;
use datafusion::functions_aggregate::expr_fn::max;
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::functions_aggregate::{count::count_udaf, sum::sum_udaf, variance::var_pop_udaf};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    AggregateUDF, Expr, LogicalPlan, LogicalPlanBuilder, cast, col, lit, when,
};
use medfed_privacy::release::{CELL_STATUS, CONTRIBUTORS};
use medfed_privacy::{Rounding, Suppression};

use super::PARTIALS;
use super::check::{AggKind, Shape, strip_alias};
use super::error::Result;

pub(crate) struct Split {
    /// Runs at each site: `SELECT k0.., p0.. FROM <input> GROUP BY <keys>`.
    pub site_plan: LogicalPlan,
    /// What a site's protected answer looks like: the site plan's columns plus
    /// [`CONTRIBUTORS`] and [`CELL_STATUS`].
    pub partial_schema: SchemaRef,
    /// The hub's merge, finished per query.
    pub merge: MergeParts,
    /// What each partial column computes at a site (`p0` → `count(*)`), for reports.
    pub labels: std::collections::BTreeMap<String, String>,
    /// True when the merge only adds the sites' partials up (so their sum is all it needs, as
    /// under secure aggregation); false when it needs each site's own values (variances).
    pub additive: bool,
    /// `[n, s, v]` partial columns of each variance aggregate ([`super::spread`]).
    pub spreads: Vec<super::spread::Columns>,
}

/// Hidden columns the merge carries up to the result (stripped before release).
pub(crate) const CELL: &str = "__medfed_cell";
pub(crate) const MERGED_N: &str = "__medfed_n";
pub(crate) const GROUP_KEY: &str = "__medfed_key";
const MERGED_FLAG: &str = "__medfed_flag";

/// Site-side partial aggregates, de-duplicated (AVG(x) and COUNT(x) share one count).
#[derive(Default)]
struct Partials {
    exprs: Vec<Expr>,
    index: HashMap<Expr, usize>,
}

impl Partials {
    /// Adds `f(args)` with the original FILTER, returning the merged column (`SUM(p_i)` at the hub).
    fn add(&mut self, f: Arc<AggregateUDF>, args: Vec<Expr>, filter: &Option<Box<Expr>>) -> Expr {
        let e = Expr::AggregateFunction(AggregateFunction::new_udf(
            f,
            args,
            false,
            filter.clone(),
            vec![],
            None,
        ));
        self.add_expr(e)
    }

    fn add_expr(&mut self, e: Expr) -> Expr {
        let n = self.exprs.len();
        let i = *self.index.entry(e.clone()).or_insert(n);
        if i == n {
            self.exprs.push(e);
        }
        col(format!("p{i}"))
    }
}

fn f64(e: Expr) -> Expr {
    cast(e, DataType::Float64)
}

pub(crate) fn split(shape: &Shape<'_>) -> Result<Split> {
    let agg = shape.aggregate;
    let mut partials = Partials::default();
    // For each original aggregate: the partial columns it needs, and how to finish it from the
    // hub's SUMs of those columns. `m(x)` names the hub-side SUM of partial expression x.
    let mut merges: Vec<Expr> = Vec::new();
    let mut merge_index: HashMap<Expr, usize> = HashMap::new();
    let mut m = |e: Expr| {
        let n = merges.len();
        let i = *merge_index.entry(e.clone()).or_insert(n);
        if i == n {
            merges.push(e);
        }
        col(format!("m{i}"))
    };
    let mut finals = Vec::new();
    let mut counts = Vec::new();
    let mut spreads: Vec<super::spread::Columns> = Vec::new();
    let additive = !shape
        .kinds
        .iter()
        .any(|k| matches!(k, AggKind::Variance { .. }));
    for (e, kind) in agg.aggr_expr.iter().zip(&shape.kinds) {
        let Expr::AggregateFunction(f) = strip_alias(e) else {
            unreachable!("checked")
        };
        let args = &f.params.args;
        let filter = &f.params.filter;
        let fin = match kind {
            AggKind::Count | AggKind::CountDistinctId | AggKind::Sum => {
                let p = partials.add_expr(strip_alias(e).clone());
                m(sum(p))
            }
            AggKind::Avg => {
                // SUM(x), not SUM(CAST(x)): a cast is invisible in DataFusion's column names, so
                // the site's re-planned SQL would see two `sum(x)` columns. Integer sums stay exact.
                let s = partials.add(sum_udaf(), vec![args[0].clone()], filter);
                let n = partials.add(count_udaf(), vec![args[0].clone()], filter);
                f64(m(sum(s))) / f64(m(sum(n)))
            }
            AggKind::Variance { sample, sqrt } => {
                let x = args[0].clone();
                let n = partials.add(count_udaf(), vec![x.clone()], filter);
                let s = partials.add(sum_udaf(), vec![x.clone()], filter);
                let v = partials.add(var_pop_udaf(), vec![x], filter);
                let triple = [&n, &s, &v].map(|e| e.schema_name().to_string());
                if !spreads.contains(&triple) {
                    spreads.push(triple);
                }
                let big_n = f64(m(sum(n.clone())));
                let big_s = f64(m(sum(s.clone())));
                let within = m(sum(v * f64(n.clone())));
                let between = m(sum(f64(s.clone()) * f64(s) / f64(n)));
                let m2 = within + between - big_s.clone() * big_s / big_n.clone();
                let m2 = when(m2.clone().lt(lit(0.0)), lit(0.0)).otherwise(m2)?;
                let var = if *sample {
                    when(big_n.clone().gt(lit(1.0)), m2 / (big_n - lit(1.0))).end()?
                } else {
                    when(big_n.clone().gt(lit(0.0)), m2 / big_n).end()?
                };
                if *sqrt {
                    datafusion::functions::math::expr_fn::sqrt(var)
                } else {
                    var
                }
            }
        };
        finals.push(fin);
        counts.push(matches!(kind, AggKind::Count | AggKind::CountDistinctId));
    }

    // Site plan: aggregate, then name outputs positionally so the wire schema is k0.., p0...
    let site_agg = LogicalPlanBuilder::from(agg.input.as_ref().clone())
        .aggregate(
            agg.group_expr.clone(),
            // Named here: SUM(x) and SUM(CAST(x AS DOUBLE)) would otherwise share a column name.
            partials
                .exprs
                .iter()
                .enumerate()
                .map(|(i, e)| e.clone().alias(format!("p{i}"))),
        )?
        .build()?;
    let n_keys = agg.group_expr.len();
    let outputs: Vec<Expr> = site_agg
        .schema()
        .columns()
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let name = if i < n_keys {
                format!("k{i}")
            } else {
                format!("p{}", i - n_keys)
            };
            Expr::Column(c).alias(name)
        })
        .collect();
    let site_plan = LogicalPlanBuilder::from(site_agg)
        .project(outputs)?
        .build()?;

    // Hub plan: SUM every merge expression per key over all partials (plus the privacy
    // columns every protected partial carries); the finishing projection is built per merge,
    // when the network's minimum cell count is known ([`MergeParts::subplan`]).
    // Every statistic may arrive null: a site nulls the statistics of groups it suppresses.
    let mut fields: Vec<arrow::datatypes::FieldRef> = site_plan
        .schema()
        .as_arrow()
        .fields()
        .iter()
        .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
        .collect();
    fields.push(Arc::new(Field::new(CONTRIBUTORS, DataType::Int64, true)));
    fields.push(Arc::new(Field::new(CELL_STATUS, DataType::UInt8, false)));
    let partial_schema = Arc::new(Schema::new(fields));
    let empty = Arc::new(MemTable::try_new(partial_schema.clone(), vec![vec![]])?);
    let keys: Vec<Expr> = (0..n_keys).map(|i| col(format!("k{i}"))).collect();
    let mut merge_aggs: Vec<Expr> = merges
        .into_iter()
        .enumerate()
        .map(|(i, e)| e.alias(format!("m{i}")))
        .collect();
    merge_aggs.push(sum(col(CONTRIBUTORS)).alias(MERGED_N));
    merge_aggs.push(max(col(CELL_STATUS)).alias(MERGED_FLAG));
    let merged = LogicalPlanBuilder::scan(PARTIALS, provider_as_source(empty), None)?
        .aggregate(keys.clone(), merge_aggs)?
        .build()?;
    let names = agg
        .schema
        .iter()
        .map(|(q, f)| (q.cloned(), f.name().clone()))
        .collect();
    let mut labels: std::collections::BTreeMap<String, String> = partials
        .exprs
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("p{i}"), e.schema_name().to_string()))
        .collect();
    labels.insert(CONTRIBUTORS.into(), "people per group".into());
    Ok(Split {
        site_plan,
        partial_schema,
        labels,
        additive,
        spreads,
        merge: MergeParts {
            merged,
            keys,
            finals,
            counts,
            names,
        },
    })
}

/// The hub's side of the split, finished per merge.
#[derive(Debug, Clone)]
pub(crate) struct MergeParts {
    /// `SUM(partials) GROUP BY keys` over all sites' partials.
    merged: LogicalPlan,
    keys: Vec<Expr>,
    /// Each original aggregate, finished from the merged sums.
    finals: Vec<Expr>,
    /// Which of them are counts (rounded when the rules say so).
    counts: Vec<bool>,
    /// (qualifier, name) of the original Aggregate's outputs, keys first.
    names: Vec<(Option<TableReference>, String)>,
}

impl MergeParts {
    /// Replaces the original Aggregate: same output columns and names, each statistic null
    /// unless its group is released (counts rounded by `rounding`), plus [`CELL`],
    /// [`MERGED_N`] and [`GROUP_KEY`].
    pub(crate) fn subplan(&self, min_cell_count: u64, rounding: Rounding) -> Result<LogicalPlan> {
        let n = col(MERGED_N);
        let flag = col(MERGED_FLAG);
        let status = when(flag.clone().gt(lit(0u8)), cast(flag, DataType::UInt8))
            .when(
                n.clone()
                    .gt(lit(0i64))
                    .and(n.clone().lt(lit(min_cell_count as i64))),
                lit(Suppression::SmallCell.code()),
            )
            .otherwise(lit(0u8))?;
        let released = status.clone().eq(lit(0u8));
        let mut outputs = Vec::with_capacity(self.names.len() + 3);
        for (e, (qualifier, name)) in self.keys.iter().cloned().zip(&self.names) {
            outputs.push(e.alias_qualified(qualifier.clone(), name));
        }
        for ((e, count), (qualifier, name)) in self
            .finals
            .iter()
            .zip(&self.counts)
            .zip(&self.names[self.keys.len()..])
        {
            let e = if *count {
                rounded(e.clone(), rounding)?
            } else {
                e.clone()
            };
            let e = when(released.clone(), e).end()?;
            outputs.push(e.alias_qualified(qualifier.clone(), name));
        }
        outputs.push(status.alias(CELL));
        outputs.push(when(released, n).end()?.alias(MERGED_N));
        let key_text: Vec<Expr> = self
            .keys
            .iter()
            .map(|k| coalesce(vec![cast(k.clone(), DataType::Utf8), lit("∅")]))
            .collect();
        outputs.push(if key_text.is_empty() {
            lit("").alias(GROUP_KEY)
        } else {
            concat_ws(lit("\u{1f}"), key_text).alias(GROUP_KEY)
        });
        Ok(LogicalPlanBuilder::from(self.merged.clone())
            .project(outputs)?
            .build()?)
    }
}

/// `count` rounded as `rounding` says: [`Rounding::apply`] itself, as a scalar function of the
/// merge plan (so the rule has one implementation).
fn rounded(count: Expr, rounding: Rounding) -> Result<Expr> {
    use arrow::array::{ArrayRef, AsArray, Int64Array};
    use arrow::datatypes::Int64Type;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    if !rounding.is_on() {
        return Ok(count);
    }
    let apply = move |args: &[ColumnarValue]| {
        let counts = ColumnarValue::values_to_arrays(args)?.remove(0);
        let counts = arrow::compute::cast(&counts, &DataType::Int64)?;
        let out: Int64Array = counts
            .as_primitive::<Int64Type>()
            .iter()
            .map(|n| n.map(|n| rounding.apply(n)))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    };
    let udf = create_udf(
        "medfed_round_count",
        vec![DataType::Int64],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(apply),
    );
    Ok(udf.call(vec![cast(count, DataType::Int64)]))
}

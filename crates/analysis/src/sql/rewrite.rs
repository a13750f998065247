//! Splitting an accepted aggregate into per-site partials and the hub's merge.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::catalog::MemTable;
use datafusion::datasource::provider_as_source;
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::functions_aggregate::{count::count_udaf, sum::sum_udaf, variance::var_pop_udaf};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    AggregateUDF, Expr, LogicalPlan, LogicalPlanBuilder, cast, col, lit, when,
};

use super::PARTIALS;
use super::check::{AggKind, Shape, strip_alias};
use super::error::Result;

pub(crate) struct Split {
    /// Runs at each site: `SELECT k0.., p0.. FROM <input> GROUP BY <keys>`.
    pub site_plan: LogicalPlan,
    /// Replaces the original Aggregate at the hub; same output columns and names.
    pub merge_subplan: LogicalPlan,
}

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

    // Hub plan: SUM every merge expression per key over all partials, finish each aggregate, and
    // give every column the exact (qualifier, name) of the original Aggregate's output.
    let partial_schema = Arc::new(site_plan.schema().as_arrow().clone());
    let empty = Arc::new(MemTable::try_new(partial_schema, vec![vec![]])?);
    let keys: Vec<Expr> = (0..n_keys).map(|i| col(format!("k{i}"))).collect();
    let merge_aggs: Vec<Expr> = merges
        .into_iter()
        .enumerate()
        .map(|(i, e)| e.alias(format!("m{i}")))
        .collect();
    let merged = LogicalPlanBuilder::scan(PARTIALS, provider_as_source(empty), None)?
        .aggregate(keys.clone(), merge_aggs)?;
    let outputs: Vec<Expr> = keys
        .into_iter()
        .chain(finals)
        .zip(agg.schema.iter())
        .map(|(e, (qualifier, field))| e.alias_qualified(qualifier.cloned(), field.name()))
        .collect();
    let merge_subplan = merged.project(outputs)?.build()?;
    Ok(Split {
        site_plan,
        merge_subplan,
    })
}

//! The site's privacy additions to a checked partial plan, made before it runs.
//!
//! The hub's partial SQL is `SELECT keys AS k.., aggregates AS p.. FROM <rows> GROUP BY keys`.
//! The site rewrites its own plan of it (the hub cannot skip this: it never sees the plan) to
//! also compute, per group:
//! - `__n`: the people behind the group (`COUNT(DISTINCT person_id)`, or rows for tables
//!   without a person identifier) — the count every disclosure rule is about;
//! - exact studies: for each SUM, Σ|x| and the sum of the n largest |x| (dominance inputs) and
//!   the count, Σe and Σe² of its values in a finite field (shared-value inputs,
//!   [`medfed_privacy::shared`]) — judged at the site and dropped, or under secure aggregation
//!   sent masked for the hub to judge on the network's sums;
//! - DP studies: each person's rows are capped at `max_rows_per_person` (contribution bounding,
//!   so one person moves any count by at most that) and summed values are clamped to their
//!   declared bounds (so one row moves a sum by at most the bound).
//!
//! [`medfed_privacy::release::protect`] then suppresses, or noises and thresholds, the result.

use datafusion::common::{Column, DFSchema};
use datafusion::functions::math::expr_fn::abs;
use datafusion::functions_aggregate::expr_fn::{count, count_distinct, max, sum};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    Aggregate, Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, Projection, cast, col, lit,
    when,
};
use medfed_privacy::{ColumnRole, DpRelease};

use super::check::{self, AggKind, strip_alias};
use super::error::{Result, SqlError};

/// Column added by contribution bounding.
const ROW_RANK: &str = "__medfed_rank";

/// The person identifier the rules count, if the rows have one.
fn person_column(schema: &DFSchema) -> Option<Column> {
    schema
        .columns()
        .into_iter()
        .find(|c| c.name.eq_ignore_ascii_case("person_id"))
}

/// Rewrites a checked site plan for `dp` (None: exact study). Returns the plan and the role of
/// each of its output columns.
pub(crate) fn augment(
    plan: &LogicalPlan,
    dp: Option<&DpRelease>,
) -> Result<(LogicalPlan, Vec<ColumnRole>)> {
    let shape = check::analyse(plan)?;
    let unexpected = || SqlError::Unsupported("unexpected partial shape".into());
    let LogicalPlan::Projection(root) = plan else {
        return Err(unexpected());
    };
    let LogicalPlan::Aggregate(agg) = root.input.as_ref() else {
        return Err(unexpected());
    };
    let person = person_column(agg.input.schema());
    if dp.is_some() && person.is_none() {
        return Err(SqlError::Disclosive(
            "differential privacy needs a person_id column in the rows being aggregated \
             (the unit of privacy is the person)"
                .into(),
        ));
    }
    let mut aggr_expr = Vec::with_capacity(agg.aggr_expr.len() + 2);
    let mut kinds = Vec::with_capacity(agg.aggr_expr.len());
    let mut dominance = Vec::new();
    let mut value_counts = Vec::new();
    for (e, kind) in agg.aggr_expr.iter().zip(&shape.kinds) {
        let name = e.schema_name().to_string();
        let role = match kind {
            AggKind::Count | AggKind::CountDistinctId => ColumnRole::Count,
            AggKind::Sum | AggKind::Avg => ColumnRole::Sum { range: None },
            AggKind::Variance { .. } => ColumnRole::ExactOnly,
        };
        let arg = sum_argument(e);
        let (expr, role) = match (dp, role, arg) {
            (Some(dp), ColumnRole::Sum { .. }, Some(x)) => {
                let (lo, hi) = bounds_for(dp, &x)?;
                let clamped = clamp(x.clone(), lo, hi)?;
                value_counts.push(x);
                (
                    sum(clamped).alias(name.clone()),
                    ColumnRole::Sum {
                        range: Some((lo, hi)),
                    },
                )
            }
            (None, ColumnRole::Sum { .. }, Some(x)) => {
                dominance.push(x);
                (e.clone(), role)
            }
            _ => (e.clone(), role),
        };
        aggr_expr.push(expr);
        kinds.push((name, role));
    }
    // People per group; over OMOP's person table alone that is its row count (no hashing).
    let contributors = match &person {
        Some(p) if !one_row_per_person(&agg.input) => count_distinct(Expr::Column(p.clone())),
        _ => count(lit(1)),
    };
    let mut extras = vec![(contributors.alias("__n"), ColumnRole::Contributors)];
    // An AVG's DP sum is noised centred on its bounds' midpoint and re-centred on the released
    // COUNT(x); a bare SUM is noised as it is (a hidden count would only add noise).
    for (i, x) in value_counts.into_iter().enumerate() {
        if let Some(j) = agg.aggr_expr.iter().position(|e| is_count_of(e, &x)) {
            kinds[j].1 = ColumnRole::ValueCount(i);
        }
    }
    for (i, x) in dominance.into_iter().enumerate() {
        // A sum of a constant (`SUM(1)`) or of a group key tells nothing its key does not:
        // its shared-value inputs are left empty (no values, never "shared").
        let trivial = x.column_refs().is_empty()
            || agg
                .group_expr
                .iter()
                .any(|g| strip_alias(g) == strip_alias(&x));
        let (values, s1, s2) = if trivial {
            let zero = || sum(lit(0i64));
            (zero(), zero(), zero())
        } else {
            let (s1, s2) = super::shared::power_sums(x.clone());
            (count(x.clone()), s1, s2)
        };
        for (e, name, role) in [
            (values, "__shared_n", ColumnRole::SharedCount(i)),
            (s1, "__shared_s1", ColumnRole::SharedSum(i)),
            (s2, "__shared_s2", ColumnRole::SharedSquares(i)),
        ] {
            extras.push((e.alias(format!("{name}{i}")), role));
        }
        let x = abs(cast(x, arrow::datatypes::DataType::Float64));
        extras.push((
            max(x.clone()).alias(format!("__dom_first{i}")),
            ColumnRole::DominanceFirst(i),
        ));
        let top = super::top2::top2(x.clone());
        extras.push((
            sum(x).alias(format!("__dom_total{i}")),
            ColumnRole::DominanceTotal(i),
        ));
        extras.push((
            top.alias(format!("__dom_top{i}")),
            ColumnRole::DominanceTop(i),
        ));
    }
    let input = match (dp, &person) {
        (Some(dp), Some(p)) if !one_row_per_person(&agg.input) => {
            bound_contributions(agg.input.as_ref().clone(), p, dp)?
        }
        _ => agg.input.as_ref().clone(),
    };
    let extra_names: Vec<String> = extras
        .iter()
        .map(|(e, _)| e.schema_name().to_string())
        .collect();
    aggr_expr.extend(extras.iter().map(|(e, _)| e.clone()));
    let new_agg = LogicalPlan::Aggregate(Aggregate::try_new(
        std::sync::Arc::new(input),
        agg.group_expr.clone(),
        aggr_expr,
    )?);
    // The root projection names outputs k0.., p0..; each p refers to one aggregate by name.
    let mut roles = Vec::with_capacity(root.expr.len() + extras.len());
    for e in &root.expr {
        let refers = strip_alias(e)
            .column_refs()
            .into_iter()
            .next()
            .map(|c| c.name.clone());
        let role = kinds
            .iter()
            .find(|(name, _)| Some(name) == refers.as_ref())
            .map(|(_, r)| *r)
            .unwrap_or(ColumnRole::Key);
        roles.push(role);
    }
    // Dominance entries point at the position of their sum in the output.
    let sums: Vec<usize> = roles
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, ColumnRole::Sum { .. }))
        .map(|(i, _)| i)
        .collect();
    let mut exprs = root.expr.clone();
    for ((_, role), name) in extras.iter().zip(&extra_names) {
        exprs.push(col(Column::from_name(name.clone())));
        roles.push(match role {
            ColumnRole::DominanceTotal(i) => ColumnRole::DominanceTotal(sums[*i]),
            ColumnRole::DominanceTop(i) => ColumnRole::DominanceTop(sums[*i]),
            ColumnRole::DominanceFirst(i) => ColumnRole::DominanceFirst(sums[*i]),
            ColumnRole::SharedCount(i) => ColumnRole::SharedCount(sums[*i]),
            ColumnRole::SharedSum(i) => ColumnRole::SharedSum(sums[*i]),
            ColumnRole::SharedSquares(i) => ColumnRole::SharedSquares(sums[*i]),
            other => *other,
        });
    }
    for r in roles.iter_mut() {
        if let ColumnRole::ValueCount(i) = r {
            *r = ColumnRole::ValueCount(sums[*i]);
        }
    }
    let out = LogicalPlan::Projection(Projection::try_new(exprs, std::sync::Arc::new(new_agg))?);
    Ok((out, roles))
}

/// True for a plain `COUNT(x)` of exactly `x` (no DISTINCT, no FILTER).
fn is_count_of(e: &Expr, x: &Expr) -> bool {
    matches!(strip_alias(e), Expr::AggregateFunction(AggregateFunction { func, params })
        if func.name().eq_ignore_ascii_case("count")
            && !params.distinct
            && params.filter.is_none()
            && params.args.len() == 1
            && &params.args[0] == x)
}

/// The value a SUM adds up (the site's partials are plain `sum(x)`s).
fn sum_argument(e: &Expr) -> Option<Expr> {
    match strip_alias(e) {
        Expr::AggregateFunction(AggregateFunction { func, params })
            if func.name().eq_ignore_ascii_case("sum") && params.args.len() == 1 =>
        {
            Some(params.args[0].clone())
        }
        _ => None,
    }
}

/// The declared bounds of the column a summed expression reads.
fn bounds_for(dp: &DpRelease, x: &Expr) -> Result<(f64, f64)> {
    let refs = x.column_refs();
    let [c] = refs.into_iter().collect::<Vec<_>>()[..] else {
        return Err(SqlError::Disclosive(format!(
            "under differential privacy a SUM/AVG must read one column with declared bounds, not `{x}`"
        )));
    };
    let qualified = c.flat_name();
    let (lo, hi) = dp
        .bounds
        .get(&qualified)
        .or_else(|| dp.bounds.get(&c.name))
        .copied()
        .ok_or_else(|| {
            SqlError::Disclosive(format!(
                "under differential privacy SUM/AVG of `{}` needs declared bounds \
                 (e.g. \"bounds\": {{\"{}\": [low, high]}}); values are clamped to them",
                c.name, c.name
            ))
        })?;
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Err(SqlError::Disclosive(format!(
            "invalid bounds [{lo}, {hi}] for `{}`",
            c.name
        )));
    }
    Ok((lo, hi))
}

fn clamp(x: Expr, lo: f64, hi: f64) -> Result<Expr> {
    let x = cast(x, arrow::datatypes::DataType::Float64);
    Ok(when(x.clone().lt(lit(lo)), lit(lo))
        .when(x.clone().gt(lit(hi)), lit(hi))
        .otherwise(x)?)
}

/// True when the rows come from one scan of OMOP's `person` table, whose primary key is
/// `person_id` (CDM v5.4): every person is already at most one row, and bounding would only cost a
/// sort. Anything else (a join, another table, two scans) is bounded.
fn one_row_per_person(input: &LogicalPlan) -> bool {
    let mut scans = Vec::new();
    let mut other = false;
    let _ = input.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(t) => scans.push(t.table_name.table().to_string()),
            LogicalPlan::Filter(_) | LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) => {
            }
            _ => other = true,
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    !other && scans == ["person"]
}

/// Keeps at most `max_rows_per_person` rows of each person.
fn bound_contributions(input: LogicalPlan, person: &Column, dp: &DpRelease) -> Result<LogicalPlan> {
    let rank = row_number()
        .partition_by(vec![Expr::Column(person.clone())])
        .build()?
        .alias(ROW_RANK);
    let limit = u64::from(dp.max_rows_per_person.max(1));
    Ok(LogicalPlanBuilder::from(input)
        .window(vec![rank])?
        .filter(col(ROW_RANK).lt_eq(lit(limit)))?
        .build()?)
}

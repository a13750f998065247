//! Aggregate SQL over OMOP, federated: one query in, one merged table out, only partials between.
//!
//! ```text
//!  researcher SQL ──plan+check──► Aggregate(keys, aggs) over <row-level input>
//!                                      │ split
//!             ┌────────────────────────┴──────────────────────────┐
//!   site SQL: SELECT key AS k0.., partial AS p0..       hub merge plan: the original plan with its
//!             FROM <row-level input> GROUP BY key       Aggregate replaced by
//!   (runs at every site, checked again there)             Project(final exprs) ← Aggregate(SUM(p..))
//!                                                         ← scan(all sites' partials)
//! ```
//! Partials: COUNT → count; SUM → sum; AVG → sum, count; VAR/STDDEV → count, sum, within-site
//! population variance, combined with Chan et al.'s parallel formula (no sum-of-squares
//! cancellation). COUNT(DISTINCT person_id) → per-site distinct count, summed: a patient belongs to
//! exactly one site. Everything above the aggregate (HAVING, ORDER BY, LIMIT, expressions over
//! aggregates) runs at the hub on merged values, so the answer equals the pooled one.

mod check;
pub mod class;
mod cohort;
mod error;
pub mod grouping_sets;
mod protect;
mod reads;
mod rewrite;
mod shared;
mod site;
pub mod spread;
mod top2;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::Array;
use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::MemTable;
use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::provider_as_source;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, Projection};
use datafusion::prelude::{SQLOptions, SessionContext};

pub(crate) use check::{has_subquery, identifier_lineage};
pub use error::{Result, SqlError};
pub use reads::reads;
pub use site::{
    PartialPlanCache, PreparedPartial, execute_partial, prepare_site_partial, run_site_partial,
};

/// Name of the table that holds all sites' partials in the hub's merge plan.
const PARTIALS: &str = "__medfed_partials";

/// A researcher's query, checked and split into a site step and a hub step.
#[derive(Debug, Clone)]
pub struct FederatedSql {
    site_sql: String,
    partial_schema: SchemaRef,
    /// The researcher's plan; its Aggregate is replaced by the merge at each [`Self::merge`].
    plan: LogicalPlan,
    target: Aggregate,
    merge: rewrite::MergeParts,
    reads: BTreeMap<String, BTreeSet<String>>,
    grouping: String,
    dims: Vec<String>,
    cohort: String,
    labels: BTreeMap<String, String>,
    additive: bool,
    spreads: Vec<spread::Columns>,
}

/// A merged result with, per output row, what the airlock needs to judge it.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The released table: suppressed statistics are null.
    pub batches: Vec<RecordBatch>,
    /// One entry per output row, in order.
    pub cells: Vec<MergedCell>,
}

/// The disclosure facts of one output row (never released themselves).
#[derive(Debug, Clone, PartialEq)]
pub struct MergedCell {
    /// 0 released, else a [`medfed_privacy::Suppression`] code.
    pub status: u8,
    /// People behind the row's group, when released.
    pub contributors: Option<i64>,
    /// The group's key values as text (for comparing releases).
    pub key: String,
}

impl Merged {
    /// Removes the rows at `rows` (withheld groups, as under secure aggregation); returns how
    /// many.
    pub fn withhold(&mut self, rows: &BTreeSet<usize>) -> Result<usize> {
        if rows.is_empty() {
            return Ok(0);
        }
        let mut at = 0;
        let mut batches = Vec::with_capacity(self.batches.len());
        for b in &self.batches {
            let keep: arrow::array::BooleanArray = (at..at + b.num_rows())
                .map(|i| Some(!rows.contains(&i)))
                .collect();
            at += b.num_rows();
            batches.push(arrow::compute::filter_record_batch(b, &keep)?);
        }
        self.batches = batches;
        let mut i = 0;
        self.cells.retain(|_| {
            i += 1;
            !rows.contains(&(i - 1))
        });
        Ok(rows.len())
    }
}

/// SQL options for untrusted text: queries only, no DDL, DML, `SET` or `COPY`.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

impl FederatedSql {
    /// Plans `sql` against the tables registered in `state` (the network catalogue), refuses it
    /// unless it releases only mergeable aggregates, and splits it.
    pub async fn plan(state: &SessionState, sql: &str) -> Result<Self> {
        let plan = state.create_logical_plan(sql).await?;
        read_only().verify_plan(&plan)?;
        let shape = check::analyse(&plan)?;
        let reads = reads::reads(&state.optimize(&plan)?);
        let split = rewrite::split(&shape)?;
        let site_sql = datafusion::sql::unparser::plan_to_sql(&split.site_plan)
            .map_err(|e| {
                SqlError::Unsupported(format!(
                    "this query shape cannot be sent to sites yet ({e})"
                ))
            })?
            .to_string();
        let dims: Vec<String> = shape.aggregate.group_expr.iter().map(cohort::dim).collect();
        let grouping = dims.join(", ");
        let cohort = cohort::cohort(&shape.aggregate.input);
        let target = shape.aggregate.clone();
        Ok(Self {
            site_sql,
            partial_schema: split.partial_schema,
            target,
            merge: split.merge,
            reads,
            grouping,
            dims,
            cohort,
            labels: split.labels,
            additive: split.additive,
            spreads: split.spreads,
            plan,
        })
    }

    /// Tables and columns the query reads (for checking it against a study's terms).
    pub fn reads(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.reads
    }

    /// How many GROUP BY keys the query has (2: a two-way table).
    pub fn key_count(&self) -> usize {
        self.target.group_expr.len()
    }

    /// The group keys, as text (table qualifiers removed): releases with the same grouping are
    /// compared for differencing.
    pub fn grouping(&self) -> &str {
        &self.grouping
    }

    /// The group keys, one name each (a group's key text splits into these, in order).
    pub fn dims(&self) -> &[String] {
        &self.dims
    }

    /// The rows the query aggregates, as normalised text: releases of one study with the same
    /// cohort and nested [`Self::dims`] are margins of each other.
    pub fn cohort(&self) -> &str {
        &self.cohort
    }

    /// What a partial column (`p0`, `__n`) computes, for privacy reports.
    pub fn label<'a>(&'a self, column: &'a str) -> &'a str {
        self.labels
            .get(column)
            .map(String::as_str)
            .unwrap_or(column)
    }

    /// True when the merge needs only the sum of the sites' partials (every aggregate but
    /// VAR/STDDEV, whose merge uses each site's own variance, or under secure aggregation a
    /// second sum around the pooled mean: [`spread`]).
    pub fn is_additive(&self) -> bool {
        self.additive
    }

    /// `[n, s, v]` partial columns of each VAR/STDDEV: what the two secure sums of
    /// [`spread`] reshape (empty when the query has none).
    pub fn spreads(&self) -> &[spread::Columns] {
        &self.spreads
    }

    /// The SQL every site runs: group keys `k0..` and partial aggregates `p0..`.
    pub fn site_sql(&self) -> &str {
        &self.site_sql
    }

    /// Schema of a site's protected answer to [`Self::site_sql`].
    pub fn partial_schema(&self) -> &SchemaRef {
        &self.partial_schema
    }

    /// Checks a site's answer against [`Self::partial_schema`] and casts it there (sites may type
    /// an extra table's column differently, e.g. Int64 vs Float64 from CSV inference; a noised
    /// integer sum may arrive as Float64).
    pub fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let want = &self.partial_schema;
        if batch.num_columns() != want.fields().len() {
            return Err(SqlError::Execution(format!(
                "site answered {} columns, expected {}",
                batch.num_columns(),
                want.fields().len()
            )));
        }
        let columns = batch
            .columns()
            .iter()
            .zip(want.fields())
            .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                SqlError::Execution(format!("site partial has an incompatible type: {e}"))
            })?;
        RecordBatch::try_new(want.clone(), columns).map_err(|e| SqlError::Execution(e.to_string()))
    }

    /// Combines the partials of all answering sites into the result, suppressing every group
    /// a site suppressed or that has fewer than `min_cell_count` people network-wide, and
    /// rounding released counts as `rounding` says.
    ///
    /// Each batch must have [`Self::partial_schema`] (cast site answers first).
    pub async fn merge(
        &self,
        partials: Vec<RecordBatch>,
        min_cell_count: u64,
        rounding: medfed_privacy::Rounding,
    ) -> Result<Merged> {
        let table = Arc::new(MemTable::try_new(
            self.partial_schema.clone(),
            vec![partials],
        )?);
        let replacement = self.merge.subplan(min_cell_count, rounding)?;
        let target = &self.target;
        let plan = self
            .plan
            .clone()
            .transform_down(|node| match &node {
                LogicalPlan::Aggregate(a) if a == target => Ok(Transformed::new(
                    replacement.clone(),
                    true,
                    TreeNodeRecursion::Jump,
                )),
                _ => Ok(Transformed::no(node)),
            })?
            .data
            .transform_up(|node| {
                let node = match node {
                    LogicalPlan::TableScan(mut scan) if scan.table_name.table() == PARTIALS => {
                        scan.source = provider_as_source(table.clone());
                        LogicalPlan::TableScan(scan)
                    }
                    LogicalPlan::Projection(p) => carry_hidden(p)?,
                    other => other,
                };
                node.recompute_schema().map(Transformed::yes)
            })?
            .data;
        let ctx = SessionContext::new();
        let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
        split_hidden(batches)
    }
}

/// Appends the hidden columns to a projection above the merge that would otherwise drop them.
fn carry_hidden(p: Projection) -> datafusion::error::Result<LogicalPlan> {
    let input = p.input.schema();
    let mut expr = p.expr;
    for name in [rewrite::CELL, rewrite::MERGED_N, rewrite::GROUP_KEY] {
        let present = expr.iter().any(|e| e.schema_name().to_string() == name);
        if !present && let Ok((q, f)) = input.qualified_field_with_unqualified_name(name) {
            expr.push(Expr::Column(Column::new(q.cloned(), f.name())));
        }
    }
    Ok(LogicalPlan::Projection(Projection::try_new(expr, p.input)?))
}

/// Strips the hidden columns from the merged batches into one [`MergedCell`] per row.
fn split_hidden(batches: Vec<RecordBatch>) -> Result<Merged> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Int64Type, UInt8Type};
    let mut cells = Vec::new();
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let schema = b.schema();
        let index = |name: &str| {
            schema
                .index_of(name)
                .map_err(|_| SqlError::Execution(format!("the merge lost its {name} column")))
        };
        let (ci, ni, ki) = (
            index(rewrite::CELL)?,
            index(rewrite::MERGED_N)?,
            index(rewrite::GROUP_KEY)?,
        );
        let status = arrow::compute::cast(b.column(ci), &DataType::UInt8)?;
        let n = arrow::compute::cast(b.column(ni), &DataType::Int64)?;
        let key = arrow::compute::cast(b.column(ki), &DataType::Utf8)?;
        let (status, n, key) = (
            status.as_primitive::<UInt8Type>(),
            n.as_primitive::<Int64Type>(),
            key.as_string::<i32>(),
        );
        for row in 0..b.num_rows() {
            cells.push(MergedCell {
                status: status.value(row),
                contributors: (!n.is_null(row)).then(|| n.value(row)),
                key: key.value(row).to_string(),
            });
        }
        let keep: Vec<usize> = (0..b.num_columns())
            .filter(|i| ![ci, ni, ki].contains(i))
            .collect();
        out.push(b.project(&keep)?);
    }
    Ok(Merged {
        batches: out,
        cells,
    })
}

#[cfg(test)]
mod tests;

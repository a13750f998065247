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
mod error;
mod reads;
mod rewrite;
mod site;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::MemTable;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::provider_as_source;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SQLOptions, SessionContext};

pub use error::{Result, SqlError};
pub use reads::reads;
pub use site::{PartialPlanCache, execute_partial, prepare_site_partial, run_site_partial};

/// Name of the table that holds all sites' partials in the hub's merge plan.
const PARTIALS: &str = "__medfed_partials";

/// A researcher's query, checked and split into a site step and a hub step.
#[derive(Debug, Clone)]
pub struct FederatedSql {
    site_sql: String,
    partial_schema: SchemaRef,
    merge_plan: LogicalPlan,
    reads: BTreeMap<String, BTreeSet<String>>,
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
        let partial_schema = Arc::new(split.site_plan.schema().as_arrow().clone());
        let target = shape.aggregate.clone();
        let replacement = split.merge_subplan;
        let merge_plan = plan
            .transform_down(|node| match &node {
                LogicalPlan::Aggregate(a) if *a == target => Ok(Transformed::new(
                    replacement.clone(),
                    true,
                    datafusion::common::tree_node::TreeNodeRecursion::Jump,
                )),
                _ => Ok(Transformed::no(node)),
            })?
            .data
            .transform_up(|node| node.recompute_schema().map(Transformed::yes))?
            .data;
        Ok(Self {
            site_sql,
            partial_schema,
            merge_plan,
            reads,
        })
    }

    /// Tables and columns the query reads (for checking it against a study's terms).
    pub fn reads(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.reads
    }

    /// The SQL every site runs: group keys `k0..` and partial aggregates `p0..`.
    pub fn site_sql(&self) -> &str {
        &self.site_sql
    }

    /// Schema of a site's answer to [`Self::site_sql`].
    pub fn partial_schema(&self) -> &SchemaRef {
        &self.partial_schema
    }

    /// Checks a site's answer against [`Self::partial_schema`] and casts it there (sites may type
    /// an extra table's column differently, e.g. Int64 vs Float64 from CSV inference).
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

    /// Combines the partials of all answering sites into the result.
    ///
    /// Each batch must have [`Self::partial_schema`] (cast site answers first).
    pub async fn merge(&self, partials: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        let table = Arc::new(MemTable::try_new(
            self.partial_schema.clone(),
            vec![partials],
        )?);
        let plan = self
            .merge_plan
            .clone()
            .transform_up(|node| match node {
                LogicalPlan::TableScan(mut scan) if scan.table_name.table() == PARTIALS => {
                    scan.source = provider_as_source(table.clone());
                    Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
                }
                other => Ok(Transformed::no(other)),
            })?
            .data;
        let ctx = SessionContext::new();
        Ok(ctx.execute_logical_plan(plan).await?.collect().await?)
    }
}

#[cfg(test)]
mod tests;

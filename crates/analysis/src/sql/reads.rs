//! What a plan reads: table → columns, for data-minimisation checks against a study's terms.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;

/// Tables and columns an *optimised* plan reads (projection pushdown has narrowed every scan to
/// the columns actually used, in filters and joins as well as in the output). Subqueries count.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use datafusion::prelude::*;
/// let ctx = SessionContext::new();
/// ctx.sql("CREATE TABLE person (person_id INT, year_of_birth INT, gender_concept_id INT)").await.unwrap();
/// let state = ctx.state();
/// let plan = state.create_logical_plan("SELECT COUNT(*) FROM person WHERE year_of_birth > 1950").await.unwrap();
/// let reads = medfed_analysis::sql::reads(&state.optimize(&plan).unwrap());
/// assert_eq!(reads["person"].iter().collect::<Vec<_>>(), ["year_of_birth"]);
/// # })
/// ```
pub fn reads(plan: &LogicalPlan) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let columns = out.entry(scan.table_name.table().to_string()).or_default();
            columns.extend(
                scan.projected_schema
                    .fields()
                    .iter()
                    .map(|f| f.name().clone()),
            );
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

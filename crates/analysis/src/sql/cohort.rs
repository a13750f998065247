//! The cohort a query aggregates over, as text: two releases of one study with the same cohort
//! and nested group keys are margins of each other (count by sex, then by sex and region), which
//! the airlock's complementary suppression must know.
//!
//! The text is the plan below the query's aggregate (tables, joins, filters) with table aliases
//! and column qualifiers removed, so `FROM person p` and `FROM person` match. Removing them can
//! only make different cohorts look alike, which protects more, never less.

use std::sync::Arc;

use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::{Expr, LogicalPlan};

/// The normalised text of the aggregate's `input`.
pub(crate) fn cohort(input: &LogicalPlan) -> String {
    let stripped = input.clone().transform_up(|node| match node {
        LogicalPlan::SubqueryAlias(a) => Ok(Transformed::yes(Arc::unwrap_or_clone(a.input))),
        other => other.map_expressions(|e| e.transform(unqualify)),
    });
    match stripped {
        Ok(t) => t.data.display_indent().to_string(),
        Err(_) => input.display_indent().to_string(),
    }
}

/// A group key's name without table qualifiers (`p.gender_concept_id` → `gender_concept_id`), so
/// the same key matches across queries that alias their tables differently.
pub(crate) fn dim(key: &Expr) -> String {
    match key.clone().transform(unqualify) {
        Ok(t) => t.data.schema_name().to_string(),
        Err(_) => key.schema_name().to_string(),
    }
}

fn unqualify(e: Expr) -> datafusion::error::Result<Transformed<Expr>> {
    Ok(match e {
        Expr::Column(c) if c.relation.is_some() => {
            Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))
        }
        e => Transformed::no(e),
    })
}

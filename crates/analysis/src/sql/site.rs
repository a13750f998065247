//! The site's side of SQL: plan the hub's partial SQL against the site's own tables, run the same
//! aggregate-only check the hub ran, and execute.
//!
//! Trust boundary: the SQL text comes from the hub and is treated as untrusted input.
//!
//! Checked, optimised plans are cached by SQL text ([`PartialPlanCache`]): portals re-run the
//! same questions and multi-round analyses resend the same partial shape, and parsing, checking
//! and logical optimisation are a large share of a small partial's cost when one machine hosts
//! many sites. Physical planning and execution still happen on every request, so results always
//! reflect the data as it is now. Plans calling non-immutable functions (`now()`,
//! `current_date`, `random()`) are never cached, because optimisation folds them to constants.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::prelude::SessionContext;

use super::error::{Result, SqlError};
use super::{check, read_only};

/// Checked and optimised partial plans of one site, by SQL text.
pub struct PartialPlanCache {
    plans: Mutex<HashMap<String, Arc<LogicalPlan>>>,
    capacity: usize,
}

impl PartialPlanCache {
    /// A cache of at most `capacity` plans (cleared when full: entries are cheap to rebuild).
    pub fn new(capacity: usize) -> Self {
        Self {
            plans: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// Number of cached plans.
    pub fn len(&self) -> usize {
        self.plans.lock().expect("plan cache lock").len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, sql: &str) -> Option<Arc<LogicalPlan>> {
        self.plans
            .lock()
            .expect("plan cache lock")
            .get(sql)
            .cloned()
    }

    fn put(&self, sql: &str, plan: Arc<LogicalPlan>) {
        let mut plans = self.plans.lock().expect("plan cache lock");
        if plans.len() >= self.capacity {
            plans.clear();
        }
        plans.insert(sql.to_string(), plan);
    }
}

impl Default for PartialPlanCache {
    fn default() -> Self {
        Self::new(256)
    }
}

/// True if every function the plan calls gives the same answer for the same input at any time.
fn is_time_independent(plan: &LogicalPlan) -> bool {
    let mut ok = true;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && f.func.signature().volatility != Volatility::Immutable
                {
                    ok = false;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    ok
}

/// Checks and optimises `sql` (or takes it from `cache`), then executes it on `ctx`.
/// Refuses anything but a checked aggregate.
pub async fn run_site_partial(
    ctx: &SessionContext,
    cache: Option<&PartialPlanCache>,
    sql: &str,
) -> Result<Vec<RecordBatch>> {
    let plan = prepare_site_partial(ctx, cache, sql).await?;
    execute_partial(ctx, &plan).await
}

/// Plans, checks and optimises `sql` against the site's own tables (or takes the plan from
/// `cache`). The site's policy then judges what the plan reads ([`super::reads`]) before
/// [`execute_partial`] runs it.
pub async fn prepare_site_partial(
    ctx: &SessionContext,
    cache: Option<&PartialPlanCache>,
    sql: &str,
) -> Result<Arc<LogicalPlan>> {
    if let Some(plan) = cache.and_then(|c| c.get(sql)) {
        return Ok(plan);
    }
    let state = ctx.state();
    let plan = state.create_logical_plan(sql).await?;
    read_only().verify_plan(&plan)?;
    check::analyse(&plan)?;
    let optimized = Arc::new(state.optimize(&plan)?);
    if let Some(c) = cache.filter(|_| is_time_independent(&plan)) {
        c.put(sql, optimized.clone());
    }
    Ok(optimized)
}

/// Executes a plan from [`prepare_site_partial`].
pub async fn execute_partial(ctx: &SessionContext, plan: &LogicalPlan) -> Result<Vec<RecordBatch>> {
    let state = ctx.state();
    let physical = state
        .query_planner()
        .create_physical_plan(plan, &state)
        .await?;
    datafusion::physical_plan::collect(physical, ctx.task_ctx())
        .await
        .map_err(SqlError::from)
}

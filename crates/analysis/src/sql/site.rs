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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::prelude::SessionContext;

use medfed_privacy::release::{self, ColumnRole};
use medfed_privacy::{DisclosureRules, PartialReport, Protection};

use super::error::{Result, SqlError};
use super::{check, protect, read_only, reads};

/// Checked, protected and optimised partial plans of one site, by SQL text and protection.
pub struct PartialPlanCache {
    plans: Mutex<HashMap<String, Arc<PreparedPartial>>>,
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

    fn get(&self, key: &str) -> Option<Arc<PreparedPartial>> {
        self.plans
            .lock()
            .expect("plan cache lock")
            .get(key)
            .cloned()
    }

    fn put(&self, key: String, plan: Arc<PreparedPartial>) {
        let mut plans = self.plans.lock().expect("plan cache lock");
        if plans.len() >= self.capacity {
            plans.clear();
        }
        plans.insert(key, plan);
    }
}

impl Default for PartialPlanCache {
    fn default() -> Self {
        Self::new(256)
    }
}

/// A partial plan the site has checked and extended with its privacy columns.
#[derive(Debug)]
pub struct PreparedPartial {
    /// Tables and columns the researcher's part of the plan reads (what policy judges; the
    /// privacy additions, such as counting `person_id`, are the site's own business).
    pub reads: BTreeMap<String, BTreeSet<String>>,
    plan: LogicalPlan,
    roles: Vec<ColumnRole>,
}

impl PreparedPartial {
    /// Columns holding a within-site statistic (each VAR/STDDEV's own variance): meaningless in
    /// a sum, so under secure aggregation they must be reshaped by [`super::spread`].
    pub fn within_site(&self) -> Vec<String> {
        let schema = self.plan.schema();
        self.roles
            .iter()
            .enumerate()
            .filter(|(_, r)| **r == ColumnRole::ExactOnly)
            .map(|(i, _)| schema.field(i).name().clone())
            .collect()
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

/// Prepares `sql` under `protection`, runs it on `ctx` and protects the answer with the
/// stricter of the request's rules and `site_rules`.
pub async fn run_site_partial(
    ctx: &SessionContext,
    cache: Option<&PartialPlanCache>,
    sql: &str,
    protection: &Protection,
    site_rules: &DisclosureRules,
) -> Result<(RecordBatch, PartialReport)> {
    let plan = prepare_site_partial(ctx, cache, sql, protection).await?;
    execute_partial(ctx, &plan, protection, site_rules).await
}

/// Plans and checks `sql` against the site's own tables, adds the privacy columns
/// ([`super::protect`]; the dominance inputs for the n largest values, n being the stricter of
/// the network's and the site's rule) and optimises (or takes all that from `cache`). The
/// site's policy then judges [`PreparedPartial::reads`] before [`execute_partial`] runs it.
pub async fn prepare_site_partial(
    ctx: &SessionContext,
    cache: Option<&PartialPlanCache>,
    sql: &str,
    protection: &Protection,
) -> Result<Arc<PreparedPartial>> {
    let key = format!(
        "{}\n{}",
        serde_json::to_string(&protection.dp).unwrap_or_default(),
        sql
    );
    if let Some(plan) = cache.and_then(|c| c.get(&key)) {
        return Ok(plan);
    }
    let state = ctx.state();
    let plan = state.create_logical_plan(sql).await?;
    read_only().verify_plan(&plan)?;
    check::analyse(&plan)?;
    let reads = reads(&state.optimize(&plan)?);
    let (protected, roles) = protect::augment(&plan, protection.dp.as_ref())?;
    let prepared = Arc::new(PreparedPartial {
        reads,
        plan: state.optimize(&protected)?,
        roles,
    });
    if let Some(c) = cache.filter(|_| is_time_independent(&plan)) {
        c.put(key, prepared.clone());
    }
    Ok(prepared)
}

/// Executes a plan from [`prepare_site_partial`] and protects its answer: suppression in exact
/// studies, bounded noise and partition thresholds in DP studies. Nothing else may leave.
pub async fn execute_partial(
    ctx: &SessionContext,
    prepared: &PreparedPartial,
    protection: &Protection,
    site_rules: &DisclosureRules,
) -> Result<(RecordBatch, PartialReport)> {
    let state = ctx.state();
    let physical = state
        .query_planner()
        .create_physical_plan(&prepared.plan, &state)
        .await?;
    let schema = physical.schema();
    let batches = datafusion::physical_plan::collect(physical, ctx.task_ctx()).await?;
    let table = arrow::compute::concat_batches(&schema, &batches)
        .map_err(|e| SqlError::Execution(e.to_string()))?;
    release::protect(&table, &prepared.roles, protection, site_rules).map_err(|e| match e {
        release::ReleaseError::Unsupported(m) => SqlError::Disclosive(m),
        other => SqlError::Execution(other.to_string()),
    })
}

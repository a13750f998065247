//! The site's side of a kernel ([`medfed_core::kernel`]): plan and check its rows, collect them
//! as numbers, run the step, and refuse what would disclose individuals.
//!
//! Trust boundary: the [`RowSource`] comes from the hub and is untrusted. It becomes
//! `SELECT CAST((c) AS DOUBLE) AS c0, … FROM table WHERE filter`, which must plan to a
//! projection and filter of that one table and nothing else: no joins, sub-selects, aggregates,
//! windows, unions or limits (row pickers), and no column computed from an identifier. What it
//! reads is returned for the site's policy to judge before anything runs. The rows never leave
//! this module; only the step's sums do, and only over at least k rows (and k events).
//!
//! # Example
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use datafusion::prelude::SessionContext;
//! use medfed_analysis::kernel;
//! use medfed_core::kernel::{KernelAnswer, KernelStep, KernelTask, RowSource, Ties};
//! let ctx = SessionContext::new();
//! ctx.sql("CREATE TABLE c (t DOUBLE, e INT, x DOUBLE) AS VALUES \
//!          (1, 1, 0.5), (2, 1, -1), (3, 0, 2), (4, 1, 0), (5, 0, 1), (6, 1, -0.5)")
//!     .await.unwrap().collect().await.unwrap();
//! let task = KernelTask {
//!     rows: RowSource { table: "c".into(), columns: vec!["t".into(), "e".into(), "x".into()], filter: None },
//!     step: KernelStep::Cox { beta: vec![0.0], ties: Ties::Efron },
//! };
//! let rows = kernel::prepare(&ctx.state(), &task.rows).await.unwrap();
//! assert_eq!(rows.reads["c"].len(), 3);
//! let KernelAnswer::Cox(sums) = kernel::run(&ctx, &rows, &task.step, 3, None).await.unwrap() else { panic!() };
//! assert_eq!((sums.n, sums.events), (6, 4));
//! // k = 5 events is more than this site has: refused, nothing computed leaves.
//! assert!(kernel::run(&ctx, &rows, &task.step, 5, None).await.is_err());
//! # })
//! ```

pub mod summed;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use medfed_core::kernel::{KernelAnswer, KernelStep, MAX_KERNEL_COLUMNS, RowSource, UpdateDp};
use medfed_core::result::{SiteOutcome, SiteStatus};
use medfed_privacy::{DpRelease, ModelRules};

use crate::sql::{SqlError, read_only, reads};
use crate::survival::cox::CoxRows;

/// One step of a kernel across the network, as the caller (the hub) ran it.
#[derive(Debug, Clone, Default)]
pub struct KernelRound {
    /// Each answering site's sums or, under secure aggregation, one entry: their sum
    /// ([`summed`]) under [`SECURE_SUM`].
    pub answers: BTreeMap<String, KernelAnswer>,
    /// What each site did.
    pub sites: BTreeMap<String, SiteOutcome>,
}

/// The key of the network's sum in a [`KernelRound`] under secure aggregation.
pub const SECURE_SUM: &str = "(secure sum)";

impl KernelRound {
    /// Whether the answers are one secure sum rather than each site's.
    pub fn is_secure(&self) -> bool {
        self.answers.contains_key(SECURE_SUM)
    }

    /// The sites whose sums are in the round.
    pub fn answered(&self) -> BTreeSet<String> {
        self.sites
            .iter()
            .filter(|(_, o)| o.status == SiteStatus::Answered)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// A row source the site has planned and checked.
#[derive(Debug)]
pub struct PreparedRows {
    /// Tables and columns it reads (what the site's policy judges).
    pub reads: BTreeMap<String, BTreeSet<String>>,
    plan: LogicalPlan,
    columns: usize,
    sql: String,
}

/// The collected rows of recent row sources, so that the iterations of one fit read the
/// site's tables once rather than once per iteration. Entries expire after `ttl` (a fit's
/// rows are meant to stay the same through it; new data shows in the next fit), and sources
/// of more than `max_values` numbers are not kept.
pub struct RowCache {
    entries: Mutex<Vec<CachedRows>>,
    ttl: Duration,
    max_values: usize,
}

struct CachedRows {
    sql: String,
    at: Instant,
    columns: Arc<Vec<Vec<f64>>>,
}

impl Default for RowCache {
    /// Two minutes, up to 32 M numbers (256 MB) in all.
    fn default() -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
            ttl: Duration::from_secs(120),
            max_values: 32 << 20,
        }
    }
}

impl RowCache {
    /// The rows of `prepared`, from the cache while fresh, else collected (and kept).
    pub async fn rows(
        &self,
        ctx: &SessionContext,
        prepared: &PreparedRows,
    ) -> Result<Arc<Vec<Vec<f64>>>, SqlError> {
        {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            entries.retain(|e| e.at.elapsed() < self.ttl);
            if let Some(e) = entries.iter().find(|e| e.sql == prepared.sql) {
                return Ok(e.columns.clone());
            }
        }
        let columns = Arc::new(collect(ctx, prepared).await?);
        let size: usize = columns.iter().map(Vec::len).sum();
        if size <= self.max_values {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            let mut held: usize = entries
                .iter()
                .map(|e| e.columns.iter().map(Vec::len).sum::<usize>())
                .sum();
            while held + size > self.max_values && !entries.is_empty() {
                let old = entries.remove(0);
                held -= old.columns.iter().map(Vec::len).sum::<usize>();
            }
            entries.push(CachedRows {
                sql: prepared.sql.clone(),
                at: Instant::now(),
                columns: columns.clone(),
            });
        }
        Ok(columns)
    }
}

/// The SQL a row source stands for.
///
/// ```
/// use medfed_core::kernel::RowSource;
/// let rows = RowSource { table: "cohort".into(), columns: vec!["age".into()], filter: Some("age > 18".into()) };
/// assert_eq!(medfed_analysis::kernel::row_sql(&rows).unwrap(),
///            "SELECT CAST((age) AS DOUBLE) AS c0 FROM cohort WHERE (age > 18)");
/// ```
pub fn row_sql(rows: &RowSource) -> Result<String, SqlError> {
    let t = &rows.table;
    let plain = t
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        return Err(SqlError::Plan(format!("{t:?} is not a table name")));
    }
    if rows.columns.is_empty() || rows.columns.len() > MAX_KERNEL_COLUMNS {
        return Err(SqlError::Plan(format!(
            "a kernel reads 1 to {MAX_KERNEL_COLUMNS} columns, not {}",
            rows.columns.len()
        )));
    }
    let columns: Vec<String> = rows
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("CAST(({c}) AS DOUBLE) AS c{i}"))
        .collect();
    let mut sql = format!("SELECT {} FROM {t}", columns.join(", "));
    if let Some(f) = &rows.filter {
        sql.push_str(&format!(" WHERE ({f})"));
    }
    Ok(sql)
}

/// Plans `rows` against `state` and checks it is a plain projection and filter of its table.
pub async fn prepare(state: &SessionState, rows: &RowSource) -> Result<PreparedRows, SqlError> {
    let sql = row_sql(rows)?;
    let plan = state.create_logical_plan(&sql).await?;
    read_only().verify_plan(&plan)?;
    check_shape(&plan, &rows.table)?;
    let LogicalPlan::Projection(projection) = &plan else {
        return Err(refused("the rows must be a projection"));
    };
    if projection.expr.len() != rows.columns.len() {
        return Err(refused("a column expression spans several columns"));
    }
    for e in &projection.expr {
        if let Some(column) = crate::sql::identifier_lineage(e, &projection.input) {
            return Err(SqlError::Identifier { column });
        }
    }
    let optimised = state.optimize(&plan)?;
    Ok(PreparedRows {
        reads: reads(&optimised),
        plan: optimised,
        columns: rows.columns.len(),
        sql,
    })
}

fn refused(why: &str) -> SqlError {
    SqlError::Disclosive(format!("kernel rows: {why}"))
}

/// Only projections, filters and the one table scan: anything else could pick single rows
/// (LIMIT, windows), reach other data (joins, sub-selects) or pre-aggregate.
fn check_shape(plan: &LogicalPlan, table: &str) -> Result<(), SqlError> {
    let mut problem: Option<String> = None;
    let _ = plan.apply_with_subqueries(|node| {
        problem = match node {
            LogicalPlan::Projection(_) | LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => {
                node.expressions()
                    .iter()
                    .any(crate::sql::has_subquery)
                    .then(|| "sub-selects are not allowed".to_string())
            }
            LogicalPlan::TableScan(scan) if scan.table_name.table().eq_ignore_ascii_case(table) => {
                None
            }
            LogicalPlan::TableScan(scan) => {
                Some(format!("it reads {} besides {table}", scan.table_name))
            }
            other => Some(format!(
                "{} is not allowed (only a projection and filter of one table)",
                other
                    .display()
                    .to_string()
                    .split(':')
                    .next()
                    .unwrap_or("this step")
            )),
        };
        Ok(if problem.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    match problem {
        Some(p) => Err(refused(&p)),
        None => Ok(()),
    }
}

/// Runs the prepared rows (complete rows only) and returns them column by column.
pub async fn collect(ctx: &SessionContext, rows: &PreparedRows) -> Result<Vec<Vec<f64>>, SqlError> {
    let state = ctx.state();
    let physical = state
        .query_planner()
        .create_physical_plan(&rows.plan, &state)
        .await?;
    let batches = datafusion::physical_plan::collect(physical, ctx.task_ctx()).await?;
    let mut out = vec![Vec::new(); rows.columns];
    for b in &batches {
        let arrays: Vec<_> = b
            .columns()
            .iter()
            .map(|c| c.as_primitive::<Float64Type>())
            .collect();
        debug_assert!(
            b.columns()
                .iter()
                .all(|c| c.data_type() == &DataType::Float64)
        );
        'row: for i in 0..b.num_rows() {
            for a in &arrays {
                if a.is_null(i) || !a.value(i).is_finite() {
                    continue 'row;
                }
            }
            for (col, a) in out.iter_mut().zip(&arrays) {
                col.push(a.value(i));
            }
        }
    }
    Ok(out)
}

/// What a site holds a kernel step to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// At least k rows (and k events for a survival model).
    pub k: u64,
    /// Saturation and residual degrees of freedom.
    pub models: ModelRules,
    /// Refuse a binomial step whose rows all have one outcome.
    pub class_disclosure: bool,
    /// Judge this site's own rows (the answer leaves on its own). False under secure
    /// aggregation: the answer leaves only inside the network's sum, and the hub judges that
    /// sum ([`network_limits`]).
    pub local: bool,
}

impl Limits {
    /// k and the default model rules, judged on this site's rows.
    pub fn local(k: u64) -> Self {
        Self {
            k,
            models: ModelRules::default(),
            class_disclosure: true,
            local: true,
        }
    }
}

/// The hub's check of a summed kernel answer (secure aggregation): the rules a site applies to
/// its own rows, applied to the network's. A refusal never states a count.
pub fn network_limits(
    answer: &KernelAnswer,
    step: &KernelStep,
    limits: &Limits,
) -> Result<(), SqlError> {
    let k = limits.k.max(1);
    let refuse = |why: String| Err(SqlError::Disclosive(why));
    let (n, p) = match (answer, step) {
        (KernelAnswer::Glm(s), KernelStep::Glm { beta, .. }) => (s.n, beta.len()),
        (KernelAnswer::Cox(s), KernelStep::Cox { beta, .. }) => {
            if s.events < k {
                return refuse(format!("fewer than k = {k} events in the network"));
            }
            (s.n, beta.len())
        }
        (KernelAnswer::Update(u), KernelStep::Train(t)) if t.dp.is_none() => {
            (u.n, t.model.parameters())
        }
        _ => return Ok(()),
    };
    if n < k {
        return refuse(format!("fewer than k = {k} complete rows in the network"));
    }
    match limits.models.refuse(p, n, "the network's") {
        Some(why) => refuse(why),
        None => Ok(()),
    }
}

/// Collects the rows and runs `step` over them, refusing unless at least `k` rows (and, for a
/// survival model, `k` events) take part and the model is neither saturated nor short of
/// residual degrees of freedom ([`ModelRules`]) — on this site's rows unless `limits.local` is
/// false (secure aggregation: the hub judges the network's sum).
///
/// `dp` is the request's DP release in a DP study: only training steps run there, as DP
/// gradient descent (each row's gradient clipped, Gaussian noise on their sum, see
/// [`update_sigma`]) spending that release's ε and δ over the run's rounds.
pub async fn run(
    ctx: &SessionContext,
    rows: &PreparedRows,
    step: &KernelStep,
    k: u64,
    dp: Option<&DpRelease>,
) -> Result<KernelAnswer, SqlError> {
    run_cached(ctx, rows, step, Limits::local(k), dp, None).await
}

/// [`run`], reading the rows through `cache` when given (a site keeps one).
pub async fn run_cached(
    ctx: &SessionContext,
    rows: &PreparedRows,
    step: &KernelStep,
    limits: Limits,
    dp: Option<&DpRelease>,
    cache: Option<&RowCache>,
) -> Result<KernelAnswer, SqlError> {
    if dp.is_some() && !matches!(step, KernelStep::Train(_)) {
        return Err(SqlError::Disclosive(
            "in a differentially private study only training steps run as kernels (other \
             kernels' sums have no declared bounds to calibrate noise to)"
                .into(),
        ));
    }
    let columns = match cache {
        Some(c) => c.rows(ctx, rows).await?,
        None => Arc::new(collect(ctx, rows).await?),
    };
    let columns: &[Vec<f64>] = &columns;
    let n = columns.first().map_or(0, Vec::len);
    let k = if limits.local { limits.k.max(1) } else { 0 };
    let saturation = |p: usize, n: usize| saturation(&limits, p, n);
    if (n as u64) < k {
        return Err(SqlError::Disclosive(format!(
            "fewer than k = {k} complete rows at this site"
        )));
    }
    match step {
        KernelStep::Cox { beta, ties } => {
            let (time, rest) = columns.split_first().expect("n > 0 means columns");
            let Some((event, covariates)) = rest.split_first() else {
                return Err(SqlError::Plan(
                    "a Cox kernel reads time, event and covariates".into(),
                ));
            };
            if covariates.len() != beta.len() || beta.is_empty() {
                return Err(SqlError::Plan(format!(
                    "{} covariate columns for {} coefficients",
                    covariates.len(),
                    beta.len()
                )));
            }
            if event.iter().any(|e| *e != 0.0 && *e != 1.0) {
                return Err(SqlError::Plan(
                    "the event column must be 1 (event) or 0 (censored)".into(),
                ));
            }
            let events = event.iter().filter(|e| **e == 1.0).count() as u64;
            if events < k {
                return Err(SqlError::Disclosive(format!(
                    "fewer than k = {k} events at this site"
                )));
            }
            saturation(beta.len(), n)?;
            let rows = CoxRows::new(time, event, covariates);
            Ok(KernelAnswer::Cox(rows.sums(beta, *ties)))
        }
        KernelStep::Glm {
            family,
            beta,
            intercept,
        } => {
            saturation(beta.len(), n)?;
            class_disclosure(&limits, *family, columns)?;
            crate::glm::kernel::sums(columns, *family, beta, *intercept)
                .map(KernelAnswer::Glm)
                .map_err(SqlError::Plan)
        }
        KernelStep::Train(train) => {
            saturation(train.model.parameters(), n)?;
            let sigma = match (dp, &train.dp) {
                (Some(release), Some(bound)) => Some(update_sigma(bound, release, train.epochs)),
                (Some(_), None) => {
                    return Err(SqlError::Disclosive(
                        "a DP study's training step must clip its updates (set clip)".into(),
                    ));
                }
                (None, _) => None,
            };
            crate::learn::train_locally(columns, train, sigma)
                .map(KernelAnswer::Update)
                .map_err(SqlError::Plan)
        }
        KernelStep::Evaluate {
            model,
            weights,
            fine_tune,
        } => crate::learn::evaluate_locally(columns, *model, weights, fine_tune.as_ref(), k)
            .map(KernelAnswer::Metrics),
    }
}

/// The σ of the Gaussian noise on each local step's sum of clipped per-row gradients, in a run
/// that spends `release` over `dp.rounds` rounds of `epochs` full-batch steps each: ρ from
/// (ε, δ), split evenly over every step the run can take here (zCDP adds up ρ), and
/// sensitivity 2·clip (replacing one row moves the sum by at most that).
pub fn update_sigma(dp: &UpdateDp, release: &DpRelease, epochs: u32) -> f64 {
    let rho = medfed_privacy::release::rho_for(release.epsilon, release.delta.max(1e-12));
    let steps = f64::from(dp.rounds.max(1)) * f64::from(epochs.max(1));
    2.0 * dp.clip / (2.0 * rho / steps).sqrt()
}

/// Class disclosure at the site, when its answer leaves on its own: a binomial model's sums
/// over rows that all have the same outcome tell that every one of them has it.
fn class_disclosure(
    limits: &Limits,
    family: medfed_core::glm::Family,
    columns: &[Vec<f64>],
) -> Result<(), SqlError> {
    let Some(y) = columns.first() else {
        return Ok(());
    };
    let one_class = y.first().is_some_and(|first| y.iter().all(|v| v == first));
    if limits.local
        && limits.class_disclosure
        && family == medfed_core::glm::Family::Binomial
        && one_class
    {
        return Err(SqlError::Disclosive(
            "every row at this site has the same outcome, so its share of the model would tell \
             each patient's outcome (class disclosure)"
                .into(),
        ));
    }
    Ok(())
}

/// DataSHIELD's saturation rule at the site, when it judges its own rows (the residual degrees
/// of freedom are judged on the network's model, at the hub). The row count is never stated:
/// a refusal never carries a small count.
fn saturation(limits: &Limits, p: usize, n: usize) -> Result<(), SqlError> {
    if !limits.local {
        return Ok(());
    }
    match limits.models.saturated(p, n as u64, "this site's") {
        Some(why) => Err(SqlError::Disclosive(why)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod class_tests {
    use super::*;
    use medfed_core::glm::Family;

    #[test]
    fn a_binomial_step_over_one_outcome_class_is_refused_at_the_site_only() {
        let all_positive = [vec![1.0; 30], vec![1.0; 30]];
        let mixed = [vec![1.0, 0.0, 1.0], vec![1.0; 3]];
        let local = Limits::local(10);
        let e = class_disclosure(&local, Family::Binomial, &all_positive).unwrap_err();
        assert!(e.to_string().contains("class disclosure"), "{e}");
        assert!(!e.to_string().contains("30"), "never states the count: {e}");
        assert!(class_disclosure(&local, Family::Binomial, &mixed).is_ok());
        assert!(class_disclosure(&local, Family::Gaussian, &all_positive).is_ok());
        // Under secure aggregation the answer leaves only inside the network's sum.
        let network = Limits {
            local: false,
            ..local
        };
        assert!(class_disclosure(&network, Family::Binomial, &all_positive).is_ok());
        let off = Limits {
            class_disclosure: false,
            ..local
        };
        assert!(class_disclosure(&off, Family::Binomial, &all_positive).is_ok());
    }
}

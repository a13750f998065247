//! A site's privacy-budget ledger: per study, the (ε, δ) total its custodian allows and what
//! releases have spent, under basic composition (spends add up).
//!
//! A multi-round release — a DP-FedAvg training run, whose rounds compose under zCDP far more
//! tightly than their ε would add up — is one spend: [`BudgetLedger::charge_round`] charges the
//! run's whole (ε, δ) the first time this site takes part and then counts its rounds, refusing
//! any past the number the run declared (and so paid for).
//!
//! The ledger belongs to the site, not the hub: a site charges it itself and refuses a request
//! that would overspend, whatever the hub says. Charging is one conditional `UPDATE` inside a
//! transaction, so concurrent requests cannot both take the last of a budget, and the ledger is
//! a database file, so a restart loses nothing.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use medfed_privacy::ledger::{Budget, BudgetLedger};
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("budget.db");
//! let ledger = BudgetLedger::open(path.to_str().unwrap()).await.unwrap();
//! let total = Budget::default(); // ε = 0.5, δ = 1e-6
//! let after = ledger.charge("dp", total, "q-1", 0.2, 0.0).await.unwrap();
//! assert!((after.epsilon_remaining() - 0.3).abs() < 1e-12);
//! assert!(ledger.charge("dp", total, "q-2", 0.4, 0.0).await.is_err()); // 0.4 > 0.3 left
//! # });
//! ```

use medfed_audit::db::{Database, Step, now_us};
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// Floating-point slack when comparing spends with totals (five spends of 0.1 make 0.5).
const SLACK: f64 = 1e-9;

/// An (ε, δ) budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Total ε.
    pub epsilon: f64,
    /// Total δ.
    pub delta: f64,
}

impl Default for Budget {
    /// ε = 0.5 per study (the network's promise) and δ = 10⁻⁶.
    fn default() -> Self {
        Self {
            epsilon: 0.5,
            delta: 1e-6,
        }
    }
}

/// What a study has left at one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Balance {
    /// The study.
    pub study: String,
    /// The total the custodian allows.
    pub total: Budget,
    /// Spent so far.
    pub spent: Budget,
}

impl Balance {
    /// ε still available (never negative).
    pub fn epsilon_remaining(&self) -> f64 {
        (self.total.epsilon - self.spent.epsilon).max(0.0)
    }

    /// δ still available (never negative).
    pub fn delta_remaining(&self) -> f64 {
        (self.total.delta - self.spent.delta).max(0.0)
    }

    fn affords(&self, epsilon: f64, delta: f64) -> bool {
        self.spent.epsilon + epsilon <= self.total.epsilon + SLACK
            && self.spent.delta + delta <= self.total.delta + SLACK * 1e-6
    }
}

/// δ as a person reads it: `0`, `1e-7`, `2.5e-7` (never `0e0`).
#[derive(Debug, Clone, Copy)]
pub struct Delta(pub f64);

impl std::fmt::Display for Delta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == 0.0 {
            f.write_str("0")
        } else {
            // Shortest round-trip form, e.g. 9.000000000000001e-7 rounded to 4 significant digits.
            let s = format!("{:.3e}", self.0);
            let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
            let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
            write!(f, "{mantissa}e{exp}")
        }
    }
}

/// Why a charge did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The study's budget at this site cannot pay for the release.
    #[error(
        "privacy budget of study {study} exhausted at this site: the release needs ε = {epsilon} \
         and δ = {} but ε = {eps_left:.4} and δ = {} of ε = {eps_total} remain",
        Delta(*delta),
        Delta(*delta_left)
    )]
    Exhausted {
        /// The study.
        study: String,
        /// ε asked for.
        epsilon: f64,
        /// δ asked for.
        delta: f64,
        /// ε left.
        eps_left: f64,
        /// δ left.
        delta_left: f64,
        /// The study's ε total here.
        eps_total: f64,
    },
    /// The same request was already charged.
    #[error("request {0} was already charged")]
    Duplicate(String),
    /// A run asked for a round past the number it declared.
    #[error("training run {run} has used all {rounds} round(s) it was charged for at this site")]
    RunSpent {
        /// The run.
        run: String,
        /// Rounds it declared.
        rounds: u32,
    },
    /// A run came back with other terms than it was charged for.
    #[error("training run {0} was charged for other terms (ε, δ or rounds) at this site")]
    RunChanged(String),
    /// A negative or non-finite spend.
    #[error("invalid privacy spend: {0}")]
    Invalid(String),
    /// The database refused.
    #[error("privacy ledger: {0}")]
    Db(#[from] sqlx::Error),
    /// The schema could not be created.
    #[error("privacy ledger schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The ledger of one site.
///
/// Calls take the study's `total`: it applies the first time the ledger sees the study; after
/// that the stored total holds until a custodian changes it with [`Self::set_total`].
#[derive(Debug, Clone)]
pub struct BudgetLedger {
    db: Database,
}

impl BudgetLedger {
    /// Opens (creating) the ledger at `url_or_path`.
    pub async fn open(url_or_path: &str) -> Result<Self, LedgerError> {
        let db = Database::connect(url_or_path, 4).await?;
        const TABLES: Step = (
            1,
            "privacy ledger",
            include_str!("../migrations/0001_ledger.sql"),
        );
        const RUNS: Step = (
            2,
            "multi-round releases",
            include_str!("../migrations/0002_runs.sql"),
        );
        db.migrate(&[TABLES, RUNS], "_medfed_ledger_migrations")
            .await?;
        Ok(Self { db })
    }

    /// Sets a study's total (the custodian's decision). Lowering it below what is spent leaves
    /// the study with nothing to spend; spends are never erased.
    pub async fn set_total(&self, study: &str, total: Budget) -> Result<Balance, LedgerError> {
        validate(total.epsilon, total.delta)?;
        sqlx::query(
            "INSERT INTO privacy_budgets (study_id, epsilon_total, delta_total, updated_us) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (study_id) DO UPDATE SET \
             epsilon_total = excluded.epsilon_total, delta_total = excluded.delta_total, \
             updated_us = excluded.updated_us",
        )
        .bind(study)
        .bind(total.epsilon)
        .bind(total.delta)
        .bind(now_us())
        .execute(&self.db.pool)
        .await?;
        self.balance(study, total).await
    }

    /// What `study` has spent and has left.
    pub async fn balance(&self, study: &str, total: Budget) -> Result<Balance, LedgerError> {
        let row = sqlx::query(
            "SELECT epsilon_total, delta_total, epsilon_spent, delta_spent \
             FROM privacy_budgets WHERE study_id = $1",
        )
        .bind(study)
        .fetch_optional(&self.db.pool)
        .await?;
        Ok(match row {
            Some(r) => Balance {
                study: study.to_string(),
                total: Budget {
                    epsilon: r.try_get(0)?,
                    delta: r.try_get(1)?,
                },
                spent: Budget {
                    epsilon: r.try_get(2)?,
                    delta: r.try_get(3)?,
                },
            },
            None => Balance {
                study: study.to_string(),
                total,
                spent: Budget {
                    epsilon: 0.0,
                    delta: 0.0,
                },
            },
        })
    }

    /// Refuses now, before any work, if `study` cannot pay (ε, δ). Charging still re-checks.
    pub async fn check(
        &self,
        study: &str,
        total: Budget,
        epsilon: f64,
        delta: f64,
    ) -> Result<Balance, LedgerError> {
        validate(epsilon, delta)?;
        let balance = self.balance(study, total).await?;
        if balance.affords(epsilon, delta) {
            Ok(balance)
        } else {
            Err(exhausted(&balance, epsilon, delta))
        }
    }

    /// Spends (ε, δ) of `study` for `request_id`, or refuses if that would overspend.
    pub async fn charge(
        &self,
        study: &str,
        total: Budget,
        request_id: &str,
        epsilon: f64,
        delta: f64,
    ) -> Result<Balance, LedgerError> {
        validate(epsilon, delta)?;
        let mut tx = self.db.pool.begin().await?;
        if let Err(e) = spend(&mut tx, study, total, request_id, epsilon, delta).await {
            tx.rollback().await?;
            return Err(self.explain(e, study, total, epsilon, delta).await);
        }
        tx.commit().await?;
        self.balance(study, total).await
    }

    /// Takes one round of `run` for `study`: the first round charges the run's whole (ε, δ)
    /// (as the release `run:<id>`), later ones only count, and a round past the run's declared
    /// number, or one with other terms, is refused. Returns the round's number here (1-based).
    pub async fn charge_round(
        &self,
        study: &str,
        total: Budget,
        run: &RunTerms,
    ) -> Result<u32, LedgerError> {
        validate(run.epsilon, run.delta)?;
        if run.rounds == 0 || run.id.is_empty() {
            return Err(LedgerError::Invalid(format!(
                "run {:?} of {} rounds",
                run.id, run.rounds
            )));
        }
        let mut tx = self.db.pool.begin().await?;
        let opened = sqlx::query(
            "INSERT INTO privacy_runs (study_id, run_id, rounds_total, rounds_used, epsilon, \
             delta, at_us) VALUES ($1, $2, $3, 1, $4, $5, $6) \
             ON CONFLICT (study_id, run_id) DO NOTHING",
        )
        .bind(study)
        .bind(&run.id)
        .bind(i64::from(run.rounds))
        .bind(run.epsilon)
        .bind(run.delta)
        .bind(now_us())
        .execute(&mut *tx)
        .await?;
        if opened.rows_affected() == 1 {
            let release = format!("run:{}", run.id);
            if let Err(e) = spend(&mut tx, study, total, &release, run.epsilon, run.delta).await {
                tx.rollback().await?;
                return Err(self.explain(e, study, total, run.epsilon, run.delta).await);
            }
            tx.commit().await?;
            return Ok(1);
        }
        let row = sqlx::query(
            "SELECT rounds_total, rounds_used, epsilon, delta FROM privacy_runs \
             WHERE study_id = $1 AND run_id = $2",
        )
        .bind(study)
        .bind(&run.id)
        .fetch_one(&mut *tx)
        .await?;
        let (rounds, used): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let (epsilon, delta): (f64, f64) = (row.try_get(2)?, row.try_get(3)?);
        if rounds != i64::from(run.rounds) || epsilon != run.epsilon || delta != run.delta {
            tx.rollback().await?;
            return Err(LedgerError::RunChanged(run.id.clone()));
        }
        let taken = sqlx::query(
            "UPDATE privacy_runs SET rounds_used = rounds_used + 1 \
             WHERE study_id = $1 AND run_id = $2 AND rounds_used < rounds_total",
        )
        .bind(study)
        .bind(&run.id)
        .execute(&mut *tx)
        .await?;
        if taken.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(LedgerError::RunSpent {
                run: run.id.clone(),
                rounds: run.rounds,
            });
        }
        tx.commit().await?;
        Ok(u32::try_from(used + 1).unwrap_or(u32::MAX))
    }

    /// Whether `run` was already charged in `study` here (its later rounds need no budget).
    pub async fn run_charged(&self, study: &str, run: &str) -> Result<bool, LedgerError> {
        let row = sqlx::query("SELECT 1 FROM privacy_runs WHERE study_id = $1 AND run_id = $2")
            .bind(study)
            .bind(run)
            .fetch_optional(&self.db.pool)
            .await?;
        Ok(row.is_some())
    }

    /// A failed spend as the caller should see it: an overspend with the balance it met.
    async fn explain(
        &self,
        e: Spend,
        study: &str,
        total: Budget,
        epsilon: f64,
        delta: f64,
    ) -> LedgerError {
        match e {
            Spend::Over => match self.balance(study, total).await {
                Ok(balance) => exhausted(&balance, epsilon, delta),
                Err(e) => e,
            },
            Spend::Again(request) => LedgerError::Duplicate(request),
            Spend::Db(e) => LedgerError::Db(e),
        }
    }
}

/// A multi-round release: `rounds` rounds that together spend (ε, δ).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunTerms {
    /// The run's id (chosen by the hub; one per training run).
    pub id: String,
    /// Rounds at most.
    pub rounds: u32,
    /// ε of the whole run.
    pub epsilon: f64,
    /// δ of the whole run.
    pub delta: f64,
}

/// Why [`spend`] did not.
enum Spend {
    Over,
    Again(String),
    Db(sqlx::Error),
}

impl From<sqlx::Error> for Spend {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e)
    }
}

/// Within `tx`: adds (ε, δ) to `study`'s spend unless that overspends, and records the charge
/// under `request_id` unless it was recorded already. The caller rolls back on an error.
async fn spend(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    study: &str,
    total: Budget,
    request_id: &str,
    epsilon: f64,
    delta: f64,
) -> Result<(), Spend> {
    let now = now_us();
    sqlx::query(
        "INSERT INTO privacy_budgets (study_id, epsilon_total, delta_total, updated_us) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (study_id) DO NOTHING",
    )
    .bind(study)
    .bind(total.epsilon)
    .bind(total.delta)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let updated = sqlx::query(
        "UPDATE privacy_budgets SET epsilon_spent = epsilon_spent + $1, \
         delta_spent = delta_spent + $2, updated_us = $3 \
         WHERE study_id = $4 AND epsilon_spent + $1 <= epsilon_total + $5 \
         AND delta_spent + $2 <= delta_total + $6",
    )
    .bind(epsilon)
    .bind(delta)
    .bind(now)
    .bind(study)
    .bind(SLACK)
    .bind(SLACK * 1e-6)
    .execute(&mut **tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(Spend::Over);
    }
    let inserted = sqlx::query(
        "INSERT INTO privacy_charges (study_id, request_id, epsilon, delta, at_us) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (study_id, request_id) DO NOTHING",
    )
    .bind(study)
    .bind(request_id)
    .bind(epsilon)
    .bind(delta)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(Spend::Again(request_id.to_string()));
    }
    Ok(())
}

fn validate(epsilon: f64, delta: f64) -> Result<(), LedgerError> {
    if epsilon.is_finite() && epsilon >= 0.0 && delta.is_finite() && (0.0..1.0).contains(&delta) {
        Ok(())
    } else {
        Err(LedgerError::Invalid(format!("ε = {epsilon}, δ = {delta}")))
    }
}

fn exhausted(b: &Balance, epsilon: f64, delta: f64) -> LedgerError {
    LedgerError::Exhausted {
        study: b.study.clone(),
        epsilon,
        delta,
        eps_left: b.epsilon_remaining(),
        delta_left: b.delta_remaining(),
        eps_total: b.total.epsilon,
    }
}

#[cfg(test)]
mod tests;

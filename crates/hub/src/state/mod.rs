//! The hub's own state (users, API tokens, studies, site decisions, releases, the model
//! registry) in SQLite by
//! default or PostgreSQL, through one sqlx code path ([`medfed_audit::db`]).
//!
//! In PostgreSQL, custodians' actions run under the `medfed_custodian` role with row-level
//! security, so the database itself keeps a custodian to their own site's rows.

mod cells;
mod models;
mod reviews;
mod studies;
mod users;

use medfed_audit::db::{Backend, Database, Step};

pub use cells::{Differencing, ReleasedTable, split_key};
pub use models::ModelVersion;
pub use reviews::{HeldRelease, StoredReview};
pub use studies::{NewStudy, Release, SiteDecision, Study};
pub use users::{IssuedToken, TokenRecord, User};
pub(crate) use users::{parse_token, secret_matches};

/// What can go wrong with the hub's state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database refused.
    #[error("hub state: {0}")]
    Db(#[from] sqlx::Error),
    /// Migration failed.
    #[error("hub state schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// No such user/study/token.
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts what is stored or allowed.
    #[error("{0}")]
    Invalid(String),
}

/// The hub's state database.
#[derive(Debug, Clone)]
pub struct HubState {
    db: Database,
}

impl HubState {
    /// Connects to `url_or_path` and brings the schema up to date.
    pub async fn open(url_or_path: &str) -> Result<Self, StateError> {
        let db = Database::connect(url_or_path, 8).await?;
        const TABLES: Step = (
            1,
            "hub state",
            include_str!("../../migrations/0001_state.sql"),
        );
        const RLS: Step = (
            2,
            "row-level security",
            include_str!("../../migrations/0002_row_level_security.postgres.sql"),
        );
        const CELLS: Step = (
            3,
            "released cells",
            include_str!("../../migrations/0003_released_cells.sql"),
        );
        const MODELS: Step = (
            4,
            "model registry",
            include_str!("../../migrations/0004_models.sql"),
        );
        const COHORTS: Step = (
            5,
            "released cohorts",
            include_str!("../../migrations/0005_released_cohorts.sql"),
        );
        const REVIEWS: Step = (
            6,
            "review queue",
            include_str!("../../migrations/0006_reviews.sql"),
        );
        let steps: &[Step] = match db.backend {
            Backend::Sqlite => &[TABLES, CELLS, MODELS, COHORTS, REVIEWS],
            Backend::Postgres => &[TABLES, RLS, CELLS, MODELS, COHORTS, REVIEWS],
        };
        db.migrate(steps, "_medfed_hub_migrations").await?;
        Ok(Self { db })
    }

    /// The underlying database.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

pub(crate) fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

pub fn random_id(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::fill(&mut b[..]);
    hex::encode(b)
}

#[cfg(test)]
mod tests;

//! One connection path for the embedded default (SQLite) and production (PostgreSQL).
//!
//! Everything medfed keeps about governance goes through sqlx's `Any` driver, so the same queries
//! (written with `$1`-style placeholders, which both backends accept) run on both. Only schema
//! migrations differ per backend, because triggers and row-level security do.

use sqlx::AnyPool;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use std::borrow::Cow;
use std::str::FromStr;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// One schema migration: (version, description, SQL).
pub type Step = (i64, &'static str, &'static str);

/// Which database a pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file (the default).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A connected pool and its backend.
#[derive(Debug, Clone)]
pub struct Database {
    /// The pool.
    pub pool: AnyPool,
    /// Its backend.
    pub backend: Backend,
}

/// Turns what an operator writes (`postgres://…`, `sqlite://…` or a plain file path) into a sqlx URL.
/// SQLite files are created when missing.
pub fn normalise_url(url_or_path: &str) -> (String, Backend) {
    if url_or_path.starts_with("postgres://") || url_or_path.starts_with("postgresql://") {
        return (url_or_path.to_string(), Backend::Postgres);
    }
    let path = url_or_path
        .strip_prefix("sqlite://")
        .or_else(|| url_or_path.strip_prefix("sqlite:"))
        .unwrap_or(url_or_path);
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let query = if query.is_empty() { "mode=rwc" } else { query };
    (format!("sqlite://{path}?{query}"), Backend::Sqlite)
}

impl Database {
    /// Connects to `url_or_path` (see [`normalise_url`]).
    pub async fn connect(url_or_path: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let (url, backend) = normalise_url(url_or_path);
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never block the single writer; NORMAL sync is durable
                        // across process crashes, which is what an append-only log needs.
                        sqlx::raw_sql(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                        )
                        .execute(conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool, backend })
    }

    /// Brings a component's schema up to date. `steps` are (version, description, SQL) for
    /// this backend: the portable tables shared by both, then what differs (triggers, row-level
    /// security). The history lives in `table`, so several components can share one database
    /// without their version numbers colliding.
    pub async fn migrate(
        &self,
        steps: &[Step],
        table: &'static str,
    ) -> Result<(), sqlx::migrate::MigrateError> {
        let migrations = steps
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        let mut migrator = Migrator::with_migrations(migrations);
        migrator.dangerous_set_table_name(table);
        migrator.run(&self.pool).await
    }
}

/// Creates (or empties) `schema` in the PostgreSQL database at `url` and returns a URL whose
/// connections use it, so several networks, or tests, can share one PostgreSQL database.
pub async fn isolated_postgres(url: &str, schema: &str) -> Result<String, sqlx::Error> {
    if !schema
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(sqlx::Error::Configuration(
            format!("schema name {schema:?} must be [A-Za-z0-9_]").into(),
        ));
    }
    let admin = Database::connect(url, 1).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
    )))
    .execute(&admin.pool)
    .await?;
    admin.pool.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{sep}options=-c%20search_path%3D{schema}"))
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// RFC 3339 (UTC, microseconds) for a time kept as microseconds since the epoch.
pub fn rfc3339_us(at_us: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(at_us.max(0) as u64);
    humantime::format_rfc3339_micros(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_normalise() {
        assert_eq!(
            normalise_url("postgres://u@h/db"),
            ("postgres://u@h/db".into(), Backend::Postgres)
        );
        assert_eq!(
            normalise_url("/tmp/a.db"),
            ("sqlite:///tmp/a.db?mode=rwc".into(), Backend::Sqlite)
        );
        assert_eq!(
            normalise_url("sqlite://x.db?mode=ro"),
            ("sqlite://x.db?mode=ro".into(), Backend::Sqlite)
        );
        assert_eq!(rfc3339_us(1_000_001), "1970-01-01T00:00:01.000001Z");
    }
}

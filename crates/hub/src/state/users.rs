//! People and their API tokens. A token is `mf_<id>_<secret>`: the id finds the row, the secret is
//! checked against its argon2id hash. Only the hash is stored; the token is shown once.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use medfed_audit::db::now_us;
use medfed_core::study::ROLES;
use sqlx::Row;

use super::{HubState, StateError, random_id, split_list};

/// A person known to the hub.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct User {
    /// Unique name.
    pub name: String,
    /// Roles held.
    pub roles: Vec<String>,
    /// Sites they are custodian of.
    pub sites: Vec<String>,
    /// Disabled users cannot authenticate.
    pub disabled: bool,
}

/// A token as just issued (the only time its secret exists outside the holder's hands).
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// Public id (for revocation and the audit trail).
    pub id: String,
    /// The bearer token to hand over.
    pub token: String,
}

/// A stored token, without its secret.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenRecord {
    /// Public id.
    pub id: String,
    /// Whose.
    pub user: String,
    /// When issued (µs since epoch).
    pub created_at_us: i64,
    /// When revoked, if it was.
    pub revoked_at_us: Option<i64>,
}

/// Splits `mf_<id>_<secret>`.
pub(crate) fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("mf_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && secret.len() == 64).then_some((id, secret))
}

impl HubState {
    /// Adds a user. Custodians must name at least one site; only custodians name sites.
    pub async fn add_user(
        &self,
        name: &str,
        roles: &[String],
        sites: &[String],
    ) -> Result<User, StateError> {
        if name.is_empty() || name.contains(',') || name.chars().any(char::is_whitespace) {
            return Err(StateError::Invalid(format!("invalid user name {name:?}")));
        }
        if let Some(r) = roles.iter().find(|r| !ROLES.contains(&r.as_str())) {
            return Err(StateError::Invalid(format!(
                "unknown role {r:?} (roles: {})",
                ROLES.join(", ")
            )));
        }
        if roles.is_empty() {
            return Err(StateError::Invalid("a user needs at least one role".into()));
        }
        let custodian = roles.iter().any(|r| r == "custodian");
        if custodian == sites.is_empty() {
            return Err(StateError::Invalid(
                "custodians name the site(s) they look after (--site), and only custodians do"
                    .into(),
            ));
        }
        sqlx::query(
            "INSERT INTO users (name, roles, sites, created_at_us) VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(roles.join(","))
        .bind(sites.join(","))
        .bind(now_us())
        .execute(&self.db.pool)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                StateError::Invalid(format!("user {name} already exists"))
            }
            e => e.into(),
        })?;
        Ok(User {
            name: name.into(),
            roles: roles.to_vec(),
            sites: sites.to_vec(),
            disabled: false,
        })
    }

    /// The user called `name`.
    pub async fn user(&self, name: &str) -> Result<User, StateError> {
        let row =
            sqlx::query("SELECT name, roles, sites, disabled_at_us FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.db.pool)
                .await?
                .ok_or_else(|| StateError::NotFound(format!("no user {name}")))?;
        user_from(&row)
    }

    /// Every user.
    pub async fn users(&self) -> Result<Vec<User>, StateError> {
        sqlx::query("SELECT name, roles, sites, disabled_at_us FROM users ORDER BY name")
            .fetch_all(&self.db.pool)
            .await?
            .iter()
            .map(user_from)
            .collect()
    }

    /// Issues a new API token for `user`, valid until revoked.
    pub async fn issue_token(&self, user: &str) -> Result<IssuedToken, StateError> {
        self.issue_token_until(user, None).await
    }

    /// Issues a new API token for `user` that stops working at `expires_at_us` (µs since epoch).
    pub async fn issue_token_until(
        &self,
        user: &str,
        expires_at_us: Option<i64>,
    ) -> Result<IssuedToken, StateError> {
        self.user(user).await?;
        let (id, secret) = (random_id(8), random_id(32));
        let hash = Argon2::default()
            .hash_password(secret.as_bytes())
            .map_err(|e| StateError::Invalid(format!("hashing token: {e}")))?
            .to_string();
        sqlx::query(
            "INSERT INTO api_tokens (id, user_name, hash, created_at_us, expires_at_us) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(user)
        .bind(hash)
        .bind(now_us())
        .bind(expires_at_us)
        .execute(&self.db.pool)
        .await?;
        Ok(IssuedToken {
            token: format!("mf_{id}_{secret}"),
            id,
        })
    }

    /// Revokes token `id`; it stops working at once.
    pub async fn revoke_token(&self, id: &str) -> Result<(), StateError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at_us = $1 WHERE id = $2 AND revoked_at_us IS NULL",
        )
        .bind(now_us())
        .bind(id)
        .execute(&self.db.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StateError::NotFound(format!(
                "no live token {id} (unknown or already revoked)"
            )));
        }
        Ok(())
    }

    /// Tokens of `user` (all users when `None`).
    pub async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>, StateError> {
        let rows = sqlx::query(
            "SELECT id, user_name, created_at_us, revoked_at_us FROM api_tokens \
             WHERE $1 = '' OR user_name = $1 ORDER BY created_at_us",
        )
        .bind(user.unwrap_or(""))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenRecord {
                    id: r.try_get(0)?,
                    user: r.try_get(1)?,
                    created_at_us: r.try_get(2)?,
                    revoked_at_us: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// The live token row for `id`: (user, argon2 hash). `None` when unknown, revoked, expired
    /// or its user is disabled.
    pub(crate) async fn live_token(&self, id: &str) -> Result<Option<(User, String)>, StateError> {
        let row = sqlx::query(
            "SELECT u.name, u.roles, u.sites, u.disabled_at_us, t.hash FROM api_tokens t \
             JOIN users u ON u.name = t.user_name \
             WHERE t.id = $1 AND t.revoked_at_us IS NULL \
             AND (t.expires_at_us IS NULL OR t.expires_at_us > $2)",
        )
        .bind(id)
        .bind(now_us())
        .fetch_optional(&self.db.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let user = user_from(&row)?;
        if user.disabled {
            return Ok(None);
        }
        Ok(Some((user, row.try_get(4)?)))
    }
}

/// Whether `secret` matches the argon2 PHC string `hash` (constant-time inside argon2).
pub(crate) fn secret_matches(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

fn user_from(row: &sqlx::any::AnyRow) -> Result<User, StateError> {
    let disabled: Option<i64> = row.try_get(3)?;
    Ok(User {
        name: row.try_get(0)?,
        roles: split_list(&row.try_get::<String, _>(1)?),
        sites: split_list(&row.try_get::<String, _>(2)?),
        disabled: disabled.is_some(),
    })
}

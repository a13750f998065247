//! The model registry's tables: models, and their versions (one per training run).

use medfed_audit::db::now_us;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{HubState, StateError, split_list};

/// One registered training run of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelVersion {
    /// The model's name.
    pub model: String,
    /// 1, 2, … in registration order.
    pub version: i64,
    /// What was trained: `glm/binomial`, …
    pub kind: String,
    /// The study it was trained under.
    pub study: String,
    /// Who trained it.
    pub trained_by: String,
    /// The training request (table, formula, family, filter, …).
    pub parameters: serde_json::Value,
    /// Fit statistics (n, deviance, AIC, iterations, …).
    pub metrics: serde_json::Value,
    /// The released model: coefficients and what is needed to use them.
    pub artifact: serde_json::Value,
    /// ε spent at each site (0 in exact studies).
    pub epsilon: f64,
    /// Sites that took part.
    pub sites: Vec<String>,
    /// The result digest of the release in the hub's audit trail.
    pub audit_digest: String,
    /// When it was registered (µs since the Unix epoch).
    pub created_us: i64,
}

impl HubState {
    /// Stores `v` as the next version of its model (creating the model), returning the version.
    pub async fn register_version(&self, v: &ModelVersion) -> Result<i64, StateError> {
        let mut tx = self.db.pool.begin().await?;
        sqlx::query(
            "INSERT INTO models (name, created_by, created_us) SELECT $1, $2, $3 WHERE NOT \
             EXISTS (SELECT 1 FROM models WHERE name = $1)",
        )
        .bind(&v.model)
        .bind(&v.trained_by)
        .bind(now_us())
        .execute(&mut *tx)
        .await?;
        let next: i64 = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE model = $1",
        )
        .bind(&v.model)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        sqlx::query(
            "INSERT INTO model_versions (model, version, kind, study_id, trained_by, parameters, \
             metrics, artifact, epsilon, sites, audit_digest, created_us) VALUES ($1, $2, $3, \
             $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&v.model)
        .bind(next)
        .bind(&v.kind)
        .bind(&v.study)
        .bind(&v.trained_by)
        .bind(v.parameters.to_string())
        .bind(v.metrics.to_string())
        .bind(v.artifact.to_string())
        .bind(v.epsilon)
        .bind(v.sites.join(","))
        .bind(&v.audit_digest)
        .bind(now_us())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(next)
    }

    /// Every version of every model, by model then version.
    pub async fn model_versions(
        &self,
        model: Option<&str>,
    ) -> Result<Vec<ModelVersion>, StateError> {
        let rows = match model {
            Some(m) => {
                sqlx::query(concat!(
                    "SELECT model, version, kind, study_id, trained_by, parameters, metrics, ",
                    "artifact, epsilon, sites, audit_digest, created_us FROM model_versions ",
                    "WHERE model = $1 ORDER BY model, version"
                ))
                .bind(m)
                .fetch_all(&self.db.pool)
                .await?
            }
            None => {
                sqlx::query(concat!(
                    "SELECT model, version, kind, study_id, trained_by, parameters, metrics, ",
                    "artifact, epsilon, sites, audit_digest, created_us FROM model_versions ",
                    "ORDER BY model, version"
                ))
                .fetch_all(&self.db.pool)
                .await?
            }
        };
        rows.iter()
            .map(|r| {
                let json = |i: usize| -> Result<serde_json::Value, StateError> {
                    let text: String = r.try_get(i)?;
                    serde_json::from_str(&text)
                        .map_err(|e| StateError::Invalid(format!("stored model: {e}")))
                };
                Ok(ModelVersion {
                    model: r.try_get(0)?,
                    version: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    study: r.try_get(3)?,
                    trained_by: r.try_get(4)?,
                    parameters: json(5)?,
                    metrics: json(6)?,
                    artifact: json(7)?,
                    epsilon: r.try_get(8)?,
                    sites: split_list(&r.try_get::<String, _>(9)?),
                    audit_digest: r.try_get(10)?,
                    created_us: r.try_get(11)?,
                })
            })
            .collect()
    }
}

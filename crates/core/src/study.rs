//! Studies: the unit of approval. A researcher proposes one, each site's custodian approves or
//! rejects it for their site, and every query names one. Its [`StudyTerms`] are the data
//! minimisation contract: which analyses, tables and columns it may use, and with what privacy.

use serde::{Deserialize, Serialize};

/// The analyses a study can ask for (what the network can run).
pub const ANALYSES: &[&str] = &["sql", "stats", "glm", "survival", "fedavg"];

/// How results of a study are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrivacyMode {
    /// Exact aggregates under disclosure control (minimum cell counts, dominance, differencing).
    Exact,
    /// Differentially private releases, spending ε from each site's per-study budget.
    Dp,
}

/// What a study may use, and how privately.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StudyTerms {
    /// Analyses allowed (from [`ANALYSES`]).
    #[schema(schema_with = crate::schema::analyses)]
    pub analyses: Vec<String>,
    /// Tables it may read.
    #[schema(min_items = 1)]
    pub tables: Vec<String>,
    /// Columns it may read, as `table.column`; a table listed here as `table.*`, or a table with
    /// no column listed at all, may be read in full.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Exact or differentially private.
    pub privacy: PrivacyMode,
    /// Total ε per site for a DP study.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
}

impl StudyTerms {
    /// Exact-aggregate SQL over whole `tables`: the simplest study.
    pub fn exact_sql(tables: &[&str]) -> Self {
        Self {
            analyses: vec!["sql".into()],
            tables: tables.iter().map(|t| t.to_string()).collect(),
            columns: vec![],
            privacy: PrivacyMode::Exact,
            epsilon: None,
        }
    }

    /// Checks the terms are well formed (known analyses, at least one table, ε given iff DP).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(a) = self
            .analyses
            .iter()
            .find(|a| !ANALYSES.contains(&a.as_str()))
        {
            return Err(format!(
                "unknown analysis {a:?} (known: {})",
                ANALYSES.join(", ")
            ));
        }
        if self.analyses.is_empty() || self.tables.is_empty() {
            return Err("a study must name at least one analysis and one table".into());
        }
        if let Some(c) = self.columns.iter().find(|c| c.split_once('.').is_none()) {
            return Err(format!("column {c:?} must be written table.column"));
        }
        match (self.privacy, self.epsilon) {
            (PrivacyMode::Dp, Some(e)) if e > 0.0 && e.is_finite() => Ok(()),
            (PrivacyMode::Dp, _) => Err("a DP study needs a positive epsilon".into()),
            (PrivacyMode::Exact, Some(_)) => Err("epsilon only applies to DP studies".into()),
            (PrivacyMode::Exact, None) => Ok(()),
        }
    }

    /// The first table or column in `used` (table → columns read) that the terms do not allow.
    ///
    /// ```
    /// use medfed_core::study::{PrivacyMode, StudyTerms};
    /// let terms = StudyTerms {
    ///     analyses: vec!["sql".into()],
    ///     tables: vec!["person".into(), "measurement".into()],
    ///     columns: vec!["person.gender_concept_id".into(), "person.person_id".into()],
    ///     privacy: PrivacyMode::Exact,
    ///     epsilon: None,
    /// };
    /// let used = |t: &str, cols: &[&str]| [(t.to_string(), cols.iter().map(|c| c.to_string()).collect::<Vec<_>>())];
    /// assert_eq!(terms.outside(used("person", &["gender_concept_id"])), None);
    /// assert_eq!(terms.outside(used("measurement", &["value_as_number"])), None);
    /// assert_eq!(terms.outside(used("person", &["year_of_birth"])).as_deref(), Some("person.year_of_birth"));
    /// assert_eq!(terms.outside(used("death", &["death_date"])).as_deref(), Some("death"));
    /// ```
    pub fn outside<I, C>(&self, used: I) -> Option<String>
    where
        I: IntoIterator<Item = (String, C)>,
        C: IntoIterator<Item = String>,
    {
        for (table, columns) in used {
            if !self.tables.contains(&table) {
                return Some(table);
            }
            let prefix = format!("{table}.");
            let listed: Vec<&str> = self
                .columns
                .iter()
                .filter_map(|c| c.strip_prefix(&prefix))
                .collect();
            if listed.is_empty() || listed.contains(&"*") {
                continue;
            }
            if let Some(c) = columns.into_iter().find(|c| !listed.contains(&c.as_str())) {
                return Some(format!("{table}.{c}"));
            }
        }
        None
    }
}

/// A site's decision on a study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Not decided yet.
    Pending,
    /// Approved: the study's work may run at this site.
    Approved,
    /// Rejected.
    Rejected,
}

impl ApprovalState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Rejected => "rejected",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "approved" => Some(Self::Approved),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// The roles a person can hold in a network.
pub const ROLES: &[&str] = &["researcher", "clinician", "custodian", "admin", "auditor"];

//! Why a query was refused or failed, in words a researcher can act on.

/// A refused or failed federated SQL query.
///
/// Refusals (`RowOutput`, `Identifier`, `Disclosive`, `NonMergeable`, `Unsupported`) mean the
/// query would release something other than mergeable aggregates; the message says what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    #[error(
        "refused: the query returns individual rows, not aggregates ({0}); aggregate the columns with COUNT, SUM, AVG, VAR_SAMP or STDDEV and GROUP BY categories"
    )]
    RowOutput(String),
    #[error(
        "refused: `{column}` identifies a patient or an event; it may only be counted (COUNT({column}), COUNT(DISTINCT {column})), never grouped by, summed or released"
    )]
    Identifier { column: String },
    #[error("refused: {0}")]
    Disclosive(String),
    #[error(
        "refused: {0} cannot be merged exactly across sites; supported aggregates are COUNT, COUNT(DISTINCT person_id), SUM, AVG, VAR_SAMP, VAR_POP, STDDEV, STDDEV_POP"
    )]
    NonMergeable(String),
    #[error("refused: {0}")]
    Unsupported(String),
    #[error("invalid query: {0}")]
    Plan(String),
    #[error("execution failed: {0}")]
    Execution(String),
    /// A release in several steps saw different sites or data between them: nothing released.
    #[error("abandoned: {0}")]
    SitesChanged(String),
}

impl SqlError {
    /// True for refusals (the query is not allowed), false for errors (it could not run).
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            SqlError::Plan(_) | SqlError::Execution(_) | SqlError::SitesChanged(_)
        )
    }
}

impl From<datafusion::error::DataFusionError> for SqlError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as E;
        match e.find_root() {
            E::SQL(..) | E::Plan(_) | E::SchemaError(..) | E::NotImplemented(_) => {
                SqlError::Plan(e.strip_backtrace())
            }
            _ => SqlError::Execution(e.strip_backtrace()),
        }
    }
}

impl From<arrow::error::ArrowError> for SqlError {
    fn from(e: arrow::error::ArrowError) -> Self {
        SqlError::Execution(e.to_string())
    }
}

/// Result alias for this module.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;

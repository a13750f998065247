//! Resolving an analysis's variables against the catalogue, before any query is sent.
//!
//! Trust boundary: table and column names come from a researcher. Only plain identifiers are
//! accepted, their types come from planning `SELECT cols FROM table` (nothing runs), and a
//! column that identifies a person or an event is refused as a variable of any analysis.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::DataType;
use datafusion::execution::SessionState;
use medfed_core::IDENTIFIER_METADATA_KEY;

/// Why a variable cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VariableError {
    /// Not a name, or not a column of the table.
    #[error("{0}")]
    Unknown(String),
    /// A person or event identifier.
    #[error("{0} identifies a person or an event and cannot be an analysis variable")]
    Identifier(String),
}

/// Whether `s` is a plain SQL identifier (letters, digits, `_`; not starting with a digit).
pub fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The type of each of `columns` in `table`, keyed by lower-cased name.
pub async fn resolve(
    state: &SessionState,
    table: &str,
    columns: &[String],
) -> Result<BTreeMap<String, DataType>, VariableError> {
    if !is_name(table) {
        return Err(VariableError::Unknown(format!(
            "{table:?} is not a table name"
        )));
    }
    if let Some(bad) = columns.iter().find(|c| !is_name(c)) {
        return Err(VariableError::Unknown(format!(
            "{bad:?} is not a column name"
        )));
    }
    let probe = format!("SELECT {} FROM {table}", columns.join(", "));
    let plan = state.create_logical_plan(&probe).await.map_err(|e| {
        VariableError::Unknown(e.to_string().lines().next().unwrap_or("").to_string())
    })?;
    let mut types = BTreeMap::new();
    for (name, field) in columns.iter().zip(plan.schema().fields()) {
        if field.metadata().contains_key(IDENTIFIER_METADATA_KEY)
            || medfed_core::omop::is_identifier(field.name())
        {
            return Err(VariableError::Identifier(name.clone()));
        }
        types.insert(name.to_ascii_lowercase(), field.data_type().clone());
    }
    Ok(types)
}

/// Whether a type is usable as a number (booleans count as 0/1).
pub fn is_numeric(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Boolean)
}

/// Whether a type holds text (categories).
pub fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..)
    )
}

/// A researcher's row filter must be one SQL condition: no statement separator or comment
/// (the statement around it is checked by the SQL checker at the hub and at every site anyway).
pub fn check_filter(filter: Option<&str>) -> Result<(), String> {
    match filter {
        Some(f) if f.contains(';') || f.contains("--") || f.contains("/*") => {
            Err("the row filter is one SQL condition: no ';' or comments".into())
        }
        _ => Ok(()),
    }
}

/// Whether `expr` may be used as a variable: one SQL expression, no statement separator,
/// comment or sub-query (`SELECT`). The statement around it is checked again by the SQL checker
/// at the hub and at every site.
pub fn check_expression(expr: &str) -> Result<(), VariableError> {
    let lower = expr.to_ascii_lowercase();
    let select = lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|w| w == "select");
    if expr.trim().is_empty() || expr.contains(';') || expr.contains("--") || expr.contains("/*") {
        return Err(VariableError::Unknown(format!(
            "{expr:?} is not one SQL expression (no ';' or comments)"
        )));
    }
    if select {
        return Err(VariableError::Unknown(format!(
            "{expr:?}: a variable is an expression over the table's columns, not a sub-query"
        )));
    }
    Ok(())
}

/// The type of each of `exprs` (column names or SQL expressions over `table`'s columns, such as
/// `2024 - year_of_birth`), found by planning them. An expression that reads an identifier
/// column is refused like the column itself: `person_id % 2` is still `person_id`.
pub async fn resolve_expressions(
    state: &SessionState,
    table: &str,
    exprs: &[String],
) -> Result<Vec<DataType>, VariableError> {
    use datafusion::logical_expr::LogicalPlan;
    if !is_name(table) {
        return Err(VariableError::Unknown(format!(
            "{table:?} is not a table name"
        )));
    }
    for e in exprs {
        check_expression(e)?;
    }
    let select: Vec<String> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| format!("({e}) AS __v{i}"))
        .collect();
    let probe = format!("SELECT {} FROM {table}", select.join(", "));
    let plan = state.create_logical_plan(&probe).await.map_err(|e| {
        VariableError::Unknown(e.to_string().lines().next().unwrap_or("").to_string())
    })?;
    let LogicalPlan::Projection(projection) = &plan else {
        return Err(VariableError::Unknown(format!(
            "{exprs:?} are not expressions over {table}'s columns"
        )));
    };
    for (expr, text) in projection.expr.iter().zip(exprs) {
        for column in expr.column_refs() {
            let (_, field) = projection
                .input
                .schema()
                .qualified_field_from_column(column)
                .map_err(|e| VariableError::Unknown(e.to_string()))?;
            if field.metadata().contains_key(IDENTIFIER_METADATA_KEY)
                || medfed_core::omop::is_identifier(field.name())
            {
                return Err(VariableError::Identifier(text.clone()));
            }
        }
    }
    Ok(plan
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect())
}

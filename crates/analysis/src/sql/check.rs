//! The check shared by the hub and every site: a plan may release only mergeable aggregates.
//!
//! Trust boundary: at the hub this reads a researcher's SQL; at a site it reads the hub's partial
//! SQL. Both are untrusted input, so both are planned and checked here before anything runs.
//!
//! Accepted shape, from the root down:
//! ```text
//!   [Projection | Filter (HAVING) | Sort | Limit | Distinct | Window | SubqueryAlias]*   (on groups)
//!   Aggregate  (group keys: no identifiers; aggregates: the mergeable set)
//!   <anything row-level but LIMIT/OFFSET or window functions>   (runs inside the site only)
//! ```

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan};
use medfed_core::IDENTIFIER_METADATA_KEY;

use super::error::{Result, SqlError};

/// How one aggregate of the query is computed from partials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggKind {
    /// COUNT(x) / COUNT(*): summed.
    Count,
    /// COUNT(DISTINCT id) of a site-local identifier: summed (a patient belongs to one site).
    CountDistinctId,
    /// SUM(x): summed.
    Sum,
    /// AVG(x): merged sum / merged count.
    Avg,
    /// Variance family: merged from count, sum and within-site variance (Chan et al.).
    Variance { sample: bool, sqrt: bool },
}

/// The parts of an accepted plan the rewriter needs.
pub(crate) struct Shape<'a> {
    pub aggregate: &'a Aggregate,
    pub kinds: Vec<AggKind>,
}

/// Checks `plan` and returns its aggregate and how each aggregate merges.
pub(crate) fn analyse(plan: &LogicalPlan) -> Result<Shape<'_>> {
    let mut node = plan;
    let aggregate = loop {
        match node {
            LogicalPlan::Aggregate(agg) => break agg,
            LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::Window(_)
            | LogicalPlan::SubqueryAlias(_) => {
                if node.expressions().iter().any(has_subquery) {
                    return Err(SqlError::Unsupported(
                        "sub-selects over aggregated results are not supported; put them in WHERE or FROM".into(),
                    ));
                }
                node = node.inputs()[0];
            }
            LogicalPlan::Union(_) => {
                return Err(SqlError::Unsupported(
                    "UNION of result sets is not supported; run the queries separately".into(),
                ));
            }
            LogicalPlan::TableScan(_)
            | LogicalPlan::Join(_)
            | LogicalPlan::Values(_)
            | LogicalPlan::EmptyRelation(_) => {
                return Err(SqlError::RowOutput(
                    "no GROUP BY or aggregate function".into(),
                ));
            }
            other => {
                return Err(SqlError::Unsupported(format!(
                    "only SELECT queries are allowed, not {}",
                    other
                        .display()
                        .to_string()
                        .split(':')
                        .next()
                        .unwrap_or("this statement")
                )));
            }
        }
    };
    check_input(&aggregate.input)?;
    for g in &aggregate.group_expr {
        if matches!(g, Expr::GroupingSet(_)) {
            return Err(SqlError::Unsupported(
                "GROUPING SETS, ROLLUP and CUBE are not supported yet".into(),
            ));
        }
        if let Some(column) = identifier_lineage(g, &aggregate.input) {
            return Err(SqlError::Identifier { column });
        }
    }
    let kinds = aggregate
        .aggr_expr
        .iter()
        .map(|e| classify(e, &aggregate.input))
        .collect::<Result<_>>()?;
    Ok(Shape { aggregate, kinds })
}

/// Below the aggregate everything stays inside the site, but row pickers turn an aggregate back
/// into a single patient's value (`SUM(x)` over `... ORDER BY x LIMIT 1` is `MAX(x)`).
fn check_input(input: &LogicalPlan) -> Result<()> {
    let mut refusal = None;
    input
        .apply_with_subqueries(|node| {
            refusal = match node {
                LogicalPlan::Limit(_) => {
                    Some("LIMIT/OFFSET inside a sub-select picks individual rows")
                }
                LogicalPlan::Window(_) => {
                    Some("window functions inside a sub-select can pick individual rows")
                }
                LogicalPlan::Dml(_)
                | LogicalPlan::Ddl(_)
                | LogicalPlan::Copy(_)
                | LogicalPlan::Statement(_) => Some("only SELECT queries are allowed"),
                _ => None,
            };
            Ok(if refusal.is_some() {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })
        .map_err(SqlError::from)?;
    match refusal {
        Some(why) => Err(SqlError::Disclosive(why.into())),
        None => Ok(()),
    }
}

/// True if `e` contains a sub-select (scalar, EXISTS or IN).
pub(crate) fn has_subquery(e: &Expr) -> bool {
    e.exists(|e| {
        Ok(matches!(
            e,
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
        ))
    })
    .unwrap_or(true)
}

/// The first identifier column `e` reads, judged by name (OMOP) or by schema metadata (any table).
pub(crate) fn identifier_in(e: &Expr, schema: &DFSchema) -> Option<String> {
    e.column_refs().into_iter().find_map(|c| {
        let marked = schema
            .qualified_field_from_column(c)
            .map(|(_, f)| f.metadata().contains_key(IDENTIFIER_METADATA_KEY))
            .unwrap_or(false);
        (marked || medfed_core::omop::is_identifier(&c.name)).then(|| c.name.clone())
    })
}

/// The first identifier `e` is computed from, following its columns through projections,
/// aliases, joins and sub-selects down to the tables: an identifier renamed in a sub-select
/// (`SELECT SUM(pid) FROM (SELECT person_id AS pid ...)`) is still an identifier.
pub(crate) fn identifier_lineage(e: &Expr, input: &LogicalPlan) -> Option<String> {
    if let Some(c) = identifier_in(e, input.schema()) {
        return Some(c);
    }
    e.column_refs()
        .into_iter()
        .find_map(|c| column_lineage(c, input))
}

fn column_lineage(c: &Column, plan: &LogicalPlan) -> Option<String> {
    match plan {
        LogicalPlan::Projection(p) => {
            let i = p.schema.index_of_column(c).ok()?;
            identifier_lineage(&p.expr[i], &p.input)
        }
        LogicalPlan::Aggregate(a) => {
            let i = a.schema.index_of_column(c).ok()?;
            let e = a.group_expr.iter().chain(&a.aggr_expr).nth(i)?;
            identifier_lineage(e, &a.input)
        }
        LogicalPlan::TableScan(_) => None,
        other => {
            // Columns pass through (Filter, Sort, Join, SubqueryAlias re-qualifying, ...).
            let renamed = matches!(other, LogicalPlan::SubqueryAlias(_));
            other.inputs().into_iter().find_map(|child| {
                child.schema().columns().into_iter().find_map(|cc| {
                    let same = cc.name == c.name
                        && (renamed || c.relation.is_none() || cc.relation == c.relation);
                    if !same {
                        return None;
                    }
                    identifier_lineage(&Expr::Column(cc), child)
                })
            })
        }
    }
}

fn classify(e: &Expr, input: &LogicalPlan) -> Result<AggKind> {
    let schema = input.schema();
    let Expr::AggregateFunction(f) = strip_alias(e) else {
        return Err(SqlError::Unsupported(format!(
            "unexpected aggregate expression {e}"
        )));
    };
    let name = f.func.name().to_ascii_lowercase();
    let p = &f.params;
    if name == "count" {
        if !p.distinct {
            return Ok(AggKind::Count);
        }
        let one_id = p.args.len() == 1 && identifier_in(&p.args[0], schema).is_some();
        return if one_id {
            Ok(AggKind::CountDistinctId)
        } else {
            Err(SqlError::NonMergeable(format!(
                "COUNT(DISTINCT {}) (a value can occur at several sites; only patient or event identifiers are site-local)",
                p.args
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        };
    }
    if matches!(name.as_str(), "min" | "max") {
        return Err(SqlError::Disclosive(format!(
            "{} releases a single patient's value; use AVG, quantiles from a histogram, or counts in bands",
            name.to_uppercase()
        )));
    }
    let kind = match name.as_str() {
        "sum" => AggKind::Sum,
        "avg" => AggKind::Avg,
        "var" | "var_samp" => AggKind::Variance {
            sample: true,
            sqrt: false,
        },
        "var_pop" => AggKind::Variance {
            sample: false,
            sqrt: false,
        },
        "stddev" | "stddev_samp" => AggKind::Variance {
            sample: true,
            sqrt: true,
        },
        "stddev_pop" => AggKind::Variance {
            sample: false,
            sqrt: true,
        },
        _ => return Err(SqlError::NonMergeable(format!("{}()", name.to_uppercase()))),
    };
    if p.distinct {
        return Err(SqlError::NonMergeable(format!(
            "{}(DISTINCT ...)",
            name.to_uppercase()
        )));
    }
    if let Some(column) = p.args.iter().find_map(|a| identifier_lineage(a, input)) {
        return Err(SqlError::Identifier { column });
    }
    Ok(kind)
}

pub(crate) fn strip_alias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip_alias(&a.expr),
        other => other,
    }
}

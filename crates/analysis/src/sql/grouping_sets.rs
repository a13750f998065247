//! GROUPING SETS, ROLLUP and CUBE as the separate groupings they stand for.
//!
//! `GROUP BY ROLLUP(region, sex)` is three tables in one result: people per (region, sex), per
//! region, and the total. Each is an ordinary federated GROUP BY; [`expand`] rewrites the
//! researcher's SQL into one query per grouping (a rolled-up key becomes `NULL`, `GROUPING(..)`
//! its bit mask), so every grouping is checked, summed and protected like any other query. The
//! hub runs them coarsest first and records each release, so each finer table is protected
//! against the totals and subtotals published beside it by complementary suppression — the
//! standard protection of a hierarchical table (τ-Argus, sdcTable). A `UNION ALL` of aggregate
//! queries — a table and its total row written by hand — is taken apart the same way.
//!
//! Trust boundary: text in, text out; nothing here sees data. A grouping the rewrite cannot
//! express is refused, never run in a form the checks have not seen.

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, OrderByKind, Query,
    Select, SelectItem, SetExpr, SetOperator, SetQuantifier, Statement, Value,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::{Result, SqlError};

/// The most groupings one query may stand for (CUBE of five keys).
pub const MAX_GROUPINGS: usize = 32;

/// One of the groupings a query stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    /// The SQL of this grouping alone.
    pub sql: String,
    /// Keys grouped by (the coarsest grouping, the grand total, has none).
    pub keys: usize,
    /// Its GROUP BY as written, e.g. `region, sex` (empty for the total).
    pub by: String,
}

/// A query with GROUPING SETS, ROLLUP or CUBE, as its groupings in the order SQL lists their rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Groupings {
    pub groupings: Vec<Grouping>,
    /// The query's ORDER BY over the whole result, as (output column, ascending, nulls first);
    /// empty when it has none or orders by something other than output columns (each grouping
    /// is then sorted on its own).
    pub order: Vec<(usize, bool, bool)>,
}

/// The groupings `sql` stands for, or `None` when it is a single grouping: its GROUP BY has no
/// grouping sets and it is not a `UNION ALL` of aggregate queries (a table and its total row).
pub fn expand(sql: &str) -> Result<Option<Groupings>> {
    let upper = sql.to_ascii_uppercase();
    if !["ROLLUP", "CUBE", "GROUPING", "UNION"]
        .iter()
        .any(|w| upper.contains(w))
    {
        return Ok(None);
    }
    let Ok(mut statements) = Parser::parse_sql(&GenericDialect {}, sql) else {
        // Not ours to report: the planner says what is wrong with it.
        return Ok(None);
    };
    let [Statement::Query(query)] = statements.as_mut_slice() else {
        return Ok(None);
    };
    match query.body.as_ref() {
        SetExpr::Select(_) => expand_select(query),
        SetExpr::SetOperation {
            op: SetOperator::Union,
            set_quantifier: SetQuantifier::All,
            ..
        } => expand_union(query),
        _ => Ok(None),
    }
}

/// The branches of a `UNION ALL`, each one or more groupings; `None` when a branch is not a
/// plain SELECT (the planner then refuses the UNION).
fn expand_union(query: &Query) -> Result<Option<Groupings>> {
    fn branches<'a>(e: &'a SetExpr, out: &mut Vec<&'a Select>) -> bool {
        match e {
            SetExpr::Select(s) => {
                out.push(s);
                true
            }
            SetExpr::SetOperation {
                op: SetOperator::Union,
                set_quantifier: SetQuantifier::All,
                left,
                right,
            } => branches(left, out) && branches(right, out),
            _ => false,
        }
    }
    let mut selects = Vec::new();
    if !branches(&query.body, &mut selects) {
        return Ok(None);
    }
    no_limit(query)?;
    let width = selects[0].projection.len();
    if selects.iter().any(|s| s.projection.len() != width) {
        return Err(SqlError::Plan(
            "each branch of a UNION ALL must return the same number of columns".into(),
        ));
    }
    let order = whole_order(query.order_by.as_ref(), &selects[0].projection);
    if query.order_by.is_some() && order.is_empty() {
        return Err(SqlError::Unsupported(
            "the ORDER BY of a UNION ALL must name its output columns or positions".into(),
        ));
    }
    let mut groupings = Vec::new();
    for select in selects {
        let mut q = query.clone();
        *q.body = SetExpr::Select(Box::new(select.clone()));
        q.order_by = None;
        match expand_select(&q)? {
            Some(g) => groupings.extend(g.groupings),
            None => {
                let keys = match &select.group_by {
                    GroupByExpr::Expressions(keys, _) => keys.as_slice(),
                    GroupByExpr::All(_) => &[],
                };
                groupings.push(Grouping {
                    sql: q.to_string(),
                    keys: keys.len(),
                    by: listed(keys),
                })
            }
        }
    }
    if groupings.len() > MAX_GROUPINGS {
        return Err(too_many());
    }
    Ok(Some(Groupings { groupings, order }))
}

fn no_limit(query: &Query) -> Result<()> {
    if query.limit_clause.is_some() || query.fetch.is_some() {
        return Err(SqlError::Unsupported(
            "LIMIT with GROUPING SETS, ROLLUP, CUBE or UNION ALL: each grouping is released as \
             a table of its own; sort and cut the combined result yourself"
                .into(),
        ));
    }
    Ok(())
}

/// The groupings of one SELECT with grouping sets, or `None` when it has none.
fn expand_select(query: &Query) -> Result<Option<Groupings>> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Ok(None);
    };
    let GroupByExpr::Expressions(items, modifiers) = &select.group_by else {
        return Ok(None);
    };
    if !items.iter().any(is_grouping_set) {
        return Ok(None);
    }
    if !modifiers.is_empty() {
        return Err(SqlError::Unsupported(
            "GROUP BY … WITH ROLLUP/CUBE: write GROUP BY ROLLUP(…) instead".into(),
        ));
    }
    no_limit(query)?;
    let projection = select.projection.clone();
    let sets = sets(items)?;
    // Every key some grouping groups by, resolved to what it names in the SELECT list.
    let mut all: Vec<Expr> = Vec::new();
    for e in sets.iter().flatten() {
        if !all.iter().any(|a| same(a, e, &projection)) {
            all.push(e.clone());
        }
    }
    let order = whole_order(query.order_by.as_ref(), &projection);
    let mut groupings = Vec::with_capacity(sets.len());
    for set in &sets {
        let rolled: Vec<&Expr> = all
            .iter()
            .filter(|a| !set.iter().any(|e| same(a, e, &projection)))
            .collect();
        let mut q = query.clone();
        let SetExpr::Select(s) = q.body.as_mut() else {
            unreachable!("checked above")
        };
        s.group_by = GroupByExpr::Expressions(set.clone(), Vec::new());
        for item in s.projection.iter_mut() {
            *item = level_item(item, &rolled, &projection)?;
        }
        if let Some(order_by) = q.order_by.as_mut()
            && let OrderByKind::Expressions(exprs) = &mut order_by.kind
        {
            exprs.retain(|o| !rolled.iter().any(|r| same(r, &o.expr, &projection)));
            if exprs.is_empty() {
                q.order_by = None;
            }
        }
        groupings.push(Grouping {
            sql: q.to_string(),
            keys: set.len(),
            by: listed(set),
        });
    }
    Ok(Some(Groupings { groupings, order }))
}

fn listed(keys: &[Expr]) -> String {
    keys.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_grouping_set(e: &Expr) -> bool {
    matches!(e, Expr::Rollup(_) | Expr::Cube(_) | Expr::GroupingSets(_))
}

/// The key lists the GROUP BY items stand for: the cross product of each item's options.
fn sets(items: &[Expr]) -> Result<Vec<Vec<Expr>>> {
    let mut sets: Vec<Vec<Expr>> = vec![Vec::new()];
    for item in items {
        let options: Vec<Vec<Expr>> = match item {
            Expr::Rollup(units) => (0..=units.len())
                .rev()
                .map(|n| units[..n].concat())
                .collect(),
            Expr::Cube(units) => {
                if units.len() > 5 {
                    return Err(too_many());
                }
                let n = units.len();
                // Postgres's order: (a, b), (a), (b), () — subsets by falling size, then
                // in the order the keys were written.
                let mut masks: Vec<u32> = (0..1u32 << n).collect();
                masks.sort_by_key(|m| {
                    let bits: Vec<bool> = (0..n).map(|i| m & (1 << (n - 1 - i)) == 0).collect();
                    (std::cmp::Reverse(m.count_ones()), bits)
                });
                masks
                    .into_iter()
                    .map(|m| {
                        (0..n)
                            .filter(|i| m & (1 << (n - 1 - i)) != 0)
                            .flat_map(|i| units[i].clone())
                            .collect()
                    })
                    .collect()
            }
            Expr::GroupingSets(options) => options.clone(),
            plain => vec![vec![plain.clone()]],
        };
        sets = sets
            .iter()
            .flat_map(|s| options.iter().map(move |o| [s.clone(), o.clone()].concat()))
            .collect();
        if sets.len() > MAX_GROUPINGS {
            return Err(too_many());
        }
    }
    if sets.iter().flatten().any(is_grouping_set) {
        return Err(SqlError::Unsupported(
            "grouping sets nested inside grouping sets".into(),
        ));
    }
    Ok(sets)
}

fn too_many() -> SqlError {
    SqlError::Unsupported(format!(
        "a query may stand for at most {MAX_GROUPINGS} groupings (CUBE of five keys)"
    ))
}

/// What `e` names: a SELECT item for a position (`1`) or an alias, else itself.
fn resolve<'a>(e: &'a Expr, projection: &'a [SelectItem]) -> &'a Expr {
    let item = match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n
                .parse::<usize>()
                .ok()
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| projection.get(i)),
            _ => None,
        },
        Expr::Identifier(id) => projection.iter().find(
            |p| matches!(p, SelectItem::ExprWithAlias { alias, .. } if alias.value == id.value),
        ),
        _ => None,
    };
    match item {
        Some(SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. }) => x,
        _ => e,
    }
}

/// Whether `a` and `b` name the same key (`person.sex` and `sex` do).
fn same(a: &Expr, b: &Expr, projection: &[SelectItem]) -> bool {
    let (a, b) = (resolve(a, projection), resolve(b, projection));
    a == b || matches!((last_name(a), last_name(b)), (Some(x), Some(y)) if x == y)
}

fn last_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Identifier(id) => Some(&id.value),
        Expr::CompoundIdentifier(ids) => ids.last().map(|i| i.value.as_str()),
        Expr::Nested(inner) => last_name(inner),
        _ => None,
    }
}

/// A SELECT item in a grouping where the keys `rolled` are rolled up: a rolled-up key is NULL,
/// `GROUPING(..)` the bit mask of its rolled-up arguments, anything else unchanged.
fn level_item(
    item: &SelectItem,
    rolled: &[&Expr],
    projection: &[SelectItem],
) -> Result<SelectItem> {
    let (expr, alias) = match item {
        SelectItem::UnnamedExpr(e) => (e, None),
        SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
        other => return Ok(other.clone()),
    };
    let name = |e: &Expr| {
        alias.clone().unwrap_or_else(|| {
            Ident::with_quote('"', last_name(e).map_or(e.to_string(), str::to_string))
        })
    };
    if let Some(args) = grouping_args(expr) {
        let mut mask = 0u64;
        for a in &args {
            mask = mask << 1 | u64::from(rolled.iter().any(|r| same(r, a, projection)));
        }
        return Ok(SelectItem::ExprWithAlias {
            expr: Expr::value(Value::Number(mask.to_string(), false)),
            alias: name(expr),
        });
    }
    if rolled.iter().any(|r| same(r, expr, projection)) {
        return Ok(SelectItem::ExprWithAlias {
            expr: Expr::value(Value::Null),
            alias: name(expr),
        });
    }
    Ok(item.clone())
}

/// The arguments of a `GROUPING(a, b, …)` call.
fn grouping_args(e: &Expr) -> Option<Vec<Expr>> {
    let Expr::Function(f) = e else { return None };
    if !f.name.to_string().eq_ignore_ascii_case("grouping") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// The ORDER BY of the whole result as output positions, or empty when some item is not an
/// output column.
fn whole_order(
    order_by: Option<&datafusion::sql::sqlparser::ast::OrderBy>,
    projection: &[SelectItem],
) -> Vec<(usize, bool, bool)> {
    let Some(OrderByKind::Expressions(exprs)) = order_by.map(|o| &o.kind) else {
        return Vec::new();
    };
    let position = |e: &Expr| {
        if let Expr::Value(v) = e
            && let Value::Number(n, _) = &v.value
        {
            return n.parse::<usize>().ok().and_then(|i| i.checked_sub(1));
        }
        projection.iter().position(|p| match p {
            SelectItem::ExprWithAlias { alias, expr } => {
                matches!(e, Expr::Identifier(id) if id.value == alias.value) || expr == e
            }
            SelectItem::UnnamedExpr(x) => same(x, e, &[]),
            _ => false,
        })
    };
    let mut order = Vec::new();
    for o in exprs {
        let Some(i) = position(&o.expr).filter(|&i| i < projection.len()) else {
            return Vec::new();
        };
        let asc = o.options.asc.unwrap_or(true);
        // PostgreSQL's default: NULLs sort as if larger than every value.
        order.push((i, asc, o.options.nulls_first.unwrap_or(!asc)));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqls(sql: &str) -> Vec<String> {
        expand(sql)
            .unwrap()
            .unwrap()
            .groupings
            .into_iter()
            .map(|g| g.sql)
            .collect()
    }

    #[test]
    fn rollup_cube_and_grouping_sets_become_their_groupings() {
        assert_eq!(
            sqls("SELECT region, sex, COUNT(*) AS n FROM t GROUP BY ROLLUP(region, sex)"),
            [
                "SELECT region, sex, COUNT(*) AS n FROM t GROUP BY region, sex",
                "SELECT region, NULL AS \"sex\", COUNT(*) AS n FROM t GROUP BY region",
                "SELECT NULL AS \"region\", NULL AS \"sex\", COUNT(*) AS n FROM t",
            ]
        );
        let cube = sqls("SELECT a, b, COUNT(*) FROM t GROUP BY CUBE(a, b)");
        assert_eq!(cube.len(), 4);
        assert!(cube[1].ends_with("GROUP BY a") && cube[2].ends_with("GROUP BY b"));
        assert_eq!(
            sqls("SELECT x AS d, GROUPING(x) AS g, SUM(v) FROM t GROUP BY GROUPING SETS ((x), ())"),
            [
                "SELECT x AS d, 0 AS g, SUM(v) FROM t GROUP BY x",
                "SELECT NULL AS d, 1 AS g, SUM(v) FROM t",
            ]
        );
        // A plain key stays in every grouping; positions and aliases name SELECT items.
        assert_eq!(
            sqls("SELECT s, y / 10 AS dec, COUNT(*) FROM t GROUP BY s, ROLLUP(2) ORDER BY s, dec"),
            [
                "SELECT s, y / 10 AS dec, COUNT(*) FROM t GROUP BY s, 2 ORDER BY s, dec",
                "SELECT s, NULL AS dec, COUNT(*) FROM t GROUP BY s ORDER BY s",
            ]
        );
    }

    #[test]
    fn a_union_all_of_a_table_and_its_total_is_two_groupings() {
        let g = expand(
            "SELECT s, COUNT(*) AS n FROM t GROUP BY s UNION ALL SELECT NULL, COUNT(*) FROM t \
             ORDER BY n DESC",
        )
        .unwrap()
        .unwrap();
        let sqls: Vec<&str> = g.groupings.iter().map(|g| g.sql.as_str()).collect();
        assert_eq!(
            sqls,
            [
                "SELECT s, COUNT(*) AS n FROM t GROUP BY s",
                "SELECT NULL, COUNT(*) FROM t"
            ]
        );
        assert_eq!(g.groupings[1].keys, 0);
        assert_eq!(g.order, [(1, false, true)]);
        assert!(
            expand("SELECT a, COUNT(*) FROM t GROUP BY a UNION ALL SELECT COUNT(*) FROM t")
                .is_err()
        );
        assert!(
            expand("SELECT COUNT(*) FROM t UNION SELECT COUNT(*) FROM u")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_whole_order_follows_postgres_and_plain_queries_are_left_alone() {
        let g = expand("SELECT a, b, COUNT(*) FROM t GROUP BY ROLLUP(a, b) ORDER BY 1, b DESC")
            .unwrap()
            .unwrap();
        assert_eq!(g.order, [(0, true, false), (1, false, true)]);
        assert_eq!(
            g.groupings.iter().map(|g| g.keys).collect::<Vec<_>>(),
            [2, 1, 0]
        );
        assert!(
            expand("SELECT a, COUNT(*) FROM t GROUP BY a")
                .unwrap()
                .is_none()
        );
        assert!(
            expand("SELECT a, COUNT(*) FROM t GROUP BY ROLLUP(a) LIMIT 3").is_err(),
            "LIMIT would cut across groupings"
        );
        assert!(expand("SELECT COUNT(*) FROM t GROUP BY CUBE(a, b, c, d, e, f)").is_err());
    }
}

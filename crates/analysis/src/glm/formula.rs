//! R's model formulae, the part researchers use with `glm()`:
//! `y ~ a + b*c + factor(g) + a:d - 1 + offset(log(t))`.
//!
//! `a*b` expands to `a + b + a:b` (every sub-product of its `*`-joined parts); `:` is an
//! interaction; `- 1` or `+ 0` drops the intercept; `factor(g)` makes `g` categorical (text
//! columns are categorical anyway, as in R). Terms are ordered as R orders them: by degree, then
//! by first appearance. Trust boundary: the text comes from a researcher; only identifiers are
//! accepted as variables, so nothing but column names reaches the generated SQL.

use super::GlmError;

/// One variable of a term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    /// The column it reads (as written; SQL folds unquoted case).
    pub column: String,
    /// Whether it was written `factor(column)`.
    pub factor: bool,
}

impl Var {
    /// How R labels it: `age`, or `factor(g)`.
    pub fn label(&self) -> String {
        if self.factor {
            format!("factor({})", self.column)
        } else {
            self.column.clone()
        }
    }
}

/// A term: the product of its variables (one variable for a main effect).
pub type Term = Vec<Var>;

/// A parsed formula.
#[derive(Debug, Clone, PartialEq)]
pub struct Formula {
    /// The response column.
    pub response: String,
    /// Terms in R's order.
    pub terms: Vec<Term>,
    /// Whether the model has an intercept.
    pub intercept: bool,
    /// Offset columns, each `(column, logged)`: `offset(t)` or `offset(log(t))`.
    pub offsets: Vec<(String, bool)>,
}

impl Formula {
    /// Every column the model reads, response first, each once.
    pub fn columns(&self) -> Vec<String> {
        let mut out = vec![self.response.clone()];
        let vars = self.terms.iter().flatten().map(|v| &v.column);
        for c in vars.chain(self.offsets.iter().map(|(c, _)| c)) {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(c)) {
                out.push(c.clone());
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(String),
    Sym(char),
}

fn tokens(text: &str) -> Result<Vec<Tok>, GlmError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut s = String::new();
            while let Some(&c) = chars
                .peek()
                .filter(|c| c.is_ascii_alphanumeric() || **c == '_')
            {
                s.push(c);
                chars.next();
            }
            out.push(Tok::Ident(s));
        } else if c.is_ascii_digit() {
            let mut s = String::new();
            while let Some(&c) = chars.peek().filter(|c| c.is_ascii_digit()) {
                s.push(c);
                chars.next();
            }
            out.push(Tok::Num(s));
        } else if "~+-*:()".contains(c) {
            out.push(Tok::Sym(c));
            chars.next();
        } else if c == '^' {
            return Err(GlmError::Formula(
                "powers (^ and I(x^2)) are not supported: add the transformed column to the \
                 table, or use a:b for products"
                    .into(),
            ));
        } else {
            return Err(GlmError::Formula(format!(
                "unexpected character {c:?}; a formula uses column names, + - * : ~ and \
                 factor(), offset(), log()"
            )));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }
    fn expect(&mut self, c: char) -> Result<(), GlmError> {
        match self.next() {
            Some(Tok::Sym(s)) if s == c => Ok(()),
            other => Err(GlmError::Formula(format!(
                "expected '{c}', found {}",
                describe(other.as_ref())
            ))),
        }
    }
    fn ident(&mut self) -> Result<String, GlmError> {
        match self.next() {
            Some(Tok::Ident(s)) => Ok(s),
            other => Err(GlmError::Formula(format!(
                "expected a column name, found {}",
                describe(other.as_ref())
            ))),
        }
    }
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "the end of the formula".into(),
        Some(Tok::Ident(s)) | Some(Tok::Num(s)) => format!("'{s}'"),
        Some(Tok::Sym(c)) => format!("'{c}'"),
    }
}

/// What one `+`-separated item of the right-hand side is.
enum Item {
    Constant(bool),
    Offset(String, bool),
    /// `*`-joined groups of `:`-joined variables.
    Product(Vec<Vec<Var>>),
}

/// Parses a formula.
///
/// ```
/// use medfed_analysis::glm::parse_formula;
/// let f = parse_formula("dis_diab ~ lab_hdl * gender + factor(bmi_cat) - 1").unwrap();
/// let labels: Vec<String> = f.terms.iter()
///     .map(|t| t.iter().map(|v| v.label()).collect::<Vec<_>>().join(":")).collect();
/// assert_eq!(labels, ["lab_hdl", "gender", "factor(bmi_cat)", "lab_hdl:gender"]);
/// assert!(!f.intercept);
/// ```
pub fn parse_formula(text: &str) -> Result<Formula, GlmError> {
    let mut p = Parser {
        toks: tokens(text)?,
        at: 0,
    };
    let response = p.ident()?;
    p.expect('~')?;
    let mut intercept = true;
    let mut offsets = Vec::new();
    let mut products: Vec<Vec<Vec<Var>>> = Vec::new();
    let mut sign = '+';
    if p.peek() == Some(&Tok::Sym('-')) {
        sign = '-';
        p.next();
    }
    loop {
        let item = item(&mut p)?;
        match (sign, item) {
            ('+', Item::Constant(one)) => intercept = one,
            ('-', Item::Constant(one)) => intercept = !one,
            ('+', Item::Offset(c, log)) => offsets.push((c, log)),
            ('+', Item::Product(groups)) => products.push(groups),
            _ => {
                return Err(GlmError::Formula(
                    "only '- 1' (no intercept) can be subtracted; leave the term out instead"
                        .into(),
                ));
            }
        }
        match p.next() {
            None => break,
            Some(Tok::Sym(c)) if c == '+' || c == '-' => sign = c,
            other => {
                return Err(GlmError::Formula(format!(
                    "expected '+' or '-' between terms, found {}",
                    describe(other.as_ref())
                )));
            }
        }
    }
    let terms = expand(products);
    if terms.is_empty() && !intercept {
        return Err(GlmError::Formula("the model has no terms".into()));
    }
    Ok(Formula {
        response,
        terms,
        intercept,
        offsets,
    })
}

fn item(p: &mut Parser) -> Result<Item, GlmError> {
    if let Some(Tok::Num(n)) = p.peek().cloned() {
        p.next();
        return match n.as_str() {
            "1" => Ok(Item::Constant(true)),
            "0" => Ok(Item::Constant(false)),
            _ => Err(GlmError::Formula(format!(
                "'{n}': only 1 and 0 (intercept or none) are numbers in a formula"
            ))),
        };
    }
    if let Some(Tok::Ident(f)) = p.peek().cloned()
        && f == "offset"
        && p.toks.get(p.at + 1) == Some(&Tok::Sym('('))
    {
        p.next();
        p.next();
        let inner = p.ident()?;
        let (column, log) = if inner == "log" && p.peek() == Some(&Tok::Sym('(')) {
            p.next();
            let c = p.ident()?;
            p.expect(')')?;
            (c, true)
        } else {
            (inner, false)
        };
        p.expect(')')?;
        return Ok(Item::Offset(column, log));
    }
    let mut groups = vec![vec![var(p)?]];
    while let Some(Tok::Sym(c)) = p.peek().cloned() {
        match c {
            ':' => {
                p.next();
                groups.last_mut().expect("a group").push(var(p)?);
            }
            '*' => {
                p.next();
                groups.push(vec![var(p)?]);
            }
            _ => break,
        }
    }
    Ok(Item::Product(groups))
}

fn var(p: &mut Parser) -> Result<Var, GlmError> {
    let name = p.ident()?;
    if p.peek() != Some(&Tok::Sym('(')) {
        return Ok(Var {
            column: name,
            factor: false,
        });
    }
    if name != "factor" && name != "as_factor" {
        return Err(GlmError::Formula(format!(
            "{name}() is not supported in a formula; use factor(), offset() or log() in offset()"
        )));
    }
    p.next();
    let column = p.ident()?;
    p.expect(')')?;
    Ok(Var {
        column,
        factor: true,
    })
}

/// Every term the products stand for, deduplicated, in R's order.
fn expand(products: Vec<Vec<Vec<Var>>>) -> Vec<Term> {
    let mut order: Vec<String> = Vec::new();
    let mut terms: Vec<Term> = Vec::new();
    for groups in products {
        for g in &groups {
            for v in g {
                if !order.contains(&v.column) {
                    order.push(v.column.clone());
                }
            }
        }
        // Every non-empty subset of the `*`-joined groups, in binary-counting order.
        for mask in 1u32..(1 << groups.len().min(16)) {
            let mut term: Term = Vec::new();
            for (i, g) in groups.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    for v in g {
                        if !term.iter().any(|t| t.column == v.column) {
                            term.push(v.clone());
                        }
                    }
                }
            }
            term.sort_by_key(|v| order.iter().position(|o| *o == v.column));
            if !terms.contains(&term) {
                terms.push(term);
            }
        }
    }
    // Stable: within a degree, first appearance.
    terms.sort_by_key(|t| t.len());
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(f: &Formula) -> Vec<String> {
        f.terms
            .iter()
            .map(|t| t.iter().map(Var::label).collect::<Vec<_>>().join(":"))
            .collect()
    }

    #[test]
    fn expands_products_and_orders_terms_as_r_does() {
        let f = parse_formula("y ~ a*b*c").unwrap();
        assert_eq!(labels(&f), ["a", "b", "c", "a:b", "a:c", "b:c", "a:b:c"]);
        let f = parse_formula("y ~ a:b + a + factor(g)").unwrap();
        assert_eq!(labels(&f), ["a", "factor(g)", "a:b"]);
        assert!(f.intercept);
        let f = parse_formula("y~a+a+a:a").unwrap();
        assert_eq!(labels(&f), ["a"]);
        assert_eq!(f.columns(), ["y", "a"]);
    }

    #[test]
    fn intercept_and_offsets() {
        let f = parse_formula("y ~ 0 + a").unwrap();
        assert!(!f.intercept);
        let f = parse_formula("y ~ -1 + a + offset(log(t))").unwrap();
        assert!(!f.intercept);
        assert_eq!(f.offsets, [("t".to_string(), true)]);
        assert_eq!(f.columns(), ["y", "a", "t"]);
        let f = parse_formula("y ~ 1 + offset(e)").unwrap();
        assert!(f.terms.is_empty() && f.intercept);
    }

    #[test]
    fn refuses_what_it_does_not_understand_with_a_reason() {
        for (bad, says) in [
            ("y ~ a - b", "only '- 1'"),
            ("y ~ I(a^2)", "powers (^"),
            ("y ~ log(a)", "log() is not supported"),
            ("y ~ a; DROP TABLE person", "unexpected character ';'"),
            ("y ~ 'a'", "unexpected character"),
            ("~ a", "expected a column name"),
            ("y ~ a b", "expected '+' or '-'"),
            ("y ~ 2", "only 1 and 0"),
            ("y ~ 0", "no terms"),
            ("y ~ factor(a", "expected ')'"),
        ] {
            let e = parse_formula(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}

//! Complementary (secondary) suppression: withholding released cells so that a hidden one cannot
//! be worked out from margins published alongside it.
//!
//! A table of people per (region, sex) with (A, female) hidden is no protection if the study
//! already released the count of women: the hidden cell is that count minus the released women
//! of the other regions. τ-Argus and sdcTable protect such tables by suppressing complementary
//! cells; this module does the same for the margins a study has released (earlier releases of
//! the same cohort grouped by a subset of the keys: a keyless total, a count by sex) and for
//! finer tables released before (this table is then their margin).
//!
//! The rule checked, as an attacker holding every published number would reason: each margin is
//! a *line* summing the table's cells in it; a hidden cell alone in a line (after substituting
//! the hidden cells other lines already determine) is determined, and must not be a small count;
//! and no line's hidden total (margin − released cells) may be between 1 and k − 1 people.
//! A determined small cell is protected by the hypercube method (Repsilber; Giessing's GHMITER,
//! as in τ-Argus and sdcTable): the cheapest box of cells around it over the dimensions the
//! margins sum across, whose "opposite" corners are released cells of at least k people, so the
//! hidden cell's feasible interval is at least k wide. A small line hidden total takes its
//! cheapest released cell. Both repeat until the check passes. Deterministic: ties go to the
//! smaller cost, then fewer new cells, then category order.
//!
//! Under secure aggregation the hub does not know which groups were withheld (they are never
//! named); like the attacker it treats every unseen cell of a line with a hidden total as
//! possibly holding it ([`Table::gaps`]). Only people counts are read; nothing is released here.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The table about to be released.
#[derive(Debug, Clone)]
pub struct Table {
    /// Names of the group keys, in order.
    pub dims: Vec<String>,
    /// Each group: its key values and, if released, its people (`None`: already hidden).
    pub cells: Vec<(Vec<String>, Option<i64>)>,
    /// True when hidden groups are absent rather than shown as hidden (secure aggregation):
    /// any unseen cell may then hold a line's hidden total.
    pub gaps: bool,
}

/// An earlier release of the same cohort: its group keys and its released cells' people.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Earlier {
    pub dims: Vec<String>,
    pub cells: Vec<(Vec<String>, i64)>,
}

impl Earlier {
    /// The margin of `cells` (people per full key) over the key positions `keep`, named
    /// `dims`, with the cells under `k` not released — what a release grouped by those keys
    /// would have shown.
    pub fn margin(cells: &[(Vec<String>, i64)], dims: &[&str], keep: &[usize], k: i64) -> Self {
        let mut sums: BTreeMap<Vec<String>, i64> = BTreeMap::new();
        for (key, n) in cells {
            *sums
                .entry(keep.iter().map(|&i| key[i].clone()).collect())
                .or_default() += n;
        }
        Self {
            dims: dims.iter().map(|s| s.to_string()).collect(),
            cells: sums.into_iter().filter(|(_, n)| *n >= k).collect(),
        }
    }
}

/// sdcTable's documented example `microdata1`: people per (region, gender), (A, female) = 2 the
/// one primary cell. With every margin released (region, gender, total) and k = 10, sdcTable
/// withholds (A, male), (C, female) and (C, male); so does [`protect`].
pub fn microdata1() -> Vec<(Vec<String>, i64)> {
    [
        ("A", "female", 2),
        ("A", "male", 18),
        ("B", "female", 19),
        ("B", "male", 14),
        ("C", "female", 10),
        ("C", "male", 12),
        ("D", "female", 14),
        ("D", "male", 11),
    ]
    .into_iter()
    .map(|(r, g, n)| (vec![r.to_string(), g.to_string()], n))
    .collect()
}

/// The table cannot be protected by withholding its own cells (an earlier margin already
/// pins a small hidden total that no cell of this table can widen).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a margin this study released earlier would let a withheld group of this table be worked \
     out, and withholding more of this table cannot prevent it"
)]
pub struct Unprotectable;

/// Most cells a hypercube search or a line's unseen cells enumerate before giving up on them.
const SEARCH_CAP: usize = 100_000;

/// The cells of `table` (indices into `table.cells`) to withhold so that no hidden cell can be
/// derived from `earlier` releases under the rule in the module documentation, `k` the minimum
/// cell count.
pub fn protect(table: &Table, earlier: &[Earlier], k: i64) -> Result<Vec<usize>, Unprotectable> {
    let mut earlier: Vec<&Earlier> = earlier.iter().collect();
    earlier.sort();
    earlier.dedup();
    let mut net = Net::new(table, k);
    // Finer tables released before: each of this table's released cells is their margin.
    for f in earlier
        .iter()
        .filter(|e| is_strict_subset(&table.dims, &e.dims))
    {
        net.hide_margins_of(f);
    }
    for m in earlier
        .iter()
        .filter(|e| is_strict_subset(&e.dims, &table.dims))
    {
        net.add_margin(m);
    }
    if table.gaps {
        net.add_gaps();
    }
    net.index_lines();
    for _ in 0..=net.keys.len() {
        let solved = net.solve();
        let exposed = net
            .hidden_cells()
            .filter(|&c| {
                solved
                    .determined
                    .get(&c)
                    .is_some_and(|&v| v >= 1 && v < k && net.value[c].is_none_or(|own| own < k))
            })
            .min_by_key(|&c| &net.keys[c]);
        let fix = match exposed {
            Some(cell) => net
                .hypercube(cell)
                .or_else(|| net.cheapest_in_lines(&net.lines_of[cell])),
            None => match (0..net.lines.len()).find(|&l| {
                let r = solved.residual[l];
                r >= 1 && r < k
            }) {
                Some(line) => net.cheapest_in_lines(&[line]),
                None => return Ok(net.withheld()),
            },
        };
        match fix {
            Some(cells) => cells.into_iter().for_each(|c| net.hidden[c] = true),
            None => return Err(Unprotectable),
        }
    }
    Err(Unprotectable)
}

fn is_strict_subset(small: &[String], big: &[String]) -> bool {
    small.len() < big.len() && small.iter().all(|d| big.contains(d))
}

/// A released margin: its keys' positions in the table's key, and its total per projected key.
type Margin = (Vec<usize>, BTreeMap<Vec<String>, i64>);

/// A margin cell: the table's cells in it and their published total.
struct Line {
    members: Vec<usize>,
    total: i64,
}

/// What an attacker can derive: hidden cells determined by a line they are alone in, and each
/// line's hidden total still spread over undetermined cells.
struct Solved {
    determined: HashMap<usize, i64>,
    residual: Vec<i64>,
}

/// The table as the attacker sees it: cells (the table's, then unseen gaps), hidden or not.
struct Net {
    k: i64,
    dims: usize,
    /// Table cells first (`cells` of the input, same indices), then gaps.
    keys: Vec<Vec<String>>,
    value: Vec<Option<i64>>,
    hidden: Vec<bool>,
    /// Cells hidden before protection began (not reported as withheld).
    initially: usize,
    originally_hidden: Vec<bool>,
    index: HashMap<Vec<String>, usize>,
    names: Vec<String>,
    categories: Vec<BTreeSet<String>>,
    /// Per margin: its dims (positions in the table's key) and its lines by projected key.
    margins: Vec<Margin>,
    lines: Vec<Line>,
    lines_of: Vec<Vec<usize>>,
    /// Dimensions some margin sums across (the ones a hypercube varies).
    summed: BTreeSet<usize>,
}

impl Net {
    fn new(table: &Table, k: i64) -> Self {
        let dims = table.dims.len();
        let mut categories = vec![BTreeSet::new(); dims];
        let mut index = HashMap::new();
        for (i, (key, _)) in table.cells.iter().enumerate() {
            for (d, v) in key.iter().enumerate().take(dims) {
                categories[d].insert(v.clone());
            }
            index.insert(key.clone(), i);
        }
        let hidden: Vec<bool> = table.cells.iter().map(|(_, v)| v.is_none()).collect();
        Self {
            k,
            dims,
            keys: table.cells.iter().map(|(k, _)| k.clone()).collect(),
            value: table.cells.iter().map(|(_, v)| *v).collect(),
            originally_hidden: hidden.clone(),
            hidden,
            initially: table.cells.len(),
            index,
            names: table.dims.clone(),
            categories,
            margins: Vec::new(),
            lines: Vec::new(),
            lines_of: Vec::new(),
            summed: BTreeSet::new(),
        }
    }

    /// Positions of `sub`'s dims in `of`.
    fn positions(sub: &[String], of: &[String]) -> Vec<usize> {
        sub.iter()
            .map(|d| of.iter().position(|x| x == d).expect("a subset"))
            .collect()
    }

    fn project(key: &[String], at: &[usize]) -> Vec<String> {
        at.iter().map(|&i| key[i].clone()).collect()
    }

    /// This table is a margin of the finer `f`: a released cell whose line in `f` has a hidden
    /// total of 1..k-1 people would reveal that total, so it is withheld.
    fn hide_margins_of(&mut self, f: &Earlier) {
        let at = Self::positions(&self.names, &f.dims);
        let mut released: HashMap<Vec<String>, i64> = HashMap::new();
        for (key, n) in &f.cells {
            *released.entry(Self::project(key, &at)).or_default() += n;
        }
        for c in 0..self.initially {
            let (Some(v), false) = (self.value[c], self.hidden[c]) else {
                continue;
            };
            let rest = v - released.get(&self.keys[c]).copied().unwrap_or(0);
            if rest >= 1 && rest < self.k {
                self.hidden[c] = true;
            }
        }
    }

    /// Adds the released cells of the coarser `m` as lines, unless `m` is not a sum of this
    /// table's cells (a line's released cells already exceed its total: the data changed
    /// between the releases, or people fall in several groups) — then it constrains nothing.
    fn add_margin(&mut self, m: &Earlier) {
        let at = Self::positions(&m.dims, &self.names);
        let totals: BTreeMap<Vec<String>, i64> = m.cells.iter().cloned().collect();
        let mut released: HashMap<Vec<String>, i64> = HashMap::new();
        for c in 0..self.initially {
            if let (Some(v), false) = (self.value[c], self.hidden[c]) {
                *released
                    .entry(Self::project(&self.keys[c], &at))
                    .or_default() += v;
            }
        }
        let consistent = released
            .iter()
            .all(|(key, sum)| totals.get(key).is_none_or(|t| sum <= t));
        if !consistent {
            return;
        }
        self.summed
            .extend((0..self.dims).filter(|d| !at.contains(d)));
        self.margins.push((at, totals));
    }

    /// Unseen cells that may hold a hidden total: every combination of known categories in a
    /// line whose total exceeds its released cells, unless another line through it is
    /// complete (hidden total 0). Lines with too many combinations are left to the hidden
    /// total rule.
    fn add_gaps(&mut self) {
        // Each margin line's hidden total as the table stands, computed once.
        let residuals: Vec<HashMap<Vec<String>, i64>> = self
            .margins
            .iter()
            .map(|(at, totals)| {
                let mut rest: HashMap<Vec<String>, i64> =
                    totals.iter().map(|(k, t)| (k.clone(), *t)).collect();
                for c in 0..self.initially {
                    if let (Some(v), false) = (self.value[c], self.hidden[c])
                        && let Some(r) = rest.get_mut(&Self::project(&self.keys[c], at))
                    {
                        *r -= v;
                    }
                }
                rest
            })
            .collect();
        let residual = |m: usize, key: &[String]| {
            residuals[m]
                .get(&Self::project(key, &self.margins[m].0))
                .copied()
        };
        let mut found = BTreeSet::new();
        for (m, (at, _)) in self.margins.iter().enumerate() {
            let free: Vec<usize> = (0..self.dims).filter(|d| !at.contains(d)).collect();
            let size = free
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(self.categories[d].len()));
            if size.is_none_or(|n| n > SEARCH_CAP) {
                continue;
            }
            let combos = self.combinations(&free);
            for (line, _) in residuals[m].iter().filter(|(_, r)| **r > 0) {
                let mut key = vec![String::new(); self.dims];
                for (j, &d) in at.iter().enumerate() {
                    key[d] = line[j].clone();
                }
                for combo in &combos {
                    for (j, &d) in free.iter().enumerate() {
                        key[d] = combo[j].clone();
                    }
                    if found.len() >= SEARCH_CAP
                        || self.index.contains_key(&key)
                        || found.contains(&key)
                    {
                        continue;
                    }
                    // A cell in a complete line (hidden total 0) holds no one.
                    let zero =
                        (0..self.margins.len()).any(|other| residual(other, &key) == Some(0));
                    if !zero {
                        found.insert(key.clone());
                    }
                }
            }
        }
        for key in found {
            self.index.insert(key.clone(), self.keys.len());
            self.keys.push(key);
            self.value.push(None);
            self.hidden.push(true);
            self.originally_hidden.push(true);
        }
    }

    /// Every combination of categories of `dims` (within [`SEARCH_CAP`]).
    fn combinations(&self, dims: &[usize]) -> Vec<Vec<String>> {
        let mut out = vec![Vec::new()];
        for &d in dims {
            let mut next = Vec::new();
            for prefix in &out {
                for c in &self.categories[d] {
                    if next.len() >= SEARCH_CAP {
                        break;
                    }
                    let mut p = prefix.clone();
                    p.push(c.clone());
                    next.push(p);
                }
            }
            out = next;
        }
        out
    }

    /// Builds the lines from the margins over every cell (gaps included), in margin and key
    /// order.
    fn index_lines(&mut self) {
        self.lines_of = vec![Vec::new(); self.keys.len()];
        for (at, totals) in &self.margins {
            let mut by_key: HashMap<&Vec<String>, usize> = HashMap::new();
            for (line, &total) in totals {
                by_key.insert(line, self.lines.len());
                self.lines.push(Line {
                    members: Vec::new(),
                    total,
                });
            }
            for (c, key) in self.keys.iter().enumerate() {
                if let Some(&l) = by_key.get(&Self::project(key, at)) {
                    self.lines[l].members.push(c);
                    self.lines_of[c].push(l);
                }
            }
        }
    }

    fn hidden_cells(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.keys.len()).filter(|&c| self.hidden[c])
    }

    /// The table's cells hidden here (not before).
    fn withheld(&self) -> Vec<usize> {
        (0..self.initially)
            .filter(|&c| self.hidden[c] && !self.originally_hidden[c])
            .collect()
    }

    /// Substitutes, until nothing changes, every hidden cell that is alone in a line.
    fn solve(&self) -> Solved {
        let mut determined: HashMap<usize, i64> = HashMap::new();
        let residual = |l: &Line, determined: &HashMap<usize, i64>| {
            let mut rest = l.total;
            let mut open = Vec::new();
            for &c in &l.members {
                match (self.hidden[c], determined.get(&c)) {
                    (false, _) => rest -= self.value[c].unwrap_or(0),
                    (true, Some(v)) => rest -= v,
                    (true, None) => open.push(c),
                }
            }
            (rest, open)
        };
        loop {
            let mut changed = false;
            for l in &self.lines {
                let (rest, open) = residual(l, &determined);
                if let [only] = open[..] {
                    determined.insert(only, rest);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let residual = self
            .lines
            .iter()
            .map(|l| residual(l, &determined).0)
            .collect();
        Solved {
            determined,
            residual,
        }
    }

    /// The released cells to withhold for the cheapest hypercube around `p` over the summed
    /// dimensions: its corners exist, the corners an odd number of steps from `p` are cells of
    /// at least k people with a known size (so `p` can move by k within the box), and the
    /// sizes of the corners not yet hidden add up to the least. `None` without one.
    fn hypercube(&self, p: usize) -> Option<Vec<usize>> {
        let dims: Vec<usize> = self.summed.iter().copied().collect();
        if dims.is_empty() || dims.len() > 6 {
            return None;
        }
        let key = &self.keys[p];
        let alternatives: Vec<Vec<&String>> = dims
            .iter()
            .map(|&d| {
                self.categories[d]
                    .iter()
                    .filter(|c| **c != key[d])
                    .collect()
            })
            .collect();
        if alternatives.iter().any(Vec::is_empty) {
            return None;
        }
        let mut best: Option<(i64, usize, Vec<usize>)> = None;
        let mut pick = vec![0usize; dims.len()];
        for _ in 0..SEARCH_CAP {
            if let Some((cost, corners)) = self.box_cost(key, &dims, &alternatives, &pick)
                && best
                    .as_ref()
                    .is_none_or(|b| (cost, corners.len()) < (b.0, b.1))
            {
                best = Some((cost, corners.len(), corners));
            }
            // Next combination, last dimension fastest.
            let mut j = dims.len();
            loop {
                if j == 0 {
                    return best.map(|b| b.2).filter(|c| !c.is_empty());
                }
                j -= 1;
                pick[j] += 1;
                if pick[j] < alternatives[j].len() {
                    break;
                }
                pick[j] = 0;
            }
        }
        best.map(|b| b.2).filter(|c| !c.is_empty())
    }

    /// The cost and the not-yet-hidden corners of one box, `None` if it cannot protect.
    fn box_cost(
        &self,
        key: &[String],
        dims: &[usize],
        alternatives: &[Vec<&String>],
        pick: &[usize],
    ) -> Option<(i64, Vec<usize>)> {
        let mut cost = 0;
        let mut corners = Vec::new();
        for mask in 1u32..(1 << dims.len()) {
            let mut corner = key.to_vec();
            for (j, &d) in dims.iter().enumerate() {
                if mask & (1 << j) != 0 {
                    corner[d] = alternatives[j][pick[j]].clone();
                }
            }
            let &c = self.index.get(&corner)?;
            let opposite = mask.count_ones() % 2 == 1;
            if opposite && self.value[c].is_none_or(|v| v < self.k) {
                return None;
            }
            if !self.hidden[c] {
                cost += self.value[c].unwrap_or(0);
                corners.push(c);
            }
        }
        Some((cost, corners))
    }

    /// The smallest released cell of the table in any of `lines` (ties: key order).
    fn cheapest_in_lines(&self, lines: &[usize]) -> Option<Vec<usize>> {
        lines
            .iter()
            .flat_map(|&l| &self.lines[l].members)
            .copied()
            .filter(|&c| c < self.initially && !self.hidden[c])
            .min_by(|&a, &b| (self.value[a], &self.keys[a]).cmp(&(self.value[b], &self.keys[b])))
            .map(|c| vec![c])
    }
}

#[cfg(test)]
mod tests;

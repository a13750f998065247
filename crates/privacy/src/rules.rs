//! Statistical disclosure rules: which released cells are too small or too concentrated.
//!
//! The network (hub) sets a floor and every site may only be stricter: a site combines the
//! rules it receives with its own through [`DisclosureRules::stricter`], so a hub configured with
//! k = 3 cannot make a site with k = 11 release a cell of 5.

use serde::{Deserialize, Serialize};

/// Default minimum cell count (NVFLARE, SHRINE; DataSHIELD uses 3, OHDSI 5, PCORnet 11).
pub const DEFAULT_MIN_CELL_COUNT: u64 = 10;

/// The concentration rules for a SUM or MEAN (statistical agencies', τ-Argus's, ACRO's):
///
/// - (n, k) dominance: suppressed when its `n` largest contributions make up more than `share`
///   of the total;
/// - the p % rule (off at 0): suppressed when the total less the two largest contributions is
///   below `p_percent` % of the largest, i.e. when the second largest contributor could estimate
///   the largest to within p %. Set `share = 1` to use the p % rule alone.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Dominance {
    /// How many of the largest contributions are added up: 1 or 2.
    pub n: u8,
    /// The largest share of the total (0..1] those contributions may hold.
    pub share: f64,
    /// p of the p % rule (0: off).
    #[serde(default)]
    pub p_percent: f64,
}

impl Default for Dominance {
    /// (2, 0.85): the two largest contributors may hold at most 85 % of a released total.
    fn default() -> Self {
        Self {
            n: 2,
            share: 0.85,
            p_percent: 0.0,
        }
    }
}

impl Dominance {
    /// True when a cell whose largest absolute contribution is `first`, whose two largest sum
    /// to `top2` and whose absolute contributions sum to `total` breaks either rule.
    pub fn dominated(&self, first: f64, top2: f64, total: f64) -> bool {
        let top = if self.n >= 2 { top2 } else { first };
        let nk = top > self.share * total;
        let p = self.p_percent > 0.0 && total - top2 < self.p_percent / 100.0 * first;
        total > 0.0 && (nk || p)
    }

    /// The name of the rule that `dominated` applied, for results and the audit trail.
    pub fn describe(&self) -> String {
        let nk = format!(
            "the {} largest contribution(s) may hold at most {:.0}% of a total",
            self.n,
            self.share * 100.0
        );
        if self.p_percent > 0.0 {
            format!(
                "{nk}; p% rule: the rest must be at least {}% of the largest",
                self.p_percent
            )
        } else {
            nk
        }
    }
}

/// The rules a released model is held to (DataSHIELD's and ACRO's for regressions).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelRules {
    /// Observations − coefficients must be at least this (ACRO, OpenSAFELY: 10).
    pub min_residual_df: u64,
    /// Coefficients may be at most this share of the observations (DataSHIELD's saturation
    /// rule: 0.37); a saturated model reproduces its data.
    pub max_parameter_share: f64,
}

impl Default for ModelRules {
    fn default() -> Self {
        Self {
            min_residual_df: 10,
            max_parameter_share: 0.37,
        }
    }
}

impl ModelRules {
    /// The saturation rule alone (what a site applies to its own rows: the residual degrees
    /// of freedom are a property of the released, network-wide model).
    pub fn saturated(&self, p: usize, n: u64, whose: &str) -> Option<String> {
        (p as f64 > self.max_parameter_share * n as f64).then(|| {
            format!(
                "{p} coefficients are more than {:.0}% of {whose} observations (a saturated \
                 model reproduces its data)",
                self.max_parameter_share * 100.0
            )
        })
    }

    /// Why a model with `p` coefficients on `n` observations may not be released (`whose`:
    /// "this site's" or "the network's"), or None. The count itself is never stated.
    pub fn refuse(&self, p: usize, n: u64, whose: &str) -> Option<String> {
        if let Some(why) = self.saturated(p, n, whose) {
            return Some(why);
        }
        if n < p as u64 + self.min_residual_df {
            return Some(format!(
                "{p} coefficients leave fewer than {} residual degrees of freedom (observations \
                 − coefficients) in {whose} data; fit fewer coefficients or widen the cohort",
                self.min_residual_df
            ));
        }
        None
    }
}

/// Rounding of released counts (after suppression), as statistical agencies and OpenSAFELY do:
/// to the nearest multiple of `base` (0 or 1: off), or with `midpoint` to the midpoint of the
/// base-wide interval the count falls in (OpenSAFELY's midpoint-6: 1–6 → 3.5 is shown as
/// `base·⌈x/base⌉ − ⌊base/2⌋`, so 1–6 → 3, 7–12 → 9). Zero stays zero. Expressions over counts
/// (rates, shares) are computed from the rounded counts, so they agree with the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Rounding {
    /// The base (0 or 1: no rounding).
    pub base: u64,
    /// Midpoint rounding instead of nearest.
    pub midpoint: bool,
}

impl Rounding {
    /// True when counts are rounded.
    pub fn is_on(&self) -> bool {
        self.base > 1
    }

    /// `count` rounded.
    pub fn apply(&self, count: i64) -> i64 {
        if !self.is_on() || count == 0 {
            return count;
        }
        let (b, x) = (self.base as i64, count.abs());
        let r = if self.midpoint {
            b * ((x + b - 1) / b) - b / 2
        } else {
            b * ((x + b / 2) / b)
        };
        r * count.signum()
    }

    /// What the result says about it.
    pub fn describe(&self) -> Option<String> {
        self.is_on().then(|| {
            if self.midpoint {
                format!(
                    "counts shown as the midpoint of their {}-wide interval (midpoint-{} \
                     rounding, after suppression); expressions over counts use them",
                    self.base, self.base
                )
            } else {
                format!(
                    "counts rounded to the nearest {} (after suppression); expressions over \
                     counts use the rounded counts",
                    self.base
                )
            }
        })
    }
}

/// The disclosure rules every released cell is held to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DisclosureRules {
    /// A cell counting 1..k-1 people is suppressed (0 is released: it discloses no one).
    pub min_cell_count: u64,
    /// The concentration rule for sums and means.
    pub dominance: Dominance,
    /// The rules for released models.
    pub models: ModelRules,
    /// Rounding of released counts.
    pub rounding: Rounding,
    /// Withhold class disclosure (on by default): the lone non-empty cell of a row or column of
    /// a two-way table, and a sum or mean whose contributors all share one value.
    pub class_disclosure: bool,
    /// Checks whose firing holds the release for custodians' review instead.
    pub review: Review,
}

/// Checks that, when they fire, hold a release for review by a custodian of every contributing
/// site instead of withholding cells or refusing it (ACRO's "review" outcome). Only checks the
/// hub judges on the merged table can be reviewed — class disclosure, complementary
/// suppression, differencing — because only there does the hub hold what a reviewer would
/// release. Configured as a list: `review = ["class_disclosure", "differencing"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Review {
    pub class_disclosure: bool,
    pub complementary: bool,
    pub differencing: bool,
}

impl Review {
    /// The checks that may be reviewed, by name.
    pub const CHECKS: [&'static str; 3] = ["class_disclosure", "complementary", "differencing"];

    /// Whether the check named `check` is held for review.
    pub fn holds(&self, check: &str) -> bool {
        match check {
            "class_disclosure" => self.class_disclosure,
            "complementary" => self.complementary,
            "differencing" => self.differencing,
            _ => false,
        }
    }

    /// Either side's reviews (every contributing site's custodian decides anyway).
    pub fn either(&self, other: &Self) -> Self {
        Self {
            class_disclosure: self.class_disclosure || other.class_disclosure,
            complementary: self.complementary || other.complementary,
            differencing: self.differencing || other.differencing,
        }
    }
}

impl TryFrom<Vec<String>> for Review {
    type Error = String;

    fn try_from(names: Vec<String>) -> Result<Self, String> {
        let mut r = Self::default();
        for n in names {
            match n.as_str() {
                "class_disclosure" => r.class_disclosure = true,
                "complementary" => r.complementary = true,
                "differencing" => r.differencing = true,
                other => {
                    return Err(format!(
                        "{other:?} cannot be reviewed; the checks that can are {}",
                        Self::CHECKS.join(", ")
                    ));
                }
            }
        }
        Ok(r)
    }
}

impl From<Review> for Vec<String> {
    fn from(r: Review) -> Self {
        Review::CHECKS
            .iter()
            .filter(|c| r.holds(c))
            .map(|c| c.to_string())
            .collect()
    }
}

impl Default for DisclosureRules {
    fn default() -> Self {
        Self {
            min_cell_count: DEFAULT_MIN_CELL_COUNT,
            dominance: Dominance::default(),
            models: ModelRules::default(),
            rounding: Rounding::default(),
            class_disclosure: true,
            review: Review::default(),
        }
    }
}

impl DisclosureRules {
    /// The strictest of `self` and every rule set in `others` (the rules as the strictest
    /// answering site applied them).
    pub fn strictest<'a>(self, others: impl IntoIterator<Item = &'a Self>) -> Self {
        others.into_iter().fold(self, |r, o| r.stricter(o))
    }

    /// The stricter of two rule sets, field by field.
    ///
    /// ```
    /// use medfed_privacy::DisclosureRules;
    /// let network = DisclosureRules { min_cell_count: 5, ..Default::default() };
    /// let site = DisclosureRules { min_cell_count: 11, ..Default::default() };
    /// assert_eq!(network.stricter(&site).min_cell_count, 11);
    /// ```
    pub fn stricter(&self, other: &Self) -> Self {
        Self {
            min_cell_count: self.min_cell_count.max(other.min_cell_count),
            dominance: Dominance {
                n: self.dominance.n.max(other.dominance.n).clamp(1, 2),
                share: self.dominance.share.min(other.dominance.share),
                p_percent: self.dominance.p_percent.max(other.dominance.p_percent),
            },
            models: ModelRules {
                min_residual_df: self
                    .models
                    .min_residual_df
                    .max(other.models.min_residual_df),
                max_parameter_share: self
                    .models
                    .max_parameter_share
                    .min(other.models.max_parameter_share),
            },
            // The coarser base; midpoint rounding if either asks for it.
            rounding: Rounding {
                base: self.rounding.base.max(other.rounding.base),
                midpoint: self.rounding.midpoint || other.rounding.midpoint,
            },
            class_disclosure: self.class_disclosure || other.class_disclosure,
            review: self.review.either(&other.review),
        }
    }

    /// No output rules at all (k = 1, no concentration rule, no rounding, no class disclosure):
    /// for measuring what the rules cost and for testing merges, never for a release.
    pub fn none() -> Self {
        Self {
            min_cell_count: 1,
            dominance: Dominance {
                n: 1,
                share: 1.0,
                p_percent: 0.0,
            },
            class_disclosure: false,
            ..Self::default()
        }
    }

    /// True when a cell of `count` people must be suppressed.
    pub fn too_small(&self, count: i64) -> bool {
        count > 0 && (count as u64) < self.min_cell_count
    }
}

/// Why a released cell was suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Suppression {
    /// Fewer than k people (checked at a site on its own partial, or at the hub on the merge).
    SmallCell = 1,
    /// The largest contributors dominate a sum or mean.
    Dominance = 2,
    /// Everyone in the group shares one value of a category (a two-way table's only non-empty
    /// cell in its row or column): knowing someone is in the row tells their category.
    ClassDisclosure = 3,
    /// Released-size group withheld so that a hidden one cannot be worked out from totals or
    /// margins the study released (complementary suppression).
    Complementary = 4,
    /// Everyone behind a sum or mean has the same value of it, so the mean tells each one's
    /// value ([`crate::shared`]); part of class disclosure.
    SharedValue = 5,
}

impl Suppression {
    /// The code carried in partial tables (`0` means released).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The reason for a code, `None` for 0 (released) or an unknown code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::SmallCell),
            2 => Some(Self::Dominance),
            3 => Some(Self::ClassDisclosure),
            4 => Some(Self::Complementary),
            5 => Some(Self::SharedValue),
            _ => None,
        }
    }

    /// The check's name in a release's evidence.
    pub fn check(self) -> &'static str {
        match self {
            Self::SmallCell => "min_cell_count",
            Self::Dominance => "dominance",
            Self::ClassDisclosure => "class_disclosure",
            Self::Complementary => "complementary",
            Self::SharedValue => "shared_value",
        }
    }

    /// A sentence for researchers.
    pub fn explain(self, rules: &DisclosureRules) -> String {
        match self {
            Self::SmallCell => format!(
                "fewer than {} people (minimum cell count)",
                rules.min_cell_count
            ),
            Self::ClassDisclosure => "the only non-empty cell of its row or column in a two-way \
                 table: everyone in that row (or column) shares its category (class disclosure)"
                .to_string(),
            Self::SharedValue => "everyone behind a sum or mean has the same value, so it tells \
                 each of them that value (class disclosure)"
                .to_string(),
            Self::Complementary => "withheld so that a hidden group cannot be worked out from a \
                 total or margin this study released (complementary suppression)"
                .to_string(),
            Self::Dominance if rules.dominance.p_percent > 0.0 => format!(
                "too concentrated: the {} largest contribution(s) exceed {:.0}% of the total, or \
                 the rest is under {}% of the largest (dominance and p% rules)",
                rules.dominance.n,
                rules.dominance.share * 100.0,
                rules.dominance.p_percent
            ),
            Self::Dominance => format!(
                "the {} largest contribution(s) exceed {:.0}% of the total (dominance rule)",
                rules.dominance.n,
                rules.dominance.share * 100.0
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_checks_judged_on_the_merged_table_can_be_sent_to_review() {
        let r: Review = serde_json::from_str(r#"["class_disclosure", "differencing"]"#).unwrap();
        assert!(r.class_disclosure && r.differencing && !r.complementary);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"["class_disclosure","differencing"]"#
        );
        // k is judged before the hub holds a table it could release: never reviewable.
        let e = serde_json::from_str::<Review>(r#"["min_cell_count"]"#).unwrap_err();
        assert!(e.to_string().contains("cannot be reviewed"), "{e}");
        // A site's review adds to the network's (each contributing custodian decides anyway).
        let network = DisclosureRules::default();
        let site = DisclosureRules {
            review: Review {
                complementary: true,
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(network.stricter(&site).review.complementary);
        assert!(!network.stricter(&network).review.complementary);
    }

    #[test]
    fn a_site_can_only_tighten_the_network_rules() {
        let network = DisclosureRules {
            min_cell_count: 10,
            dominance: Dominance {
                n: 1,
                share: 0.9,
                p_percent: 0.0,
            },
            models: ModelRules::default(),
            rounding: Rounding::default(),
            class_disclosure: true,
            review: Review::default(),
        };
        let lax_site = DisclosureRules {
            min_cell_count: 3,
            dominance: Dominance {
                n: 1,
                share: 0.99,
                p_percent: 0.0,
            },
            models: ModelRules {
                min_residual_df: 5,
                max_parameter_share: 0.5,
            },
            rounding: Rounding::default(),
            class_disclosure: true,
            review: Review::default(),
        };
        assert_eq!(network.stricter(&lax_site), network);
        let strict_site = DisclosureRules {
            min_cell_count: 11,
            dominance: Dominance {
                n: 2,
                share: 0.6,
                p_percent: 0.0,
            },
            models: ModelRules {
                min_residual_df: 20,
                max_parameter_share: 0.2,
            },
            rounding: Rounding {
                base: 5,
                midpoint: false,
            },
            class_disclosure: true,
            review: Review::default(),
        };
        assert_eq!(network.stricter(&strict_site), strict_site);
    }

    #[test]
    fn counts_round_to_the_nearest_base_or_to_the_interval_midpoint() {
        let five = Rounding {
            base: 5,
            midpoint: false,
        };
        let r: Vec<i64> = [0, 1, 2, 3, 12, 13, 15, 17, 18]
            .map(|x| five.apply(x))
            .to_vec();
        assert_eq!(r, [0, 0, 0, 5, 10, 15, 15, 15, 20]);
        let six = Rounding {
            base: 6,
            midpoint: true,
        };
        let r: Vec<i64> = [0, 1, 6, 7, 12, 13].map(|x| six.apply(x)).to_vec();
        assert_eq!(r, [0, 3, 3, 9, 9, 15]);
        assert_eq!(Rounding::default().apply(7), 7);
        assert!(Rounding::default().describe().is_none());
        assert!(six.describe().unwrap().contains("midpoint-6"));
    }

    #[test]
    fn models_need_residual_degrees_of_freedom_and_no_saturation() {
        let m = ModelRules::default();
        assert_eq!(m.refuse(3, 100, "the network's"), None);
        // 3 coefficients, 12 observations: 25 % of them, but only 9 residual df.
        let why = m.refuse(3, 12, "the network's").unwrap();
        assert!(why.contains("10 residual degrees of freedom"), "{why}");
        assert!(
            !why.contains("12"),
            "a refusal never states the count: {why}"
        );
        let why = m.refuse(40, 100, "this site's").unwrap();
        assert!(why.contains("37%"), "{why}");
    }

    #[test]
    fn zero_is_released_and_one_to_k_minus_one_is_not() {
        let r = DisclosureRules::default();
        assert!(!r.too_small(0));
        assert!(r.too_small(1));
        assert!(r.too_small(9));
        assert!(!r.too_small(10));
    }

    #[test]
    fn dominance_compares_the_top_contributions_with_the_total() {
        let d = Dominance::default();
        assert!(d.dominated(50.0, 90.0, 100.0));
        assert!(!d.dominated(50.0, 80.0, 100.0));
        assert!(!d.dominated(0.0, 0.0, 0.0));
        let one = Dominance { n: 1, ..d };
        assert!(!one.dominated(50.0, 90.0, 100.0));
        assert!(one.dominated(90.0, 95.0, 100.0));
    }

    #[test]
    fn the_p_percent_rule_protects_the_largest_from_the_second_largest() {
        // τ-Argus's example form: 100 = 50 + 40 + 10. The second largest (40) knows that the
        // largest is 100 − 40 − (the rest, 10): within 10/50 = 20 %.
        let p = |p_percent| Dominance {
            n: 2,
            share: 1.0,
            p_percent,
        };
        assert!(!p(10.0).dominated(50.0, 90.0, 100.0), "rest 10 ≥ 10% of 50");
        assert!(p(25.0).dominated(50.0, 90.0, 100.0), "rest 10 < 25% of 50");
        // Two contributors: the rest is 0, always sensitive; off at p = 0.
        assert!(p(1.0).dominated(60.0, 100.0, 100.0));
        assert!(!p(0.0).dominated(60.0, 100.0, 100.0));
        // Stricter of network and site: the larger p.
        let net = DisclosureRules::default();
        let site = DisclosureRules {
            dominance: p(15.0),
            ..net
        };
        assert_eq!(net.stricter(&site).dominance.p_percent, 15.0);
    }
}

//! Statistical disclosure rules: which released cells are too small or too concentrated.
//!
//! The network (hub) sets a floor and every site may only be stricter: a site combines the
//! rules it receives with its own through [`DisclosureRules::stricter`], so a hub configured with
//! k = 3 cannot make a site with k = 11 release a cell of 5.

use serde::{Deserialize, Serialize};

/// Default minimum cell count (NVFLARE, SHRINE; DataSHIELD uses 3, OHDSI 5, PCORnet 11).
pub const DEFAULT_MIN_CELL_COUNT: u64 = 10;

/// The (n, k) dominance rule: a SUM or MEAN is suppressed when its `n` largest contributions
/// make up more than `share` of the total (statistical agencies' concentration rule).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Dominance {
    /// How many of the largest contributions are added up: 1 or 2.
    pub n: u8,
    /// The largest share of the total (0..1] those contributions may hold.
    pub share: f64,
}

impl Default for Dominance {
    /// (2, 0.85): the two largest contributors may hold at most 85 % of a released total.
    fn default() -> Self {
        Self { n: 2, share: 0.85 }
    }
}

impl Dominance {
    /// True when `top` (the sum of the `n` largest absolute contributions) dominates `total`
    /// (the sum of absolute contributions).
    pub fn dominated(&self, top: f64, total: f64) -> bool {
        total > 0.0 && top > self.share * total
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
}

impl Default for DisclosureRules {
    fn default() -> Self {
        Self {
            min_cell_count: DEFAULT_MIN_CELL_COUNT,
            dominance: Dominance::default(),
        }
    }
}

impl DisclosureRules {
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
            },
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
            _ => None,
        }
    }

    /// A sentence for researchers.
    pub fn explain(self, rules: &DisclosureRules) -> String {
        match self {
            Self::SmallCell => format!(
                "fewer than {} people (minimum cell count)",
                rules.min_cell_count
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
    fn a_site_can_only_tighten_the_network_rules() {
        let network = DisclosureRules {
            min_cell_count: 10,
            dominance: Dominance { n: 1, share: 0.9 },
        };
        let lax_site = DisclosureRules {
            min_cell_count: 3,
            dominance: Dominance { n: 1, share: 0.99 },
        };
        assert_eq!(network.stricter(&lax_site), network);
        let strict_site = DisclosureRules {
            min_cell_count: 11,
            dominance: Dominance { n: 2, share: 0.6 },
        };
        assert_eq!(network.stricter(&strict_site), strict_site);
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
        let d = Dominance { n: 2, share: 0.85 };
        assert!(d.dominated(90.0, 100.0));
        assert!(!d.dominated(80.0, 100.0));
        assert!(!d.dominated(0.0, 0.0));
    }
}

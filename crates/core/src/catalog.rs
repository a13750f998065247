//! What a site publishes about its tables beyond their schemas: how many people they hold,
//! rounded and floored by the site's own rule, so a catalogue can be browsed without a query.

use serde::{Deserialize, Serialize};

/// A disclosure-controlled person count, as a site publishes it.
///
/// ```
/// use medfed_core::catalog::{CountRule, PersonCount};
/// let rule = CountRule::default(); // round to 10, nothing under 10
/// assert_eq!(rule.publish(1234), PersonCount::About(1230));
/// assert_eq!(rule.publish(7), PersonCount::FewerThan(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PersonCount {
    /// About this many people (rounded to the site's base).
    About(u64),
    /// Fewer than this many: too few to say.
    FewerThan(u64),
}

/// `[privacy.catalog_counts]` at a site: whether and how it publishes person counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CountRule {
    /// Publish counts at all.
    pub publish: bool,
    /// Round to the nearest multiple of this.
    pub round_to: u64,
    /// Say only "fewer than `min`" below it.
    pub min: u64,
}

impl Default for CountRule {
    fn default() -> Self {
        Self {
            publish: true,
            round_to: 10,
            min: 10,
        }
    }
}

impl CountRule {
    /// The published form of a true count.
    pub fn publish(&self, count: u64) -> PersonCount {
        if count < self.min.max(1) {
            return PersonCount::FewerThan(self.min.max(1));
        }
        let base = self.round_to.max(1);
        let rounded = (count + base / 2) / base * base;
        PersonCount::About(rounded.max(self.min))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_the_base_and_never_says_a_small_number() {
        let r = CountRule {
            publish: true,
            round_to: 5,
            min: 11,
        };
        assert_eq!(r.publish(0), PersonCount::FewerThan(11));
        assert_eq!(r.publish(10), PersonCount::FewerThan(11));
        // 11 would round to 10, below the floor: it is said as the floor.
        assert_eq!(r.publish(11), PersonCount::About(11));
        assert_eq!(r.publish(13), PersonCount::About(15));
        assert_eq!(r.publish(1002), PersonCount::About(1000));
    }
}

//! The shared-value check: a sum or mean whose contributors all have the same value tells each
//! of them that value (a mean of 40 over a group whose members all scored 40), however many
//! they are. ACRO withholds such a cell ("all values are the same"); here it is part of class
//! disclosure and withheld under [`crate::Suppression::SharedValue`].
//!
//! The check must run where the released sum is judged: at a site on its own groups without
//! secure aggregation, at the hub on the network's sum with it — where the hub sees no site's
//! values, minimum or maximum. So each site sends, per group and summed column, three additive
//! numbers that travel masked like the dominance inputs: the count n of values, Σe and Σe²,
//! where e is the value's fixed-point encoding reduced modulo the prime [`P`]. Then
//!
//! n·Σe² − (Σe)² = Σ over pairs (eᵢ − eⱼ)²  (mod P)
//!
//! is 0 whenever all values are equal, so a shared value is never missed; when they differ it is
//! 0 only by a coincidence of probability about 1/P (a group then withheld that need not be).
//! Reduced modulo P < 2^56 each site's numbers stay below 2^56, so up to 256 sites sum in the
//! 2^64 ring without wrapping, and the hub reduces the sum modulo P. The numbers are sums of
//! squares in a finite field: they say nothing about the values beyond the test itself.

/// The prime modulus (2^56 − 5).
pub const P: u64 = (1 << 56) - 5;

/// Fraction bits of a value's encoding: values closer than 2^-24 count as equal.
const FRACTION_BITS: u32 = 24;

/// A value's encoding modulo [`P`] (its fixed-point integer, saturating at ±2^127; values that
/// large are not told apart, which only withholds more).
pub fn encode(x: f64) -> u64 {
    let fixed = (x * f64::from(1u32 << FRACTION_BITS)).round() as i128;
    fixed.rem_euclid(i128::from(P)) as u64
}

/// (a + b) mod P for a, b < 2^64 (the hub's ring sums are reduced first).
pub fn add(a: u64, b: u64) -> u64 {
    ((u128::from(a) + u128::from(b)) % u128::from(P)) as u64
}

/// e² mod P.
pub fn square(e: u64) -> u64 {
    let e = u128::from(e % P);
    (e * e % u128::from(P)) as u64
}

/// True when `n` values with encoded sum `s1` and sum of squares `s2` (each any ring value; it
/// is reduced modulo P) are all equal. No values (`n` = 0) share nothing.
pub fn shares_one_value(n: u64, s1: u64, s2: u64) -> bool {
    let p = u128::from(P);
    let (n, s1, s2) = (u128::from(n) % p, u128::from(s1) % p, u128::from(s2) % p);
    n != 0 && n * s2 % p == s1 * s1 % p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(values: &[f64]) -> (u64, u64, u64) {
        values.iter().fold((0, 0, 0), |(n, s1, s2), &x| {
            let e = encode(x);
            (n + 1, add(s1, e), add(s2, square(e)))
        })
    }

    #[test]
    fn equal_values_are_caught_and_different_ones_are_not() {
        for v in [0.0, 40.0, -3.25, 1985.0, 1.0e12, -7.0e15] {
            let (n, s1, s2) = sums(&[v; 30]);
            assert!(shares_one_value(n, s1, s2), "{v}");
        }
        for values in [
            vec![40.0, 41.0],
            vec![0.0, 256.0, 512.0],
            vec![1.0e12, 1.0e12 + 1.0],
            vec![1985.0; 29].into_iter().chain([1986.0]).collect(),
            vec![-1.0, 1.0],
        ] {
            let (n, s1, s2) = sums(&values);
            assert!(!shares_one_value(n, s1, s2), "{values:?}");
        }
        assert!(!shares_one_value(0, 0, 0));
    }

    #[test]
    fn sites_sums_added_in_the_ring_give_the_networks_answer() {
        // Two sites each holding only 7s share one value; a site of 7s and a site of 8s do not,
        // although each site alone does.
        let (a, b, c) = (sums(&[7.0; 200]), sums(&[7.0; 5]), sums(&[8.0; 5]));
        let ring = |x: (u64, u64, u64), y: (u64, u64, u64)| {
            (
                x.0.wrapping_add(y.0),
                x.1.wrapping_add(y.1),
                x.2.wrapping_add(y.2),
            )
        };
        let (n, s1, s2) = ring(a, b);
        assert!(shares_one_value(n, s1, s2));
        let (n, s1, s2) = ring(a, c);
        assert!(!shares_one_value(n, s1, s2));
        // 256 sites at the largest residue still sum without wrapping the ring.
        assert!(u128::from(P - 1) * 256 < 1u128 << 64);
    }
}

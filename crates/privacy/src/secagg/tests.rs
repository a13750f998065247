use super::*;

fn round(
    inputs: &[Vec<u64>],
    t: usize,
    drop: &[Id],
) -> Result<(Vec<u64>, Vec<MaskedInput>), SecAggError> {
    simulate_round(inputs, t, drop)
}

fn inputs(n: usize, len: usize) -> Vec<Vec<u64>> {
    (0..n)
        .map(|i| {
            (0..len)
                .map(|j| encode_fixed((i * 1000 + j) as f64 * 0.5 - 7.25))
                .collect()
        })
        .collect()
}

fn plain_sum(xs: &[Vec<u64>], skip: &[Id]) -> Vec<u64> {
    let mut s = vec![0u64; xs[0].len()];
    for (i, x) in xs.iter().enumerate() {
        if skip.contains(&((i + 1) as Id)) {
            continue;
        }
        for (a, b) in s.iter_mut().zip(x) {
            *a = a.wrapping_add(*b);
        }
    }
    s
}

#[test]
fn the_sum_is_exact_with_everyone() {
    let xs = inputs(5, 257);
    let (sum, _) = round(&xs, 3, &[]).unwrap();
    assert_eq!(sum, plain_sum(&xs, &[]));
    let reals: Vec<f64> = sum.iter().map(|&v| decode_fixed(v)).collect();
    assert_eq!(
        reals[0],
        (0..5).map(|i| (i * 1000) as f64 * 0.5 - 7.25).sum::<f64>()
    );
}

#[test]
fn one_and_two_of_five_dropping_after_key_exchange_still_give_the_exact_sum() {
    let xs = inputs(5, 100);
    for drop in [&[2][..], &[1, 5][..]] {
        let (sum, _) = round(&xs, 3, drop).unwrap();
        assert_eq!(sum, plain_sum(&xs, drop), "dropped {drop:?}");
    }
}

#[test]
fn below_the_threshold_nothing_is_recovered() {
    let xs = inputs(5, 10);
    assert!(matches!(
        round(&xs, 4, &[1, 2]),
        Err(SecAggError::TooFewSurvivors { .. })
    ));
}

#[test]
fn negative_integers_wrap_and_come_back() {
    let xs: Vec<Vec<u64>> = vec![
        vec![(-5i64) as u64, 3],
        vec![2, (-10i64) as u64],
        vec![1, 1],
    ];
    let (sum, _) = round(&xs, 2, &[]).unwrap();
    assert_eq!(
        sum.iter().map(|&v| v as i64).collect::<Vec<_>>(),
        vec![-2, -6]
    );
}

/// The hub's view of one site's message looks like uniform noise: it never equals the plain
/// partial, and its bits are balanced (a monobit test at > 6 standard deviations).
#[test]
fn a_masked_input_is_indistinguishable_from_random() {
    let len = 4096;
    let xs: Vec<Vec<u64>> = vec![vec![0; len], vec![7; len], vec![1 << 40; len]];
    let (_, seen) = round(&xs, 2, &[]).unwrap();
    for (m, x) in seen.iter().zip(&xs) {
        let equal = m.values.iter().zip(x).filter(|(a, b)| a == b).count();
        assert_eq!(equal, 0, "site {} leaked plain values", m.from);
        let ones: u64 = m.values.iter().map(|v| u64::from(v.count_ones())).sum();
        let bits = (len * 64) as f64;
        let z = (ones as f64 - bits / 2.0) / (bits / 4.0).sqrt();
        assert!(z.abs() < 6.0, "bit balance z = {z}");
    }
}

#[test]
fn a_site_refuses_to_reveal_both_shares_of_one_site() {
    let n = 3;
    let mut sites: Vec<Participant> = (1..=3).map(|id| Participant::new(id, n, 2)).collect();
    let ads: Vec<_> = sites.iter().map(|p| p.advertise()).collect();
    let mut hub = Aggregator::new(1, ads.clone(), 2).unwrap();
    let mut mail = Vec::new();
    for s in &mut sites {
        mail.extend(s.share_keys(&ads).unwrap());
    }
    let inbox = hub.route(mail);
    for s in &mut sites {
        s.open(inbox[&s.id()].clone()).unwrap();
        let m = s.masked_input(&[1]).unwrap();
        hub.add_masked(m).unwrap();
    }
    let greedy = UnmaskRequest {
        survivors: vec![1, 2, 3],
        dropped: vec![3],
    };
    assert!(sites[0].unmask(&greedy).is_err());
}

#[test]
fn tampered_or_misrouted_shares_are_rejected() {
    let n = 3;
    let mut sites: Vec<Participant> = (1..=3).map(|id| Participant::new(id, n, 2)).collect();
    let ads: Vec<_> = sites.iter().map(|p| p.advertise()).collect();
    let mut mail = Vec::new();
    for s in &mut sites {
        mail.extend(s.share_keys(&ads).unwrap());
    }
    let mut to_one: Vec<SealedShares> = mail.iter().filter(|m| m.to == 1).cloned().collect();
    to_one[0].ciphertext[0] ^= 1;
    assert!(sites[0].open(to_one).is_err());
    let misrouted: Vec<SealedShares> = mail.iter().filter(|m| m.to == 2).cloned().collect();
    assert!(sites[0].open(misrouted).is_err());
    // Nothing is masked, nor a token key given, from an inbox that did not open.
    assert!(sites[0].masked_input(&[1]).is_err());
    assert!(sites[0].token_key().is_err());
    // A hub that swaps a site's advertised key is caught in round 1.
    let mut forged = ads.clone();
    forged[1].mask_key = ads[2].mask_key;
    assert!(sites[1].share_keys(&forged).is_err());
}

/// Every site of a round derives the same token key from the sealed seeds; the hub, which saw
/// only ciphertexts, cannot, and another round's key is unrelated.
#[test]
fn the_sites_of_a_round_share_a_token_key_the_hub_never_sees() {
    let round = || {
        let n = 4;
        let mut sites: Vec<Participant> = (1..=4).map(|id| Participant::new(id, n, 3)).collect();
        let ads: Vec<_> = sites.iter().map(|p| p.advertise()).collect();
        let mut hub = Aggregator::new(1, ads.clone(), 3).unwrap();
        let mut mail = Vec::new();
        for s in &mut sites {
            mail.extend(s.share_keys(&ads).unwrap());
        }
        let inbox = hub.route(mail);
        let keys: Vec<[u8; 32]> = sites
            .iter_mut()
            .map(|s| {
                s.open(inbox[&s.id()].clone()).unwrap();
                s.token_key().unwrap()
            })
            .collect();
        keys
    };
    let first = round();
    assert!(first.iter().all(|k| *k == first[0]));
    let second = round();
    assert_ne!(first[0], second[0]);
}

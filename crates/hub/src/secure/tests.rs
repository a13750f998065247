//! The round driver against in-process sites that follow the protocol (or drop out of it).

use std::sync::{Arc, Mutex};

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray, UInt8Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use medfed_privacy::secagg::Participant;

use super::*;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k0", DataType::Utf8, true),
        Field::new("p0", DataType::Int64, true),
        Field::new("__n", DataType::Int64, true),
        Field::new("__cell", DataType::UInt8, false),
    ]))
}

/// A site's protected partial: (group, people, dominated?) rows; p0 = 100 × people.
fn table(rows: &[(&str, i64, bool)]) -> RecordBatch {
    let n: Vec<i64> = rows.iter().map(|r| r.1).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(n.iter().map(|n| n * 100))),
            Arc::new(Int64Array::from(n)),
            Arc::new(UInt8Array::from_iter_values(
                rows.iter().map(|r| if r.2 { 2 } else { 0 }),
            )),
        ],
    )
    .unwrap()
}

/// An honest site that stops answering from round `drops_at` on.
struct Site {
    table: RecordBatch,
    participant: Mutex<Option<Participant>>,
    drops_at: Option<&'static str>,
    masked_seen: Mutex<Option<Vec<u64>>>,
    token_key: Mutex<Option<[u8; 32]>>,
    /// How many of its groups this site named to the hub.
    named: Mutex<usize>,
    /// The real site's replay guard: each round (and each advertise attempt) is served once.
    served: Mutex<std::collections::HashSet<String>>,
}

impl Site {
    fn new(rows: &[(&str, i64, bool)], drops_at: Option<&'static str>) -> Arc<Self> {
        Arc::new(Self {
            table: table(rows),
            participant: Mutex::new(None),
            drops_at,
            masked_seen: Mutex::new(None),
            token_key: Mutex::new(None),
            named: Mutex::new(0),
            served: Mutex::default(),
        })
    }

    fn answer(&self, round: Round) -> Result<Reply, SiteCallError> {
        if self.drops_at == Some(round.name()) {
            return Err(SiteCallError::Failed(
                "unreachable: connection reset".into(),
            ));
        }
        if !self.served.lock().unwrap().insert(round.replay_tag()) {
            return Err(SiteCallError::Refused(
                "request id already served (replay)".into(),
            ));
        }
        let mut p = self.participant.lock().unwrap();
        let err = |e: medfed_privacy::secagg::SecAggError| SiteCallError::Refused(e.to_string());
        Ok(match round {
            Round::Prepare { id, n, threshold } => {
                let fresh = Participant::new(id, n, threshold);
                let ad = fresh.advertise();
                *p = Some(fresh);
                Reply::Prepared {
                    report: Box::default(),
                    fixed: cells::fixed_point(&self.table.schema()),
                    ad,
                }
            }
            Round::Advertise {
                id, n, threshold, ..
            } => {
                let fresh = Participant::new(id, n, threshold);
                let ad = fresh.advertise();
                *p = Some(fresh);
                Reply::Advertised(ad)
            }
            Round::ShareKeys { ads } => {
                Reply::Shares(p.as_mut().unwrap().share_keys(&ads).map_err(err)?)
            }
            Round::Announce { inbox } => {
                let p = p.as_mut().unwrap();
                p.open(inbox).map_err(err)?;
                let key = p.token_key().map_err(err)?;
                *self.token_key.lock().unwrap() = Some(key);
                Reply::Announced(cells::tokens(&cells::announce(&self.table).unwrap(), &key))
            }
            Round::Mask { domain, fixed } => {
                let key = self.token_key.lock().unwrap().unwrap();
                let x = cells::to_vector(&self.table, &domain, Some(&key), &fixed).unwrap();
                *self.masked_seen.lock().unwrap() = Some(x.clone());
                let masked = p.as_mut().unwrap().masked_input(&x).map_err(err)?;
                assert_ne!(masked.values, x, "the hub must never see the plain cells");
                Reply::Masked(masked)
            }
            Round::Unmask { request } => {
                Reply::Unmasked(p.as_ref().unwrap().unmask(&request).map_err(err)?)
            }
            Round::Reveal { tokens } => {
                let key = self.token_key.lock().unwrap().unwrap();
                let named = cells::reveal(&self.table, &tokens, &key).unwrap();
                *self.named.lock().unwrap() += named.len();
                Reply::Revealed(named)
            }
        })
    }
}

async fn run(sites: &[(&str, Arc<Site>)]) -> FanOut {
    let names: Vec<String> = sites.iter().map(|(n, _)| n.to_string()).collect();
    let by_name: BTreeMap<String, Arc<Site>> = sites
        .iter()
        .map(|(n, s)| (n.to_string(), s.clone()))
        .collect();
    let reveal = Reveal::Rules(medfed_privacy::DisclosureRules {
        min_cell_count: 10,
        ..Default::default()
    });
    secure_fan_out(
        &names,
        &schema(),
        reveal,
        Duration::from_secs(5),
        |site, round| {
            let s = by_name[&site].clone();
            async move { s.answer(round) }
        },
    )
    .await
}

/// (group, __n, p0, dominated flag) of the unmasked table.
fn cells_of(out: &FanOut) -> Vec<(String, i64, i64, u8)> {
    let t = &out.partials[0];
    let k = t.column(0).as_string::<i32>();
    let p = t.column(1).as_primitive::<Int64Type>();
    let n = t.column(2).as_primitive::<Int64Type>();
    let c = t.column(3).as_primitive::<arrow::datatypes::UInt8Type>();
    (0..t.num_rows())
        .map(|i| (k.value(i).to_string(), n.value(i), p.value(i), c.value(i)))
        .collect()
}

#[tokio::test]
async fn k_judges_the_network_total_and_withheld_groups_are_never_named() {
    let sites = [
        (
            "a",
            Site::new(&[("F", 12, false), ("M", 3, false), ("X", 2, false)], None),
        ),
        ("b", Site::new(&[("M", 40, false), ("Y", 5, false)], None)),
        (
            "c",
            Site::new(&[("F", 5, true), ("M", 11, false), ("Y", 5, false)], None),
        ),
    ];
    let out = run(&sites).await;
    assert!(out.sites.values().all(|o| o.status == SiteStatus::Answered));
    // M (3 + 40 + 11) and Y (5 + 5: small at each site, 10 in the network) are released.
    // F is dominated at c and X has 2 people in the whole network: both withheld unnamed.
    assert_eq!(
        cells_of(&out),
        vec![("M".into(), 54, 5400, 0), ("Y".into(), 10, 1000, 0)]
    );
    assert_eq!(
        out.withheld,
        [(Suppression::SmallCell, 1), (Suppression::Dominance, 1)].into()
    );
    // a named only M; b named M and Y; c named M and Y.
    let named: Vec<usize> = sites
        .iter()
        .map(|(_, s)| *s.named.lock().unwrap())
        .collect();
    assert_eq!(named, vec![1, 2, 2]);
}

#[tokio::test]
async fn a_group_of_five_at_each_of_three_sites_is_released_and_nine_in_all_is_not() {
    let sites = [
        (
            "a",
            Site::new(&[("rare", 5, false), ("rarer", 3, false)], None),
        ),
        (
            "b",
            Site::new(&[("rare", 5, false), ("rarer", 3, false)], None),
        ),
        (
            "c",
            Site::new(&[("rare", 5, false), ("rarer", 3, false)], None),
        ),
    ];
    let out = run(&sites).await;
    assert_eq!(cells_of(&out), vec![("rare".into(), 15, 1500, 0)]);
    assert_eq!(out.withheld, [(Suppression::SmallCell, 1)].into());
}

#[tokio::test]
async fn one_and_two_of_five_sites_dropping_after_the_key_exchange_leave_the_others_sum() {
    for dropped in [&["d"][..], &["b", "e"][..]] {
        let sites: Vec<(&str, Arc<Site>)> = ["a", "b", "c", "d", "e"]
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let drops = dropped.contains(&name).then_some("mask");
                (name, Site::new(&[("F", 10 + i as i64, false)], drops))
            })
            .collect();
        let out = run(&sites).await;
        let expected: i64 = (0..5)
            .filter(|i| !dropped.contains(&["a", "b", "c", "d", "e"][*i]))
            .map(|i| 10 + i as i64)
            .sum();
        assert_eq!(
            cells_of(&out),
            vec![("F".into(), expected, expected * 100, 0)]
        );
        for name in dropped {
            assert_eq!(out.sites[*name].status, SiteStatus::Failed);
        }
        assert_eq!(out.reports.len(), 5 - dropped.len());
    }
}

#[tokio::test]
async fn sites_lost_before_the_key_exchange_are_left_out_of_a_re_formed_round() {
    // b is lost at prepare (the first formation), c when the round is re-formed without b.
    let sites = [
        ("a", Site::new(&[("F", 12, false)], None)),
        ("b", Site::new(&[("F", 20, false)], Some("prepare"))),
        ("c", Site::new(&[("F", 25, false)], Some("advertise"))),
        ("d", Site::new(&[("F", 30, false)], None)),
    ];
    let out = run(&sites).await;
    assert_eq!(cells_of(&out), vec![("F".into(), 42, 4200, 0)]);
    assert_eq!(out.sites["b"].status, SiteStatus::Failed);
    assert_eq!(out.sites["c"].status, SiteStatus::Failed);
    assert_eq!(out.threshold, Some(2));
}

#[tokio::test]
async fn one_site_alone_is_never_summed_and_is_handed_back() {
    let sites = [
        ("a", Site::new(&[("F", 3, false)], None)),
        ("b", Site::new(&[("F", 20, false)], Some("prepare"))),
    ];
    let out = run(&sites).await;
    assert!(out.partials.is_empty());
    assert_eq!(out.too_few, vec!["a".to_string()]);
    assert!(!out.sites.contains_key("a"));
    assert_eq!(out.sites["b"].status, SiteStatus::Failed);
}

#[tokio::test]
async fn too_many_dropouts_recover_nothing() {
    let sites: Vec<(&str, Arc<Site>)> = ["a", "b", "c", "d"]
        .into_iter()
        .map(|name| {
            let drops = ["b", "c", "d"].contains(&name).then_some("mask");
            (name, Site::new(&[("F", 10, false)], drops))
        })
        .collect();
    let out = run(&sites).await;
    assert!(out.partials.is_empty());
    assert!(out.sites.values().all(|o| o.status != SiteStatus::Answered));
}

#[tokio::test]
async fn a_site_lost_while_sharing_keys_is_simply_not_masked_with() {
    let sites = [
        ("a", Site::new(&[("F", 12, false)], None)),
        ("b", Site::new(&[("F", 20, false)], Some("share_keys"))),
        ("c", Site::new(&[("F", 30, false)], None)),
        ("d", Site::new(&[("F", 40, false)], None)),
    ];
    let out = run(&sites).await;
    assert_eq!(cells_of(&out), vec![("F".into(), 82, 8200, 0)]);
    assert_eq!(out.sites["b"].status, SiteStatus::Failed);
    assert_eq!(out.threshold, Some(3));
}

/// The network's sums of a partial with one SUM and its hidden inputs, as `choose` sees them;
/// each group's values vary (two values) unless its name says "one value".
fn summed_with_dominance(rows: &[(&str, i64, f64, f64)]) -> (SchemaRef, Vec<u64>, Vec<String>) {
    use arrow::array::Float64Array;
    use medfed_privacy::shared;
    let power_sums = |(name, n, _, total): &(&str, i64, f64, f64)| {
        let mean = total / *n as f64;
        (0..*n).fold((0, 0), |(s1, s2), i| {
            let x = if name.contains("one value") || i % 2 == 0 {
                mean
            } else {
                mean + 1.0
            };
            let e = shared::encode(x);
            (shared::add(s1, e), shared::add(s2, shared::square(e)))
        })
    };
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("k0", DataType::Utf8, true),
        Field::new("p0", DataType::Float64, true),
        Field::new("__n", DataType::Int64, true),
        Field::new("__cell", DataType::UInt8, false),
        Field::new("__first:p0", DataType::Float64, true),
        Field::new("__top:p0", DataType::Float64, true),
        Field::new("__abs:p0", DataType::Float64, true),
        Field::new("__shn:p0", DataType::Int64, true),
        Field::new("__sh1:p0", DataType::Int64, true),
        Field::new("__sh2:p0", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(UInt8Array::from(vec![0; rows.len()])),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.2 / 2.0),
            )),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| power_sums(r).0 as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| power_sums(r).1 as i64),
            )),
        ],
    )
    .unwrap();
    let fixed = cells::fixed_point(&schema);
    let domain = cells::group_keys(&batch).unwrap();
    let sum = cells::to_vector(&batch, &domain, None, &fixed).unwrap();
    (schema, sum, domain)
}

#[test]
fn dominance_is_judged_on_the_network_sums_not_on_one_sites_groups() {
    // (group, people, Σ sites' top-2 |x|, Σ|x|). A site holding one or two people of a group
    // is "dominated" in its own partial; in the network only a real concentration is.
    let (schema, sum, domain) = summed_with_dominance(&[
        ("spread out", 15, 30.0, 100.0),
        ("concentrated", 15, 90.0, 100.0),
        ("small", 9, 10.0, 100.0),
        ("one value", 40, 2.0, 40.0),
    ]);
    let fixed = cells::fixed_point(&schema);
    let rules = medfed_privacy::DisclosureRules {
        min_cell_count: 10,
        ..Default::default()
    };
    let mut withheld = BTreeMap::new();
    let (keep, flag) = choose(
        &sum,
        &schema,
        &fixed,
        &domain,
        Reveal::Rules(rules),
        &mut withheld,
    )
    .unwrap();
    assert_eq!(keep, vec![0], "only the spread-out group is released");
    assert!(flag.is_empty());
    assert_eq!(withheld[&Suppression::Dominance], 1);
    assert_eq!(withheld[&Suppression::SmallCell], 1);
    assert_eq!(withheld[&Suppression::SharedValue], 1);
    // With class disclosure off the group of 40 people who all have 1 is released.
    let off = medfed_privacy::DisclosureRules {
        class_disclosure: false,
        ..rules
    };
    let (keep, _) = choose(
        &sum,
        &schema,
        &fixed,
        &domain,
        Reveal::Rules(off),
        &mut BTreeMap::new(),
    )
    .unwrap();
    assert_eq!(keep, vec![0, 3]);
}

#[test]
fn a_dominated_keyless_total_is_kept_but_flagged_for_the_merge_to_null() {
    let (schema, sum, domain) = summed_with_dominance(&[("", 40, 95.0, 100.0)]);
    // A keyless table has no key column: rebuild the sum without one.
    let keyless: SchemaRef = Arc::new(Schema::new(schema.fields()[1..].to_vec()));
    let fixed = cells::fixed_point(&keyless);
    assert_eq!(domain.len(), 1);
    let rules = medfed_privacy::DisclosureRules::default();
    let choose_keyless = |sum: &[u64]| {
        let none = &mut BTreeMap::new();
        choose(
            sum,
            &keyless,
            &fixed,
            &[String::new()],
            Reveal::Rules(rules),
            none,
        )
        .unwrap()
    };
    assert_eq!(
        choose_keyless(&sum),
        (vec![0], vec![(0, Suppression::Dominance)])
    );
    // A keyless mean over 40 people who all have 1: kept, flagged with its own reason.
    let (_, sum, _) = summed_with_dominance(&[("one value", 40, 2.0, 40.0)]);
    let (keep, flag) = choose_keyless(&sum);
    assert_eq!((keep, flag), (vec![0], vec![(0, Suppression::SharedValue)]));
}

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
            Round::Prepare => Reply::Prepared {
                keys: cells::announce(&self.table, Some(10)).unwrap(),
                report: PartialReport::default(),
            },
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
            Round::Mask { domain, inbox } => {
                let x = cells::to_vector(&self.table, &domain).unwrap();
                *self.masked_seen.lock().unwrap() = Some(x.clone());
                let masked = p.as_mut().unwrap().masked_input(&x, inbox).map_err(err)?;
                assert_ne!(masked.values, x, "the hub must never see the plain cells");
                Reply::Masked(masked)
            }
            Round::Unmask { request } => {
                Reply::Unmasked(p.as_ref().unwrap().unmask(&request).map_err(err)?)
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
    secure_fan_out(&names, &schema(), Duration::from_secs(5), |site, round| {
        let s = by_name[&site].clone();
        async move { s.answer(round) }
    })
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
async fn the_hub_gets_the_exact_sum_over_the_announced_groups() {
    let sites = [
        (
            "a",
            Site::new(&[("F", 12, false), ("M", 3, false), ("X", 2, false)], None),
        ),
        ("b", Site::new(&[("M", 40, false)], None)),
        ("c", Site::new(&[("F", 5, true), ("M", 11, false)], None)),
    ];
    let out = run(&sites).await;
    assert!(out.sites.values().all(|o| o.status == SiteStatus::Answered));
    // X is small at every site: not in the domain. a's 3 Ms and c's 5 Fs still count; F is
    // dominated at c, so it carries the flag.
    assert_eq!(
        cells_of(&out),
        vec![("F".into(), 17, 1700, 2), ("M".into(), 54, 5400, 0)]
    );
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
async fn a_site_lost_before_the_key_exchange_is_left_out_of_a_re_formed_round() {
    let sites = [
        ("a", Site::new(&[("F", 12, false)], None)),
        ("b", Site::new(&[("F", 20, false)], Some("advertise"))),
        ("c", Site::new(&[("F", 30, false)], None)),
    ];
    let out = run(&sites).await;
    assert_eq!(cells_of(&out), vec![("F".into(), 42, 4200, 0)]);
    assert_eq!(out.sites["b"].status, SiteStatus::Failed);
}

#[tokio::test]
async fn one_site_alone_is_never_collected() {
    let sites = [
        ("a", Site::new(&[("F", 3, false)], None)),
        ("b", Site::new(&[("F", 20, false)], Some("prepare"))),
    ];
    let out = run(&sites).await;
    assert!(out.partials.is_empty());
    let a = &out.sites["a"];
    assert_eq!(a.status, SiteStatus::Failed);
    assert!(
        a.message.as_deref().unwrap().contains("at least 2 sites"),
        "{a:?}"
    );
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

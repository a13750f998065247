//! The hub's side of secure aggregation: drives the rounds of [`medfed_protocol::rounds`] across
//! the sites and turns the unmasked sum into one partial table for the ordinary merge.
//!
//! The hub relays keys and sealed shares it cannot open, sees the sites' groups only as tokens
//! keyed by a secret the sites share, and each site's cells only masked; what it reads is the
//! network's sum, per token. It judges each token's total (k, dominance) and asks the sites to
//! name only the groups it releases. A site lost before the key exchange is left out and the
//! round re-formed; one lost after it (at `announce` or `mask`) is dropped and its masks removed
//! with the others' shares, as long as a threshold t = ⌊n/2⌋ + 1 of the n sites remain.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use medfed_core::result::{SiteOutcome, SiteStatus};
use medfed_privacy::release::{
    CELL_STATUS, CONTRIBUTORS, DOMINANCE_ABS, DOMINANCE_FIRST, DOMINANCE_TOP, SHARED,
};
use medfed_privacy::secagg::{Advertisement, Aggregator, Id, cells};
use medfed_privacy::{DisclosureRules, PartialReport, Suppression};
use medfed_protocol::SiteCallError;
use medfed_protocol::rounds::{Reply, Round};

/// What a fan-out brings back: per-site outcomes, partial tables to merge, sites' reports.
#[derive(Default)]
pub(crate) struct FanOut {
    pub(crate) sites: BTreeMap<String, SiteOutcome>,
    pub(crate) partials: Vec<RecordBatch>,
    pub(crate) reports: BTreeMap<String, PartialReport>,
    /// Under secure aggregation: the fewest sites whose inputs could be in the sum.
    pub(crate) threshold: Option<usize>,
    /// Under secure aggregation: groups summed but withheld unnamed, by reason.
    pub(crate) withheld: BTreeMap<Suppression, usize>,
    /// Under secure aggregation: the sites that answered when too few did for a secure sum
    /// (the caller may ask them again without it).
    pub(crate) too_few: Vec<String>,
}

/// Which summed groups the hub releases (and so asks the sites to name).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reveal {
    /// Exact studies: groups with at least k people in the network whose sums the network's
    /// largest contributions do not dominate (judged on the network's sums of the sites'
    /// dominance inputs, an upper bound on its top contributions: never under-protects).
    Rules(DisclosureRules),
    /// DP studies: every announced group (each site's noisy partition selection chose them).
    Announced,
}

/// One call to a site under the per-site `deadline`; a failure becomes the status and message
/// the result shows for that site.
pub(crate) async fn call_site<T>(
    deadline: Duration,
    call: impl Future<Output = Result<T, SiteCallError>>,
) -> Result<T, (SiteStatus, String)> {
    match tokio::time::timeout(deadline, call).await {
        Err(_) => Err((
            SiteStatus::TimedOut,
            format!("no answer within {} ms", deadline.as_millis()),
        )),
        Ok(Err(SiteCallError::Refused(m))) => Err((SiteStatus::Refused, m)),
        Ok(Err(e)) => Err((SiteStatus::Failed, e.to_string())),
        Ok(Ok(value)) => Ok(value),
    }
}

/// Fewest sites a secure sum may have: with one, "the sum" is that site's partial.
const MIN_SITES: usize = 2;

/// The outcome of one call in a round.
type Answer = Result<Reply, (SiteStatus, String)>;

/// Runs a secure aggregation of the partial with `schema` over `sites`. `call(site, round)`
/// sends one signed round to one site; each call gets `deadline`.
pub(crate) async fn secure_fan_out<F, Fut>(
    sites: &[String],
    schema: &SchemaRef,
    reveal: Reveal,
    deadline: Duration,
    call: F,
) -> FanOut
where
    F: Fn(String, Round) -> Fut,
    Fut: Future<Output = Result<Reply, SiteCallError>>,
{
    let started = Instant::now();
    let mut out = FanOut::default();
    let fail = |out: &mut FanOut, site: &str, (status, message): (SiteStatus, String)| {
        out.sites.insert(
            site.to_string(),
            SiteOutcome {
                status,
                elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
                message: Some(message),
            },
        );
    };
    let round = |targets: Vec<(String, Round)>| {
        let call = &call;
        let name = targets.first().map_or("", |(_, r)| r.name());
        let began = Instant::now();
        let calls = futures::future::join_all(targets.into_iter().map(|(site, r)| async move {
            let answer: Answer = call_site(deadline, call(site.clone(), r)).await;
            (site, answer)
        }));
        async move {
            let answers = calls.await;
            let ms = began.elapsed().as_secs_f64() * 1e3;
            tracing::debug!(
                round = name,
                sites = answers.len(),
                ms,
                "secure aggregation round"
            );
            answers
        }
    };
    let unexpected = |site: &str| {
        (
            SiteStatus::Failed,
            format!("site {site} answered a secure aggregation round out of turn"),
        )
    };

    // Prepare: every site runs and keeps its partial, and takes part in the round as first
    // formed (ids 1..=n in the order given, threshold ⌊n/2⌋ + 1).
    let formation = |i: usize, n: usize| (Id::try_from(i + 1).unwrap_or(Id::MAX), n, n / 2 + 1);
    let asks = sites
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (id, n, threshold) = formation(i, sites.len());
            (s.clone(), Round::Prepare { id, n, threshold })
        })
        .collect();
    let mut alive = Vec::new();
    let mut first = Vec::new();
    let mut fixed = std::collections::BTreeSet::new();
    for (site, answer) in round(asks).await {
        match answer {
            Ok(Reply::Prepared {
                report,
                fixed: f,
                ad,
            }) => {
                fixed.extend(f);
                fixed.extend(report.centres.keys().cloned());
                out.reports.insert(site.clone(), *report);
                alive.push(site);
                first.push(ad);
            }
            Ok(_) => fail(&mut out, &site, unexpected(&site)),
            Err(e) => fail(&mut out, &site, e),
        }
    }
    // Every site prepared: the round is formed. Else it is re-formed without those lost.
    let mut formed = (alive.len() == sites.len()).then_some(first);

    // The sites' dominance inputs (exact studies) are summed with the partial, then dropped.
    let released_schema = schema.clone();
    let schema = &with_dominance(schema, &fixed);

    // Advertise (only after a loss): ids 1..=n in order; a site lost here re-forms it again.
    let mut attempt = 0;
    let ads: Vec<Advertisement> = loop {
        if alive.len() < MIN_SITES {
            if attempt == 0 {
                out.too_few = alive;
                return out;
            }
            for site in &alive {
                let why = format!(
                    "secure aggregation needs at least {MIN_SITES} sites; only {} answered, so \
                     this site's partial was not collected",
                    alive.len()
                );
                fail(&mut out, site, (SiteStatus::Failed, why));
            }
            return out;
        }
        if let Some(ads) = formed.take() {
            break ads;
        }
        attempt += 1;
        let asks = alive
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (id, n, threshold) = formation(i, alive.len());
                let round = Round::Advertise {
                    id,
                    n,
                    threshold,
                    attempt,
                };
                (s.clone(), round)
            })
            .collect();
        let mut ads = Vec::new();
        let mut lost = Vec::new();
        for (site, answer) in round(asks).await {
            match answer {
                Ok(Reply::Advertised(ad)) => ads.push(ad),
                Ok(_) => lost.push((site.clone(), unexpected(&site))),
                Err(e) => lost.push((site, e)),
            }
        }
        if lost.is_empty() {
            formed = Some(ads);
            continue;
        }
        for (site, e) in lost {
            alive.retain(|s| *s != site);
            fail(&mut out, &site, e);
        }
    };
    let id_of = |site: &str| alive.iter().position(|s| s == site).map(|i| i as Id + 1);
    let threshold = alive.len() / 2 + 1;
    out.threshold = Some(threshold);
    // The vector's length is set once the domain is known (after the announcements).
    let mut hub = match Aggregator::new(0, ads.clone(), threshold) {
        Ok(hub) => hub,
        Err(e) => {
            for site in &alive {
                fail(&mut out, site, (SiteStatus::Failed, e.to_string()));
            }
            return out;
        }
    };

    // Share keys: sealed Shamir shares and token seeds, relayed unread.
    let mut mail = Vec::new();
    let mut sharing = Vec::new();
    let asks = alive
        .iter()
        .map(|s| (s.clone(), Round::ShareKeys { ads: ads.clone() }))
        .collect();
    for (site, answer) in round(asks).await {
        match answer {
            Ok(Reply::Shares(sealed)) => {
                mail.extend(sealed);
                sharing.push(site);
            }
            Ok(_) => fail(&mut out, &site, unexpected(&site)),
            Err(e) => fail(&mut out, &site, e),
        }
    }
    let mut inboxes = hub.route(mail);

    // Announce: each site opens its shares and names its groups by token.
    let asks = sharing
        .iter()
        .map(|s| {
            let inbox = id_of(s)
                .and_then(|id| inboxes.remove(&id))
                .unwrap_or_default();
            (s.clone(), Round::Announce { inbox })
        })
        .collect();
    let mut announced = Vec::new();
    let mut named = Vec::new();
    for (site, answer) in round(asks).await {
        match answer {
            Ok(Reply::Announced(tokens)) => {
                announced.push(tokens);
                named.push(site);
            }
            Ok(_) => fail(&mut out, &site, unexpected(&site)),
            Err(e) => fail(&mut out, &site, e),
        }
    }
    let domain = cells::domain(announced);
    if let Err(e) = hub.set_len(cells::vector_len(schema, &fixed, domain.len())) {
        for site in &named {
            fail(&mut out, site, (SiteStatus::Failed, e.to_string()));
        }
        return out;
    }

    // Mask: each site's cells over the common domain, masked; a site lost here is dropped.
    let asks = named
        .iter()
        .map(|s| {
            let (domain, fixed) = (domain.clone(), fixed.clone());
            (s.clone(), Round::Mask { domain, fixed })
        })
        .collect();
    let mut masked = Vec::new();
    for (site, answer) in round(asks).await {
        let accepted = match answer {
            Ok(Reply::Masked(m)) if Some(m.from) == id_of(&site) => hub
                .add_masked(m)
                .map_err(|e| (SiteStatus::Failed, e.to_string())),
            Ok(_) => Err(unexpected(&site)),
            Err(e) => Err(e),
        };
        match accepted {
            Ok(()) => masked.push(site),
            Err(e) => fail(&mut out, &site, e),
        }
    }

    // Unmask: shares of survivors' self masks and of dropped sites' keys.
    let request = hub.unmask_request();
    let asks = masked
        .iter()
        .map(|s| {
            let request = request.clone();
            (s.clone(), Round::Unmask { request })
        })
        .collect();
    let mut answers = Vec::new();
    for (site, answer) in round(asks).await {
        match answer {
            Ok(Reply::Unmasked(shares)) => answers.push(shares),
            Ok(_) => tracing::warn!(site, "unexpected reply to unmask"),
            Err((_, e)) => {
                tracing::warn!(site, error = %e, "a site did not unmask; its input stays in the sum")
            }
        }
    }
    let centres = out
        .reports
        .values()
        .next()
        .map(|r| r.centres.clone())
        .unwrap_or_default();
    let sum = hub.finish(answers).map_err(|e| e.to_string());
    // Judge each token's network total; name only the groups released.
    let released = match sum {
        Ok(mut sum) => {
            let chosen = choose(&sum, schema, &fixed, &domain, reveal, &mut out.withheld);
            let chosen = chosen.and_then(|(keep, flag)| {
                // A kept but withheld cell carries its reason into the merge, which nulls it.
                if !flag.is_empty() {
                    let c = schema.index_of(CELL_STATUS).map_err(|e| e.to_string())?;
                    let block = (c - cells::key_count(schema)) * domain.len();
                    for (i, why) in flag {
                        sum[block + i] = cells::flag(why);
                    }
                }
                Ok(keep)
            });
            let named = match chosen {
                Ok(chosen) if cells::key_count(schema) == 0 => Ok(chosen
                    .into_iter()
                    .map(|i| (i, String::new()))
                    .collect::<Vec<_>>()),
                // Asked even when nothing is released: the sites then let go of the partial
                // they held for this round instead of keeping it until it expires.
                Ok(chosen) => name(&round, &masked, &domain, chosen).await,
                Err(e) => Err(e),
            };
            named.and_then(|keys| {
                cells::from_vector(&sum, schema, domain.len(), &keys, &fixed, &centres)
                    .and_then(|t| {
                        let keep: Vec<usize> = (0..released_schema.fields().len()).collect();
                        t.project(&keep).map_err(|e| {
                            medfed_privacy::secagg::SecAggError::Protocol(e.to_string())
                        })
                    })
                    .map_err(|e| e.to_string())
            })
        }
        Err(e) => Err(e),
    };
    match released {
        Ok(table) => {
            for site in masked {
                let done = SiteOutcome {
                    status: SiteStatus::Answered,
                    elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
                    message: None,
                };
                out.sites.insert(site, done);
            }
            out.partials.push(table);
        }
        Err(e) => {
            for site in masked {
                let why = format!("the secure sum could not be unmasked: {e}");
                fail(&mut out, &site, (SiteStatus::Failed, why));
            }
        }
    }
    out.reports.retain(|site, _| {
        out.sites
            .get(site)
            .is_some_and(|o| o.status == SiteStatus::Answered)
    });
    out
}

/// `schema` with the hidden columns of the sums whose dominance inputs the sites announced in
/// `fixed` appended, in the order the sites append them
/// ([`medfed_privacy::release::hidden_fields`]).
fn with_dominance(schema: &SchemaRef, fixed: &std::collections::BTreeSet<String>) -> SchemaRef {
    let sums = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|c| fixed.contains(&format!("{DOMINANCE_TOP}{c}")));
    let extra = medfed_privacy::release::hidden_fields(sums);
    if extra.is_empty() {
        return schema.clone();
    }
    let mut fields: Vec<arrow::datatypes::FieldRef> = schema.fields().iter().cloned().collect();
    fields.extend(extra.into_iter().map(std::sync::Arc::new));
    std::sync::Arc::new(arrow::datatypes::Schema::new(fields))
}

/// The positions of the domain the hub releases, and the keyless cell flagged with why.
type Chosen = (Vec<usize>, Vec<(usize, Suppression)>);

/// The positions of the domain the hub releases under `reveal`, counting the rest in `withheld`.
/// The keyless cell of a table without GROUP BY is always kept (the airlock judges it).
fn choose(
    sum: &[u64],
    schema: &SchemaRef,
    fixed: &std::collections::BTreeSet<String>,
    domain: &[String],
    reveal: Reveal,
    withheld: &mut BTreeMap<Suppression, usize>,
) -> Result<Chosen, String> {
    let m = domain.len();
    // The cell of a query without GROUP BY is kept and flagged with the reason it is withheld.
    let mut flag = Vec::new();
    // A kernel step's answer: one cell, judged by its caller.
    if schema.index_of(CONTRIBUTORS).is_err() || schema.index_of(CELL_STATUS).is_err() {
        return Ok(((0..m).collect(), flag));
    }
    let n = cells::column(sum, schema, m, CONTRIBUTORS).map_err(|e| e.to_string())?;
    let n = n.to_vec();
    let flagged = cells::column(sum, schema, m, CELL_STATUS).map_err(|e| e.to_string())?;
    // (Σ largest, Σ top-2, Σ|x|) of every sum with dominance inputs: each an upper bound on the
    // network's own (and Σ|x| exact), so both rules err towards withholding. And the sum's
    // shared-value inputs (count, Σe, Σe² in a finite field).
    let mut inputs = Vec::new();
    let mut shared = Vec::new();
    for f in schema.fields() {
        if let Some(c) = f.name().strip_prefix(DOMINANCE_TOP) {
            let column = |name: String| {
                cells::fixed_column(sum, schema, fixed, m, &name).map_err(|e| e.to_string())
            };
            inputs.push((
                column(format!("{DOMINANCE_FIRST}{c}"))?,
                column(f.name().clone())?,
                column(format!("{DOMINANCE_ABS}{c}"))?,
            ));
            let ring = |prefix: &str| {
                cells::column(sum, schema, m, &format!("{prefix}{c}")).map_err(|e| e.to_string())
            };
            shared.push(SHARED.map(ring));
        }
    }
    let shared = shared
        .into_iter()
        .map(|[n, s1, s2]| Ok([n?, s1?, s2?]))
        .collect::<Result<Vec<_>, String>>()?;
    let dominated = |rules: &DisclosureRules, i: usize| {
        flagged[i] != 0
            || inputs
                .iter()
                .any(|(first, top, abs)| rules.dominance.dominated(first[i], top[i], abs[i]))
    };
    let one_value = |rules: &DisclosureRules, i: usize| {
        rules.class_disclosure
            && shared
                .iter()
                .any(|[n, s1, s2]| medfed_privacy::shared::shares_one_value(n[i], s1[i], s2[i]))
    };
    let mut keep = Vec::with_capacity(m);
    for i in 0..m {
        let why = match reveal {
            // The one cell of a keyless table is kept; the merge suppresses it by its flag.
            Reveal::Rules(r) if domain[i].is_empty() && dominated(&r, i) => {
                flag.push((i, Suppression::Dominance));
                None
            }
            Reveal::Rules(r) if domain[i].is_empty() && one_value(&r, i) => {
                flag.push((i, Suppression::SharedValue));
                None
            }
            _ if domain[i].is_empty() => None,
            Reveal::Announced => None,
            Reveal::Rules(r) if r.too_small(n[i] as i64) => Some(Suppression::SmallCell),
            Reveal::Rules(r) if dominated(&r, i) => Some(Suppression::Dominance),
            Reveal::Rules(r) if one_value(&r, i) => Some(Suppression::SharedValue),
            Reveal::Rules(_) => None,
        };
        match why {
            Some(why) => *withheld.entry(why).or_default() += 1,
            None => keep.push(i),
        }
    }
    Ok((keep, flag))
}

/// Asks the sites that masked to name the released tokens; every token must be named by some
/// site, and all that name one must agree.
async fn name<R, Fut>(
    round: &R,
    sites: &[String],
    domain: &[String],
    chosen: Vec<usize>,
) -> Result<Vec<(usize, String)>, String>
where
    R: Fn(Vec<(String, Round)>) -> Fut,
    Fut: Future<Output = Vec<(String, Answer)>>,
{
    let tokens: Vec<String> = chosen.iter().map(|&i| domain[i].clone()).collect();
    let asks = sites
        .iter()
        .map(|s| {
            let tokens = tokens.clone();
            (s.clone(), Round::Reveal { tokens })
        })
        .collect();
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for (site, answer) in round(asks).await {
        match answer {
            Ok(Reply::Revealed(named)) => {
                for (token, key) in named {
                    if keys.get(&token).is_some_and(|k| *k != key) {
                        return Err(format!("site {site} named a group differently"));
                    }
                    keys.insert(token, key);
                }
            }
            Ok(_) => return Err(format!("site {site} answered the reveal out of turn")),
            Err((_, e)) => tracing::warn!(site, error = %e, "a site did not name its groups"),
        }
    }
    let mut named = chosen
        .into_iter()
        .map(|i| {
            keys.remove(&domain[i])
                .map(|k| (i, k))
                .ok_or_else(|| "no site named a released group".to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Tokens are random per round; the row format orders as the keys do.
    named.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(named)
}

mod sql;
#[cfg(test)]
mod tests;

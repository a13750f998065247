//! The hub's side of secure aggregation: drives the rounds of [`medfed_protocol::rounds`] across
//! the sites and turns the unmasked sum into one partial table for the ordinary merge.
//!
//! The hub relays keys and sealed shares it cannot open, and sees each site's cells only masked;
//! what it reads is the network's sum. A site lost before the key exchange is left out and the
//! round re-formed; one lost after it (at `mask`) is dropped and its masks removed with the
//! others' shares, as long as a threshold t = ⌊n/2⌋ + 1 of the n sites remain.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use medfed_core::result::{SiteOutcome, SiteStatus};
use medfed_privacy::PartialReport;
use medfed_privacy::secagg::{Advertisement, Aggregator, Id, cells};
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
        futures::future::join_all(targets.into_iter().map(|(site, r)| async move {
            let answer: Answer = call_site(deadline, call(site.clone(), r)).await;
            (site, answer)
        }))
    };
    let unexpected = |site: &str| {
        (
            SiteStatus::Failed,
            format!("site {site} answered a secure aggregation round out of turn"),
        )
    };

    // Prepare: every site runs and keeps its partial and announces its publishable keys.
    let mut alive = Vec::new();
    let mut announced = Vec::new();
    for (site, answer) in round(sites.iter().map(|s| (s.clone(), Round::Prepare)).collect()).await {
        match answer {
            Ok(Reply::Prepared { keys, report }) => {
                announced.push(keys);
                out.reports.insert(site.clone(), report);
                alive.push(site);
            }
            Ok(_) => fail(&mut out, &site, unexpected(&site)),
            Err(e) => fail(&mut out, &site, e),
        }
    }
    let domain = cells::domain(announced);

    // Advertise: ids 1..=n in name order; a site lost here re-forms the round without it.
    let mut attempt = 0;
    let ads: Vec<Advertisement> = loop {
        if alive.len() < MIN_SITES {
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
        let (n, threshold) = (alive.len(), alive.len() / 2 + 1);
        let asks = alive
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let id = Id::try_from(i + 1).unwrap_or(Id::MAX);
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
            break ads;
        }
        attempt += 1;
        for (site, e) in lost {
            alive.retain(|s| *s != site);
            fail(&mut out, &site, e);
        }
    };
    let id_of = |site: &str| alive.iter().position(|s| s == site).map(|i| i as Id + 1);
    let threshold = alive.len() / 2 + 1;
    out.threshold = Some(threshold);
    let width = schema.fields().len() - cells::key_count(schema);
    let mut hub = match Aggregator::new(width * domain.len(), ads.clone(), threshold) {
        Ok(hub) => hub,
        Err(e) => {
            for site in &alive {
                fail(&mut out, site, (SiteStatus::Failed, e.to_string()));
            }
            return out;
        }
    };

    // Share keys: sealed Shamir shares, relayed unread.
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

    // Mask: each site's cells over the common domain, masked; a site lost here is dropped.
    let asks = sharing
        .iter()
        .map(|s| {
            let inbox = id_of(s)
                .and_then(|id| inboxes.remove(&id))
                .unwrap_or_default();
            let domain = domain.clone();
            (s.clone(), Round::Mask { domain, inbox })
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
    let table = hub
        .finish(answers)
        .map_err(|e| e.to_string())
        .and_then(|sum| {
            cells::from_vector(&sum, schema, &domain, &centres).map_err(|e| e.to_string())
        });
    match table {
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

#[cfg(test)]
mod tests;

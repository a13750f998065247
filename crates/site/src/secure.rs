//! The site's side of secure aggregation ([`medfed_protocol::rounds`]): the partial — a SQL
//! partial's cells, or a kernel answer as one keyless row — is computed and protected once
//! (`prepare`), held here under the request id, and leaves only masked.
//!
//! What the hub learns from this site: the privacy report (rules applied, no values), two public
//! keys, ciphertexts it cannot open, how many groups the site has (as tokens keyed by a secret
//! the sites share and the hub does not), a vector indistinguishable from random, shares that
//! remove masks only in the sum, and the keys of the groups the network releases.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use medfed_analysis::sql::spread;
use medfed_core::kernel::KernelTask;
use medfed_privacy::PartialReport;
use medfed_privacy::secagg::{Id, Participant, SecAggError, cells};
use medfed_protocol::rounds::{Reply, Round, Spread};
use medfed_protocol::wire::SiteRequest;
use tonic::Status;

use crate::service::{Audited, SiteService, Stop};

/// How long a prepared partial waits for its remaining rounds.
const ROUND_TTL: Duration = Duration::from_secs(600);

/// Secure aggregation rounds in progress, by request id.
#[derive(Default)]
pub(crate) struct Rounds {
    open: Mutex<HashMap<String, Held>>,
    /// The groups this site named in the first sum of a VAR/STDDEV, by its request id: the
    /// only groups the second sum may centre ([`Spread::Centred`]).
    named: Mutex<HashMap<String, Named>>,
}

/// What a first sum of VAR/STDDEV released of this site's groups.
struct Named {
    sql: String,
    groups: BTreeSet<String>,
    since: Instant,
}

/// What a secure aggregation sums: a partial-aggregate query or a kernel step.
#[derive(Clone, Copy)]
pub(crate) enum Secured<'a> {
    /// The partial of this SQL (for VAR/STDDEV, one of its two sums).
    Sql(&'a str, Option<&'a Spread>),
    /// The answer of this kernel step.
    Kernel(&'a KernelTask),
}

impl Secured<'_> {
    /// What every round must repeat to belong to the prepared partial.
    fn key(&self) -> String {
        match self {
            Self::Sql(sql, None) => (*sql).to_string(),
            Self::Sql(sql, Some(spread)) => {
                use sha2::{Digest, Sha256};
                let json = serde_json::to_vec(spread).expect("spread serialises");
                format!("{sql}\n{}", hex::encode(Sha256::digest(json)))
            }
            Self::Kernel(task) => serde_json::to_string(task).expect("task serialises"),
        }
    }
}

/// One query's state between rounds.
struct Held {
    /// The SQL or the kernel task (as JSON) it was prepared for.
    sql: String,
    /// The first sum of a VAR/STDDEV, with its SQL: the groups named are remembered.
    first_sum: Option<String>,
    study: String,
    table: RecordBatch,
    /// Under DP: the σ the network's sum must carry on each column (this site adds a share).
    sigma: BTreeMap<String, f64>,
    participant: Option<Participant>,
    /// The round's group-token key, once the inbox is opened.
    token_key: Option<[u8; 32]>,
    /// The unmask shares were given: the sum exists, keys may be revealed.
    unmasked: bool,
    /// Keys were shared: the round can no longer be re-formed.
    shared: bool,
    since: Instant,
}

impl From<SecAggError> for Stop {
    fn from(e: SecAggError) -> Self {
        match e {
            e @ SecAggError::TooFewSurvivors { .. } => Stop::Refused(e.to_string()),
            SecAggError::Protocol(m) => Stop::Invalid(m),
        }
    }
}

impl Rounds {
    fn hold(
        &self,
        req: &SiteRequest,
        sql: &str,
        table: RecordBatch,
        sigma: BTreeMap<String, f64>,
        first_sum: Option<String>,
        participant: Participant,
    ) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, h| h.since.elapsed() < ROUND_TTL);
        open.insert(
            req.request_id.clone(),
            Held {
                sql: sql.to_string(),
                first_sum,
                study: req.context.study.id.clone(),
                table,
                sigma,
                participant: Some(participant),
                token_key: None,
                unmasked: false,
                shared: false,
                since: Instant::now(),
            },
        );
    }

    /// Remembers the groups a first sum of VAR/STDDEV named (for its second sum).
    fn remember(&self, request_id: &str, sql: &str, groups: BTreeSet<String>) {
        let mut named = self.named.lock().unwrap_or_else(|p| p.into_inner());
        named.retain(|_, n| n.since.elapsed() < ROUND_TTL);
        named.insert(
            request_id.to_string(),
            Named {
                sql: sql.to_string(),
                groups,
                since: Instant::now(),
            },
        );
    }

    /// The groups the first sum `after` of `sql` named here; each first sum serves one second.
    fn named(&self, after: &str, sql: &str) -> Result<BTreeSet<String>, Stop> {
        let mut named = self.named.lock().unwrap_or_else(|p| p.into_inner());
        match named.remove(after) {
            Some(n) if n.sql == sql && n.since.elapsed() < ROUND_TTL => Ok(n.groups),
            _ => Err(Stop::Invalid(format!(
                "no first sum {after} of this query to centre the second on"
            ))),
        }
    }

    /// Runs a key-handling round on the held state. Returns the reply and, for the masked
    /// release, what the audit trail records.
    fn step(
        &self,
        req: &SiteRequest,
        sql: &str,
        round: &Round,
    ) -> Result<(Reply, Option<Audited>), Stop> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let held = open
            .get_mut(&req.request_id)
            .filter(|h| h.since.elapsed() < ROUND_TTL)
            .ok_or_else(|| Stop::Invalid("no prepared partial for this request".into()))?;
        if held.sql != sql || held.study != req.context.study.id {
            return Err(Stop::Invalid(
                "the round does not match the prepared partial".into(),
            ));
        }
        let participant = |held: &mut Held| {
            held.participant
                .take()
                .ok_or_else(|| Stop::Invalid("round out of order: not advertised".into()))
        };
        let reply = match round {
            Round::Prepare { .. } => return Err(Stop::Invalid("already prepared".into())),
            Round::Advertise {
                id, n, threshold, ..
            } => {
                if held.shared {
                    return Err(Stop::Invalid(
                        "keys were already shared in this round; it cannot be re-formed".into(),
                    ));
                }
                let p = form(*id, *n, *threshold)?;
                let ad = p.advertise();
                held.participant = Some(p);
                Reply::Advertised(ad)
            }
            Round::ShareKeys { ads } => {
                let mut p = participant(held)?;
                let sealed = p.share_keys(ads);
                held.participant = Some(p);
                held.shared = true;
                Reply::Shares(sealed?)
            }
            Round::Announce { inbox } => {
                let mut p = participant(held)?;
                let opened = p.open(inbox.clone()).and_then(|()| p.token_key());
                held.participant = Some(p);
                let key = opened?;
                held.token_key = Some(key);
                let groups =
                    cells::announce(&held.table).map_err(|e| Stop::Failed(e.to_string()))?;
                Reply::Announced(cells::tokens(&groups, &key))
            }
            Round::Mask { domain, fixed } => {
                let mut p = participant(held)?;
                let key = held
                    .token_key
                    .ok_or_else(|| Stop::Invalid("round out of order: not announced".into()))?;
                let mut vector = cells::to_vector(&held.table, domain, Some(&key), fixed)
                    .map_err(|e| Stop::Refused(e.to_string()))?;
                let schema = held.table.schema();
                cells::add_noise(
                    &mut vector,
                    &schema,
                    domain.len(),
                    &held.sigma,
                    fixed,
                    p.threshold(),
                )
                .map_err(|e| Stop::Failed(e.to_string()))?;
                let masked = p.masked_input(&vector);
                held.participant = Some(p);
                let audited = Audited {
                    reason: format!(
                        "partial released masked under secure aggregation ({} cell(s) × {} \
                         column(s); the hub can read only the network's sum)",
                        domain.len(),
                        vector.len() / domain.len().max(1)
                    ),
                    digest: Some(crate::service::digest(std::slice::from_ref(&held.table))),
                    epsilon: None,
                };
                return Ok((Reply::Masked(masked?), Some(audited)));
            }
            Round::Unmask { request } => {
                let p = participant(held)?;
                let shares = p.unmask(request);
                // A table with group keys waits for the reveal; a keyless one is done.
                if cells::key_count(&held.table.schema()) == 0 {
                    if let (Some(sql), true) = (&held.first_sum, shares.is_ok()) {
                        self.remember(&req.request_id, sql, BTreeSet::from([String::new()]));
                    }
                    open.remove(&req.request_id);
                } else {
                    held.unmasked = shares.is_ok();
                }
                Reply::Unmasked(shares?)
            }
            Round::Reveal { tokens } => {
                let key = held
                    .token_key
                    .ok_or_else(|| Stop::Invalid("round out of order: not announced".into()))?;
                if !held.unmasked {
                    return Err(Stop::Invalid("round out of order: not unmasked".into()));
                }
                let named = cells::reveal(&held.table, tokens, &key)
                    .map_err(|e| Stop::Failed(e.to_string()))?;
                if let Some(sql) = &held.first_sum {
                    self.remember(&req.request_id, sql, named.values().cloned().collect());
                }
                open.remove(&req.request_id);
                let audited = Audited {
                    reason: format!(
                        "named {} of this site's group(s) the network releases ({} asked)",
                        named.len(),
                        tokens.len()
                    ),
                    digest: None,
                    epsilon: None,
                };
                return Ok((Reply::Revealed(named), Some(audited)));
            }
        };
        Ok((reply, None))
    }
}

/// This site as participant `id` of `n` with unmasking threshold `threshold`.
fn form(id: Id, n: usize, threshold: usize) -> Result<Participant, Stop> {
    if !(1..=n).contains(&usize::from(id)) || !(2..=n).contains(&threshold) {
        return Err(Stop::Invalid(format!(
            "site id {id} of {n} with threshold {threshold} is not a valid round"
        )));
    }
    Ok(Participant::new(id, n, threshold))
}

impl SiteService {
    /// Answers one round of secure aggregation.
    pub(crate) async fn secure_round(
        &self,
        req: &SiteRequest,
        what: Secured<'_>,
        round: &Round,
    ) -> Result<Reply, Status> {
        if !req.context.privacy.secure_aggregation {
            let outcome = Err(Stop::Invalid(
                "a secure aggregation round without secure aggregation terms".into(),
            ));
            return self.settle::<Reply>(req, outcome).await;
        }
        let key = what.key();
        let outcome = match (round, what) {
            (&Round::Prepare { id, n, threshold }, what) => match form(id, n, threshold) {
                Ok(p) => self.prepare(req, &key, what, p).await,
                Err(stop) => Err(stop),
            },
            (round, _) => self.rounds.step(req, &key, round),
        };
        if let Err(Stop::Invalid(m) | Stop::Refused(m)) = &outcome {
            tracing::warn!(site = %self.name, request_id = %req.request_id, round = round.name(), reason = %m, "secure aggregation round refused");
        }
        self.settle(req, outcome).await
    }

    /// Runs and keeps the partial of `what` for the rounds to come, with this site's part in
    /// the round as first formed.
    async fn prepare(
        &self,
        req: &SiteRequest,
        key: &str,
        what: Secured<'_>,
        participant: Participant,
    ) -> Result<(Reply, Option<Audited>), Stop> {
        match what {
            Secured::Sql(sql, spread) => {
                let (table, report) = self.protected_partial(req, sql).await?;
                let table = self.reshape(table, sql, spread)?;
                let first = matches!(spread, Some(Spread::Sums { .. }));
                self.hold(
                    req,
                    key,
                    table,
                    report,
                    first.then(|| sql.to_string()),
                    participant,
                )
            }
            Secured::Kernel(task) => {
                let (table, report, audited) = self.kernel_partial(req, task).await?;
                let fixed = cells::fixed_point(&table.schema());
                let ad = participant.advertise();
                self.rounds
                    .hold(req, key, table, Default::default(), None, participant);
                let report = Box::new(report);
                Ok((Reply::Prepared { report, fixed, ad }, Some(audited)))
            }
        }
    }

    /// A VAR/STDDEV partial reshaped for the sum it enters ([`spread`]): the first carries n and
    /// Σx only; the second each named group's spread around the pooled mean.
    fn reshape(
        &self,
        table: RecordBatch,
        sql: &str,
        spread: Option<&Spread>,
    ) -> Result<RecordBatch, Stop> {
        let shaped = match spread {
            None => return Ok(table),
            Some(Spread::Sums { columns }) => spread::zero_within(&table, columns),
            Some(Spread::Centred {
                after,
                columns,
                means,
            }) => {
                let named = self.rounds.named(after, sql)?;
                spread::centre(&table, columns, means, &named)
            }
        };
        shaped.map_err(|e| Stop::Failed(e.to_string()))
    }

    /// Keeps a prepared partial for the next rounds. Its groups are named only later, as tokens
    /// (exact studies: every group, small ones too, since k applies to the network's sum; DP
    /// studies: the noisy partition selection).
    fn hold(
        &self,
        req: &SiteRequest,
        sql: &str,
        table: RecordBatch,
        report: PartialReport,
        first_sum: Option<String>,
        participant: Participant,
    ) -> Result<(Reply, Option<Audited>), Stop> {
        let dp = req.context.privacy.dp.is_some();
        let groups = cells::announce(&table).map_err(|e| Stop::Failed(e.to_string()))?;
        let audited = Audited {
            reason: format!(
                "partial held for secure aggregation; {} group(s) to be named by token ({})",
                groups.len(),
                if dp {
                    format!("noisy partition selection; ε = {} charged", report.epsilon)
                } else {
                    format!(
                        "k = {} applies to the network's sum",
                        report.rules.min_cell_count
                    )
                }
            ),
            digest: None,
            epsilon: dp.then_some(report.epsilon),
        };
        let fixed = cells::fixed_point(&table.schema());
        let ad = participant.advertise();
        self.rounds.hold(
            req,
            sql,
            table,
            report.sigma.clone(),
            first_sum,
            participant,
        );
        Ok((
            Reply::Prepared {
                report: Box::new(report),
                fixed,
                ad,
            },
            Some(audited),
        ))
    }
}

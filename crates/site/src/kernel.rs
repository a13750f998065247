//! The site's side of a kernel step ([`medfed_core::kernel`]): the same gate as SQL — signature,
//! the site's policy on what the rows read, the stricter k of the network's and the site's —
//! then the step over rows that never leave, and an audited release of its sums only: in the
//! clear to the hub, or (secure aggregation) as one row held for the masking rounds.

use arrow::array::RecordBatch;
use medfed_analysis::kernel::{self, summed};
use medfed_core::kernel::{KernelAnswer, KernelStep, KernelTask, TrainStep};
use medfed_privacy::ledger::RunTerms;
use medfed_privacy::{DisclosureRules, PartialReport};
use medfed_protocol::wire::SiteRequest;
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::service::{Audited, SiteService, Stop};

impl SiteService {
    /// Answers one kernel step, audited whatever the outcome.
    pub(crate) async fn kernel(
        &self,
        req: &SiteRequest,
        task: &KernelTask,
    ) -> Result<KernelAnswer, Status> {
        let outcome = self
            .kernel_answer(req, task, false)
            .await
            .map(|(answer, spent, _)| {
                let json = serde_json::to_vec(&answer).expect("answer serialises");
                let epsilon = spent.as_ref().map(|s| s.epsilon);
                let audited = Audited {
                    reason: describe(&answer, spent.as_ref()),
                    digest: Some(hex::encode(Sha256::digest(json))),
                    epsilon,
                };
                (answer, Some(audited))
            });
        self.settle(req, outcome).await
    }

    /// Computes a kernel step's answer for a secure sum (the `prepare` round): the answer as
    /// one row, its report and what the audit trail says. Nothing leaves until the masked
    /// `mask` round. (A DP update is noised in full here, as in the clear: its noise enters
    /// every local step, so it cannot be deferred to the sum.)
    pub(crate) async fn kernel_partial(
        &self,
        req: &SiteRequest,
        task: &KernelTask,
    ) -> Result<(RecordBatch, PartialReport, Audited), Stop> {
        let schema = summed::schema(&task.step).map_err(|e| Stop::Refused(e.to_string()))?;
        let (answer, spent, rules) = self.kernel_answer(req, task, true).await?;
        let row = summed::to_row(&task.step, &answer, &schema)
            .map_err(|e| Stop::Failed(e.to_string()))?;
        let protection = &req.context.privacy;
        // The rules this site holds the step to: the hub judges the network's sum by them.
        let report = PartialReport {
            rules,
            epsilon: spent.as_ref().map_or(0.0, |s| s.epsilon),
            delta: protection.dp.as_ref().map_or(0.0, |d| d.delta),
            ..PartialReport::default()
        };
        let audited = Audited {
            reason: format!(
                "{}; held for secure aggregation (released only masked, in the network's sum)",
                describe(&answer, spent.as_ref())
            ),
            digest: None,
            epsilon: spent.as_ref().map(|s| s.epsilon),
        };
        Ok((row, report, audited))
    }

    /// The answer, in a DP study what it charged to the study's ledger here, and the rules it
    /// was held to; `secure` says whether it is for a secure sum (which the request's terms
    /// must agree with).
    async fn kernel_answer(
        &self,
        req: &SiteRequest,
        task: &KernelTask,
        secure: bool,
    ) -> Result<(KernelAnswer, Option<Spent>, DisclosureRules), Stop> {
        let protection = &req.context.privacy;
        if protection.secure_aggregation != secure {
            return Err(Stop::Invalid(
                "under secure aggregation a kernel step runs in secure aggregation rounds only"
                    .into(),
            ));
        }
        let run = match &task.step {
            KernelStep::Train(TrainStep { dp: Some(dp), .. }) => Some(dp),
            _ => None,
        };
        self.privacy
            .admit(req, run.map(|r| r.run.as_str()))
            .await
            .map_err(Stop::Refused)?;
        let ctx = self.store.context();
        let rows = kernel::prepare(&ctx.state(), &task.rows).await?;
        let decision = self
            .gate
            .judge(req, &rows.reads)
            .await
            .map_err(Stop::Judged)?;
        let rules = protection.rules.stricter(&self.privacy.rules(&decision));
        let dp = protection.dp.as_ref();
        // Under secure aggregation (exact studies) the answer leaves only inside the network's
        // sum, so k, events and saturation are judged on that sum, at the hub.
        let limits = kernel::Limits {
            k: rules.min_cell_count,
            models: rules.models,
            class_disclosure: rules.class_disclosure,
            local: !(protection.secure_aggregation && dp.is_none()),
        };
        let answer =
            kernel::run_cached(ctx, &rows, &task.step, limits, dp, Some(&self.rows)).await?;
        let Some(release) = dp else {
            return Ok((answer, None, rules));
        };
        // Only training runs reach here in a DP study (the kernel refuses the rest).
        let Some(run) = run else {
            return Err(Stop::Refused(
                "a DP kernel step must belong to a training run".into(),
            ));
        };
        let terms = RunTerms {
            id: run.run.clone(),
            rounds: run.rounds,
            epsilon: release.epsilon,
            delta: release.delta,
        };
        let round = self
            .privacy
            .charge_round(req, &terms)
            .await
            .map_err(|e| Stop::Refused(e.to_string()))?;
        let spent = Spent {
            epsilon: if round == 1 { release.epsilon } else { 0.0 },
            round,
            terms,
        };
        Ok((answer, Some(spent), rules))
    }
}

/// What a DP training round charged here: the run's whole ε at its first round, nothing after.
struct Spent {
    epsilon: f64,
    round: u32,
    terms: RunTerms,
}

/// The audit trail's sentence for a released kernel step (what, not the values).
fn describe(answer: &KernelAnswer, spent: Option<&Spent>) -> String {
    let what = match answer {
        KernelAnswer::Cox(s) => format!(
            "Cox score and information released ({} coefficient(s), stratum of {} rows with {} \
             events)",
            s.score.len(),
            s.n,
            s.events
        ),
        KernelAnswer::Glm(s) => format!(
            "GLM iteration sums released ({} coefficient(s), {} rows)",
            s.xtwz.len(),
            s.n
        ),
        KernelAnswer::Metrics(m) => format!(
            "model performance released (AUROC, AUPRC, Brier, {} calibration bins; {} rows)",
            m.calibration.len(),
            m.n
        ),
        KernelAnswer::Update(u) => format!(
            "model update released ({} parameter(s), trained on {} rows)",
            u.delta.len(),
            u.n
        ),
    };
    match spent {
        Some(s) => format!(
            "{what}; clipped and noised: round {} of at most {} of training run {} (ε = {}, \
             δ = {} for the whole run, charged at its first round here; ε = {} now)",
            s.round,
            s.terms.rounds,
            s.terms.id,
            s.terms.epsilon,
            medfed_privacy::ledger::Delta(s.terms.delta),
            s.epsilon
        ),
        None => what,
    }
}

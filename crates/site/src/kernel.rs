//! The site's side of a kernel step ([`medfed_core::kernel`]): the same gate as SQL — signature,
//! the site's policy on what the rows read, the stricter k of the network's and the site's —
//! then the step over rows that never leave, and an audited release of its sums only.

use medfed_analysis::kernel;
use medfed_core::kernel::{KernelAnswer, KernelTask};
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
            .kernel_answer(req, task)
            .await
            .map(|(answer, epsilon)| {
                let json = serde_json::to_vec(&answer).expect("answer serialises");
                let audited = Audited {
                    reason: describe(&answer, epsilon),
                    digest: Some(hex::encode(Sha256::digest(json))),
                    epsilon,
                };
                (answer, Some(audited))
            });
        self.settle(req, outcome).await
    }

    /// The answer and, in a DP study, the ε it charged to the study's ledger here.
    async fn kernel_answer(
        &self,
        req: &SiteRequest,
        task: &KernelTask,
    ) -> Result<(KernelAnswer, Option<f64>), Stop> {
        let protection = &req.context.privacy;
        if protection.secure_aggregation {
            return Err(Stop::Refused(
                "site kernels do not run under secure aggregation yet".into(),
            ));
        }
        self.privacy.admit(req).await.map_err(Stop::Refused)?;
        let ctx = self.store.context();
        let rows = kernel::prepare(&ctx.state(), &task.rows).await?;
        let decision = self
            .gate
            .judge(req, &rows.reads)
            .await
            .map_err(Stop::Judged)?;
        let k = protection
            .rules
            .stricter(&self.privacy.rules(&decision))
            .min_cell_count;
        let dp = protection.dp.as_ref();
        let answer = kernel::run_cached(ctx, &rows, &task.step, k, dp, Some(&self.rows)).await?;
        if let Some(release) = dp {
            self.privacy
                .charge(req, release.epsilon, release.delta)
                .await
                .map_err(|e| Stop::Refused(e.to_string()))?;
        }
        Ok((answer, dp.map(|d| d.epsilon)))
    }
}

/// The audit trail's sentence for a released kernel step (what, not the values).
fn describe(answer: &KernelAnswer, epsilon: Option<f64>) -> String {
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
    match epsilon {
        Some(e) => format!("{what}; clipped and noised, ε = {e} spent"),
        None => what,
    }
}

//! The site's own privacy settings and budget ledger, applied to every partial it releases.

use medfed_core::study::PrivacyMode;
use medfed_policy::Decision;
use medfed_privacy::DisclosureRules;
use medfed_privacy::ledger::{Budget, BudgetLedger, LedgerError, RunTerms};
use medfed_protocol::wire::SiteRequest;

use crate::config::PrivacyConfig;

/// This site's privacy state.
pub(crate) struct SitePrivacy {
    cfg: PrivacyConfig,
    ledger: BudgetLedger,
}

impl SitePrivacy {
    pub(crate) async fn open(cfg: &PrivacyConfig) -> Result<Self, LedgerError> {
        Ok(Self {
            ledger: BudgetLedger::open(&cfg.ledger).await?,
            cfg: cfg.clone(),
        })
    }

    /// The site's own rules: k from its policy's decision, dominance from its config.
    pub(crate) fn rules(&self, decision: &Decision) -> DisclosureRules {
        let k = decision
            .extra
            .get("min_cell_count")
            .and_then(|v| v.as_u64())
            .unwrap_or(medfed_privacy::rules::DEFAULT_MIN_CELL_COUNT);
        DisclosureRules {
            min_cell_count: k,
            dominance: self.cfg.dominance,
            models: self.cfg.models,
            rounding: self.cfg.rounding,
            class_disclosure: self.cfg.class_disclosure,
            review: self.cfg.review,
        }
    }

    /// How the catalogue publishes person counts.
    pub(crate) fn count_rule(&self) -> medfed_core::catalog::CountRule {
        self.cfg.catalog_counts
    }

    /// The request's study budget here.
    fn budget(&self, req: &SiteRequest) -> Budget {
        let study = &req.context.study;
        self.cfg.budget_for(&study.id, study.terms.epsilon)
    }

    /// Refuses a request whose privacy does not match its study's terms (a DP study is never
    /// answered without noise, whatever the hub sends), or that the study's budget cannot pay.
    /// A later round of a training `run` this site was charged for needs no further budget.
    pub(crate) async fn admit(&self, req: &SiteRequest, run: Option<&str>) -> Result<(), String> {
        let study = &req.context.study;
        let dp = req.context.privacy.dp.as_ref();
        match (study.terms.privacy, dp) {
            (PrivacyMode::Dp, None) => Err(format!(
                "study {} is differentially private; the request carries no DP release",
                study.id
            )),
            (PrivacyMode::Exact, Some(_)) => Err(format!(
                "study {} is exact; a DP release must be a DP study",
                study.id
            )),
            (PrivacyMode::Dp, Some(_)) if self.charged(&study.id, run).await? => Ok(()),
            (PrivacyMode::Dp, Some(release)) => self
                .ledger
                .check(&study.id, self.budget(req), release.epsilon, 0.0)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            (PrivacyMode::Exact, None) => Ok(()),
        }
    }

    /// Whether `run` (if any) was already charged to `study` here.
    async fn charged(&self, study: &str, run: Option<&str>) -> Result<bool, String> {
        match run {
            Some(run) => self
                .ledger
                .run_charged(study, run)
                .await
                .map_err(|e| e.to_string()),
            None => Ok(false),
        }
    }

    /// Takes one round of a training run, charging the run's whole (ε, δ) at its first round
    /// here. Returns the round's number at this site.
    pub(crate) async fn charge_round(
        &self,
        req: &SiteRequest,
        run: &RunTerms,
    ) -> Result<u32, LedgerError> {
        let study = &req.context.study.id;
        self.ledger.charge_round(study, self.budget(req), run).await
    }

    /// Charges a DP release to the study's ledger (after it is computed, before it leaves).
    pub(crate) async fn charge(
        &self,
        req: &SiteRequest,
        epsilon: f64,
        delta: f64,
    ) -> Result<medfed_privacy::ledger::Balance, LedgerError> {
        let study = &req.context.study.id;
        self.ledger
            .charge(study, self.budget(req), &req.request_id, epsilon, delta)
            .await
    }
}

impl SitePrivacy {
    /// The request's study balance in this site's ledger, without charging it.
    pub(crate) async fn balance(
        &self,
        req: &SiteRequest,
    ) -> Result<medfed_privacy::ledger::Balance, LedgerError> {
        let study = &req.context.study.id;
        self.ledger.balance(study, self.budget(req)).await
    }
}

//! A study's privacy budget at this site, as the hub asks for it on a researcher's behalf: the
//! total its custodian allows and what releases have spent, read from the site's own ledger.
//! No data is read; the answer is about the study, and the read is audited like any request.

use medfed_audit::Decision as Outcome;
use medfed_core::study::ApprovalState;
use medfed_privacy::ledger::Balance;
use medfed_protocol::wire::SiteRequest;
use tonic::Status;

use crate::service::SiteService;

impl SiteService {
    /// The balance of `req`'s study here; a study this site has not approved has none to show.
    pub(crate) async fn budget(&self, req: &SiteRequest) -> Result<Balance, Status> {
        let study = &req.context.study;
        if study.approval != ApprovalState::Approved {
            let reason = format!("study {} is not approved at this site", study.id);
            self.gate
                .record(req, Outcome::Deny, &reason, None, None)
                .await?;
            return Err(Status::permission_denied(format!(
                "site {}: {reason}",
                self.name
            )));
        }
        let balance = self.privacy.balance(req).await.map_err(|e| {
            tracing::error!(site = %self.name, error = %e, "privacy ledger unreadable");
            Status::unavailable(format!("site {}: privacy ledger unavailable", self.name))
        })?;
        let reason = format!(
            "budget read: ε {} of {} spent, δ {} of {}",
            balance.spent.epsilon, balance.total.epsilon, balance.spent.delta, balance.total.delta
        );
        self.gate
            .record(req, Outcome::Allow, &reason, None, None)
            .await?;
        Ok(balance)
    }
}

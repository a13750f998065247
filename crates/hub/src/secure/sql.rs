//! A SQL partial summed under secure aggregation; VAR/STDDEV in two sums
//! ([`medfed_analysis::sql::spread`]): n and Σx first, then, for the groups the first released,
//! each site's Σ(x − x̄)² around the pooled mean. The hub sees only network totals in both.

use std::collections::HashMap;

use medfed_analysis::sql::{FederatedSql, SqlError, spread};
use medfed_core::result::SiteStatus;
use medfed_privacy::{DisclosureRules, Protection};
use medfed_protocol::SiteClient;
use medfed_protocol::rounds::Spread;
use medfed_protocol::wire::{SiteRequest, Work};

use super::{FanOut, Reveal, secure_fan_out};
use crate::{Hub, HubError};

impl Hub {
    /// Sums `plan`'s partials at `targets` under secure aggregation, one request per site from
    /// `request_for` (all carrying request id `id`, which names the round at the sites).
    pub(crate) async fn secure_sql<R>(
        &self,
        id: &str,
        plan: &FederatedSql,
        targets: &[&SiteClient],
        asked: &Protection,
        request_for: R,
    ) -> Result<FanOut, HubError>
    where
        R: Fn(&str) -> SiteRequest,
    {
        let columns = plan.spreads().to_vec();
        let first = (!columns.is_empty()).then(|| Spread::Sums {
            columns: columns.clone(),
        });
        let mut fan = self
            .secure_sum(plan, targets, asked, &request_for, None, first)
            .await;
        if columns.is_empty() || fan.threshold.is_none() || fan.partials.len() != 1 {
            return Ok(fan);
        }
        let summed = fan.partials.pop().expect("one summed table");
        let means = spread::means(&summed, &columns)?;
        if means.is_empty() {
            fan.partials.push(summed);
            return Ok(fan);
        }
        let answered: Vec<&SiteClient> = targets
            .iter()
            .filter(|t| {
                fan.sites
                    .get(t.name().as_str())
                    .is_some_and(|o| o.status == SiteStatus::Answered)
            })
            .copied()
            .collect();
        let second_id = format!("{id}.spread");
        let centred = Spread::Centred {
            after: id.to_string(),
            columns: columns.clone(),
            means,
        };
        let second = self
            .secure_sum(
                plan,
                &answered,
                asked,
                &request_for,
                Some(&second_id),
                Some(centred),
            )
            .await;
        let lost: Vec<String> = answered
            .iter()
            .filter(|t| {
                second
                    .sites
                    .get(t.name().as_str())
                    .is_none_or(|o| o.status != SiteStatus::Answered)
            })
            .map(|t| {
                let why = second
                    .sites
                    .get(t.name().as_str())
                    .and_then(|o| o.message.clone());
                format!(
                    "{}: {}",
                    t.name(),
                    why.unwrap_or_else(|| "no answer".into())
                )
            })
            .collect();
        if !lost.is_empty() || second.partials.len() != 1 {
            return Err(SqlError::SitesChanged(format!(
                "VAR/STDDEV: the second secure sum (around the pooled mean) lost {}; ask again",
                lost.join("; ")
            ))
            .into());
        }
        fan.partials
            .push(spread::pool(&summed, &second.partials[0], &columns)?);
        Ok(fan)
    }

    /// One secure sum of the partial, under `id` when given (else the requests' own).
    async fn secure_sum<R>(
        &self,
        plan: &FederatedSql,
        targets: &[&SiteClient],
        asked: &Protection,
        request_for: &R,
        id: Option<&str>,
        spread: Option<Spread>,
    ) -> FanOut
    where
        R: Fn(&str) -> SiteRequest,
    {
        let names: Vec<String> = targets.iter().map(|t| t.name().to_string()).collect();
        let by_name: HashMap<String, &SiteClient> =
            targets.iter().map(|t| (t.name().to_string(), *t)).collect();
        let reveal = match &asked.dp {
            Some(_) => Reveal::Announced,
            // A model's internal sums are judged by the model rules, not for shared values.
            None if asked.model_step => Reveal::Rules(DisclosureRules {
                class_disclosure: false,
                ..asked.rules
            }),
            None => Reveal::Rules(asked.rules),
        };
        let sql = plan.site_sql();
        let spread = &spread;
        secure_fan_out(
            &names,
            plan.partial_schema(),
            reveal,
            self.deadline,
            |site: String, round| {
                let client = by_name[&site];
                let mut request = request_for(&site).with_work(Work::SecureSql {
                    sql: sql.to_string(),
                    round,
                    spread: spread.clone(),
                });
                if let Some(id) = id {
                    request.request_id = id.to_string();
                }
                async move { client.secure_round(&request, &self.key).await }
            },
        )
        .await
    }
}

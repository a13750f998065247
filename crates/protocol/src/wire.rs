//! Messages carried inside Flight tickets: a [`SiteRequest`] (JSON, versioned, so a site's audit
//! trail can store exactly what it was sent and humans can read it) wrapped in a
//! [`SignedRequest`] carrying the hub's Ed25519 signature over those exact bytes.
//!
//! A request names the site it is addressed to and when it was issued, so it cannot be replayed
//! to another site, or later; the site also refuses a request id it has already served.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use medfed_core::study::{ApprovalState, StudyTerms};
use medfed_privacy::Protection;
use serde::{Deserialize, Serialize};

/// Version of the request envelope; a site refuses versions it does not know.
pub const WIRE_VERSION: u32 = 8;

/// How far a request's issue time may be from the site's clock.
pub const MAX_SKEW_US: i64 = 5 * 60 * 1_000_000;

/// A unit of work the hub asks a site to do, with everything the site's policy needs to judge it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteRequest {
    /// Envelope version ([`WIRE_VERSION`]).
    pub version: u32,
    /// Hub-assigned id, echoed in both sides' audit trails to correlate them.
    pub request_id: String,
    /// The site this request is for.
    pub site: String,
    /// When the hub issued it (µs since the Unix epoch).
    pub issued_at_us: i64,
    /// On whose behalf and under which study.
    pub context: RequestContext,
    /// What to run.
    pub work: Work,
}

/// Who asks, under which study, for which analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestContext {
    /// The study and this site's decision on it, as recorded at the hub.
    pub study: StudyGrant,
    /// The researcher.
    pub researcher: Researcher,
    /// The analysis (`sql`, …).
    pub analysis: String,
    /// The network's disclosure rules and, in a DP study, this release's ε, δ and bounds.
    /// The site applies the stricter of these and its own rules, and charges its own ledger.
    pub privacy: Protection,
}

/// A study as the hub vouches for it to one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyGrant {
    /// Study id.
    pub id: String,
    /// Title.
    pub title: String,
    /// What it may use.
    pub terms: StudyTerms,
    /// This site's custodian's decision.
    pub approval: ApprovalState,
    /// Who decided.
    pub approved_by: Option<String>,
}

/// The person on whose behalf the hub asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Researcher {
    /// Their id at the hub.
    pub id: String,
    /// Their roles.
    pub roles: Vec<String>,
}

/// The kinds of work a site can run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Work {
    /// A partial-aggregate SQL query (checked again by the site before it runs).
    PartialSql {
        /// The SQL text.
        sql: String,
    },
    /// One round of a partial-aggregate SQL query summed under secure aggregation.
    SecureSql {
        /// The SQL text (the same in every round; the site checks it against its round state).
        sql: String,
        /// Which round.
        round: crate::rounds::Round,
        /// VAR/STDDEV: which of the two sums this is (absent: the partial as it is).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spread: Option<crate::rounds::Spread>,
    },
    /// A site kernel ([`medfed_core::kernel`]): checked rows, one step over them, its sums back.
    Kernel {
        /// The rows and the step.
        task: medfed_core::kernel::KernelTask,
    },
    /// One round of a site kernel whose answers are summed under secure aggregation.
    SecureKernel {
        /// The rows and the step (the same in every round).
        task: medfed_core::kernel::KernelTask,
        /// Which round.
        round: crate::rounds::Round,
    },
    /// The study's privacy budget at the site: what its custodian allows and what releases
    /// have spent (the site's own ledger; no data is read).
    Budget,
}

/// What travels in the ticket: the request's JSON and the hub's signature over it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedRequest {
    /// The [`SiteRequest`] as JSON text (signed byte for byte).
    pub request: String,
    /// Hex Ed25519 signature by the hub.
    pub signature: String,
}

/// Why a site rejects a ticket.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// Not a request this site can read.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Not signed by the hub this site trusts.
    #[error("request is not signed by this network's hub")]
    BadSignature,
    /// Signed, but for another site.
    #[error("request is addressed to site {0}, not this one")]
    WrongSite(String),
    /// Signed, but too old or from the future.
    #[error("request was issued {0} s away from this site's clock (limit 300 s)")]
    Stale(i64),
}

impl SiteRequest {
    /// A request for `site` to do `work`, issued now.
    pub fn new(
        request_id: impl Into<String>,
        site: impl Into<String>,
        context: RequestContext,
        work: Work,
    ) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        Self {
            version: WIRE_VERSION,
            request_id: request_id.into(),
            site: site.into(),
            issued_at_us: now,
            context,
            work,
        }
    }

    /// A partial-SQL request for `site`, issued now.
    pub fn partial_sql(
        request_id: impl Into<String>,
        site: impl Into<String>,
        context: RequestContext,
        sql: impl Into<String>,
    ) -> Self {
        Self::new(
            request_id,
            site,
            context,
            Work::PartialSql { sql: sql.into() },
        )
    }

    /// The same request doing a different piece of work (a round of secure aggregation).
    pub fn with_work(&self, work: Work) -> Self {
        Self {
            work,
            ..self.clone()
        }
    }

    /// What the site's replay protection remembers: the request id, and for a secure
    /// aggregation round the round too (all rounds of one query share the id).
    pub fn replay_key(&self) -> String {
        match &self.work {
            Work::PartialSql { .. } | Work::Kernel { .. } | Work::Budget => self.request_id.clone(),
            Work::SecureSql { round, .. } | Work::SecureKernel { round, .. } => {
                format!("{}#{}", self.request_id, round.replay_tag())
            }
        }
    }

    /// Signs and encodes for a Flight ticket.
    pub fn sign(&self, key: &SigningKey) -> arrow_flight::Ticket {
        let request = serde_json::to_string(self).expect("request serialises");
        let signature = hex::encode(key.sign(request.as_bytes()).to_bytes());
        let envelope = SignedRequest { request, signature };
        arrow_flight::Ticket::new(serde_json::to_vec(&envelope).expect("envelope serialises"))
    }

    /// Decodes a ticket and checks, in order: it parses, the hub signed it, it is for `site`, it
    /// was issued within [`MAX_SKEW_US`] of `now_us`. Returns the request and its signed text.
    pub fn verify(
        ticket: &[u8],
        hub_key: &VerifyingKey,
        site: &str,
        now_us: i64,
    ) -> Result<(Self, String), WireError> {
        let envelope: SignedRequest = serde_json::from_slice(ticket)
            .map_err(|e| WireError::Malformed(format!("envelope: {e}")))?;
        let sig: [u8; 64] = hex::decode(&envelope.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(WireError::BadSignature)?;
        hub_key
            .verify(envelope.request.as_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| WireError::BadSignature)?;
        let req: SiteRequest = serde_json::from_str(&envelope.request)
            .map_err(|e| WireError::Malformed(e.to_string()))?;
        if req.version != WIRE_VERSION {
            return Err(WireError::Malformed(format!(
                "unsupported request version {} (this site speaks {WIRE_VERSION})",
                req.version
            )));
        }
        if req.site != site {
            return Err(WireError::WrongSite(req.site));
        }
        let skew = now_us - req.issued_at_us;
        if skew.abs() > MAX_SKEW_US {
            return Err(WireError::Stale(skew / 1_000_000));
        }
        Ok((req, envelope.request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(site: &str, at: i64) -> SiteRequest {
        SiteRequest {
            version: WIRE_VERSION,
            request_id: "q-1".into(),
            site: site.into(),
            issued_at_us: at,
            context: RequestContext {
                study: StudyGrant {
                    id: "st-1".into(),
                    title: "t".into(),
                    terms: StudyTerms::exact_sql(&["person"]),
                    approval: ApprovalState::Approved,
                    approved_by: Some("nora".into()),
                },
                researcher: Researcher {
                    id: "rita".into(),
                    roles: vec!["researcher".into()],
                },
                analysis: "sql".into(),
                privacy: Default::default(),
            },
            work: Work::PartialSql {
                sql: "SELECT COUNT(*) AS p0 FROM person".into(),
            },
        }
    }

    #[test]
    fn signed_requests_verify_and_everything_else_is_refused() {
        let hub = SigningKey::from_bytes(&[1; 32]);
        let now = 1_700_000_000_000_000;
        let t = request("north", now).sign(&hub);
        let (r, _) = SiteRequest::verify(&t.ticket, &hub.verifying_key(), "north", now).unwrap();
        assert_eq!(r, request("north", now));

        // Another key, another site, too old, tampered text, garbage.
        let other = SigningKey::from_bytes(&[2; 32]).verifying_key();
        let v = |ticket: &[u8], site: &str, at: i64| {
            SiteRequest::verify(ticket, &hub.verifying_key(), site, at).unwrap_err()
        };
        assert_eq!(
            SiteRequest::verify(&t.ticket, &other, "north", now).unwrap_err(),
            WireError::BadSignature
        );
        assert_eq!(
            v(&t.ticket, "south", now),
            WireError::WrongSite("north".into())
        );
        assert!(matches!(
            v(&t.ticket, "north", now + 600_000_000),
            WireError::Stale(600)
        ));
        let forged = String::from_utf8(t.ticket.to_vec())
            .unwrap()
            .replace("person", "death");
        assert_eq!(v(forged.as_bytes(), "north", now), WireError::BadSignature);
        assert!(matches!(
            v(b"{not json", "north", now),
            WireError::Malformed(_)
        ));
    }

    #[test]
    fn each_secure_round_and_each_re_formation_has_its_own_replay_key() {
        use crate::rounds::Round;
        let base = request("north", 0);
        let round = |round| {
            base.with_work(Work::SecureSql {
                sql: "SELECT COUNT(*) AS p0 FROM person".into(),
                round,
                spread: None,
            })
        };
        let advertise = |attempt| {
            round(Round::Advertise {
                id: 1,
                n: 2,
                threshold: 2,
                attempt,
            })
        };
        assert_eq!(advertise(0).replay_key(), advertise(0).replay_key());
        assert_ne!(advertise(0).replay_key(), advertise(1).replay_key());
        let mask = round(Round::Mask {
            domain: vec![],
            fixed: Default::default(),
        });
        let prepare = round(Round::Prepare {
            id: 1,
            n: 2,
            threshold: 2,
        });
        assert_ne!(mask.replay_key(), prepare.replay_key());
        assert_ne!(mask.replay_key(), base.replay_key());
        assert_eq!(base.replay_key(), "q-1");
    }
}

/// A catalogue entry's `app_metadata` (JSON): what a site says about a table beyond its schema.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableMeta {
    /// People in the table, as the site's count rule publishes them; absent if it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persons: Option<medfed_core::catalog::PersonCount>,
}

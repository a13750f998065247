//! The input documents the policies read. Version 1; `docs/policy-input.md` describes every field.
//! A change that removes or renames a field bumps [`INPUT_VERSION`], so a policy can refuse an
//! input it was not written for (`input.version == 1`).

use std::collections::BTreeMap;

use medfed_core::study::StudyTerms;
use serde::Serialize;

/// Version of both input documents.
pub const INPUT_VERSION: u32 = 1;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subject {
    /// User name (API tokens) or the JWT `sub`.
    pub id: String,
    /// Roles held (`researcher`, `clinician`, `custodian`, `admin`, `auditor`).
    pub roles: Vec<String>,
    /// Sites this person is custodian of.
    pub sites: Vec<String>,
    /// How they authenticated: `token` or `jwt`.
    pub via: String,
}

/// The study an action concerns, as the hub knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudyDoc {
    /// Study id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Who proposed it.
    pub proposer: String,
    /// Other people who may run its analyses.
    pub members: Vec<String>,
    /// Sites it asks for.
    pub sites: Vec<String>,
    /// Each asked-for site's decision: `pending`, `approved` or `rejected`.
    pub approvals: BTreeMap<String, String>,
    /// What it may use.
    pub terms: StudyTerms,
}

/// The time of the request (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Now {
    /// Seconds since the Unix epoch.
    pub unix_s: i64,
    /// Hour of day, 0–23.
    pub hour_utc: u32,
    /// Day of week, 0 = Monday … 6 = Sunday.
    pub weekday: u32,
}

impl Now {
    /// The current time.
    pub fn current() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Self::at(secs)
    }

    /// The time `unix_s` seconds after the epoch.
    pub fn at(unix_s: i64) -> Self {
        let days = unix_s.div_euclid(86_400);
        Self {
            unix_s,
            hour_utc: (unix_s.rem_euclid(86_400) / 3600) as u32,
            // 1970-01-01 was a Thursday (3 with Monday = 0).
            weekday: (days + 3).rem_euclid(7) as u32,
        }
    }
}

/// `input` for `policies/hub.rego`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HubInput {
    /// [`INPUT_VERSION`].
    pub version: u32,
    /// What is attempted: `whoami`, `sites.read`, `catalog.read`, `study.read`, `study.propose`,
    /// `study.decide`, `query`, `audit.read`, `user.manage`.
    pub action: String,
    /// Who.
    pub subject: Subject,
    /// The study concerned, if any.
    pub study: Option<StudyDoc>,
    /// The site concerned (for `study.decide`).
    pub site: Option<String>,
    /// When.
    pub now: Now,
}

/// What a request asks a site to do, as the site itself worked it out from the work it was sent
/// (never as the hub claims it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestDoc {
    /// The hub's request id.
    pub id: String,
    /// The analysis (`sql`, …).
    pub analysis: String,
    /// Tables read.
    pub tables: Vec<String>,
    /// Columns read, per table.
    pub columns: BTreeMap<String, Vec<String>>,
    /// Whether the partial is released only masked, into the network's secure sum (k then
    /// judges the network's total), rather than in the clear to the hub.
    #[serde(default)]
    pub secure_aggregation: bool,
}

/// The study a site request runs under, as the hub signed it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteStudyDoc {
    /// Study id.
    pub id: String,
    /// Title.
    pub title: String,
    /// This site's custodian's decision, as recorded at the hub.
    pub approval: String,
    /// Who decided.
    pub approved_by: Option<String>,
    /// What the study may use.
    pub terms: StudyTerms,
}

/// `input` for `policies/site.rego`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteInput {
    /// [`INPUT_VERSION`].
    pub version: u32,
    /// This site's name.
    pub site: String,
    /// The researcher on whose behalf the hub asks.
    pub researcher: Subject,
    /// The study.
    pub study: SiteStudyDoc,
    /// What is asked.
    pub request: RequestDoc,
    /// When.
    pub now: Now,
}

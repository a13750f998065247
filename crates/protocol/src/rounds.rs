//! Secure aggregation over the wire: the rounds of [`medfed_privacy::secagg`] as signed requests.
//!
//! Each round is a Flight `DoAction` of type [`ACTION_SECAGG`] whose body is a signed
//! [`SiteRequest`](crate::wire::SiteRequest) with [`Work::SecureSql`](crate::wire::Work) (or
//! `Work::SecureKernel`, a kernel step's answer as one keyless row) naming the round; the
//! answer is one JSON [`Reply`]. All rounds of one query share its request id
//! (the site keeps its part of the round under it) and each may be served once.
//!
//! ```text
//!  prepare     hub → every site   run the partial, keep it; reply: announced group keys, report
//!  advertise   hub → responders   ids 1..=n, threshold t; reply: two X25519 public keys
//!  share_keys  hub → each         everyone's keys; reply: Shamir shares sealed per recipient
//!  mask        hub → each         the key domain and this site's sealed shares; reply: masked
//!                                 cell vector (the release, audited and charged at the site)
//!  unmask      hub → survivors    who survived and who dropped; reply: the shares that strip masks
//! ```

use medfed_privacy::PartialReport;
use medfed_privacy::secagg::{
    Advertisement, Id, MaskedInput, SealedShares, UnmaskRequest, UnmaskShares,
};
use serde::{Deserialize, Serialize};

/// Flight action type of a secure aggregation round.
pub const ACTION_SECAGG: &str = "secagg";

/// One round of a secure aggregation, as the hub asks for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Round {
    /// Run and protect the partial, keep it at the site, announce its publishable group keys.
    Prepare,
    /// Take part as site `id` of `n` with unmasking threshold `threshold`. A round that lost a
    /// site here is re-formed with the next `attempt` (before any key is shared).
    Advertise {
        /// 0 for the first formation of the round, then 1, 2, … (part of the replay key).
        attempt: u32,
        /// This site's id in the round (1..=n).
        id: Id,
        /// Sites in the round.
        n: usize,
        /// Shares needed to unmask.
        threshold: usize,
    },
    /// Every participant's public keys, relayed by the hub.
    ShareKeys {
        /// Advertisements of all participants.
        ads: Vec<Advertisement>,
    },
    /// Mask the partial laid out over the agreed `domain`.
    Mask {
        /// Group keys every site lays its cells over ([`medfed_privacy::secagg::cells`]).
        domain: Vec<String>,
        /// The sealed shares other sites sent this one.
        inbox: Vec<SealedShares>,
    },
    /// Release the shares that remove the masks.
    Unmask {
        /// Survivors and dropped sites.
        request: UnmaskRequest,
    },
}

impl Round {
    /// What a site's replay protection remembers of this round: its name, and for
    /// `advertise` the attempt (a re-formed round advertises again; everything else happens once).
    pub fn replay_tag(&self) -> String {
        match self {
            Self::Advertise { attempt, .. } => format!("advertise.{attempt}"),
            other => other.name().to_string(),
        }
    }

    /// The round's name (for logs and the audit trail).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Prepare => "prepare",
            Self::Advertise { .. } => "advertise",
            Self::ShareKeys { .. } => "share_keys",
            Self::Mask { .. } => "mask",
            Self::Unmask { .. } => "unmask",
        }
    }
}

/// A site's answer to a [`Round`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// To [`Round::Prepare`].
    Prepared {
        /// Group keys with at least k people at this site.
        keys: Vec<String>,
        /// What the site applied (rules, no values).
        report: PartialReport,
    },
    /// To [`Round::Advertise`].
    Advertised(Advertisement),
    /// To [`Round::ShareKeys`].
    Shares(Vec<SealedShares>),
    /// To [`Round::Mask`].
    Masked(MaskedInput),
    /// To [`Round::Unmask`].
    Unmasked(UnmaskShares),
}

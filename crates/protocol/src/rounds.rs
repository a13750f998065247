//! Secure aggregation over the wire: the rounds of [`medfed_privacy::secagg`] as signed requests.
//!
//! Each round is a Flight `DoAction` of type [`ACTION_SECAGG`] whose body is a signed
//! [`SiteRequest`](crate::wire::SiteRequest) with [`Work::SecureSql`](crate::wire::Work) (or
//! `Work::SecureKernel`, a kernel step's answer as one keyless row) naming the round; the
//! answer is one JSON [`Reply`]. All rounds of one query share its request id
//! (the site keeps its part of the round under it) and each may be served once.
//!
//! ```text
//!  prepare     hub → every site   run the partial, keep it; take part as id i of n, threshold t;
//!                                 reply: report, real-valued columns, two X25519 public keys
//!  advertise   hub → responders   only when a site was lost at prepare: the round re-formed
//!                                 without it (ids 1..=n', threshold t'); reply: fresh keys
//!  share_keys  hub → each         everyone's keys; reply: Shamir shares and a token seed,
//!                                 sealed per recipient
//!  announce    hub → each         this site's sealed shares; reply: its groups as tokens keyed
//!                                 by the round's token key, which the hub does not have
//!  mask        hub → each         the token domain and which columns are fixed point; reply:
//!                                 masked cell vector (the release, audited and charged)
//!  unmask      hub → survivors    who survived and who dropped; reply: the shares that strip masks
//!  reveal      hub → survivors    the tokens the network releases; reply: their group keys
//! ```
//! A table without group keys (a kernel step, a query without GROUP BY) has one cell, the
//! empty token, and no reveal.

use medfed_privacy::PartialReport;
use medfed_privacy::secagg::{
    Advertisement, Id, MaskedInput, SealedShares, UnmaskRequest, UnmaskShares,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Flight action type of a secure aggregation round.
pub const ACTION_SECAGG: &str = "secagg";

/// One round of a secure aggregation, as the hub asks for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Round {
    /// Run and protect the partial, keep it at the site, and take part as site `id` of `n` with
    /// unmasking threshold `threshold` (the round's first formation: one round, not two).
    Prepare {
        /// This site's id in the round (1..=n).
        id: Id,
        /// Sites asked.
        n: usize,
        /// Shares needed to unmask.
        threshold: usize,
    },
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
    /// Open the sealed shares and name this site's groups by token.
    Announce {
        /// The sealed shares other sites sent this one.
        inbox: Vec<SealedShares>,
    },
    /// Mask the partial laid out over the agreed `domain`.
    Mask {
        /// Group tokens every site lays its cells over ([`medfed_privacy::secagg::cells`]).
        domain: Vec<String>,
        /// Columns every site encodes as fixed-point reals.
        fixed: BTreeSet<String>,
    },
    /// Release the shares that remove the masks.
    Unmask {
        /// Survivors and dropped sites.
        request: UnmaskRequest,
    },
    /// Name the groups behind these tokens (the ones the network releases).
    Reveal {
        /// Tokens from the domain.
        tokens: Vec<String>,
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
            Self::Prepare { .. } => "prepare",
            Self::Advertise { .. } => "advertise",
            Self::ShareKeys { .. } => "share_keys",
            Self::Announce { .. } => "announce",
            Self::Mask { .. } => "mask",
            Self::Unmask { .. } => "unmask",
            Self::Reveal { .. } => "reveal",
        }
    }
}

/// VAR/STDDEV under secure aggregation: two secure sums, because the pooled variance needs each
/// site's spread around the *pooled* mean, which exists only after the first sum.
///
/// Each variance aggregate has three partial columns, `[n, s, v]`: its count, its sum and the
/// site's own population variance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spread {
    /// First sum: n and Σx; every `v` column is sent as 0.
    Sums {
        /// `[n, s, v]` of each variance aggregate.
        columns: Vec<[String; 3]>,
    },
    /// Second sum: in each `v` column the site's Σ(x − x̄)² around the pooled mean x̄ of the
    /// group, for the groups the first sum `after` released and this site named there.
    Centred {
        /// Request id of the first sum.
        after: String,
        /// `[n, s, v]` of each variance aggregate.
        columns: Vec<[String; 3]>,
        /// Row-format group key → pooled mean of each variance aggregate (None where n = 0).
        means: BTreeMap<String, Vec<Option<f64>>>,
    },
}

impl Spread {
    /// `[n, s, v]` of each variance aggregate.
    pub fn columns(&self) -> &[[String; 3]] {
        match self {
            Self::Sums { columns } | Self::Centred { columns, .. } => columns,
        }
    }
}

/// A site's answer to a [`Round`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// To [`Round::Prepare`].
    Prepared {
        /// What the site applied (rules, no values).
        report: Box<PartialReport>,
        /// Columns of its partial that are real-valued ([`medfed_privacy::secagg::cells::fixed_point`]).
        fixed: BTreeSet<String>,
        /// Its public keys for the round as first formed.
        ad: Advertisement,
    },
    /// To [`Round::Advertise`].
    Advertised(Advertisement),
    /// To [`Round::ShareKeys`].
    Shares(Vec<SealedShares>),
    /// To [`Round::Announce`]: this site's groups as tokens.
    Announced(Vec<String>),
    /// To [`Round::Mask`].
    Masked(MaskedInput),
    /// To [`Round::Unmask`].
    Unmasked(UnmaskShares),
    /// To [`Round::Reveal`]: token → row-format group key, for the asked tokens this site has.
    Revealed(BTreeMap<String, String>),
}

//! `site.toml`: what a custodian configures.
//!
//! ```toml
//! name = "north"
//! listen = "0.0.0.0:7001"
//!
//! [tls]
//! cert = "pki/sites/north/cert.pem"
//! key = "pki/sites/north/key.pem"
//! ca = "pki/ca.pem"
//!
//! [governance]
//! hub_key = "pki/hub/signing.pub"          # the hub's request-signing key
//! signing_key = "pki/sites/north/signing.key"  # this site's key (audit checkpoints)
//! policy = "policy.rego"                   # this site's rules; edits apply on the next request
//! audit_db = "audit.db"                    # or postgres://…
//!
//! [privacy]                              # optional; these are the defaults
//! ledger = "budget.db"                     # per-study (ε, δ) ledger: SQLite file or postgres://…
//! epsilon_per_study = 0.5                  # this site's budget for each DP study…
//! delta_per_study = 1e-6
//! studies = { dp-trial = { epsilon = 1.0, delta = 1e-6 } }   # …or per study
//! dominance = { n = 2, share = 0.85, p_percent = 0 }   # (n, k) rule for sums and means; p% rule when p_percent > 0
//! models = { min_residual_df = 10, max_parameter_share = 0.37 }   # regressions and trained models
//! rounding = { base = 0, midpoint = false }  # e.g. { base = 5 } or { base = 6, midpoint = true }
//! class_disclosure = true                  # withhold a two-way table's lone non-empty cell of a row or column, and a sum or mean whose contributors all share one value
//! review = []                              # e.g. ["class_disclosure"]: hold such releases for this site's review
//! catalog_counts = { publish = true, round_to = 10, min = 10 }  # people per table in the catalogue
//!
//! [store]
//! omop_dir = "data/omop"
//! target_partitions = 2
//!
//! [[store.table]]          # optional extra tables
//! name = "cnsim"
//! path = "data/CNSIM1.csv"
//! ```
//! Relative paths are resolved against the config file's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use medfed_core::SiteName;
use medfed_core::catalog::CountRule;
use medfed_privacy::Dominance;
use medfed_privacy::ledger::Budget;
use medfed_protocol::tls::TlsPaths;
use medfed_store::StoreConfig;
use serde::{Deserialize, Serialize};

use crate::SiteError;

/// A site node's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// The site's name; must match the DNS name in its certificate.
    pub name: SiteName,
    /// Address to listen on for the hub.
    pub listen: String,
    /// The site's TLS identity and the network CA.
    pub tls: TlsPaths,
    /// Keys, policy and audit trail.
    pub governance: Governance,
    /// Privacy budgets and disclosure settings.
    #[serde(default)]
    pub privacy: PrivacyConfig,
    /// Where the data is.
    pub store: StoreConfig,
}

/// `[governance]`: what makes a site answer only to its network's hub, under its own rules,
/// with a record of everything.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Governance {
    /// The hub's Ed25519 public key (`signing.pub`): requests not signed by it are refused.
    pub hub_key: PathBuf,
    /// This site's Ed25519 key (`signing.key`): signs its audit checkpoints.
    pub signing_key: PathBuf,
    /// This site's Rego policy (`site.rego`).
    pub policy: PathBuf,
    /// The audit trail: a SQLite file or a `postgres://` URL.
    pub audit_db: String,
}

/// `[privacy]`: what this site's custodian lets each study spend, and how strict it is about
/// dominated totals. (The site's minimum cell count lives in its policy, `min_cell_count`.)
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// The budget ledger: a SQLite file or a `postgres://` URL.
    pub ledger: String,
    /// Total ε a DP study may spend at this site, unless listed in `studies`.
    pub epsilon_per_study: f64,
    /// Total δ a DP study may spend at this site, unless listed in `studies`.
    pub delta_per_study: f64,
    /// Per-study totals.
    pub studies: BTreeMap<String, Budget>,
    /// The dominance rule (the stricter of this and the network's applies).
    pub dominance: Dominance,
    /// Rules for released models (the stricter of these and the network's apply).
    pub models: medfed_privacy::ModelRules,
    /// Rounding of released counts (the coarser of this and the network's applies).
    pub rounding: medfed_privacy::Rounding,
    /// Withhold class disclosure in two-way tables (either side may switch it on).
    pub class_disclosure: bool,
    /// Checks whose firing holds a release for review by the custodians instead.
    pub review: medfed_privacy::Review,
    /// Whether the catalogue says how many people each table holds, and how coarsely.
    pub catalog_counts: CountRule,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        let budget = Budget::default();
        Self {
            ledger: "budget.db".into(),
            epsilon_per_study: budget.epsilon,
            delta_per_study: budget.delta,
            studies: BTreeMap::new(),
            dominance: Dominance::default(),
            models: Default::default(),
            rounding: Default::default(),
            class_disclosure: true,
            review: Default::default(),
            catalog_counts: CountRule::default(),
        }
    }
}

impl PrivacyConfig {
    /// The budget of `study` here: the custodian's figure, capped by what the study itself asked.
    pub fn budget_for(&self, study: &str, study_epsilon: Option<f64>) -> Budget {
        let mut b = self.studies.get(study).copied().unwrap_or(Budget {
            epsilon: self.epsilon_per_study,
            delta: self.delta_per_study,
        });
        if let Some(e) = study_epsilon.filter(|e| *e > 0.0) {
            b.epsilon = b.epsilon.min(e);
        }
        b
    }
}

impl SiteConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, SiteError> {
        let err = |reason: String| SiteError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut cfg: SiteConfig = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut cfg.tls.cert);
        abs(&mut cfg.tls.key);
        abs(&mut cfg.tls.ca);
        abs(&mut cfg.store.omop_dir);
        abs(&mut cfg.governance.hub_key);
        abs(&mut cfg.governance.signing_key);
        abs(&mut cfg.governance.policy);
        for db in [&mut cfg.governance.audit_db, &mut cfg.privacy.ledger] {
            if !db.contains("://") {
                let mut p = PathBuf::from(&*db);
                abs(&mut p);
                *db = p.display().to_string();
            }
        }
        cfg.store
            .extra_tables
            .iter_mut()
            .for_each(|t| abs(&mut t.path));
        Ok(cfg)
    }

    /// Writes the config as TOML.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(
            path,
            toml::to_string_pretty(self).map_err(std::io::Error::other)?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_follow_the_config_file_and_typos_are_errors() {
        let dir = std::env::temp_dir().join(format!("medfed-site-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("site.toml");
        std::fs::write(
            &path,
            "name = \"north\"\nlisten = \"127.0.0.1:0\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nca = \"/abs/ca.pem\"\n[governance]\nhub_key = \"hub.pub\"\nsigning_key = \"s.key\"\npolicy = \"p.rego\"\naudit_db = \"audit.db\"\n[store]\nomop_dir = \"omop\"\n",
        )
        .unwrap();
        let cfg = SiteConfig::load(&path).unwrap();
        assert_eq!(cfg.tls.cert, dir.join("c.pem"));
        assert_eq!(cfg.tls.ca, PathBuf::from("/abs/ca.pem"));
        assert_eq!(cfg.store.omop_dir, dir.join("omop"));
        assert_eq!(
            cfg.governance.audit_db,
            dir.join("audit.db").display().to_string()
        );
        std::fs::write(&path, "name = \"North\"\n").unwrap();
        assert!(
            SiteConfig::load(&path)
                .unwrap_err()
                .to_string()
                .contains("invalid site name")
        );
        std::fs::write(&path, "name = \"north\"\nlisten = \"x\"\nlisen = 1\n").unwrap();
        assert!(SiteConfig::load(&path).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}

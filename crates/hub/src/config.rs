//! `hub.toml`: the network as the hub sees it.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! site_deadline_ms = 10000
//! catalog_refresh_s = 300    # re-read the sites' tables and counts when older
//!
//! [tls]                      # the hub's client identity towards sites
//! cert = "pki/hub/cert.pem"
//! key = "pki/hub/key.pem"
//! ca = "pki/ca.pem"
//!
//! [governance]
//! state_db = "state.db"                  # users, tokens, studies (or postgres://…)
//! audit_db = "audit.db"                  # the hub's audit trail (or postgres://…)
//! signing_key = "pki/hub/signing.key"    # signs site requests and audit checkpoints
//! policy = "policy.rego"                 # who may do what (policies/hub.rego)
//!
//! [oidc]                     # optional: accept JWTs from the hospital's SSO
//! issuer = "https://sso.example.org/realms/research"
//! audience = "medfed-hub"
//! jwks = "https://sso.example.org/realms/research/protocol/openid-connect/certs"
//!
//! [privacy]                 # optional; these are the defaults
//! min_cell_count = 10        # the network's k (sites may only raise it)
//! dominance = { n = 2, share = 0.85, p_percent = 0 }   # p% rule when p_percent > 0
//! models = { min_residual_df = 10, max_parameter_share = 0.37 }
//! rounding = { base = 0, midpoint = false }   # e.g. { base = 5 }: released counts rounded
//! class_disclosure = true    # withhold a two-way table's lone non-empty cell of a row or column, and a sum or mean whose contributors all share one value
//! review = []                # e.g. ["class_disclosure", "complementary", "differencing"]: hold for custodians' review instead
//! default_epsilon = 0.1      # ε of a DP query at each site when the researcher names none
//! delta_per_release = 1e-7   # δ of a grouped DP query (which groups exist)
//!
//! [[sites]]
//! name = "north"
//! url = "https://127.0.0.1:7001"
//! ```
//! Relative paths are resolved against the config file's directory.

use std::path::{Path, PathBuf};

use medfed_core::SiteName;
use medfed_protocol::tls::TlsPaths;
use serde::{Deserialize, Serialize};

use crate::HubError;

/// The hub's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// Address of the researchers' HTTP API.
    pub listen: String,
    /// How long a site may take to answer before it is reported as timed out.
    #[serde(default = "default_deadline_ms")]
    pub site_deadline_ms: u64,
    /// How old the sites' catalogues (tables, person counts) may get before a listing re-reads
    /// them in the background.
    #[serde(default = "default_catalog_refresh_s")]
    pub catalog_refresh_s: u64,
    /// The hub's TLS identity towards sites.
    pub tls: TlsPaths,
    /// State, audit trail, key and policy.
    pub governance: Governance,
    /// Single sign-on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<crate::auth::OidcConfig>,
    /// The network's disclosure floor and DP defaults.
    #[serde(default)]
    pub privacy: NetworkPrivacy,
    /// The network's sites.
    pub sites: Vec<SiteEntry>,
}

fn default_deadline_ms() -> u64 {
    10_000
}

fn default_catalog_refresh_s() -> u64 {
    300
}

/// `[governance]`: where the hub keeps its state and trail, and what it decides with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Governance {
    /// Users, tokens, studies, approvals, releases: a SQLite file or a `postgres://` URL.
    pub state_db: String,
    /// The audit trail: a SQLite file or a `postgres://` URL.
    pub audit_db: String,
    /// The hub's Ed25519 key.
    pub signing_key: PathBuf,
    /// The hub's Rego policy.
    pub policy: PathBuf,
}

/// `[privacy]`: the network's rules (every site applies these or stricter) and the defaults of a
/// DP release when the researcher does not say.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkPrivacy {
    /// Minimum cell count k for every released cell.
    pub min_cell_count: u64,
    /// The (n, k) dominance rule (and the p % rule) for sums and means.
    pub dominance: medfed_privacy::Dominance,
    /// Residual degrees of freedom and saturation for released models.
    pub models: medfed_privacy::ModelRules,
    /// Rounding of released counts (a site may ask for a coarser base).
    pub rounding: medfed_privacy::Rounding,
    /// Withhold class disclosure in two-way tables.
    pub class_disclosure: bool,
    /// Checks whose firing holds a release for custodians' review instead.
    pub review: medfed_privacy::Review,
    /// ε of one DP query at each site when the researcher does not name one.
    pub default_epsilon: f64,
    /// δ of one grouped DP query at each site (pays for releasing which groups exist).
    pub delta_per_release: f64,
    /// Sum the sites' partials under secure aggregation unless a query says otherwise (the
    /// default): k and the other output rules then judge the network's total, and a group
    /// with a few people at each of several sites is released. `false` applies k to each
    /// site's own groups.
    pub secure_aggregation: bool,
}

impl Default for NetworkPrivacy {
    fn default() -> Self {
        let rules = medfed_privacy::DisclosureRules::default();
        Self {
            min_cell_count: rules.min_cell_count,
            dominance: rules.dominance,
            models: rules.models,
            rounding: rules.rounding,
            class_disclosure: rules.class_disclosure,
            review: rules.review,
            default_epsilon: 0.1,
            delta_per_release: 1e-7,
            secure_aggregation: true,
        }
    }
}

impl NetworkPrivacy {
    /// The rules sent with every request.
    pub fn rules(&self) -> medfed_privacy::DisclosureRules {
        medfed_privacy::DisclosureRules {
            min_cell_count: self.min_cell_count,
            dominance: self.dominance,
            models: self.models,
            rounding: self.rounding,
            class_disclosure: self.class_disclosure,
            review: self.review,
        }
    }
}

/// A site the hub fans out to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteEntry {
    /// The site's name (as in its certificate).
    pub name: SiteName,
    /// Its Flight endpoint, `https://host:port`.
    pub url: String,
}

impl HubConfig {
    /// Reads `path`.
    pub fn load(path: &Path) -> Result<Self, HubError> {
        let err = |reason: String| HubError::Config(format!("{}: {reason}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut cfg: HubConfig = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let g = &mut cfg.governance;
        for p in [
            &mut cfg.tls.cert,
            &mut cfg.tls.key,
            &mut cfg.tls.ca,
            &mut g.signing_key,
            &mut g.policy,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        for db in [&mut g.state_db, &mut g.audit_db] {
            if !db.contains("://") && Path::new(db.as_str()).is_relative() {
                *db = base.join(&*db).display().to_string();
            }
        }
        if let Some(o) = &mut cfg.oidc {
            o.resolve_jwks(base);
        }
        Ok(cfg)
    }

    /// Reads only the `[oidc]` section of a hub.toml-style file (how `medfed demo --oidc`
    /// borrows a hospital's single sign-on settings), its JWKS path resolved like
    /// [`HubConfig::load`]'s.
    pub fn load_oidc(path: &Path) -> Result<crate::auth::OidcConfig, HubError> {
        #[derive(Deserialize)]
        struct Section {
            oidc: crate::auth::OidcConfig,
        }
        let err = |reason: String| HubError::Config(format!("{}: {reason}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let Section { mut oidc } = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        oidc.resolve_jwks(path.parent().unwrap_or(Path::new(".")));
        Ok(oidc)
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
    fn load_oidc_resolves_a_relative_jwks_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sso.toml");
        std::fs::write(
            &file,
            "[oidc]\nissuer = \"https://sso.example.org\"\naudience = \"portal\"\n\
             jwks = \"keys/jwks.json\"\nportal_client_id = \"portal\"\n",
        )
        .unwrap();
        let oidc = HubConfig::load_oidc(&file).unwrap();
        assert_eq!(
            oidc.jwks,
            dir.path().join("keys/jwks.json").display().to_string()
        );
        assert_eq!(oidc.portal_client_id.as_deref(), Some("portal"));
        assert_eq!(oidc.roles_claim, "medfed_roles");
    }

    #[test]
    fn load_oidc_names_the_file_when_the_section_is_missing_or_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sso.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:1\"\n").unwrap();
        let err = HubConfig::load_oidc(&file).unwrap_err().to_string();
        assert!(err.contains("sso.toml") && err.contains("oidc"), "{err}");
        std::fs::write(
            &file,
            "[oidc]\nissuer = \"x\"\naudience = \"y\"\njwks = \"z\"\nisuer = 1\n",
        )
        .unwrap();
        let err = HubConfig::load_oidc(&file).unwrap_err().to_string();
        assert!(err.contains("isuer"), "{err}");
        let err = HubConfig::load_oidc(&dir.path().join("absent.toml")).unwrap_err();
        assert!(err.to_string().contains("absent.toml"), "{err}");
    }
}

//! Who is calling: medfed API tokens (argon2-hashed in the hub's state) or OIDC JWTs from a
//! hospital's single sign-on (RS256/ES256, checked against the IdP's JWKS, issuer, audience and
//! expiry), so the SSO's MFA fronts the hub.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use medfed_policy::input::Subject;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::HubState;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Principal {
    /// User name, or the JWT's `preferred_username`/`sub`.
    pub id: String,
    /// Roles held.
    pub roles: Vec<String>,
    /// Sites they are custodian of.
    pub sites: Vec<String>,
    /// `token:<id>` or `jwt`.
    pub via: String,
}

impl Principal {
    /// The policy's view of this caller.
    pub fn subject(&self) -> Subject {
        Subject {
            id: self.id.clone(),
            roles: self.roles.clone(),
            sites: self.sites.clone(),
            via: if self.via == "jwt" { "jwt" } else { "token" }.into(),
        }
    }

    /// Roles as one string, for the audit trail.
    pub fn role(&self) -> String {
        self.roles.join(",")
    }
}

/// Why a caller could not be authenticated (answered 401; never says more than this).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer …`.
    #[error("missing bearer token")]
    Missing,
    /// The token is not valid.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// `[oidc]` in `hub.toml`: trust JWTs from a hospital's identity provider.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// The IdP's JSON Web Key Set: a file, or an `https://` URL fetched at start-up.
    pub jwks: String,
    /// Claim listing medfed roles.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Claim listing the sites a custodian looks after.
    #[serde(default = "default_sites_claim")]
    pub sites_claim: String,
    /// The portal's client id at the IdP (a public client: authorisation code with PKCE). When
    /// set, the portal offers "sign in with single sign-on".
    #[serde(default)]
    pub portal_client_id: Option<String>,
}

impl OidcConfig {
    /// A relative JWKS file is relative to `base` (the config file's directory).
    pub(crate) fn resolve_jwks(&mut self, base: &Path) {
        if !self.jwks.starts_with("https://") && Path::new(&self.jwks).is_relative() {
            self.jwks = base.join(&self.jwks).display().to_string();
        }
    }
}

fn default_roles_claim() -> String {
    "medfed_roles".into()
}

fn default_sites_claim() -> String {
    "medfed_sites".into()
}

struct Oidc {
    cfg: OidcConfig,
    /// (kid, key, algorithm) for every usable key in the set.
    keys: Vec<(Option<String>, DecodingKey, Algorithm)>,
}

/// Verified tokens are remembered by their SHA-256 so argon2 (tens of ms by design) runs once per
/// token, not once per request; revocation is still checked in the database on every request.
const CACHE_LIMIT: usize = 10_000;

/// Authenticates bearer tokens.
pub struct Authenticator {
    state: HubState,
    oidc: Option<Oidc>,
    verified: Mutex<HashMap<[u8; 32], String>>,
}

impl Authenticator {
    /// Tokens from `state`; JWTs too when `oidc` is configured (`base` resolves a relative JWKS
    /// path).
    pub async fn new(
        state: HubState,
        oidc: Option<&OidcConfig>,
        base: &Path,
    ) -> Result<Self, String> {
        let oidc = match oidc {
            Some(cfg) => Some(Oidc {
                keys: load_jwks(&cfg.jwks, base).await?,
                cfg: cfg.clone(),
            }),
            None => None,
        };
        Ok(Self {
            state,
            oidc,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The IdP settings the portal needs to sign people in, if single sign-on is configured.
    pub fn oidc(&self) -> Option<&OidcConfig> {
        self.oidc.as_ref().map(|o| &o.cfg)
    }

    /// Authenticates an `Authorization` header value.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        if token.starts_with("mf_") {
            self.api_token(token).await
        } else if token.split('.').count() == 3 {
            self.jwt(token)
        } else {
            Err(AuthError::Invalid("not a medfed token or a JWT".into()))
        }
    }

    async fn api_token(&self, token: &str) -> Result<Principal, AuthError> {
        let bad = || AuthError::Invalid("unknown, revoked or expired token".into());
        let (id, secret) = crate::state::parse_token(token).ok_or_else(bad)?;
        let (user, hash) = self
            .state
            .live_token(id)
            .await
            .map_err(|e| AuthError::Invalid(format!("token store unavailable: {e}")))?
            .ok_or_else(bad)?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self.cache().get(&key).is_some_and(|h| *h == hash);
        if !cached {
            let (secret, h) = (secret.to_string(), hash.clone());
            let ok = tokio::task::spawn_blocking(move || crate::state::secret_matches(&secret, &h))
                .await
                .unwrap_or(false);
            if !ok {
                return Err(bad());
            }
            let mut cache = self.cache();
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key, hash);
        }
        Ok(Principal {
            id: user.name,
            roles: user.roles,
            sites: user.sites,
            via: format!("token:{id}"),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], String>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn jwt(&self, token: &str) -> Result<Principal, AuthError> {
        let oidc = self
            .oidc
            .as_ref()
            .ok_or_else(|| AuthError::Invalid("this hub does not accept JWTs".into()))?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("malformed JWT: {e}")))?;
        let (_, key, alg) = oidc
            .keys
            .iter()
            .find(|(kid, _, alg)| {
                *alg == header.alg && (header.kid.is_none() || *kid == header.kid)
            })
            .ok_or_else(|| {
                AuthError::Invalid(format!("no trusted {:?} key for this JWT", header.alg))
            })?;
        let mut v = Validation::new(*alg);
        v.set_issuer(&[&oidc.cfg.issuer]);
        v.set_audience(&[&oidc.cfg.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 30;
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, key, &v)
                .map_err(|e| AuthError::Invalid(format!("JWT rejected: {e}")))?;
        let claims = data.claims;
        let strings = |name: &str| -> Vec<String> {
            match claims.get(name) {
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
                Some(serde_json::Value::String(s)) => vec![s.clone()],
                _ => vec![],
            }
        };
        let id = claims
            .get("preferred_username")
            .or_else(|| claims.get("sub"))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        Ok(Principal {
            id,
            roles: strings(&oidc.cfg.roles_claim),
            sites: strings(&oidc.cfg.sites_claim),
            via: "jwt".into(),
        })
    }
}

async fn load_jwks(
    source: &str,
    base: &Path,
) -> Result<Vec<(Option<String>, DecodingKey, Algorithm)>, String> {
    let text = if source.starts_with("https://") {
        reqwest::get(source)
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("fetching JWKS {source}: {e}"))?
            .text()
            .await
            .map_err(|e| format!("reading JWKS {source}: {e}"))?
    } else {
        let path = base.join(source);
        std::fs::read_to_string(&path).map_err(|e| format!("JWKS {}: {e}", path.display()))?
    };
    let set: JwkSet = serde_json::from_str(&text).map_err(|e| format!("JWKS {source}: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => continue, // only the asymmetric algorithms SSO issues; never HS*
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("JWKS {source}: {e}"))?;
        keys.push((jwk.common.key_id.clone(), key, alg));
    }
    if keys.is_empty() {
        return Err(format!("JWKS {source} has no RSA or EC keys"));
    }
    Ok(keys)
}

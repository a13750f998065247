//! The research portal: a single-page app (`web/`, built with Vite into `web/dist`) compiled
//! into the hub binary and served at `/`. It has no back door: everything it shows comes from
//! the `/v1` API with the signed-in person's own token, so the hub's policy and audit apply to
//! the portal exactly as to a notebook.
//!
//! | route | what |
//! |---|---|
//! | `GET /`, `GET /index.html` | the app (never cached: a new hub serves its own portal) |
//! | `GET /assets/*` | its scripts and styles (content-hashed names: cached for a year) |
//! | `GET /portal/config.json` | how to sign in: `{"oidc": {"authority", "client_id", "audience"}}` or `{"oidc": null}` |
//!
//! Every answer carries a Content-Security-Policy that allows scripts only from the hub itself
//! and connections only to the hub (and the IdP, when single sign-on is configured).

use std::borrow::Cow;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::auth::OidcConfig;

/// The built portal (`web/dist`); rebuilt with `npm ci && npm run build` in `web/`.
#[derive(rust_embed::Embed)]
#[folder = "../../web/dist"]
struct Assets;

/// What the sign-in page needs to offer single sign-on.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SignIn {
    /// The IdP, if single sign-on is configured for the portal.
    pub oidc: Option<PortalOidc>,
}

/// The IdP as the portal's OIDC client sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PortalOidc {
    /// The issuer (its `/.well-known/openid-configuration` is read by the browser).
    pub authority: String,
    /// The portal's public client id.
    pub client_id: String,
    /// The audience the hub expects: the portal sends the ID token when it equals the client
    /// id, the access token otherwise.
    pub audience: String,
}

impl SignIn {
    /// From the hub's `[oidc]` section: single sign-on only when a portal client id is set.
    pub fn from_config(oidc: Option<&OidcConfig>) -> Self {
        let oidc = oidc.and_then(|o| {
            Some(PortalOidc {
                authority: o.issuer.clone(),
                client_id: o.portal_client_id.clone()?,
                audience: o.audience.clone(),
            })
        });
        Self { oidc }
    }

    /// The Content-Security-Policy: the hub only, plus the IdP's origin for the token exchange.
    fn content_security_policy(&self) -> String {
        let idp = self
            .oidc
            .as_ref()
            .and_then(|o| origin(&o.authority))
            .map(|o| format!(" {o}"))
            .unwrap_or_default();
        // CodeMirror and Chart.js set inline styles; no inline script is ever allowed.
        format!(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data: blob:; connect-src 'self'{idp}; frame-ancestors 'none'; \
             base-uri 'none'; form-action 'self'{idp}"
        )
    }
}

/// `https://idp.example.org/realms/x` → `https://idp.example.org`.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{host}"))
}

/// The portal's routes.
pub fn routes<S: Clone + Send + Sync + 'static>(sign_in: SignIn) -> Router<S> {
    let csp = HeaderValue::from_str(&sign_in.content_security_policy())
        .unwrap_or(HeaderValue::from_static("default-src 'self'"));
    let index_csp = csp.clone();
    Router::new()
        .route("/", get(move || index(index_csp.clone())))
        .route("/index.html", get(move || index(csp.clone())))
        .route("/assets/{*path}", get(asset))
        .route(
            "/portal/config.json",
            get(move || {
                let sign_in = sign_in.clone();
                async move { Json(sign_in) }
            }),
        )
}

async fn index(csp: HeaderValue) -> Response {
    match Assets::get("index.html") {
        Some(file) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                (header::CONTENT_SECURITY_POLICY, csp),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ),
            ],
            bytes(file.data),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "this hub was built without its portal (web/dist is empty): see web/README.md",
        )
            .into_response(),
    }
}

async fn asset(Path(path): Path<String>) -> Response {
    match Assets::get(&format!("assets/{path}")) {
        Some(file) => {
            let mime = HeaderValue::from_str(file.metadata.mimetype())
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            (
                [
                    (header::CONTENT_TYPE, mime),
                    (
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("public, max-age=31536000, immutable"),
                    ),
                    (
                        header::X_CONTENT_TYPE_OPTIONS,
                        HeaderValue::from_static("nosniff"),
                    ),
                ],
                bytes(file.data),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

fn bytes(data: Cow<'static, [u8]>) -> axum::body::Body {
    match data {
        Cow::Borrowed(b) => axum::body::Body::from(b),
        Cow::Owned(v) => axum::body::Body::from(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_sign_on_needs_a_portal_client_and_opens_the_policy_to_the_idp_only() {
        let mut cfg = OidcConfig {
            issuer: "https://sso.example.org/realms/h".into(),
            audience: "medfed-hub".into(),
            jwks: "jwks.json".into(),
            roles_claim: "r".into(),
            sites_claim: "s".into(),
            portal_client_id: None,
        };
        assert_eq!(SignIn::from_config(Some(&cfg)).oidc, None);
        cfg.portal_client_id = Some("portal".into());
        let sign_in = SignIn::from_config(Some(&cfg));
        assert_eq!(sign_in.oidc.as_ref().unwrap().client_id, "portal");
        let csp = sign_in.content_security_policy();
        assert!(
            csp.contains("connect-src 'self' https://sso.example.org;"),
            "{csp}"
        );
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(
            !SignIn::from_config(None)
                .content_security_policy()
                .contains("https")
        );
    }
}

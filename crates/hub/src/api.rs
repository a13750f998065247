//! The HTTP API's own shapes — errors, lists, the catalogue — and its OpenAPI description,
//! generated from the handlers' `#[utoipa::path]` annotations and the types they exchange, and
//! served at `GET /openapi.json`. The routes are registered through the same annotations
//! (`utoipa_axum::routes!`), so the description cannot leave out a route the hub serves.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::state::Study;

/// Every error: a sentence for people and a kind for programs.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words (never row-level data).
    pub error: String,
    /// `unauthenticated`, `forbidden`, `not_found`, `invalid`, `refused`, `cannot_fit`,
    /// `sites_changed`, `no_site_answered`, `audit_unavailable` or `internal`.
    pub kind: String,
    /// With `no_site_answered`: each site's outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sites: Option<serde_json::Value>,
}

/// `GET /v1/studies`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StudyList {
    /// The studies the caller may see.
    pub studies: Vec<Study>,
}

/// `GET /v1/audit`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditRecords {
    /// Records after the one asked for, oldest first.
    pub records: Vec<medfed_audit::Record>,
}

/// `GET /v1/sites`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SiteList {
    /// Every site of the network.
    pub sites: Vec<SiteHealth>,
}

/// Whether a site answers now.
#[derive(Debug, Serialize, ToSchema)]
pub struct SiteHealth {
    /// Its name.
    pub name: String,
    /// `up` or `down`.
    pub status: String,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `GET /v1/catalog`: metadata only.
#[derive(Debug, Serialize, ToSchema)]
pub struct Catalog {
    /// By table name.
    pub tables: BTreeMap<String, CatalogTable>,
    /// When the hub last read the sites' catalogues (µs since the Unix epoch); it re-reads them
    /// in the background once they are older than its `catalog_refresh_s`.
    pub as_of_us: i64,
}

/// A table the sites offer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogTable {
    /// Its columns.
    pub columns: Vec<CatalogColumn>,
    /// The sites that have it.
    pub sites: Vec<String>,
    /// People in it at each site that publishes counts: `{"about": 1230}` (rounded by the site)
    /// or `{"fewer_than": 10}`. A site that does not publish counts is absent.
    pub persons: BTreeMap<String, medfed_core::catalog::PersonCount>,
}

/// A column of a catalogue table.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogColumn {
    /// Its name.
    pub name: String,
    /// Its Arrow type.
    #[serde(rename = "type")]
    pub data_type: String,
    /// Whether it identifies a person or an event (never allowed in output or GROUP BY).
    pub identifier: bool,
}

/// The description's fixed parts; the paths are added as the routes are registered.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "medfed hub",
        description = "Federated analysis of hospital data: questions travel to the sites, only \
                       aggregates come back, after disclosure control, differential privacy and \
                       secure aggregation. Every /v1 call needs `Authorization: Bearer <token>` \
                       and is audited.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerToken),
    security(("bearer" = [])),
    tags(
        (name = "analyses", description = "federated queries and models"),
        (name = "studies", description = "studies, custodians' decisions, privacy budgets"),
        (name = "network", description = "the caller, the sites, the catalogue"),
        (name = "models", description = "the model registry"),
        (name = "audit", description = "the hub's audit trail (auditors)"),
    )
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "a medfed API token (mf_…) or, where configured, an SSO JWT",
                    ))
                    .build(),
            ),
        );
    }
}

/// Request bodies the hub reads with `deny_unknown_fields` whose schema is an `allOf` (they
/// flatten a shared part): `additionalProperties` cannot close an `allOf`, OpenAPI 3.1's
/// `unevaluatedProperties` can, so the description says what the hub does with a stray field.
const CLOSED_REQUESTS: &[&str] = &[
    "QueryRequest",
    "GlmRequest",
    "CoxRequest",
    "KmRequest",
    "FedAvgRequest",
    "EvaluateRequest",
];

/// Finishes the description gathered from the routes (what the annotations cannot say).
pub(crate) fn finish(mut api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{RefOr, Schema};
    let schemas = &mut api.components.get_or_insert_with(Default::default).schemas;
    for name in CLOSED_REQUESTS {
        if let Some(RefOr::T(Schema::AllOf(all))) = schemas.get_mut(*name) {
            all.extensions.get_or_insert_with(Default::default).insert(
                "unevaluatedProperties".into(),
                serde_json::Value::Bool(false),
            );
        }
    }
    api
}

#[cfg(test)]
mod tests {
    #[test]
    fn requests_that_refuse_unknown_fields_say_so() {
        let api = serde_json::to_value(crate::openapi()).unwrap();
        let schemas = &api["components"]["schemas"];
        for name in super::CLOSED_REQUESTS {
            let s = &schemas[*name];
            assert!(s["allOf"].is_array(), "{name} is no longer an allOf: {s}");
            assert_eq!(s["unevaluatedProperties"], false, "{name}");
        }
        // A [low, high] pair is exactly two numbers.
        let bounds = &schemas["QueryOptions"]["properties"]["bounds"]["additionalProperties"];
        assert_eq!(
            (&bounds["minItems"], &bounds["maxItems"]),
            (&2.into(), &2.into())
        );
        let terms = &schemas["StudyTerms"]["properties"];
        assert_eq!(terms["tables"]["minItems"], 1);
        let analyses: Vec<&str> = (terms["analyses"]["items"]["enum"]
            .as_array()
            .unwrap()
            .iter())
        .filter_map(|a| a.as_str())
        .collect();
        assert_eq!(analyses, medfed_core::study::ANALYSES);
    }
}

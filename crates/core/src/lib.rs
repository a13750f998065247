//! medfed's shared vocabulary: the words the hub, the sites and the tools all use.
//!
//! - [`omop`]: the OMOP CDM v5.4 as Arrow schemas, parsed from the published DDL, and which columns
//!   identify a person or an event (those may be counted, never grouped by or released).
//! - [`result`]: what a federated answer looks like on the wire to a researcher: a table plus the
//!   outcome at each site.
//! - [`glm`]: a fitted federated GLM as a researcher receives it (R's names and shape).
//! - [`survival`]: a federated Kaplan–Meier estimate and Cox model.
//! - [`kernel`]: site kernels, the local steps that are not one aggregate SQL query.
//! - [`learn`]: a model trained by federated learning (FedAvg, FedProx).
//! - [`study`]: studies and their terms (the data-minimisation contract every query runs under).
//! - [`schema`]: OpenAPI schemas for shapes utoipa cannot describe exactly (`[low, high]`).
//! - [`SiteName`]: a site's validated name (it doubles as its TLS server name).
//!
//! # Example
//! ```
//! let person = medfed_core::omop::table("person").unwrap();
//! assert_eq!(person.primary_key.as_deref(), Some("person_id"));
//! assert!(medfed_core::omop::is_identifier("person_id"));
//! assert!(!medfed_core::omop::is_identifier("gender_concept_id"));
//! ```

pub mod catalog;
pub mod describe;
pub mod glm;
pub mod kernel;
pub mod learn;
pub mod omop;
pub mod result;
pub mod schema;
pub mod study;
pub mod survival;

mod site_name;
pub use site_name::{InvalidSiteName, SiteName};

/// Arrow field metadata key that marks a column as identifying a person or an event.
///
/// Set by the site store on OMOP identifier columns and on extra-table columns the custodian
/// declares; read by the query checker so the rule travels with the schema, whatever the table.
pub const IDENTIFIER_METADATA_KEY: &str = "medfed.identifier";

//! The hub⇄site wire: Arrow Flight (gRPC, tonic) over mutually authenticated TLS.
//!
//! Entrypoints: [`SiteClient`] (the hub's side), [`tls`] (identities for both ends), [`pki`]
//! (making a network's CA and certificates), [`wire`] (what travels in a Flight ticket).
//!
//! RPCs, named by what they do for each role:
//! - `ListFlights` → the site's catalogue: one `FlightInfo` per table with its Arrow schema and,
//!   if its custodian publishes them, a rounded person count in `app_metadata`
//!   ([`CatalogEntry`]); never an exact count (metadata is all the hub learns before a query);
//! - `DoGet(ticket = SignedRequest JSON)` → the site runs the checked partial step and streams the
//!   partial as Arrow record batches. A refusal is `PERMISSION_DENIED`, a bad request
//!   `INVALID_ARGUMENT`, anything else `INTERNAL`; messages never carry row-level data.
//! - `DoAction("secagg", SignedRequest JSON)` → one round of secure aggregation ([`rounds`]):
//!   the hub learns only the sum of the sites' partials.
//! - `DoAction("kernel", SignedRequest JSON)` → one site kernel step
//!   ([`medfed_core::kernel`]): the site checks and judges its rows like SQL, runs the step and
//!   answers its sums as JSON.
//!
//! Every `DoGet` ticket is signed with the hub's Ed25519 key and names the study, the researcher,
//! the analysis and the addressed site ([`wire`]); a site verifies it before doing anything.
//!
//! Trust boundary: a site accepts connections only from certificates issued by the network CA
//! for client authentication (the hub's); site certificates are server-only, so one hospital's
//! node cannot query another's.
#![deny(missing_docs)]

pub mod pki;
pub mod rounds;
pub mod signing;
pub mod tls;
pub mod wire;

mod client;
pub use client::{CatalogEntry, SiteCallError, SiteClient};

/// Flight action name for one site kernel step ([`wire::Work::Kernel`]).
pub const ACTION_KERNEL: &str = "kernel";

/// Flight action name for a study's privacy budget at a site ([`wire::Work::Budget`]).
pub const ACTION_BUDGET: &str = "budget";

/// Flight action name for a liveness probe.
pub const ACTION_HEALTH: &str = "health";

//! Federated analyses, each a pair: a **local step** that runs at a site and yields a partial that
//! is safe to leave it, and a **combine step** that runs at the hub over all sites' partials.
//!
//! - [`sql`]: aggregate SQL over OMOP.
//! - [`describe`]: summaries, histograms with quantiles, two-way tables with chi-square and
//!   correlation matrices, each one or two aggregate queries through [`sql`]'s path.
//! - [`glm`]: exact federated GLMs (gaussian, binomial, poisson) by IRLS, each iteration one
//!   aggregate query through [`sql`]'s path, so every privacy and governance layer applies.
//! - [`survival`]: Kaplan–Meier curves from at-risk and event counts per declared time bin, and
//!   Cox models stratified by site from the sites' score and information sums.
//! - [`learn`]: FedAvg / FedProx for logistic regression and an MLP (candle), each round a
//!   training kernel at the selected sites.
//! - [`kernel`]: the site's side of local steps that are not one aggregate query (a Cox model's
//!   risk sets): checked row sources, the computation, and its disclosure rules.
//!
//! The same checker runs at the hub (on the researcher's
//! query) and again at every site (on the partial the hub sends), because a site trusts nothing
//! it has not verified itself.
//!
//! # Example
//! ```
//! # tokio_test_shim::block_on(async {
//! use datafusion::prelude::SessionContext;
//! use medfed_analysis::sql::FederatedSql;
//!
//! let ctx = SessionContext::new();
//! ctx.sql("CREATE TABLE person (person_id INT, gender_concept_id INT, year_of_birth INT)")
//!     .await.unwrap();
//! let q = FederatedSql::plan(&ctx.state(), "SELECT gender_concept_id, AVG(year_of_birth) \
//!     FROM person GROUP BY gender_concept_id").await.unwrap();
//! // Each site computes sums and counts; the hub divides the merged sums.
//! assert!(q.site_sql().contains("sum("), "{}", q.site_sql());
//! assert!(FederatedSql::plan(&ctx.state(), "SELECT * FROM person").await.is_err());
//! # });
//! # mod tokio_test_shim { pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #   tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f) } }
//! ```

pub mod describe;
pub mod glm;
pub mod kernel;
pub mod learn;
pub mod sql;
pub mod survival;
pub mod variables;

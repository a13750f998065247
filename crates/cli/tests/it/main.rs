//! End-to-end tests: a real network on loopback (mTLS Flight between hub and sites, HTTP to the
//! hub), the failure paths, and the `medfed` binary itself.

mod admin;
mod api;
mod budget;
mod cli;
mod cox;
mod describe;
mod failures;
mod fedavg;
mod glm;
mod governance;
mod ingest;
mod km;
mod margins;
mod models;
mod portal;
mod python_client;
mod redteam;
mod reviews;
mod secure;
mod support;
mod vitals;

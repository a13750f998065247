//! Parsers: each turns one input format into [`crate::model::Record`]s. They never fail a whole
//! run: whatever cannot be read becomes a record with a [`crate::model::Reject`].

pub mod csv;
pub mod fhir;
pub mod hl7;

//! Messages carried inside Flight tickets. JSON, versioned, so a site's audit log can store the
//! exact request it was sent and humans can read it.

use serde::{Deserialize, Serialize};

/// Version of the request envelope; a site refuses versions it does not know.
pub const WIRE_VERSION: u32 = 1;

/// A unit of work the hub asks a site to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteRequest {
    /// Envelope version ([`WIRE_VERSION`]).
    pub version: u32,
    /// Hub-assigned id, echoed in both sides' logs to correlate them.
    pub request_id: String,
    /// What to run.
    pub work: Work,
}

/// The kinds of work a site can run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Work {
    /// A partial-aggregate SQL query (checked again by the site before it runs).
    PartialSql {
        /// The SQL text.
        sql: String,
    },
}

impl SiteRequest {
    /// A partial-SQL request.
    pub fn partial_sql(request_id: impl Into<String>, sql: impl Into<String>) -> Self {
        Self {
            version: WIRE_VERSION,
            request_id: request_id.into(),
            work: Work::PartialSql { sql: sql.into() },
        }
    }

    /// Encodes for a Flight ticket.
    pub fn to_ticket(&self) -> arrow_flight::Ticket {
        arrow_flight::Ticket::new(serde_json::to_vec(self).expect("request serialises"))
    }

    /// Decodes a Flight ticket; the error says what was wrong, for an INVALID_ARGUMENT status.
    pub fn from_ticket(ticket: &[u8]) -> Result<Self, String> {
        let req: SiteRequest =
            serde_json::from_slice(ticket).map_err(|e| format!("malformed request: {e}"))?;
        if req.version != WIRE_VERSION {
            return Err(format!(
                "unsupported request version {} (this site speaks {WIRE_VERSION})",
                req.version
            ));
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_unknown_versions() {
        let r = SiteRequest::partial_sql("q1", "SELECT COUNT(*) AS p0 FROM person");
        assert_eq!(SiteRequest::from_ticket(&r.to_ticket().ticket).unwrap(), r);
        let mut v2 = r.clone();
        v2.version = 2;
        let bytes = serde_json::to_vec(&v2).unwrap();
        assert!(
            SiteRequest::from_ticket(&bytes)
                .unwrap_err()
                .contains("version 2")
        );
        assert!(
            SiteRequest::from_ticket(b"{not json")
                .unwrap_err()
                .contains("malformed")
        );
    }
}

//! A site's name: short, DNS-safe, because it is also the TLS server name in its certificate.

use std::fmt;

/// A validated site name: 1–63 chars of `[a-z0-9-]`, not starting or ending with `-`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct SiteName(String);

/// The reason a site name was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid site name `{0}`: use 1-63 lowercase letters, digits or '-' (it becomes a DNS name in the site's certificate)"
)]
pub struct InvalidSiteName(pub String);

impl SiteName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidSiteName> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= 63
            && !name.starts_with('-')
            && !name.ends_with('-')
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(name))
        } else {
            Err(InvalidSiteName(name))
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SiteName {
    type Error = InvalidSiteName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<SiteName> for String {
    fn from(s: SiteName) -> String {
        s.0
    }
}

impl fmt::Display for SiteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SiteName {
    type Err = InvalidSiteName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels_and_refuses_the_rest() {
        assert!(SiteName::new("north-1").is_ok());
        for bad in ["", "North", "-a", "a-", "a_b", "a.b", &"x".repeat(64)] {
            assert!(SiteName::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}

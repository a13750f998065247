//! A fitted federated GLM as a researcher receives it.
//!
//! This is the JSON `POST /v1/analyses/glm` returns and `medfed glm --format json` prints, named
//! as R's `summary(glm(...))` names things so results compare with R and DataSHIELD:
//! `{"n": …, "df_residual": …, "iterations": …, "deviance": …, "aic": …,
//!   "coefficients": {"(Intercept)": {"estimate": …, "std_error": …, "z": …, "p": …}, …},
//!   "sites": {…}}`. Coefficients keep the model's column order.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::result::{PrivacySummary, SiteOutcome};

/// The result of a federated GLM fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlmFit {
    /// The model formula as given.
    pub formula: String,
    /// `gaussian`, `binomial` or `poisson`.
    pub family: String,
    /// `identity`, `logit` or `log`.
    pub link: String,
    /// Observations used (complete cases across every site that answered).
    pub n: u64,
    /// Residual degrees of freedom: n minus the number of coefficients.
    pub df_residual: u64,
    /// Weighted least-squares solves until convergence (R's `iter`).
    pub iterations: u32,
    /// Whether the coefficients stopped moving before the iteration limit.
    pub converged: bool,
    /// Residual deviance at the estimate.
    pub deviance: f64,
    /// Deviance of the intercept-only model (absent with an offset or without an intercept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_deviance: Option<f64>,
    /// Akaike information criterion, as R computes it for the family.
    pub aic: f64,
    /// Dispersion used for the standard errors (1 for binomial and poisson).
    pub dispersion: f64,
    /// `z` for binomial and poisson; `t` for gaussian (estimated dispersion).
    pub statistic: String,
    /// One entry per model column, in the model's order.
    pub coefficients: Coefficients,
    /// The baseline level of each categorical covariate (its dummy is left out).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reference_levels: BTreeMap<String, String>,
    /// What each site did in the final iteration.
    pub sites: BTreeMap<String, SiteOutcome>,
    /// How the final iteration's sums were protected.
    #[serde(default)]
    pub privacy: PrivacySummary,
    /// Where the hub's model registry keeps this fit, when it was asked to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered: Option<ModelRef>,
}

/// A version of a model in the hub's registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    /// The model's name.
    pub model: String,
    /// Its version (1, 2, …).
    pub version: i64,
}

/// One coefficient's estimate and its Wald inference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coefficient {
    /// The estimate.
    pub estimate: f64,
    /// Its standard error.
    pub std_error: f64,
    /// estimate / std_error (R's `z value`, or `t value` for gaussian).
    pub z: f64,
    /// Two-sided p-value (normal, or Student's t for gaussian).
    pub p: f64,
    /// Wald 95 % confidence interval.
    pub ci95: [f64; 2],
}

/// Coefficients by name, serialised as a JSON object in model order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Coefficients(pub Vec<(String, Coefficient)>);

impl Coefficients {
    /// The coefficient called `name` (R's name: `(Intercept)`, `age`, `factor(g)2`, `a:b`).
    pub fn get(&self, name: &str) -> Option<&Coefficient> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }
}

impl Serialize for Coefficients {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, c) in &self.0 {
            map.serialize_entry(name, c)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Coefficients {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Coefficients;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of coefficients")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Coefficients, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry()? {
                    out.push(entry);
                }
                Ok(Coefficients(out))
            }
        }
        d.deserialize_map(InOrder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_keep_model_order_through_json() {
        let c = |e| Coefficient {
            estimate: e,
            std_error: 1.0,
            z: e,
            p: 0.5,
            ci95: [e - 1.96, e + 1.96],
        };
        let coefs = Coefficients(vec![
            ("(Intercept)".into(), c(1.0)),
            ("zeta".into(), c(2.0)),
            ("alpha".into(), c(3.0)),
        ]);
        let text = serde_json::to_string(&coefs).unwrap();
        assert!(
            text.find("zeta").unwrap() < text.find("alpha").unwrap(),
            "{text}"
        );
        let back: Coefficients = serde_json::from_str(&text).unwrap();
        assert_eq!(back, coefs);
        assert_eq!(back.get("alpha").unwrap().estimate, 3.0);
    }
}

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelRef {
    /// The model's name.
    pub model: String,
    /// Its version (1, 2, …).
    pub version: i64,
}

/// One coefficient's estimate and its Wald inference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// In OpenAPI, an object of [`Coefficient`]s by term (JSON objects have no order to state).
impl utoipa::PartialSchema for Coefficients {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <BTreeMap<String, Coefficient> as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for Coefficients {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((Coefficient::name().into(), Coefficient::schema()));
        <Coefficient as utoipa::ToSchema>::schemas(schemas);
    }
}

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

/// A GLM family with its canonical link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Normal errors, identity link (linear regression).
    Gaussian,
    /// 0/1 outcomes, logit link (logistic regression).
    Binomial,
    /// Counts, log link.
    Poisson,
}

impl std::str::FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "gaussian" | "normal" | "linear" => Ok(Self::Gaussian),
            "binomial" | "logistic" | "logit" => Ok(Self::Binomial),
            "poisson" => Ok(Self::Poisson),
            other => Err(format!(
                "unknown family {other:?}: gaussian, binomial or poisson"
            )),
        }
    }
}

impl Family {
    /// The family's name, as R spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gaussian => "gaussian",
            Self::Binomial => "binomial",
            Self::Poisson => "poisson",
        }
    }

    /// Its canonical link.
    pub fn link(self) -> &'static str {
        match self {
            Self::Gaussian => "identity",
            Self::Binomial => "logit",
            Self::Poisson => "log",
        }
    }

    /// The link applied to a mean (starting values: the intercept at the outcome's mean).
    pub fn link_of(self, mu: f64) -> f64 {
        match self {
            Self::Gaussian => mu,
            Self::Binomial => (mu / (1.0 - mu)).ln(),
            Self::Poisson => mu.ln(),
        }
    }

    /// Whether the dispersion is estimated (gaussian) or fixed at 1.
    pub fn estimates_dispersion(self) -> bool {
        self == Self::Gaussian
    }

    /// One row's share of an IRLS iteration at linear predictor `eta` (offset included):
    /// the working weight w, w·z with z = (η − o) + (y − μ)/V(μ), and the deviance
    /// contribution, all times the prior weight `pw`. Canonical links, so dμ/dη = V(μ).
    ///
    /// ```
    /// use medfed_core::glm::Family;
    /// let (w, wz, dev) = Family::Binomial.working(0.0, 1.0, 1.0, 0.0);
    /// assert_eq!((w, wz), (0.25, 0.5));
    /// assert!((dev - 2.0 * 2f64.ln()).abs() < 1e-15);
    /// ```
    pub fn working(self, eta: f64, y: f64, pw: f64, offset: f64) -> (f64, f64, f64) {
        let (mu, var) = match self {
            Self::Gaussian => (eta, 1.0),
            Self::Binomial => {
                let m = 1.0 / (1.0 + (-eta).exp());
                (m, m * (1.0 - m))
            }
            Self::Poisson => (eta.exp(), eta.exp()),
        };
        let dev = match self {
            Self::Gaussian => (y - mu).powi(2),
            // Through ln(1 + e^∓η), finite where μ rounds to 0 or 1.
            Self::Binomial => 2.0 * (y * (-eta).exp().ln_1p() + (1.0 - y) * eta.exp().ln_1p()),
            Self::Poisson => 2.0 * (if y > 0.0 { y * (y.ln() - eta) } else { 0.0 } - (y - mu)),
        };
        let w = pw * var;
        (w, pw * (var * (eta - offset) + y - mu), pw * dev)
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

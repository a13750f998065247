//! Rego policies, evaluated with [regorus](https://github.com/microsoft/regorus) (OPA-compatible),
//! so hospitals write rules in a language their security teams already know.
//!
//! Two policies exist: `policies/hub.rego` decides who may do what at the hub, and each site's
//! `policies/site.rego` decides what that site allows, on every request, whatever the hub decided.
//! Both produce a `decision` object: `{"allow": bool, "reasons": [string], …}`. The documents they
//! read are [`input::HubInput`] and [`input::SiteInput`] (versioned).
//!
//! ```
//! use medfed_policy::Policy;
//! let policy = Policy::from_source(
//!     "demo.rego",
//!     r#"package demo
//!        import rego.v1
//!        decision := {"allow": input.n < 3, "reasons": ["too many"]}"#,
//!     "data.demo.decision",
//! )
//! .unwrap();
//! assert!(policy.evaluate(&serde_json::json!({"n": 2})).unwrap().allow);
//! assert!(!policy.evaluate(&serde_json::json!({"n": 5})).unwrap().allow);
//! ```

pub mod input;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use regorus::{Engine, Value};
use serde::{Deserialize, Serialize};

/// The default hub policy (written to `hub/policy.rego` by the demo and `medfed hub init`).
pub const DEFAULT_HUB_POLICY: &str = include_str!("../../../policies/hub.rego");
/// The default site policy.
pub const DEFAULT_SITE_POLICY: &str = include_str!("../../../policies/site.rego");
/// The rule the hub evaluates.
pub const HUB_RULE: &str = "data.medfed.hub.decision";
/// The rule a site evaluates.
pub const SITE_RULE: &str = "data.medfed.site.decision";

/// What a policy decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Allowed?
    pub allow: bool,
    /// Why not (empty when allowed).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Anything else the policy returns (e.g. a site's `min_cell_count`).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Decision {
    /// The reasons as one sentence.
    pub fn reason(&self) -> String {
        if self.reasons.is_empty() {
            if self.allow {
                "allowed by policy"
            } else {
                "denied by policy"
            }
            .to_string()
        } else {
            self.reasons.join("; ")
        }
    }
}

/// What can go wrong with a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file cannot be read.
    #[error("policy {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The Rego does not compile, or evaluation failed.
    #[error("policy {name}: {reason}")]
    Rego {
        /// The policy.
        name: String,
        /// Why.
        reason: String,
    },
}

struct Loaded {
    engine: Engine,
    /// (modified time, length) of the file this engine was built from.
    stamp: Option<(SystemTime, u64)>,
}

/// A compiled policy; with a file behind it, it can be reloaded when the file changes.
pub struct Policy {
    name: String,
    path: Option<PathBuf>,
    rule: String,
    loaded: Mutex<Loaded>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("rule", &self.rule)
            .finish()
    }
}

fn compile(name: &str, text: &str, rule: &str) -> Result<Engine, PolicyError> {
    let err = |reason: String| PolicyError::Rego {
        name: name.to_string(),
        reason,
    };
    let mut engine = Engine::new();
    engine
        .add_policy(name.to_string(), text.to_string())
        .map_err(|e| err(e.to_string()))?;
    // Evaluate once on an empty input so a policy that cannot evaluate is refused at load time.
    engine.set_input(Value::new_object());
    engine
        .eval_rule(rule.to_string())
        .map_err(|e| err(e.to_string()))?;
    Ok(engine)
}

fn stamp(path: &Path) -> Result<(SystemTime, u64), PolicyError> {
    let meta = std::fs::metadata(path).map_err(|source| PolicyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok((
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        meta.len(),
    ))
}

impl Policy {
    /// Compiles Rego `text`; `rule` is the decision to evaluate, e.g. [`SITE_RULE`].
    pub fn from_source(name: &str, text: &str, rule: &str) -> Result<Self, PolicyError> {
        Ok(Self {
            name: name.to_string(),
            path: None,
            rule: rule.to_string(),
            loaded: Mutex::new(Loaded {
                engine: compile(name, text, rule)?,
                stamp: None,
            }),
        })
    }

    /// Compiles the policy in `path`; see [`reload_if_changed`](Self::reload_if_changed).
    pub fn from_file(path: &Path, rule: &str) -> Result<Self, PolicyError> {
        let (engine, stamp) = Self::read(path, rule)?;
        Ok(Self {
            name: path.display().to_string(),
            path: Some(path.to_path_buf()),
            rule: rule.to_string(),
            loaded: Mutex::new(Loaded {
                engine,
                stamp: Some(stamp),
            }),
        })
    }

    fn read(path: &Path, rule: &str) -> Result<(Engine, (SystemTime, u64)), PolicyError> {
        let before = stamp(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok((compile(&path.display().to_string(), &text, rule)?, before))
    }

    /// Rebuilds the policy if its file changed since it was loaded. Returns whether it did. A
    /// file that no longer compiles is an error and the previous policy stays in force, so a typo
    /// by a custodian never opens a site up.
    pub fn reload_if_changed(&self) -> Result<bool, PolicyError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let now = stamp(path)?;
        if self.lock().stamp == Some(now) {
            return Ok(false);
        }
        let result = Self::read(path, &self.rule);
        let mut loaded = self.lock();
        match result {
            Ok((engine, stamp)) => {
                *loaded = Loaded {
                    engine,
                    stamp: Some(stamp),
                };
                Ok(true)
            }
            Err(e) => {
                // Remember the broken version so it is reported once, not on every request.
                loaded.stamp = Some(now);
                Err(e)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Evaluates the decision for `input`. A policy that produces no decision denies.
    pub fn evaluate<I: Serialize>(&self, input: &I) -> Result<Decision, PolicyError> {
        let err = |reason: String| PolicyError::Rego {
            name: self.name.clone(),
            reason,
        };
        let json = serde_json::to_string(input).map_err(|e| err(e.to_string()))?;
        let input = Value::from_json_str(&json).map_err(|e| err(e.to_string()))?;
        let value = {
            let mut loaded = self.lock();
            loaded.engine.set_input(input);
            loaded
                .engine
                .eval_rule(self.rule.clone())
                .map_err(|e| err(e.to_string()))?
        };
        if value == Value::Undefined {
            return Ok(Decision {
                allow: false,
                reasons: vec![format!("{} produced no decision", self.rule)],
                extra: Default::default(),
            });
        }
        let json = serde_json::to_value(&value).map_err(|e| err(e.to_string()))?;
        serde_json::from_value(json).map_err(|e| err(format!("malformed decision: {e}")))
    }
}

#[cfg(test)]
mod tests;

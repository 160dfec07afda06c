//! Validation errors: every problem names the variable and the offending value, and all
//! problems of one environment are collected into a single [`ConfigError`].

use std::fmt;

/// One invalid variable (or one contradictory combination, reported on its main variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// Its raw value; `None` when the problem is that it is unset.
    pub value: Option<String>,
    /// What is wrong, in words an operator can act on.
    pub reason: String,
}

impl FieldError {
    /// Builds an error for `variable` holding `value`.
    pub fn new(variable: &'static str, value: Option<&str>, reason: impl Into<String>) -> Self {
        Self {
            variable,
            value: value.map(str::to_owned),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={:?}: {}", self.variable, v, self.reason),
            None => write!(f, "{} (unset): {}", self.variable, self.reason),
        }
    }
}

/// Every problem found in one pass over the environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The individual problems, grouped by configuration section in reading order.
    pub errors: Vec<FieldError>,
}

impl ConfigError {
    /// Whether any error concerns `variable`.
    pub fn mentions(&self, variable: &str) -> bool {
        self.errors.iter().any(|e| e.variable == variable)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "invalid configuration ({n} error{}): ",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Errors of the derived helpers that need facts about the instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// IPv6 mode needs prefix delegation, which needs a Nitro or bare-metal instance.
    #[error(
        "ENABLE_IPv6=true requires prefix delegation (ENABLE_PREFIX_DELEGATION=true), but this \
         instance type does not support it (a Nitro-based or bare-metal instance is required)"
    )]
    PrefixDelegationUnsupportedInIpv6,
}

//! A snapshot of the environment plus typed getters that record errors instead of
//! stopping, so one pass reports every problem.

use std::collections::HashMap;

use crate::error::FieldError;
use crate::types::{expected_one_of, parse_choice};
use crate::values::{parse_go_bool, parse_u32};

/// Variables by name, and the problems found while reading them.
pub(crate) struct Reader {
    vars: HashMap<String, String>,
    pub(crate) errors: Vec<FieldError>,
    pub(crate) warnings: Vec<String>,
}

impl Reader {
    pub(crate) fn new(vars: HashMap<String, String>) -> Self {
        Self {
            vars,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The value of `name`; set-but-empty counts as unset (the default applies).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Records a problem with `name`'s current value.
    pub(crate) fn error(&mut self, name: &'static str, reason: impl Into<String>) {
        let value = self.get(name).map(str::to_owned);
        self.errors.push(FieldError {
            variable: name,
            value,
            reason: reason.into(),
        });
    }

    /// Parses `name` with `parse`; unset → `None`; failure → error recorded, `None`.
    pub(crate) fn parse_with<T>(
        &mut self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let raw = self.get(name)?;
        match parse(raw) {
            Ok(v) => Some(v),
            Err(reason) => {
                self.error(name, reason);
                None
            }
        }
    }

    /// A Go-style boolean, `default` when unset or invalid (invalid is also an error).
    pub(crate) fn bool(&mut self, name: &'static str, default: bool) -> bool {
        self.parse_with(name, parse_go_bool).unwrap_or(default)
    }

    /// A non-negative decimal `u32`.
    pub(crate) fn u32(&mut self, name: &'static str, default: u32) -> u32 {
        self.parse_with(name, parse_u32).unwrap_or(default)
    }

    /// A free-form string.
    pub(crate) fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    /// An optional free-form string.
    pub(crate) fn opt_string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }

    /// One of `choices`, case-insensitive.
    pub(crate) fn choice<T: Copy>(
        &mut self,
        name: &'static str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        self.parse_with(name, |raw| {
            parse_choice(raw, choices).ok_or_else(|| expected_one_of(choices))
        })
    }
}

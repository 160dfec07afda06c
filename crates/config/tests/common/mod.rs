//! Helpers shared by the integration tests.
#![allow(dead_code)]

use config::{Config, ConfigError, FieldError};

/// Parses `vars`, failing the test with the error message if invalid.
pub fn ok(vars: &[(&str, &str)]) -> Config {
    match Config::from_vars(vars.iter().copied()) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config for {vars:?}, got: {e}"),
    }
}

/// Parses `vars`, failing the test if they are accepted.
pub fn err(vars: &[(&str, &str)]) -> ConfigError {
    match Config::from_vars(vars.iter().copied()) {
        Ok(c) => panic!("expected an error for {vars:?}, got {c:?}"),
        Err(e) => e,
    }
}

/// The single error on `variable`; asserts its message names the variable and `value`.
pub fn only_error_on<'a>(e: &'a ConfigError, variable: &str, value: &str) -> &'a FieldError {
    let on: Vec<&FieldError> = e.errors.iter().filter(|f| f.variable == variable).collect();
    assert_eq!(on.len(), 1, "expected one error on {variable}, got {e}");
    let msg = on[0].to_string();
    assert!(
        msg.contains(variable),
        "message {msg:?} does not name {variable}"
    );
    assert!(
        msg.contains(&format!("{value:?}")),
        "message {msg:?} does not quote the value {value:?}"
    );
    assert!(
        e.to_string().contains(&msg),
        "aggregate message lacks {msg:?}"
    );
    on[0]
}

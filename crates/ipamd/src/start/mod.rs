//! The agent's start-up steps, one module each (see `agent` for their order).

pub mod bootstrap;
pub mod cards;
pub mod discover;
pub mod host;
pub mod ipv6;
pub mod options;
pub mod pod_rules;
pub mod ready;
pub mod serve;

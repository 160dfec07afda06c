//! The EC2 Query API over the model: request parameters in, response XML out. Pure; the
//! HTTP server only moves bytes.

pub mod actions;
pub mod describe;
pub mod ipv6_actions;
pub mod params;
pub mod render;
pub mod trunk_actions;
pub mod xml;

pub use actions::{ACTIONS, handle};
pub use params::{Filter, Params};
pub use xml::Xml;

#[cfg(test)]
mod tests;

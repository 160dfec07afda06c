//! The EC2 clients' backoff is the workspace's one validated backoff ([`exp_backoff`]);
//! re-exported here so that `aws::backoff::…` keeps naming it.

pub use exp_backoff::*;

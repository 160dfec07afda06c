//! `ec2-emulator`: a faithful model of the parts of EC2 and IMDS that the node agent uses.
//!
//! The [`model`] is pure data and functions (no I/O, no clock): VPCs, subnets that really run
//! out of addresses, /28 prefixes that are aligned and unique, instances of real types whose
//! ENI and address limits are enforced, ENIs with attachments and tags, and the error codes
//! real EC2 answers with; dual-stack VPCs on request, with IPv6 /64 subnets and aligned,
//! unique /80 prefixes (docs/ec2-emulator.md "IPv6"). The HTTP front ends (EC2 Query API,
//! IMDS, control API) sit on top.

pub mod catalog;
pub mod control;
pub mod faults;
pub mod hotplug;
pub mod model;
pub mod query;
pub mod server;
pub mod testing;

//! The pure model of EC2 networking (no I/O, no clock: `World::now` is set by the caller).

pub mod address_pool;
pub mod eni_ops;
pub mod errors;
pub mod imds;
pub mod ipv6_ops;
pub mod ipv6_pool;
pub mod resources;
pub mod trunk;
pub mod world;

pub use address_pool::AddressPool;
pub use eni_ops::{AssignRequest, Assigned, CreateEni};
pub use errors::{Ec2Error, ErrorCode};
pub use ipv6_ops::{AssignIpv6, AssignedIpv6};
pub use ipv6_pool::Ipv6Pool;
pub use resources::{
    Attachment, ConnTrack, Eni, EniStatus, Instance, InstanceTypeInfo, Subnet, Tags, Vpc,
};
pub use trunk::{BranchEni, TrunkAssociation};
pub use world::World;

#[cfg(test)]
mod ipv6_tests;
#[cfg(test)]
mod tests;

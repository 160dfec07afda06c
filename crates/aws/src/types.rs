//! What the agent needs to know about EC2 resources, independent of the SDK's types.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// Resource tags.
pub type Tags = BTreeMap<String, String>;

/// An ENI's attachment to an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniAttachment {
    pub attachment_id: String,
    pub instance_id: String,
    pub device_index: u32,
    pub network_card: u32,
    pub delete_on_termination: bool,
}

/// An ENI's connection tracking timeouts, in seconds (EC2's
/// `ConnectionTrackingConfiguration` on `DescribeNetworkInterfaces`,
/// `ConnectionTrackingSpecification.*` on `CreateNetworkInterface`); `None`: EC2's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnTrack {
    pub tcp_established_timeout: Option<u32>,
    pub udp_stream_timeout: Option<u32>,
    pub udp_timeout: Option<u32>,
}

impl ConnTrack {
    /// The timeouts if any is set (upstream's `setConnectionTrackingSettings` sends
    /// nothing when none is).
    pub fn if_set(self) -> Option<Self> {
        (self != Self::default()).then_some(self)
    }
}

/// One network interface as `DescribeNetworkInterfaces` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniDescription {
    pub id: String,
    pub mac: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub description: String,
    /// `available`, `in-use`, ...
    pub status: String,
    /// `interface`, `trunk`, `efa`, `efa-only`, ...
    pub interface_type: String,
    pub primary_ip: Option<Ipv4Addr>,
    /// Secondary private IPv4 addresses (the primary excluded), ascending.
    pub secondary_ips: Vec<Ipv4Addr>,
    /// IPv4 /28 prefixes, ascending.
    pub prefixes: Vec<Ipv4Net>,
    /// IPv6 addresses (`Ipv6Addresses`, not the delegated prefixes), ascending.
    pub ipv6_addresses: Vec<Ipv6Addr>,
    /// IPv6 prefixes delegated to the ENI (`Ipv6Prefixes`, /80 each), ascending.
    pub ipv6_prefixes: Vec<Ipv6Net>,
    pub security_groups: Vec<String>,
    pub tags: Tags,
    pub attachment: Option<EniAttachment>,
    /// Non-default connection tracking timeouts (`None` when EC2 reports none set).
    pub conntrack: Option<ConnTrack>,
}

/// Input of `CreateNetworkInterface`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateEniRequest {
    pub subnet_id: String,
    pub security_groups: Vec<String>,
    pub description: String,
    /// `SecondaryPrivateIpAddressCount` (0 = none).
    pub secondary_ips: u32,
    /// `Ipv4PrefixCount` (0 = none).
    pub prefixes: u32,
    /// `Ipv6AddressCount` (0 = not sent; upstream's `createENI` asks for one in IPv6 mode).
    pub ipv6_addresses: u32,
    /// Tags set at creation (`TagSpecifications`, resource type network-interface).
    pub tags: Tags,
    /// `ConnectionTrackingSpecification` (upstream copies the primary ENI's into `createENI`).
    pub conntrack: Option<ConnTrack>,
}

/// Addresses granted by `AssignPrivateIpAddresses` (only the new ones).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignedAddresses {
    pub ips: Vec<Ipv4Addr>,
    pub prefixes: Vec<Ipv4Net>,
}

/// One subnet as `DescribeSubnets` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetDescription {
    pub id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub cidr: Option<Ipv4Net>,
    /// Associated IPv6 CIDRs (`Ipv6CidrBlockAssociationSet` in state `associated`).
    pub ipv6_cidrs: Vec<Ipv6Net>,
    pub available_ips: u32,
    pub tags: Tags,
}

/// An instance's attached ENIs and identity, from `DescribeInstances`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceDescription {
    pub id: String,
    pub instance_type: String,
    pub availability_zone: String,
    pub subnet_id: String,
    pub vpc_id: String,
    /// (network card, device index) of every attached ENI.
    pub attached: Vec<(u32, u32)>,
}

impl InstanceDescription {
    /// The lowest device index not in use on `card` (upstream searches 0..100).
    pub fn free_device_index(&self, card: u32) -> Option<u32> {
        (0..100).find(|d| !self.attached.contains(&(card, *d)))
    }
}

/// Networking limits from `DescribeInstanceTypes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceTypeDescription {
    pub instance_type: String,
    /// Instance-wide `MaximumNetworkInterfaces`.
    pub max_enis: u32,
    pub ipv4_per_eni: u32,
    pub default_card: u32,
    /// (card index, max interfaces).
    pub cards: Vec<(u32, u32)>,
    pub hypervisor: String,
    pub bare_metal: bool,
    pub vcpus: Option<u32>,
}

/// One EC2 Describe filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

impl Filter {
    pub fn new(name: &str, values: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_device_index_skips_used_ones_per_card() {
        let i = InstanceDescription {
            id: "i-1".into(),
            instance_type: "m5.large".into(),
            availability_zone: "a".into(),
            subnet_id: "s".into(),
            vpc_id: "v".into(),
            attached: vec![(0, 0), (0, 1), (1, 0)],
        };
        assert_eq!(i.free_device_index(0), Some(2));
        assert_eq!(i.free_device_index(1), Some(1));
        assert_eq!(i.free_device_index(2), Some(0));
    }
}

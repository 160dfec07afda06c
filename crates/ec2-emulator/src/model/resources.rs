//! The resources of the model: VPCs, subnets, security groups, instance types, instances
//! and network interfaces.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::address_pool::AddressPool;
use super::ipv6_pool::Ipv6Pool;

/// Resource tags, sorted by key.
pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vpc {
    pub id: String,
    pub cidrs: Vec<Ipv4Net>,
    /// Associated IPv6 CIDRs (/56 each); empty in an IPv4-only VPC.
    pub ipv6_cidrs: Vec<Ipv6Net>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub pool: AddressPool,
    /// The subnet's IPv6 /64 and its addresses, if one is associated.
    pub ipv6: Option<Ipv6Pool>,
    /// `AssignIpv6AddressOnCreation`: new ENIs (and instances) get one IPv6 address unless
    /// `Ipv6AddressCount=0` is asked.
    pub assign_ipv6_on_creation: bool,
    pub tags: Tags,
}

impl Subnet {
    pub fn cidr(&self) -> Ipv4Net {
        self.pool.cidr()
    }

    pub fn ipv6_cidr(&self) -> Option<Ipv6Net> {
        self.ipv6.as_ref().map(Ipv6Pool::cidr)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    pub id: String,
    pub vpc_id: String,
    pub name: String,
}

/// The networking limits of an instance type, as `DescribeInstanceTypes` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceTypeInfo {
    pub name: String,
    /// Maximum ENIs per network card, by card index.
    pub cards: BTreeMap<u32, u32>,
    pub default_card: u32,
    /// IPv4 addresses per ENI, the primary included (`Ipv4AddressesPerInterface`).
    pub ipv4_per_eni: u32,
    pub hypervisor: String,
    pub bare_metal: bool,
    pub vcpus: Option<u32>,
}

impl InstanceTypeInfo {
    /// A type with one network card.
    pub fn single_card(name: &str, max_enis: u32, ipv4_per_eni: u32) -> Self {
        Self {
            name: name.to_string(),
            cards: BTreeMap::from([(0, max_enis)]),
            default_card: 0,
            ipv4_per_eni,
            hypervisor: "nitro".to_string(),
            bare_metal: false,
            vcpus: None,
        }
    }

    /// IPv6 addresses per ENI (`Ipv6AddressesPerInterface`): the IPv4 figure, as EC2
    /// documents for `AssignIpv6Addresses` ("as many IPv6 addresses as private IPv4").
    pub fn ipv6_per_eni(&self) -> u32 {
        self.ipv4_per_eni
    }

    /// Prefix delegation needs the Nitro hypervisor or bare metal.
    pub fn supports_prefixes(&self) -> bool {
        self.hypervisor == "nitro" || self.bare_metal
    }

    /// ENIs allowed on `card` (0 for a card the type does not have).
    pub fn max_enis_on(&self, card: u32) -> u32 {
        self.cards.get(&card).copied().unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub instance_type: InstanceTypeInfo,
    pub availability_zone: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub primary_eni: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EniStatus {
    Available,
    InUse,
}

impl EniStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::InUse => "in-use",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub id: String,
    pub instance_id: String,
    pub device_index: u32,
    pub network_card: u32,
    pub delete_on_termination: bool,
    /// Model time of the attach, in Unix seconds.
    pub attach_time: u64,
}

/// A network interface with its addresses. `secondary_ips` and `prefixes` do not include
/// the primary address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eni {
    pub id: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub description: String,
    pub mac: String,
    pub interface_type: String,
    pub groups: BTreeSet<String>,
    pub primary_ip: Ipv4Addr,
    pub secondary_ips: BTreeSet<Ipv4Addr>,
    pub prefixes: BTreeSet<Ipv4Net>,
    /// IPv6 addresses in the order they were assigned (the first is the ENI's primary
    /// IPv6, what IMDS `ipv6` shows for the primary ENI).
    pub ipv6_addresses: Vec<Ipv6Addr>,
    /// Delegated IPv6 /80 prefixes.
    pub ipv6_prefixes: BTreeSet<Ipv6Net>,
    pub tags: Tags,
    pub attachment: Option<Attachment>,
    pub source_dest_check: bool,
    /// Connection tracking timeouts set on the ENI (`ConnectionTrackingSpecification`).
    pub conntrack: ConnTrack,
}

/// An ENI's connection tracking timeouts in seconds; `None`: EC2's default, not reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnTrack {
    pub tcp_established_timeout: Option<u32>,
    pub udp_stream_timeout: Option<u32>,
    pub udp_timeout: Option<u32>,
}

impl ConnTrack {
    /// EC2's ranges (`ConnectionTrackingSpecificationRequest`): TCP established 60–432000,
    /// UDP stream 60–180, UDP 30–60 seconds.
    pub fn out_of_range(&self) -> Option<String> {
        let checks = [
            (
                "TcpEstablishedTimeout",
                self.tcp_established_timeout,
                60,
                432_000,
            ),
            ("UdpStreamTimeout", self.udp_stream_timeout, 60, 180),
            ("UdpTimeout", self.udp_timeout, 30, 60),
        ];
        checks.iter().find_map(|(name, v, lo, hi)| {
            v.filter(|v| v < lo || v > hi)
                .map(|v| format!("{name} {v} is out of range [{lo}, {hi}]"))
        })
    }
}

impl Eni {
    pub fn status(&self) -> EniStatus {
        if self.attachment.is_some() {
            EniStatus::InUse
        } else {
            EniStatus::Available
        }
    }

    /// Addresses counted against the per-ENI limit: the primary, each secondary IP and each
    /// prefix (a /28 counts as one, as EC2 counts it).
    pub fn address_slots(&self) -> u32 {
        1 + self.secondary_ips.len() as u32 + self.prefixes.len() as u32
    }

    /// IPv6 addresses and prefixes counted against the per-ENI IPv6 limit (a /80 as one,
    /// like a /28 for IPv4).
    pub fn ipv6_slots(&self) -> u32 {
        (self.ipv6_addresses.len() + self.ipv6_prefixes.len()) as u32
    }

    /// All private IPv4 addresses, primary first (as IMDS `local-ipv4s` lists them).
    pub fn private_ips(&self) -> Vec<Ipv4Addr> {
        std::iter::once(self.primary_ip)
            .chain(self.secondary_ips.iter().copied())
            .collect()
    }
}

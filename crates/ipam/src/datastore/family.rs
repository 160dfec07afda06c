//! The two address families a datastore holds: IPv4 CIDRs (secondary /32s and /28
//! prefixes) and IPv6 prefixes (/80s in IPv6 mode, upstream's `IPv6Cidrs`). The CIDR
//! records and the address choice are written once, over [`PodNet`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{Ipv4Net, Ipv6Net};

use super::eni::{CidrEntry, Eni};

/// A CIDR type pods get addresses from, with the ENI map that holds it.
pub trait PodNet: Copy + Ord + fmt::Debug + fmt::Display + Send + Sync + 'static {
    /// Its addresses.
    type Addr: Copy + Ord + fmt::Debug + fmt::Display + FromStr + Send + Sync + 'static;
    /// Address length in bits (32 or 128).
    const BITS: u8;
    /// `"4"` or `"6"` (upstream's `CidrInfo.AddressFamily`).
    const FAMILY: &'static str;
    /// Prefix length.
    fn prefix_bits(self) -> u8;
    /// Host bits cleared.
    fn network_only(self) -> Self;
    /// `addr` lies in this CIDR.
    fn holds(self, addr: Self::Addr) -> bool;
    /// The address `offset` above the network address (`None` past the end).
    fn nth(self, offset: u128) -> Option<Self::Addr>;
    /// How far `addr` is above the network address.
    fn offset_of(self, addr: Self::Addr) -> u128;
    /// The ENI's CIDRs of this family.
    fn cidrs(eni: &Eni) -> &BTreeMap<Self, CidrEntry<Self>>;
    /// The ENI's CIDRs of this family, mutable.
    fn cidrs_mut(eni: &mut Eni) -> &mut BTreeMap<Self, CidrEntry<Self>>;
    /// The checkpoint field holding this family's address (`ipv4` or `ipv6`).
    fn checkpoint_field(entry: &crate::checkpoint::CheckpointEntry) -> &str;
    /// Number of addresses in the CIDR (2^(bits − len)).
    fn size(self) -> u128 {
        1u128 << (Self::BITS - self.prefix_bits())
    }
}

impl PodNet for Ipv4Net {
    type Addr = Ipv4Addr;
    const BITS: u8 = 32;
    const FAMILY: &'static str = "4";
    fn prefix_bits(self) -> u8 {
        self.prefix_len()
    }
    fn network_only(self) -> Self {
        self.trunc()
    }
    fn holds(self, addr: Ipv4Addr) -> bool {
        self.contains(&addr)
    }
    fn nth(self, offset: u128) -> Option<Ipv4Addr> {
        if offset >= self.size() {
            return None;
        }
        let base = u128::from(u32::from(self.network()));
        u32::try_from(base + offset).ok().map(Ipv4Addr::from)
    }
    fn offset_of(self, addr: Ipv4Addr) -> u128 {
        u128::from(u32::from(addr).wrapping_sub(u32::from(self.network())))
    }
    fn cidrs(eni: &Eni) -> &BTreeMap<Self, CidrEntry<Self>> {
        &eni.ipv4_cidrs
    }
    fn cidrs_mut(eni: &mut Eni) -> &mut BTreeMap<Self, CidrEntry<Self>> {
        &mut eni.ipv4_cidrs
    }
    fn checkpoint_field(entry: &crate::checkpoint::CheckpointEntry) -> &str {
        &entry.ipv4
    }
}

impl PodNet for Ipv6Net {
    type Addr = Ipv6Addr;
    const BITS: u8 = 128;
    const FAMILY: &'static str = "6";
    fn prefix_bits(self) -> u8 {
        self.prefix_len()
    }
    fn network_only(self) -> Self {
        self.trunc()
    }
    fn holds(self, addr: Ipv6Addr) -> bool {
        self.contains(&addr)
    }
    fn nth(self, offset: u128) -> Option<Ipv6Addr> {
        // A /0 holds 2^128 addresses, more than u128 can count: every offset fits.
        if self.prefix_bits() > 0 && offset >= self.size() {
            return None;
        }
        u128::from(self.network())
            .checked_add(offset)
            .map(Ipv6Addr::from)
    }
    fn offset_of(self, addr: Ipv6Addr) -> u128 {
        u128::from(addr).wrapping_sub(u128::from(self.network()))
    }
    fn size(self) -> u128 {
        1u128
            .checked_shl(u32::from(128 - self.prefix_bits()))
            .unwrap_or(u128::MAX)
    }
    fn cidrs(eni: &Eni) -> &BTreeMap<Self, CidrEntry<Self>> {
        &eni.ipv6_cidrs
    }
    fn cidrs_mut(eni: &mut Eni) -> &mut BTreeMap<Self, CidrEntry<Self>> {
        &mut eni.ipv6_cidrs
    }
    fn checkpoint_field(entry: &crate::checkpoint::CheckpointEntry) -> &str {
        &entry.ipv6
    }
}

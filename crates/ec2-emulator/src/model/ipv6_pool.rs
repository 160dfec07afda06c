//! IPv6 bookkeeping of one subnet /64, as EC2 does it: the first four and the last
//! address are reserved, single addresses are handed out at most once, and delegated
//! prefixes are /80 blocks aligned inside the /64 that hold no single address.
//!
//! Choice (docs/ec2-emulator.md "IPv6"): single addresses are taken lowest first from the
//! first /80 block (which can never be delegated, since it holds the reserved addresses), and
//! prefixes lowest first from the second block on; real EC2 picks both at random.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

/// Length of a delegated IPv6 prefix.
pub const PREFIX_LEN: u8 = 80;
/// /80 blocks in a /64.
const BLOCKS: u32 = 1 << (PREFIX_LEN - 64);
/// Bits of an offset below the block index.
const BLOCK_SHIFT: u32 = 128 - PREFIX_LEN as u32;

/// Why an IPv6 address or prefix could not be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Claim6Error {
    #[error("outside the subnet's IPv6 CIDR")]
    OutOfRange,
    #[error("reserved by AWS")]
    Reserved,
    #[error("already in use")]
    InUse,
    #[error("not a /80 aligned inside the subnet")]
    NotAPrefix,
}

/// The used/free state of one subnet's IPv6 /64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Pool {
    cidr: Ipv6Net,
    /// Offsets (from the network address) of single addresses handed out.
    addresses: BTreeSet<u64>,
    /// Indices of the /80 blocks delegated as prefixes.
    blocks: BTreeSet<u32>,
    /// No block below this one is free (keeps allocation cheap when thousands are taken).
    lowest_maybe_free: u32,
}

impl Ipv6Pool {
    /// A pool for `cidr`; EC2 subnet IPv6 CIDRs are /64.
    pub fn new(cidr: Ipv6Net) -> Option<Self> {
        (cidr.prefix_len() == 64).then(|| Self {
            cidr: cidr.trunc(),
            addresses: BTreeSet::new(),
            blocks: BTreeSet::new(),
            lowest_maybe_free: 1,
        })
    }

    pub fn cidr(&self) -> Ipv6Net {
        self.cidr
    }

    fn addr(&self, offset: u64) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.cidr.network()) + u128::from(offset))
    }

    fn offset(&self, ip: Ipv6Addr) -> Option<u64> {
        self.cidr
            .contains(&ip)
            .then(|| (u128::from(ip) - u128::from(self.cidr.network())) as u64)
    }

    fn is_reserved(offset: u64) -> bool {
        offset <= 3 || offset == u64::MAX
    }

    fn block_of(offset: u64) -> u32 {
        (offset >> BLOCK_SHIFT) as u32
    }

    /// Whether block `b` can be delegated: not the first or last (reserved addresses), not
    /// delegated, and no single address in it.
    fn block_free(&self, b: u32) -> bool {
        let start = u64::from(b) << BLOCK_SHIFT;
        let end = start + ((1u64 << BLOCK_SHIFT) - 1);
        b > 0
            && b < BLOCKS - 1
            && !self.blocks.contains(&b)
            && self.addresses.range(start..=end).next().is_none()
    }

    /// Whether `ip` is handed out, alone or inside a delegated prefix.
    pub fn is_used(&self, ip: Ipv6Addr) -> bool {
        self.offset(ip).is_some_and(|o| {
            self.addresses.contains(&o) || self.blocks.contains(&Self::block_of(o))
        })
    }

    /// Hands out the lowest free single address.
    pub fn allocate_address(&mut self) -> Option<Ipv6Addr> {
        let mut offset = 4u64;
        loop {
            if !self.addresses.contains(&offset) && !self.blocks.contains(&Self::block_of(offset)) {
                break;
            }
            offset = offset.checked_add(1).filter(|o| !Self::is_reserved(*o))?;
        }
        self.addresses.insert(offset);
        Some(self.addr(offset))
    }

    /// Claims a given address (`Ipv6Addresses.N`).
    pub fn claim_address(&mut self, ip: Ipv6Addr) -> Result<(), Claim6Error> {
        let offset = self.offset(ip).ok_or(Claim6Error::OutOfRange)?;
        if Self::is_reserved(offset) {
            return Err(Claim6Error::Reserved);
        }
        if self.is_used(ip) {
            return Err(Claim6Error::InUse);
        }
        self.addresses.insert(offset);
        Ok(())
    }

    fn prefix_of(&self, block: u32) -> Option<Ipv6Net> {
        Ipv6Net::new(self.addr(u64::from(block) << BLOCK_SHIFT), PREFIX_LEN).ok()
    }

    /// Delegates the lowest free /80.
    pub fn allocate_prefix(&mut self) -> Option<Ipv6Net> {
        let b = (self.lowest_maybe_free..BLOCKS - 1).find(|b| self.block_free(*b))?;
        self.blocks.insert(b);
        self.lowest_maybe_free = b + 1;
        self.prefix_of(b)
    }

    /// Delegates a given /80 (`Ipv6Prefix.N`).
    pub fn claim_prefix(&mut self, prefix: Ipv6Net) -> Result<(), Claim6Error> {
        let b = self.block_index(prefix)?;
        if b == 0 || b == BLOCKS - 1 {
            return Err(Claim6Error::Reserved);
        }
        if !self.block_free(b) {
            return Err(Claim6Error::InUse);
        }
        self.blocks.insert(b);
        Ok(())
    }

    fn block_index(&self, prefix: Ipv6Net) -> Result<u32, Claim6Error> {
        if prefix.prefix_len() != PREFIX_LEN || prefix.trunc() != prefix {
            return Err(Claim6Error::NotAPrefix);
        }
        self.offset(prefix.network())
            .map(Self::block_of)
            .ok_or(Claim6Error::OutOfRange)
    }

    /// Returns an address; false if it was not handed out.
    pub fn release_address(&mut self, ip: Ipv6Addr) -> bool {
        self.offset(ip).is_some_and(|o| self.addresses.remove(&o))
    }

    /// Returns a delegated /80; false if it was not delegated.
    pub fn release_prefix(&mut self, prefix: Ipv6Net) -> bool {
        let Ok(b) = self.block_index(prefix) else {
            return false;
        };
        let removed = self.blocks.remove(&b);
        if removed {
            self.lowest_maybe_free = self.lowest_maybe_free.min(b);
        }
        removed
    }

    /// Delegated prefixes, as a count (for the control API's state).
    pub fn delegated(&self) -> usize {
        self.blocks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pool() -> Ipv6Pool {
        Ipv6Pool::new("2600:1f14:c0de:100::/64".parse().unwrap()).unwrap()
    }

    #[test]
    fn only_a_slash_64_makes_a_pool() {
        assert!(Ipv6Pool::new("2600::/56".parse().unwrap()).is_none());
        assert!(Ipv6Pool::new("2600::/80".parse().unwrap()).is_none());
    }

    #[test]
    fn addresses_skip_the_reserved_ones_and_prefixes_start_at_the_second_block() {
        let mut p = pool();
        assert_eq!(
            p.allocate_address(),
            Some("2600:1f14:c0de:100::4".parse().unwrap())
        );
        assert_eq!(
            p.allocate_prefix(),
            Some("2600:1f14:c0de:100:1::/80".parse().unwrap())
        );
        assert_eq!(
            p.claim_address("2600:1f14:c0de:100::2".parse().unwrap()),
            Err(Claim6Error::Reserved)
        );
        assert_eq!(
            p.claim_address("2600:1f14:c0de:100:1::9".parse().unwrap()),
            Err(Claim6Error::InUse),
            "inside a delegated prefix"
        );
        assert_eq!(
            p.claim_address("2600:1f14:c0de:101::9".parse().unwrap()),
            Err(Claim6Error::OutOfRange)
        );
        p.claim_address("2600:1f14:c0de:100:2::9".parse().unwrap())
            .unwrap();
        assert_eq!(
            p.allocate_prefix(),
            Some("2600:1f14:c0de:100:3::/80".parse().unwrap()),
            "a block holding a single address is not delegated"
        );
        assert_eq!(
            p.claim_prefix("2600:1f14:c0de:100:4::1/80".parse().unwrap()),
            Err(Claim6Error::NotAPrefix)
        );
        assert_eq!(
            p.claim_prefix("2600:1f14:c0de:100::/80".parse().unwrap()),
            Err(Claim6Error::Reserved)
        );
        assert!(p.release_prefix("2600:1f14:c0de:100:1::/80".parse().unwrap()));
        assert!(!p.release_prefix("2600:1f14:c0de:100:1::/80".parse().unwrap()));
        assert_eq!(
            p.allocate_prefix(),
            Some("2600:1f14:c0de:100:1::/80".parse().unwrap()),
            "a released block is reused"
        );
    }

    #[test]
    fn a_slash_64_holds_65534_prefixes_then_runs_out() {
        let mut p = pool();
        let mut n = 0;
        while p.allocate_prefix().is_some() {
            n += 1;
        }
        assert_eq!(n, 65_534);
        assert_eq!(p.delegated(), 65_534);
        assert!(
            p.allocate_address().is_some(),
            "the first block still has room"
        );
    }

    proptest! {
        /// Whatever the sequence, prefixes are aligned /80s inside the /64, never overlap
        /// each other or a single address, and nothing is handed out twice.
        #[test]
        fn prefixes_and_addresses_never_overlap(ops in proptest::collection::vec(0u8..4, 0..150)) {
            let mut p = pool();
            let mut addrs: Vec<Ipv6Addr> = Vec::new();
            let mut prefixes: Vec<Ipv6Net> = Vec::new();
            for op in ops {
                match op {
                    0 => addrs.extend(p.allocate_address()),
                    1 => prefixes.extend(p.allocate_prefix()),
                    2 if !prefixes.is_empty() => {
                        let pf = prefixes.remove(prefixes.len() / 2);
                        prop_assert!(p.release_prefix(pf));
                    }
                    3 if !addrs.is_empty() => {
                        let ip = addrs.remove(0);
                        prop_assert!(p.release_address(ip));
                    }
                    _ => {}
                }
                let unique: BTreeSet<_> = prefixes.iter().collect();
                prop_assert_eq!(unique.len(), prefixes.len());
                for pf in &prefixes {
                    prop_assert_eq!(pf.prefix_len(), 80);
                    prop_assert_eq!(pf.trunc(), *pf);
                    prop_assert!(p.cidr().contains(pf));
                    prop_assert!(addrs.iter().all(|a| !pf.contains(a)));
                }
                let unique: BTreeSet<_> = addrs.iter().collect();
                prop_assert_eq!(unique.len(), addrs.len());
            }
        }
    }
}

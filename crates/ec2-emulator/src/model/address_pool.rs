//! Address bookkeeping of one subnet, as EC2 does it: the first four addresses and the last
//! one are reserved, every address is handed out at most once, and /28 prefixes are aligned
//! blocks of 16 free, non-reserved addresses.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Addresses in an IPv4 /28 prefix.
pub const PREFIX_SIZE: u32 = 16;

/// Why an address could not be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("address is outside the subnet")]
    OutOfRange,
    #[error("address is reserved by AWS")]
    Reserved,
    #[error("address is already in use")]
    InUse,
}

/// The used/free state of every address of one subnet CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPool {
    cidr: Ipv4Net,
    /// Offsets (from the network address) handed out as single IPs or inside prefixes.
    used: BTreeSet<u32>,
}

impl AddressPool {
    /// A pool for `cidr`; EC2 subnets are /16 to /28.
    pub fn new(cidr: Ipv4Net) -> Option<Self> {
        (16..=28).contains(&cidr.prefix_len()).then(|| Self {
            cidr: cidr.trunc(),
            used: BTreeSet::new(),
        })
    }

    pub fn cidr(&self) -> Ipv4Net {
        self.cidr
    }

    fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.cidr.prefix_len()))
    }

    fn is_reserved(&self, offset: u32) -> bool {
        offset <= 3 || offset == self.size() - 1
    }

    fn addr(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.network()) + offset)
    }

    fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        self.cidr
            .contains(&ip)
            .then(|| u32::from(ip) - u32::from(self.cidr.network()))
    }

    /// Free addresses, as `AvailableIpAddressCount` reports them.
    pub fn available(&self) -> u32 {
        self.size() - 5 - self.used.len() as u32
    }

    /// Whether `ip` is currently handed out.
    pub fn is_used(&self, ip: Ipv4Addr) -> bool {
        self.offset(ip).is_some_and(|o| self.used.contains(&o))
    }

    /// Hands out the lowest free address.
    pub fn allocate_ip(&mut self) -> Option<Ipv4Addr> {
        let offset = (4..self.size() - 1).find(|o| !self.used.contains(o))?;
        self.used.insert(offset);
        Some(self.addr(offset))
    }

    /// Claims a specific address (`PrivateIpAddress` given by the caller).
    pub fn claim_ip(&mut self, ip: Ipv4Addr) -> Result<(), ClaimError> {
        let offset = self.offset(ip).ok_or(ClaimError::OutOfRange)?;
        if self.is_reserved(offset) {
            return Err(ClaimError::Reserved);
        }
        if !self.used.insert(offset) {
            return Err(ClaimError::InUse);
        }
        Ok(())
    }

    /// Hands out the lowest aligned /28 whose 16 addresses are all free and unreserved.
    pub fn allocate_prefix(&mut self) -> Option<Ipv4Net> {
        let start = (0..self.size() / PREFIX_SIZE)
            .map(|block| block * PREFIX_SIZE)
            .find(|start| {
                (*start..start + PREFIX_SIZE)
                    .all(|o| !self.is_reserved(o) && !self.used.contains(&o))
            })?;
        self.used.extend(start..start + PREFIX_SIZE);
        Ipv4Net::new(self.addr(start), 28).ok()
    }

    /// Returns an address to the pool; false if it was not handed out.
    pub fn release_ip(&mut self, ip: Ipv4Addr) -> bool {
        self.offset(ip).is_some_and(|o| self.used.remove(&o))
    }

    /// Returns a whole /28 to the pool; false if any of its addresses was not handed out.
    pub fn release_prefix(&mut self, prefix: Ipv4Net) -> bool {
        let Some(start) = self.offset(prefix.network()) else {
            return false;
        };
        if prefix.prefix_len() != 28
            || !(start..start + PREFIX_SIZE).all(|o| self.used.contains(&o))
        {
            return false;
        }
        for o in start..start + PREFIX_SIZE {
            self.used.remove(&o);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pool(cidr: &str) -> AddressPool {
        AddressPool::new(cidr.parse().unwrap()).unwrap()
    }

    #[test]
    fn a_slash_27_has_27_usable_addresses_and_skips_the_reserved_ones() {
        let mut p = pool("10.0.0.0/27");
        assert_eq!(p.available(), 27);
        let ips: Vec<_> = std::iter::from_fn(|| p.allocate_ip()).collect();
        assert_eq!(ips.len(), 27);
        assert_eq!(ips[0], Ipv4Addr::new(10, 0, 0, 4));
        assert_eq!(ips[26], Ipv4Addr::new(10, 0, 0, 30));
        assert_eq!(p.available(), 0);
        assert_eq!(p.allocate_ip(), None);
    }

    #[test]
    fn prefixes_avoid_reserved_blocks_and_used_addresses() {
        let mut p = pool("10.0.0.0/26");
        // 10.0.0.0/28 holds .0-.3, 10.0.0.48/28 holds the broadcast address.
        assert_eq!(p.allocate_prefix(), Some("10.0.0.16/28".parse().unwrap()));
        p.claim_ip(Ipv4Addr::new(10, 0, 0, 40)).unwrap();
        assert_eq!(p.allocate_prefix(), None);
        assert!(p.release_ip(Ipv4Addr::new(10, 0, 0, 40)));
        assert_eq!(p.allocate_prefix(), Some("10.0.0.32/28".parse().unwrap()));
        assert!(p.release_prefix("10.0.0.16/28".parse().unwrap()));
        assert!(!p.release_prefix("10.0.0.16/28".parse().unwrap()));
    }

    #[test]
    fn claims_are_checked() {
        let mut p = pool("10.0.0.0/24");
        assert_eq!(
            p.claim_ip(Ipv4Addr::new(10, 0, 0, 2)),
            Err(ClaimError::Reserved)
        );
        assert_eq!(
            p.claim_ip(Ipv4Addr::new(10, 0, 0, 255)),
            Err(ClaimError::Reserved)
        );
        assert_eq!(
            p.claim_ip(Ipv4Addr::new(10, 0, 1, 5)),
            Err(ClaimError::OutOfRange)
        );
        assert_eq!(p.claim_ip(Ipv4Addr::new(10, 0, 0, 9)), Ok(()));
        assert_eq!(
            p.claim_ip(Ipv4Addr::new(10, 0, 0, 9)),
            Err(ClaimError::InUse)
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Ip,
        Prefix,
        ReleaseIp(usize),
        ReleasePrefix(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Ip),
            Just(Op::Prefix),
            any::<usize>().prop_map(Op::ReleaseIp),
            any::<usize>().prop_map(Op::ReleasePrefix),
        ]
    }

    proptest! {
        /// Whatever the sequence, no address is handed out twice, prefixes are aligned /28s
        /// inside the subnet, and the free count is exact.
        #[test]
        fn addresses_are_unique_and_counted(ops in proptest::collection::vec(op(), 0..200)) {
            let mut p = pool("10.1.0.0/25");
            let mut ips: Vec<Ipv4Addr> = Vec::new();
            let mut prefixes: Vec<Ipv4Net> = Vec::new();
            for op in ops {
                match op {
                    Op::Ip => if let Some(ip) = p.allocate_ip() { ips.push(ip) },
                    Op::Prefix => if let Some(pf) = p.allocate_prefix() { prefixes.push(pf) },
                    Op::ReleaseIp(i) if !ips.is_empty() => {
                        let ip = ips.swap_remove(i % ips.len());
                        prop_assert!(p.release_ip(ip));
                    }
                    Op::ReleasePrefix(i) if !prefixes.is_empty() => {
                        let pf = prefixes.swap_remove(i % prefixes.len());
                        prop_assert!(p.release_prefix(pf));
                    }
                    _ => {}
                }
                let mut seen = std::collections::BTreeSet::new();
                for ip in &ips {
                    prop_assert!(seen.insert(*ip));
                }
                for pf in &prefixes {
                    prop_assert_eq!(pf.prefix_len(), 28);
                    prop_assert_eq!(u32::from(pf.network()) % 16, 0);
                    prop_assert!(p.cidr().contains(pf));
                    for ip in pf.hosts().chain([pf.network(), pf.broadcast()]) {
                        prop_assert!(seen.insert(ip));
                    }
                }
                prop_assert_eq!(p.available() as usize, 128 - 5 - seen.len());
            }
        }
    }
}

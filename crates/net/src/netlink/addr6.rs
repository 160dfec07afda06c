//! IPv6 addresses (with their DAD state), as egress-cni's `v6if0` and IPv6 pods need them
//! (upstream `cmdAddEgressV6` in `cmd/egress-cni-plugin`).

use std::net::IpAddr;

use futures_util::TryStreamExt;
use ipnet::Ipv6Net;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};

use super::{Address6, NetlinkError, NetlinkHandle, req_err};

impl NetlinkHandle {
    /// IPv6 addresses (with their "still tentative" state), optionally of one link.
    pub async fn addresses_v6(&self, ifindex: Option<u32>) -> Result<Vec<Address6>, NetlinkError> {
        let mut req = self.handle.address().get();
        if let Some(index) = ifindex {
            req = req.set_link_index_filter(index);
        }
        let msgs: Vec<_> = req
            .execute()
            .try_collect()
            .await
            .map_err(req_err("list IPv6 addresses"))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.family == AddressFamily::Inet6)
            .filter(|m| ifindex.is_none_or(|i| m.header.index == i))
            .filter_map(|m| {
                let mut tentative = m.header.flags.contains(AddressHeaderFlags::Tentative);
                let mut ip = None;
                for attr in &m.attributes {
                    match attr {
                        AddressAttribute::Address(IpAddr::V6(a)) => ip = Some(*a),
                        AddressAttribute::Flags(f) if f.contains(AddressFlags::Tentative) => {
                            tentative = true;
                        }
                        _ => {}
                    }
                }
                Some(Address6 {
                    ifindex: m.header.index,
                    addr: Ipv6Net::new(ip?, m.header.prefix_len).ok()?,
                    tentative,
                })
            })
            .collect())
    }

    /// Adds (or replaces) the IPv6 `addr` on link `ifindex` (DAD starts; see
    /// [`crate::kernel::wait_for_v6`]).
    pub async fn replace_address_v6(
        &self,
        ifindex: u32,
        addr: Ipv6Net,
    ) -> Result<(), NetlinkError> {
        self.handle
            .address()
            .add(ifindex, IpAddr::V6(addr.addr()), addr.prefix_len())
            .replace()
            .execute()
            .await
            .map_err(req_err(format!("add address {addr} to link {ifindex}")))
    }
}

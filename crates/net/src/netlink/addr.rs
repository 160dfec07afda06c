//! IPv4 address operations.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};

use super::{Address, NetlinkError, NetlinkHandle, Scope, ok_if_missing, req_err};

/// The IPv4 address of a kernel address message (`None` for other families).
fn parse_addr(msg: &AddressMessage) -> Option<Address> {
    if msg.header.family != AddressFamily::Inet {
        return None;
    }
    // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on p2p links).
    let mut ip = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(IpAddr::V4(v4)) => ip = Some(*v4),
            AddressAttribute::Address(IpAddr::V4(v4)) if ip.is_none() => ip = Some(*v4),
            _ => {}
        }
    }
    let addr = Ipv4Net::new(ip?, msg.header.prefix_len).ok()?;
    Some(Address {
        ifindex: msg.header.index,
        addr,
        scope: Scope::from_raw(u8::from(msg.header.scope)),
    })
}

impl NetlinkHandle {
    /// Raw IPv4 address messages, optionally of one link.
    async fn address_messages(
        &self,
        ifindex: Option<u32>,
    ) -> Result<Vec<(AddressMessage, Address)>, NetlinkError> {
        let mut req = self.handle.address().get();
        if let Some(index) = ifindex {
            req = req.set_link_index_filter(index);
        }
        let msgs: Vec<AddressMessage> = req
            .execute()
            .try_collect()
            .await
            .map_err(req_err("list addresses"))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| parse_addr(&m).map(|a| (m, a)))
            .filter(|(_, a)| ifindex.is_none_or(|i| a.ifindex == i))
            .collect())
    }

    /// IPv4 addresses, optionally only those of link `ifindex`.
    pub async fn addresses(&self, ifindex: Option<u32>) -> Result<Vec<Address>, NetlinkError> {
        Ok(self
            .address_messages(ifindex)
            .await?
            .into_iter()
            .map(|(_, a)| a)
            .collect())
    }

    /// Adds (or replaces) `addr` on link `ifindex`.
    pub async fn replace_address(&self, ifindex: u32, addr: Ipv4Net) -> Result<(), NetlinkError> {
        self.handle
            .address()
            .add(ifindex, IpAddr::V4(addr.addr()), addr.prefix_len())
            .replace()
            .execute()
            .await
            .map_err(req_err(format!("add address {addr} to link {ifindex}")))
    }

    /// Adds (or replaces) the IPv4 `addr` on link `ifindex` with `scope link` (not usable as
    /// a source towards other destinations; egress-cni's host veth, upstream
    /// `setupHostVethV4`).
    pub async fn replace_link_scope_address(
        &self,
        ifindex: u32,
        addr: Ipv4Net,
    ) -> Result<(), NetlinkError> {
        let mut req = self
            .handle
            .address()
            .add(ifindex, IpAddr::V4(addr.addr()), addr.prefix_len())
            .replace();
        req.message_mut().header.scope = AddressScope::Link;
        req.execute().await.map_err(req_err(format!(
            "add address {addr} scope link to link {ifindex}"
        )))
    }

    /// Deletes `addr` from link `ifindex`; `Ok(false)` when it was not there.
    pub async fn delete_address(&self, ifindex: u32, addr: Ipv4Net) -> Result<bool, NetlinkError> {
        let found = self
            .address_messages(Some(ifindex))
            .await?
            .into_iter()
            .find(|(_, a)| a.addr == addr);
        let Some((msg, _)) = found else {
            return Ok(false);
        };
        let res = self
            .handle
            .address()
            .del(msg)
            .execute()
            .await
            .map_err(req_err(format!(
                "delete address {addr} from link {ifindex}"
            )));
        ok_if_missing(res)
    }
}

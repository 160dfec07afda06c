//! Neighbour entries: IPv4 (ARP) listing, and permanent entries of either family.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};

use super::{Mac, Neighbour, NetlinkError, NetlinkHandle, req_err};

fn parse_neighbour(msg: &NeighbourMessage) -> Option<Neighbour> {
    if msg.header.family != AddressFamily::Inet {
        return None;
    }
    let mut ip = None;
    let mut mac = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(*a)),
            NeighbourAttribute::LinkLayerAddress(b) => mac = Mac::from_slice(b),
            _ => {}
        }
    }
    Some(Neighbour {
        ifindex: msg.header.ifindex,
        ip: ip?,
        mac,
        permanent: msg.header.state == NeighbourState::Permanent,
    })
}

impl NetlinkHandle {
    /// IPv4 neighbour entries, optionally of one link.
    pub async fn neighbours(&self, ifindex: Option<u32>) -> Result<Vec<Neighbour>, NetlinkError> {
        let msgs: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute()
            .try_collect()
            .await
            .map_err(req_err("list neighbours"))?;
        Ok(msgs
            .iter()
            .filter_map(parse_neighbour)
            .filter(|n| ifindex.is_none_or(|i| n.ifindex == i))
            .collect())
    }

    /// Adds or replaces the permanent entry `ip → mac` (ARP or NDP) on link `ifindex`.
    pub async fn replace_permanent_neighbour(
        &self,
        ifindex: u32,
        ip: IpAddr,
        mac: Mac,
    ) -> Result<(), NetlinkError> {
        self.handle
            .neighbours()
            .add(ifindex, ip)
            .link_layer_address(&mac.0)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(req_err(format!(
                "add neighbour {ip} lladdr {mac} on link {ifindex}"
            )))
    }
}

//! Link operations: list, find by name or MAC, MTU/up, delete, veth pairs across namespaces.

use std::os::fd::AsRawFd;

use futures_util::TryStreamExt;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVlan};

use super::{Link, Mac, NetlinkError, NetlinkHandle, ok_if_missing, req_err};
use crate::netns::Netns;

/// Converts a kernel link message into a [`Link`].
fn parse_link(msg: &LinkMessage) -> Link {
    let mut link = Link {
        name: String::new(),
        index: msg.header.index,
        mac: None,
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
        kind: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Address(bytes) => link.mac = Mac::from_slice(bytes),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        link.kind = Some(kind.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// Parameters of a veth pair created in this handle's namespace whose peer is placed
/// directly into another namespace (`P`: the kernel's namespace handle, [`Netns`] for the
/// real one).
#[derive(Debug, Clone)]
pub struct VethPair<'a, P: ?Sized = Netns> {
    /// Name of the end that stays in this handle's namespace.
    pub name: &'a str,
    /// MTU of both ends.
    pub mtu: u32,
    /// Bring this end up on creation.
    pub up: bool,
    /// Name of the peer end (in `peer_netns`).
    pub peer_name: &'a str,
    /// MAC of the peer end (kernel-chosen when `None`).
    pub peer_mac: Option<Mac>,
    /// Namespace of the peer end.
    pub peer_netns: &'a P,
}

/// A VLAN link to create on a parent link (a branch ENI's `vlan.eth.<id>` on the trunk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanLink<'a> {
    /// Name of the new link.
    pub name: &'a str,
    /// 802.1Q VLAN id (1–4094).
    pub vlan_id: u16,
    /// Index of the parent (trunk) link.
    pub parent: u32,
    /// MAC of the new link (the branch ENI's).
    pub mac: Mac,
}

impl NetlinkHandle {
    /// All links of the namespace.
    pub async fn links(&self) -> Result<Vec<Link>, NetlinkError> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(req_err("list links"))?;
        Ok(msgs.iter().map(parse_link).collect())
    }

    /// The link called `name`, if any.
    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let res: Result<Vec<LinkMessage>, _> = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_collect()
            .await;
        let res = res.map_err(req_err(format!("get link {name}")));
        match res {
            Ok(msgs) => Ok(msgs.first().map(parse_link)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets the MTU (when given) and brings the link up.
    pub async fn set_link_up(&self, index: u32, mtu: Option<u32>) -> Result<(), NetlinkError> {
        let mut builder = LinkUnspec::new_with_index(index).up();
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        self.handle
            .link()
            .set(builder.build())
            .execute()
            .await
            .map_err(req_err(format!("set link {index} up (mtu {mtu:?})")))
    }

    /// Deletes the link called `name`; `Ok(false)` when it does not exist.
    pub async fn delete_link_by_name(&self, name: &str) -> Result<bool, NetlinkError> {
        let Some(link) = self.link_by_name(name).await? else {
            return Ok(false);
        };
        let res = self
            .handle
            .link()
            .del(link.index)
            .execute()
            .await
            .map_err(req_err(format!("delete link {name}")));
        ok_if_missing(res)
    }

    /// Creates a dummy link `name` with `mtu`, down.
    pub async fn create_dummy(&self, name: &str, mtu: u32) -> Result<(), NetlinkError> {
        let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Dummy)
            .name(name.to_string())
            .mtu(mtu)
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(req_err(format!("create dummy link {name}")))
    }

    /// Creates the VLAN link `vlan` (down).
    pub async fn create_vlan(&self, vlan: &VlanLink<'_>) -> Result<(), NetlinkError> {
        let msg = LinkVlan::new(vlan.name, vlan.parent, vlan.vlan_id)
            .address(vlan.mac.0.to_vec())
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(req_err(format!(
                "create VLAN link {} (id {}, parent {}, MAC {})",
                vlan.name, vlan.vlan_id, vlan.parent, vlan.mac
            )))
    }

    /// Creates a veth pair: `pair.name` here, `pair.peer_name` directly in `pair.peer_netns`
    /// (one atomic request: on failure neither end exists).
    pub async fn create_veth(&self, pair: &VethPair<'_>) -> Result<(), NetlinkError> {
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(pair.peer_name.to_string())
            .mtu(pair.mtu)
            .setns_by_fd(pair.peer_netns.file().as_raw_fd());
        if let Some(mac) = pair.peer_mac {
            peer = peer.address(mac.0.to_vec());
        }
        let mut builder = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(pair.name.to_string())
            .mtu(pair.mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
        if pair.up {
            builder = builder.up();
        }
        self.handle
            .link()
            .add(builder.build())
            .execute()
            .await
            .map_err(req_err(format!(
                "create veth pair {} (peer {} in {})",
                pair.name,
                pair.peer_name,
                pair.peer_netns.path().display()
            )))
    }
}

//! Read-only snapshot of a namespace's IPv4 networking (links, addresses, routes of every
//! table, rules, permanent neighbours) with interface names instead of indexes, so two
//! snapshots can be compared (tests, CNI CHECK).

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

use crate::kernel::Kernel;
use crate::netlink::{Family, Mac, NetlinkError, NetlinkHandle, RouteKind, Rule, Scope};
use crate::netns::Netns;

/// A link as seen in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LinkState {
    /// Name.
    pub name: String,
    /// Hardware address.
    pub mac: Option<Mac>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// Link kind (`veth`, …).
    pub kind: Option<String>,
}

/// An address as seen in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AddressState {
    /// Interface name.
    pub dev: String,
    /// Address and prefix length.
    pub addr: Ipv4Net,
    /// Scope.
    pub scope: Scope,
}

/// A route as seen in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteState {
    /// Table.
    pub table: u32,
    /// Destination.
    pub dst: IpNet,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface name.
    pub dev: Option<String>,
    /// Scope.
    pub scope: Scope,
    /// Preferred source.
    pub pref_src: Option<IpAddr>,
    /// Type.
    pub kind: RouteKind,
}

/// A permanent neighbour entry as seen in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NeighbourState {
    /// Interface name.
    pub dev: String,
    /// IP address.
    pub ip: IpAddr,
    /// Link-layer address.
    pub mac: Option<Mac>,
}

/// Everything IPv4 a namespace routes with. All lists are sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetnsState {
    /// Links.
    pub links: Vec<LinkState>,
    /// IPv4 addresses.
    pub addresses: Vec<AddressState>,
    /// IPv4 routes of all tables.
    pub routes: Vec<RouteState>,
    /// IPv4 rules.
    pub rules: Vec<Rule>,
    /// Permanent IPv4 neighbour entries (dynamic ones depend on traffic and are left out).
    pub neighbours: Vec<NeighbourState>,
}

impl NetnsState {
    /// Captures the state of the namespace `nl` is bound to.
    pub async fn capture<K: Kernel>(nl: &K) -> Result<Self, NetlinkError> {
        let links = nl.links().await?;
        let names: HashMap<u32, String> = links.iter().map(|l| (l.index, l.name.clone())).collect();
        let name = |i: u32| names.get(&i).cloned().unwrap_or_else(|| format!("#{i}"));
        let mut state = NetnsState {
            links: links
                .iter()
                .map(|l| LinkState {
                    name: l.name.clone(),
                    mac: l.mac,
                    mtu: l.mtu,
                    up: l.up,
                    kind: l.kind.clone(),
                })
                .collect(),
            addresses: nl
                .addresses(None)
                .await?
                .into_iter()
                .map(|a| AddressState {
                    dev: name(a.ifindex),
                    addr: a.addr,
                    scope: a.scope,
                })
                .collect(),
            routes: nl
                .routes(Family::V4, None)
                .await?
                .into_iter()
                .map(|r| RouteState {
                    table: r.table,
                    dst: r.dst,
                    gateway: r.gateway,
                    dev: r.oif.map(name),
                    scope: r.scope,
                    pref_src: r.pref_src,
                    kind: r.kind,
                })
                .collect(),
            rules: nl.rules(Family::V4).await?,
            neighbours: nl
                .neighbours(None)
                .await?
                .into_iter()
                .filter(|n| n.permanent)
                .map(|n| NeighbourState {
                    dev: name(n.ifindex),
                    ip: n.ip,
                    mac: n.mac,
                })
                .collect(),
        };
        state.links.sort();
        state.addresses.sort();
        state.routes.sort();
        state.rules.sort();
        state.neighbours.sort();
        Ok(state)
    }

    /// Captures the state of `ns`.
    pub async fn capture_in(ns: &Netns) -> Result<Self, NetlinkError> {
        Self::capture(&NetlinkHandle::in_netns(ns)?).await
    }

    /// The link called `name`.
    pub fn link(&self, name: &str) -> Option<&LinkState> {
        self.links.iter().find(|l| l.name == name)
    }

    /// Routes of one table, excluding the kernel's `local`/`broadcast` entries.
    pub fn unicast_routes(&self, table: u32) -> Vec<&RouteState> {
        self.routes
            .iter()
            .filter(|r| r.table == table && r.kind == RouteKind::Unicast)
            .collect()
    }

    /// Rules with the given priority.
    pub fn rules_at(&self, priority: u32) -> Vec<&Rule> {
        self.rules
            .iter()
            .filter(|r| r.priority == Some(priority))
            .collect()
    }

    /// Addresses of one interface.
    pub fn addresses_of(&self, dev: &str) -> Vec<Ipv4Net> {
        self.addresses
            .iter()
            .filter(|a| a.dev == dev)
            .map(|a| a.addr)
            .collect()
    }
}

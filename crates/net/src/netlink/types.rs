//! Plain, comparable descriptions of kernel objects, used both to request changes and to
//! report state. Routes and rules are one type for both IP families: the family is that of
//! their addresses.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

pub use crate::firewall::runner::Family;

/// The family of `ip`.
pub fn family_of(ip: IpAddr) -> Family {
    match ip {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The MAC from a netlink attribute (`None` unless exactly 6 bytes).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 6]>::try_from(bytes).ok().map(Mac)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Error parsing a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}")]
pub struct MacParseError(pub String);

impl FromStr for Mac {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Mac(out))
    }
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Link {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Hardware address (Ethernet links).
    pub mac: Option<Mac>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// Link kind (`veth`, …) when the kernel reports one.
    pub kind: Option<String>,
}

/// An IPv4 address on an interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Address {
    /// Interface index.
    pub ifindex: u32,
    /// Address and prefix length.
    pub addr: Ipv4Net,
    /// Address scope (`Universe` for global addresses).
    pub scope: Scope,
}

/// Route or address scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Scope {
    /// `scope global`.
    #[default]
    Universe,
    /// `scope link`.
    Link,
    /// `scope host`.
    Host,
    /// Anything else (raw value).
    Other(u8),
}

impl Scope {
    /// The `RT_SCOPE_*` number.
    pub fn raw(self) -> u8 {
        match self {
            Scope::Universe => 0,
            Scope::Link => 253,
            Scope::Host => 254,
            Scope::Other(v) => v,
        }
    }

    /// From an `RT_SCOPE_*` number.
    pub fn from_raw(v: u8) -> Self {
        match v {
            0 => Scope::Universe,
            253 => Scope::Link,
            254 => Scope::Host,
            v => Scope::Other(v),
        }
    }
}

/// Route type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum RouteKind {
    /// Ordinary route.
    #[default]
    Unicast,
    /// `local` (local-table entries for own addresses).
    Local,
    /// `broadcast`.
    Broadcast,
    /// Anything else (raw `RTN_*` value).
    Other(u8),
}

/// A route of either family (the family of `dst`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// Routing table.
    pub table: u32,
    /// Destination prefix (`0.0.0.0/0` or `::/0` for default routes).
    pub dst: IpNet,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Scope.
    pub scope: Scope,
    /// Preferred source address.
    pub pref_src: Option<IpAddr>,
    /// Route type.
    pub kind: RouteKind,
}

impl Route {
    /// `dst dev <oif> scope link table <table>`.
    pub fn link_scope(table: u32, dst: impl Into<IpNet>, oif: u32) -> Self {
        Route {
            table,
            dst: dst.into(),
            gateway: None,
            oif: Some(oif),
            scope: Scope::Link,
            pref_src: None,
            kind: RouteKind::Unicast,
        }
    }

    /// `default via <gateway> dev <oif> table <table>` (of the gateway's family).
    pub fn default_via(table: u32, gateway: impl Into<IpAddr>, oif: u32) -> Self {
        let gateway = gateway.into();
        let dst = match gateway {
            IpAddr::V4(_) => IpNet::V4(Ipv4Net::default()),
            IpAddr::V6(_) => IpNet::V6(Ipv6Net::default()),
        };
        Route {
            table,
            dst,
            gateway: Some(gateway),
            oif: Some(oif),
            scope: Scope::Universe,
            pref_src: None,
            kind: RouteKind::Unicast,
        }
    }

    /// A host route: `ip/32` or `ip/128`.
    pub fn host(ip: impl Into<IpAddr>) -> IpNet {
        IpNet::from(ip.into())
    }

    /// The route's family (that of its destination).
    pub fn family(&self) -> Family {
        family_of(self.dst.addr())
    }
}

/// A policy-routing rule (`ip rule` / `ip -6 rule`), lookup action only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Rule {
    /// Priority (`pref`); `None` lets the kernel choose when adding.
    pub priority: Option<u32>,
    /// `from` prefix.
    pub src: Option<IpNet>,
    /// `to` prefix.
    pub dst: Option<IpNet>,
    /// `fwmark` value.
    pub fwmark: Option<u32>,
    /// `fwmark` mask.
    pub fwmask: Option<u32>,
    /// `iif` interface name.
    pub iif: Option<String>,
    /// `ipproto` (IP protocol number, e.g. 58 for ICMPv6).
    pub ipproto: Option<u8>,
    /// Table looked up.
    pub table: u32,
    /// The family of a rule without addresses (IPv4 by default); a rule with a `from` or
    /// `to` prefix has that prefix's family ([`Rule::family`]).
    pub family: Family,
}

impl Rule {
    /// `from <ip>/32` (or `/128`) `lookup <table> priority <priority>`.
    pub fn from_ip(ip: impl Into<IpAddr>, table: u32, priority: u32) -> Self {
        let ip = ip.into();
        Rule {
            priority: Some(priority),
            src: Some(IpNet::from(ip)),
            table,
            family: family_of(ip),
            ..Rule::default()
        }
    }

    /// `to <ip>/32` (or `/128`) `lookup <table> priority <priority>`.
    pub fn to_ip(ip: impl Into<IpAddr>, table: u32, priority: u32) -> Self {
        let ip = ip.into();
        Rule {
            priority: Some(priority),
            dst: Some(IpNet::from(ip)),
            table,
            family: family_of(ip),
            ..Rule::default()
        }
    }

    /// The rule's family: that of its `from` or `to` prefix, else [`Rule::family`]'s field.
    pub fn family(&self) -> Family {
        self.src
            .or(self.dst)
            .map_or(self.family, |net| family_of(net.addr()))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = self.priority {
            write!(f, "priority {p} ")?;
        }
        match self.src {
            Some(src) => write!(f, "from {src}")?,
            None => write!(f, "from all")?,
        }
        if let Some(dst) = self.dst {
            write!(f, " to {dst}")?;
        }
        if let Some(mark) = self.fwmark {
            write!(f, " fwmark {mark:#x}")?;
            if let Some(mask) = self.fwmask {
                write!(f, "/{mask:#x}")?;
            }
        }
        if let Some(iif) = &self.iif {
            write!(f, " iif {iif}")?;
        }
        if let Some(proto) = self.ipproto {
            write!(f, " ipproto {proto}")?;
        }
        write!(f, " lookup {}", self.table)
    }
}

/// A neighbour entry (ARP or NDP).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Neighbour {
    /// Interface index.
    pub ifindex: u32,
    /// IP address.
    pub ip: IpAddr,
    /// Link-layer address.
    pub mac: Option<Mac>,
    /// `PERMANENT` entry.
    pub permanent: bool,
}

/// An IPv6 address on an interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Address6 {
    /// Interface index.
    pub ifindex: u32,
    /// Address and prefix length.
    pub addr: Ipv6Net,
    /// Still in duplicate address detection (`IFA_F_TENTATIVE`).
    pub tentative: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip_and_errors() {
        let mac: Mac = "02:aa:0b:0c:0d:ff".parse().unwrap();
        assert_eq!(mac.0, [0x02, 0xaa, 0x0b, 0x0c, 0x0d, 0xff]);
        assert_eq!(mac.to_string(), "02:aa:0b:0c:0d:ff");
        assert!("02:aa:0b:0c:0d".parse::<Mac>().is_err());
        assert!("02:aa:0b:0c:0d:ff:00".parse::<Mac>().is_err());
        assert!("02:aa:0b:0c:0d:zz".parse::<Mac>().is_err());
        assert_eq!(Mac::from_slice(&[1, 2, 3]), None);
    }

    #[test]
    fn rule_display_and_scope_numbers() {
        let r = Rule::from_ip(std::net::Ipv4Addr::new(10, 0, 1, 5), 3, 1536);
        assert_eq!(r.to_string(), "priority 1536 from 10.0.1.5/32 lookup 3");
        assert_eq!(Scope::from_raw(Scope::Link.raw()), Scope::Link);
        assert_eq!(Scope::from_raw(200), Scope::Other(200));
        let v6: IpAddr = "2001:db8::5".parse().unwrap();
        assert_eq!(Rule::to_ip(v6, 254, 512).family(), Family::V6);
        assert_eq!(
            Rule::to_ip(v6, 254, 512).to_string(),
            "priority 512 from all to 2001:db8::5/128 lookup 254"
        );
        assert_eq!(Route::default_via(254, v6, 2).dst.to_string(), "::/0");
        assert_eq!(Route::host(v6).to_string(), "2001:db8::5/128");
    }
}

//! What IPv6 clusters need beyond [`super::addr6`]: IPv6 policy rules, permanent IPv6
//! neighbours and IPv6 route deletion for an IPv6 pod's wiring (upstream `setupVeth` /
//! `setupIPBasedContainerRouteRules` with an IPv6 address,
//! `cmd/routed-eni-cni-plugin/driver/driver.go`), and the link-scope IPv4 address of
//! egress-cni's host veth (upstream `setupHostVethV4`). Adding an existing rule and deleting
//! a missing one both succeed, as for IPv4.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use futures_util::TryStreamExt;
use ipnet::{Ipv4Net, Ipv6Net};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::AddressScope;
use netlink_packet_route::neighbour::NeighbourState;
use netlink_packet_route::route::RouteProtocol;
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{IpVersion, RouteMessageBuilder};

use super::{Mac, NetlinkError, NetlinkHandle, Route6, ok_if_exists, ok_if_missing, req_err};

/// An IPv6 policy-routing rule (`ip -6 rule`), lookup action only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Rule6 {
    /// Priority (`pref`).
    pub priority: Option<u32>,
    /// `from` prefix.
    pub src: Option<Ipv6Net>,
    /// `to` prefix.
    pub dst: Option<Ipv6Net>,
    /// Table looked up.
    pub table: u32,
}

impl Rule6 {
    /// `from <ip>/128 lookup <table> priority <priority>`.
    pub fn from_ip(ip: Ipv6Addr, table: u32, priority: u32) -> Self {
        Rule6 {
            priority: Some(priority),
            src: Some(Ipv6Net::from(ip)),
            table,
            ..Rule6::default()
        }
    }

    /// `to <ip>/128 lookup <table> priority <priority>`.
    pub fn to_ip(ip: Ipv6Addr, table: u32, priority: u32) -> Self {
        Rule6 {
            priority: Some(priority),
            dst: Some(Ipv6Net::from(ip)),
            table,
            ..Rule6::default()
        }
    }
}

impl fmt::Display for Rule6 {
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
        write!(f, " lookup {}", self.table)
    }
}

fn parse_rule6(msg: &RuleMessage) -> Option<Rule6> {
    if msg.header.family != AddressFamily::Inet6 {
        return None;
    }
    let mut rule = Rule6 {
        table: u32::from(msg.header.table),
        ..Rule6::default()
    };
    for attr in &msg.attributes {
        match attr {
            RuleAttribute::Priority(p) => rule.priority = Some(*p),
            RuleAttribute::Table(t) => rule.table = *t,
            RuleAttribute::Source(IpAddr::V6(a)) => {
                rule.src = Ipv6Net::new(*a, msg.header.src_len).ok();
            }
            RuleAttribute::Destination(IpAddr::V6(a)) => {
                rule.dst = Ipv6Net::new(*a, msg.header.dst_len).ok();
            }
            _ => {}
        }
    }
    Some(rule)
}

fn build_rule6(rule: &Rule6) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = AddressFamily::Inet6;
    msg.header.action = RuleAction::ToTable;
    // RT_TABLE_COMPAT when the id does not fit: the real one is in FRA_TABLE.
    msg.header.table = u8::try_from(rule.table).unwrap_or(252);
    msg.attributes.push(RuleAttribute::Table(rule.table));
    if let Some(p) = rule.priority {
        msg.attributes.push(RuleAttribute::Priority(p));
    }
    if let Some(src) = rule.src {
        msg.header.src_len = src.prefix_len();
        msg.attributes
            .push(RuleAttribute::Source(IpAddr::V6(src.network())));
    }
    if let Some(dst) = rule.dst {
        msg.header.dst_len = dst.prefix_len();
        msg.attributes
            .push(RuleAttribute::Destination(IpAddr::V6(dst.network())));
    }
    msg
}

impl NetlinkHandle {
    /// All IPv6 rules, in kernel order.
    pub async fn rules_v6(&self) -> Result<Vec<Rule6>, NetlinkError> {
        let msgs: Vec<RuleMessage> = self
            .handle
            .rule()
            .get(IpVersion::V6)
            .execute()
            .try_collect()
            .await
            .map_err(req_err("list IPv6 rules"))?;
        Ok(msgs.iter().filter_map(parse_rule6).collect())
    }

    /// Adds the IPv6 `rule`; an identical existing rule is success.
    pub async fn add_rule_v6(&self, rule: &Rule6) -> Result<(), NetlinkError> {
        let mut req = self.handle.rule().add();
        *req.message_mut() = build_rule6(rule);
        let res = req
            .execute()
            .await
            .map_err(req_err(format!("add IPv6 rule {rule}")));
        ok_if_exists(res)
    }

    /// Deletes one IPv6 rule matching `rule`; `Ok(false)` when there is none.
    pub async fn delete_rule_v6(&self, rule: &Rule6) -> Result<bool, NetlinkError> {
        let res = self
            .handle
            .rule()
            .del(build_rule6(rule))
            .execute()
            .await
            .map_err(req_err(format!("delete IPv6 rule {rule}")));
        ok_if_missing(res)
    }

    /// Adds or replaces the permanent IPv6 neighbour `ip → mac` on link `ifindex`.
    pub async fn replace_permanent_neighbour_v6(
        &self,
        ifindex: u32,
        ip: Ipv6Addr,
        mac: Mac,
    ) -> Result<(), NetlinkError> {
        self.handle
            .neighbours()
            .add(ifindex, IpAddr::V6(ip))
            .link_layer_address(&mac.0)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(req_err(format!(
                "add IPv6 neighbour {ip} lladdr {mac} on link {ifindex}"
            )))
    }

    /// Adds (or replaces) the IPv4 `addr` on link `ifindex` with `scope link` (not usable as
    /// a source towards other destinations).
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

    /// Deletes the IPv6 route to `route.dst` in `route.table` (and through `route.oif` when
    /// given); `Ok(false)` when there is none.
    pub async fn delete_route_v6(&self, route: &Route6) -> Result<bool, NetlinkError> {
        let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
            .table_id(route.table)
            .protocol(RouteProtocol::Unspec)
            .destination_prefix(route.dst.addr(), route.dst.prefix_len());
        if let Some(oif) = route.oif {
            b = b.output_interface(oif);
        }
        let res = self
            .handle
            .route()
            .del(b.build())
            .execute()
            .await
            .map_err(req_err(format!(
                "delete IPv6 route {} table {}",
                route.dst, route.table
            )));
        ok_if_missing(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip_through_their_kernel_message() {
        let ip: Ipv6Addr = "2001:db8:0:1::5".parse().unwrap();
        for rule in [Rule6::to_ip(ip, 254, 512), Rule6::from_ip(ip, 10_003, 1536)] {
            assert_eq!(parse_rule6(&build_rule6(&rule)), Some(rule));
        }
        assert_eq!(
            Rule6::to_ip(ip, 254, 512).to_string(),
            "priority 512 from all to 2001:db8:0:1::5/128 lookup 254"
        );
    }
}

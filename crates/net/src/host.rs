//! Host-side kernel setup done by ipamd for secondary ENIs (upstream `setupENINetwork` in
//! `pkg/networkutils/network.go`), written against [`Kernel`].

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};

use crate::firewall::Family;
use crate::kernel::Kernel;
use crate::netlink::{Backoff, Link, Mac, NetlinkError, ROUTE_RETRIES, Route, Rule};
use crate::route_table::{LOCAL_TABLE, MAIN_TABLE, priority};

/// Parameters of [`setup_eni`].
#[derive(Debug, Clone)]
pub struct EniSetup {
    /// MAC of the ENI's link.
    pub mac: Mac,
    /// The ENI's primary IPv4 address.
    pub eni_ip: Ipv4Addr,
    /// The ENI's subnet.
    pub subnet: Ipv4Net,
    /// Route table of the ENI (never main).
    pub table: u32,
    /// MTU to set (`AWS_VPC_ENI_MTU`).
    pub mtu: u32,
    /// Install `from <eniIP>/32 lookup <table> priority 32765` (false for trunk ENIs or
    /// when the rule is already configured).
    pub add_rule: bool,
    /// Attempts to find the link by MAC.
    pub find_attempts: u32,
    /// Pause between those attempts.
    pub find_interval: Duration,
    /// Retries of the table routes.
    pub route_backoff: Backoff,
}

impl EniSetup {
    /// Upstream defaults: link lookup 5 × 3 s, route retries, rule added.
    pub fn new(mac: Mac, eni_ip: Ipv4Addr, subnet: Ipv4Net, table: u32, mtu: u32) -> Self {
        EniSetup {
            mac,
            eni_ip,
            subnet,
            table,
            mtu,
            add_rule: true,
            find_attempts: 5,
            find_interval: Duration::from_secs(3),
            route_backoff: ROUTE_RETRIES,
        }
    }
}

/// The VPC router of a subnet: network address + 1.
pub fn subnet_gateway(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).wrapping_add(1))
}

/// [`Kernel::replace_route`] retried on failure per `backoff` (upstream's route retries).
pub async fn replace_route_retry<K: Kernel>(
    k: &K,
    route: &Route,
    backoff: Backoff,
) -> Result<(), NetlinkError> {
    exp_backoff::retry(
        &backoff,
        |e: &NetlinkError| {
            tracing::debug!("route retry: {e}");
            true
        },
        |_| k.replace_route(route),
    )
    .await
}

/// Configures a secondary ENI (upstream `setupENINetwork`): link by MAC, MTU, up; `eniIP/prefix` as the only
/// global address; in `table`: `gw/32 dev <link> scope link` and `default via gw dev <link>`;
/// the kernel's subnet route removed from main; rule `from eniIP/32 lookup table priority
/// 32765` unless `add_rule` is false. Returns the link.
pub async fn setup_eni<K: Kernel>(nl: &K, s: &EniSetup) -> Result<Link, NetlinkError> {
    if s.table == MAIN_TABLE || s.table == 0 {
        return Err(NetlinkError::Invalid(format!(
            "setup_eni: table {} is not a secondary ENI table (primary ENI uses main)",
            s.table
        )));
    }
    let link = nl
        .link_by_mac(s.mac, s.find_attempts, s.find_interval)
        .await?;
    nl.set_link_up(link.index, Some(s.mtu)).await?;

    let addr = Ipv4Net::new(s.eni_ip, s.subnet.prefix_len())
        .map_err(|e| NetlinkError::Invalid(format!("ENI address {}: {e}", s.eni_ip)))?;
    nl.replace_global_addresses(link.index, addr).await?;

    let gw = subnet_gateway(s.subnet);
    let routes = [
        Route::link_scope(s.table, Route::host(gw), link.index),
        Route::default_via(s.table, gw, link.index),
    ];
    for route in &routes {
        nl.delete_route(route).await?;
        replace_route_retry(nl, route, s.route_backoff).await?;
    }

    let subnet_route = Route {
        pref_src: Some(s.eni_ip.into()),
        oif: None,
        ..Route::link_scope(MAIN_TABLE, s.subnet.trunc(), link.index)
    };
    nl.delete_route(&subnet_route).await?;

    if s.add_rule {
        nl.add_rule(&Rule::from_ip(s.eni_ip, s.table, priority::ENI_PRIMARY))
            .await?;
    }
    Ok(link)
}

/// Removes every rule whose source is the ENI's primary IP (ENI freed: upstream's
/// `tryFreeENI`).
pub async fn teardown_eni_rules<K: Kernel>(
    nl: &K,
    eni_ip: Ipv4Addr,
) -> Result<usize, NetlinkError> {
    let src = IpNet::from(IpAddr::V4(eni_ip));
    nl.delete_rules_where(|r| r.src == Some(src)).await
}

/// `AWS_EXTERNAL_SERVICE_CIDRS`, as upstream's `SetupHostNetwork` does: every rule at priority 1535 looking up main goes, then one
/// `to <cidr> lookup main priority 1535` per CIDR, so that traffic to those services leaves
/// through the primary ENI ahead of the per-pod `from` rules at 1536. Returns the rules
/// removed.
pub async fn set_external_service_rules<K: Kernel>(
    nl: &K,
    cidrs: &[Ipv4Net],
) -> Result<usize, NetlinkError> {
    let removed = nl
        .delete_rules_where(|r| {
            r.priority == Some(priority::EXTERNAL_SERVICE) && r.table == MAIN_TABLE
        })
        .await?;
    for cidr in cidrs {
        nl.add_rule(&Rule {
            priority: Some(priority::EXTERNAL_SERVICE),
            dst: Some(cidr.trunc().into()),
            table: MAIN_TABLE,
            ..Rule::default()
        })
        .await?;
    }
    Ok(removed)
}

/// Strict security-groups-for-pods mode (upstream `SetupHostNetwork` step 4; spec 7.2):
/// `lookup local` at priority 20, then the kernel's priority-0 `local` rule removed, so that
/// branch pods' priority-10 `iif` rules are matched first; in `family` (IPv6 clusters move
/// the IPv6 rule, as upstream's `localRule.Family = ipFamily`). Idempotent: the priority-0
/// rule is deleted only while it is there (a kernel may treat a priority of 0 in a delete
/// request as "any", and must not take the priority-20 rule instead).
pub async fn move_local_rule_below_branch_rules<K: Kernel>(
    nl: &K,
    family: Family,
) -> Result<(), NetlinkError> {
    let local = |priority| Rule {
        priority: Some(priority),
        table: LOCAL_TABLE,
        family,
        ..Rule::default()
    };
    nl.add_rule(&local(priority::LOCAL_STRICT)).await?;
    let rules = nl.rules(family).await?;
    let is_local_at_0 = |r: &Rule| {
        r.table == LOCAL_TABLE
            && r.priority.unwrap_or(0) == 0
            && r.src.is_none()
            && r.ipproto.is_none()
    };
    if rules.iter().any(is_local_at_0) {
        nl.delete_rule(&local(0)).await?;
    }
    Ok(())
}

/// The branch subnets' IPv6 gateway, what ipamd answers as `PodENISubnetGW` in IPv6
/// clusters (upstream `GetIPv6Gateway`).
pub const IPV6_BRANCH_GATEWAY: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xfe80, 0xec2, 0, 0, 0, 0, 0, 1);

/// IP protocol number of ICMPv6.
const IPPROTO_ICMPV6: u8 = 58;

/// `from fe80:ec2::1/128 ipproto ipv6-icmp lookup local priority 0` (upstream
/// `createIPv6GatewayRule`): in IPv6 strict mode the gateway's neighbour discovery, which
/// arrives on a branch pod's VLAN link, must be delivered locally rather than looked up in
/// the pod's table by the priority-10 `iif` rule.
pub fn ipv6_gateway_rule() -> Rule {
    Rule {
        priority: Some(0),
        src: Some(IpNet::from(IpAddr::V6(IPV6_BRANCH_GATEWAY))),
        ipproto: Some(IPPROTO_ICMPV6),
        table: LOCAL_TABLE,
        family: Family::V6,
        ..Rule::default()
    }
}

/// IPv6 strict mode on the node (upstream `SetupHostNetwork` step 4 with `v6Enabled`): the
/// IPv6 `local` rule moved to priority 20, then the ICMPv6 gateway rule (added after the
/// move, whose delete of the priority-0 `local` rule could take it). Idempotent.
pub async fn setup_ipv6_strict_mode<K: Kernel>(nl: &K) -> Result<(), NetlinkError> {
    move_local_rule_below_branch_rules(nl, Family::V6).await?;
    nl.add_rule(&ipv6_gateway_rule()).await
}

/// What [`collapse_from_pod_rules`] did for one pod address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromPodRules {
    /// No rule has the address as its source: nothing added.
    None,
    /// Already the single `from <ip>/32 lookup <table> priority 1536` rule: left alone.
    Converged { table: u32 },
    /// `deleted` rules replaced by `from <ip>/32 lookup <table> priority 1536`.
    Rewritten { table: u32, deleted: usize },
}

/// A restored pod's rules (upstream's `UpdateRuleListBySrc`, run from `nodeInit`'s
/// `configureIPRulesForPods`): every rule in `rules` whose source address is `ip` (old
/// plugins wrote one `from <ip> to <vpcCIDR> lookup <table>` per VPC CIDR) is deleted and
/// one `from <ip>/32 lookup <table> priority 1536` takes their place, `<table>` being the
/// last such rule's table as upstream. `rules` is the node's rule list read once for all
/// pods (as upstream). A pod with no such rule gets none. Unlike upstream, a pod whose only
/// rule is already the target is not touched (upstream deletes and re-adds it).
pub async fn collapse_from_pod_rules<K: Kernel>(
    nl: &K,
    rules: &[Rule],
    ip: Ipv4Addr,
) -> Result<FromPodRules, NetlinkError> {
    let own: Vec<&Rule> = rules
        .iter()
        .filter(|r| r.src.is_some_and(|s| s.addr() == ip))
        .collect();
    let Some(table) = own.last().map(|r| r.table) else {
        return Ok(FromPodRules::None);
    };
    let target = Rule::from_ip(ip, table, priority::FROM_POD);
    if let [only] = own[..]
        && *only == target
    {
        return Ok(FromPodRules::Converged { table });
    }
    let mut deleted = 0;
    for rule in own {
        // Already gone is fine (upstream ignores "no such rule").
        if nl.delete_rule(rule).await? {
            deleted += 1;
        }
    }
    nl.add_rule(&target).await?;
    Ok(FromPodRules::Rewritten { table, deleted })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_is_network_plus_one() {
        let subnet: Ipv4Net = "10.0.2.77/24".parse().unwrap();
        assert_eq!(subnet_gateway(subnet), Ipv4Addr::new(10, 0, 2, 1));
        let subnet: Ipv4Net = "192.168.64.0/19".parse().unwrap();
        assert_eq!(subnet_gateway(subnet), Ipv4Addr::new(192, 168, 64, 1));
    }
}

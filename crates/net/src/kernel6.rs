//! The part of the kernel seam that IPv6 clusters need on top of [`Kernel`]: IPv6 policy
//! rules, permanent IPv6 neighbours and IPv6 route deletion for IPv6 pods
//! ([`crate::pod6`]), and a link-scope IPv4 address for egress-cni's IPv4 egress. A separate
//! trait so that the IPv4 seam (and its recording implementation) stays as it is;
//! [`NetlinkHandle`] implements both.

use std::future::Future;
use std::net::Ipv6Addr;

use ipnet::Ipv4Net;

use crate::kernel::Kernel;
use crate::netlink::{KernelError, Mac, NetlinkHandle, Route6, Rule6};

/// IPv6 operations of one network namespace's kernel.
pub trait Kernel6: Kernel {
    /// IPv6 rules in kernel order.
    fn rules_v6(&self) -> impl Future<Output = Result<Vec<Rule6>, KernelError>> + Send;
    /// Adds an IPv6 rule; an identical one is success.
    fn add_rule_v6(&self, rule: &Rule6) -> impl Future<Output = Result<(), KernelError>> + Send;
    /// Deletes one matching IPv6 rule; `Ok(false)` when there is none.
    fn delete_rule_v6(
        &self,
        rule: &Rule6,
    ) -> impl Future<Output = Result<bool, KernelError>> + Send;
    /// Adds or replaces the permanent IPv6 neighbour `ip → mac` on link `ifindex`.
    fn replace_permanent_neighbour_v6(
        &self,
        ifindex: u32,
        ip: Ipv6Addr,
        mac: Mac,
    ) -> impl Future<Output = Result<(), KernelError>> + Send;
    /// Deletes an IPv6 route; `Ok(false)` when there is none.
    fn delete_route_v6(
        &self,
        route: &Route6,
    ) -> impl Future<Output = Result<bool, KernelError>> + Send;
    /// Adds (or replaces) an IPv4 address with `scope link`.
    fn replace_link_scope_address(
        &self,
        ifindex: u32,
        addr: Ipv4Net,
    ) -> impl Future<Output = Result<(), KernelError>> + Send;

    /// Deletes every IPv6 rule matching `rule`; returns how many went.
    fn delete_rule_v6_all(
        &self,
        rule: &Rule6,
    ) -> impl Future<Output = Result<usize, KernelError>> + Send {
        async move {
            let mut n = 0;
            while self.delete_rule_v6(rule).await? {
                n += 1;
            }
            Ok(n)
        }
    }
}

impl Kernel6 for NetlinkHandle {
    fn rules_v6(&self) -> impl Future<Output = Result<Vec<Rule6>, KernelError>> + Send {
        NetlinkHandle::rules_v6(self)
    }
    fn add_rule_v6(&self, rule: &Rule6) -> impl Future<Output = Result<(), KernelError>> + Send {
        NetlinkHandle::add_rule_v6(self, rule)
    }
    fn delete_rule_v6(
        &self,
        rule: &Rule6,
    ) -> impl Future<Output = Result<bool, KernelError>> + Send {
        NetlinkHandle::delete_rule_v6(self, rule)
    }
    fn replace_permanent_neighbour_v6(
        &self,
        ifindex: u32,
        ip: Ipv6Addr,
        mac: Mac,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        NetlinkHandle::replace_permanent_neighbour_v6(self, ifindex, ip, mac)
    }
    fn delete_route_v6(
        &self,
        route: &Route6,
    ) -> impl Future<Output = Result<bool, KernelError>> + Send {
        NetlinkHandle::delete_route_v6(self, route)
    }
    fn replace_link_scope_address(
        &self,
        ifindex: u32,
        addr: Ipv4Net,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        NetlinkHandle::replace_link_scope_address(self, ifindex, addr)
    }
}

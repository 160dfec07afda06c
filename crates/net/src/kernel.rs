//! The kernel seam (docs/architecture.md, "Kernel seam"): every kernel side effect of the
//! agent and the plugins — links, addresses (IPv4, IPv6 with DAD), routes, rules,
//! neighbours, sysctls, namespace entry and firewall batches (iptables, and `nft` for the
//! connmark table) — goes through [`Kernel`], one
//! handle per network namespace. Modelled on netavark's network/firewall drivers and youki's
//! `Syscall` trait.
//!
//! Implementations: [`NetlinkHandle`] (rtnetlink, plus the firewall runner of
//! [`crate::firewall`]) and, for tests without root, `net::testing::Recording` (feature
//! `testing`).

use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::firewall::runner::{self, Family};
use crate::iptables_backend::Backend;
use crate::netlink::link::{VethPair, VlanLink};
use crate::netlink::{
    Address, Address6, KernelError, Link, Mac, Neighbour, NetlinkHandle, Route, Rule,
};
use crate::netns::Netns;

/// One network namespace's kernel, as the agent and the plugins use it. Every future is
/// `Send`, so the agent can hold a `Kernel` across `.await` on a multi-threaded runtime.
pub trait Kernel: Send + Sync + Sized {
    /// A handle on a namespace that can receive the peer end of a veth pair.
    type Peer: Send + Sync;

    /// This namespace as a veth peer target.
    fn peer(&self) -> Result<Self::Peer, KernelError>;
    /// Enters the namespace at `path` (`/var/run/netns/NAME`, `/proc/PID/ns/net`): a handle
    /// there and that namespace as a veth peer target.
    fn open_netns(&self, path: &Path) -> Result<(Self, Self::Peer), KernelError>;
    /// The namespace's name for messages (its path, or `current`).
    fn describe(&self) -> String;

    /// All links.
    fn links(&self) -> impl Future<Output = Result<Vec<Link>, KernelError>> + Send;
    /// The link called `name`, if any.
    fn link_by_name(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Link>, KernelError>> + Send;
    /// Sets the MTU (when given) and brings link `index` up.
    fn set_link_up(
        &self,
        index: u32,
        mtu: Option<u32>,
    ) -> impl Future<Output = Result<(), KernelError>> + Send;
    /// Deletes the link called `name`; `Ok(false)` when it does not exist.
    fn delete_link_by_name(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<bool, KernelError>> + Send;
    /// Creates a veth pair, the peer directly in `pair.peer_netns` (one atomic request).
    fn create_veth(
        &self,
        pair: &VethPair<'_, Self::Peer>,
    ) -> impl Future<Output = Result<(), KernelError>> + Send;
    /// Creates a dummy link (down).
    fn create_dummy(
        &self,
        name: &str,
        mtu: u32,
    ) -> impl Future<Output = Result<(), KernelError>> + Send;

    /// Creates a VLAN link (down) on its parent, with the given MAC.
    fn create_vlan(
        &self,
        vlan: &VlanLink<'_>,
    ) -> impl Future<Output = Result<(), KernelError>> + Send;

    /// IPv4 addresses, optionally of one link.
    fn addresses(
        &self,
        ifindex: Option<u32>,
    ) -> impl Future<Output = Result<Vec<Address>, KernelError>> + Send;
    /// Adds (or replaces) an IPv4 address.
    fn replace_address(
        &self,
        ifindex: u32,
        addr: Ipv4Net,
    ) -> impl Future<Output = Result<(), KernelError>> + Send;
    /// Deletes an IPv4 address; `Ok(false)` when it was not there.
    fn delete_address(
        &self,
        ifindex: u32,
        addr: Ipv4Net,
    ) -> impl Future<Output = Result<bool, KernelError>> + Send;
    /// IPv6 addresses with their DAD state, optionally of one link.
    fn addresses_v6(
        &self,
        ifindex: Option<u32>,
    ) -> impl Future<Output = Result<Vec<Address6>, KernelError>> + Send;
    /// Adds (or replaces) an IPv6 address; DAD is waited out with [`wait_for_v6`].
    fn replace_address_v6(
        &self,
        ifindex: u32,
        addr: Ipv6Net,
    ) -> impl Future<Output = Result<(), KernelError>> + Send;
    /// Adds (or replaces) an IPv4 address with `scope link` (egress-cni's host veth).
    fn replace_link_scope_address(
        &self,
        ifindex: u32,
        addr: Ipv4Net,
    ) -> impl Future<Output = Result<(), KernelError>> + Send;

    /// Routes of `family`, of one table or of all.
    fn routes(
        &self,
        family: Family,
        table: Option<u32>,
    ) -> impl Future<Output = Result<Vec<Route>, KernelError>> + Send;
    /// Adds a route of either family (EEXIST when it exists).
    fn add_route(&self, route: &Route) -> impl Future<Output = Result<(), KernelError>> + Send;
    /// Adds or replaces a route of either family.
    fn replace_route(&self, route: &Route) -> impl Future<Output = Result<(), KernelError>> + Send;
    /// Deletes a route of either family; `Ok(false)` when there is none.
    fn delete_route(&self, route: &Route)
    -> impl Future<Output = Result<bool, KernelError>> + Send;

    /// Rules of `family` in kernel order.
    fn rules(&self, family: Family) -> impl Future<Output = Result<Vec<Rule>, KernelError>> + Send;
    /// Adds a rule of either family ([`Rule::family`]); an identical one is success.
    fn add_rule(&self, rule: &Rule) -> impl Future<Output = Result<(), KernelError>> + Send;
    /// Deletes one matching rule of the rule's family; `Ok(false)` when there is none.
    fn delete_rule(&self, rule: &Rule) -> impl Future<Output = Result<bool, KernelError>> + Send;

    /// IPv4 neighbours, optionally of one link.
    fn neighbours(
        &self,
        ifindex: Option<u32>,
    ) -> impl Future<Output = Result<Vec<Neighbour>, KernelError>> + Send;
    /// Adds or replaces the permanent neighbour `ip → mac` (either family) on link `ifindex`.
    fn replace_permanent_neighbour(
        &self,
        ifindex: u32,
        ip: IpAddr,
        mac: Mac,
    ) -> impl Future<Output = Result<(), KernelError>> + Send;

    /// Writes `/proc/sys/<key>` in this namespace (`key` like `net/ipv6/conf/eth0/accept_ra`);
    /// `Ok(false)` when the file does not exist (e.g. a kernel without IPv6).
    fn write_sysctl(&self, key: &str, value: &str) -> Result<bool, KernelError>;

    /// `<backend>-save [-t table]` of `family` in this namespace.
    fn firewall_save(
        &self,
        backend: Backend,
        family: Family,
        table: Option<&str>,
    ) -> impl Future<Output = Result<String, KernelError>> + Send;
    /// One `<backend>-restore --wait --noflush` batch of `family` in this namespace.
    fn firewall_restore(
        &self,
        backend: Backend,
        family: Family,
        batch: &str,
    ) -> impl Future<Output = Result<(), KernelError>> + Send;
    /// `<backend iptables> --version`.
    fn firewall_version(
        &self,
        backend: Backend,
    ) -> impl Future<Output = Result<String, KernelError>> + Send;

    /// `nft -j list <what…>` in this namespace: JSON (the nftables connmark backend,
    /// [`crate::nft_connmark`]).
    fn nft_list(&self, what: &[&str]) -> impl Future<Output = Result<String, KernelError>> + Send;
    /// One `nft -f -` batch in this namespace: a single atomic transaction.
    fn nft_apply(&self, batch: &str) -> impl Future<Output = Result<(), KernelError>> + Send;

    /// The link with `mac`, polled `attempts` times `interval` apart (ENIs appear some time
    /// after EC2 attaches them).
    fn link_by_mac(
        &self,
        mac: Mac,
        attempts: u32,
        interval: Duration,
    ) -> impl Future<Output = Result<Link, KernelError>> + Send {
        async move {
            let attempts = attempts.max(1);
            for attempt in 1..=attempts {
                if let Some(link) = self.links().await?.into_iter().find(|l| l.mac == Some(mac)) {
                    return Ok(link);
                }
                if attempt < attempts {
                    tokio::time::sleep(interval).await;
                }
            }
            Err(KernelError::LinkByMacNotFound { mac, attempts })
        }
    }

    /// Deletes every rule matching `rule`; returns how many went.
    fn delete_rule_all(
        &self,
        rule: &Rule,
    ) -> impl Future<Output = Result<usize, KernelError>> + Send {
        async move {
            let mut n = 0;
            while self.delete_rule(rule).await? {
                n += 1;
            }
            Ok(n)
        }
    }

    /// Deletes every IPv4 rule for which `pred` holds; returns how many went.
    fn delete_rules_where(
        &self,
        pred: impl Fn(&Rule) -> bool + Send + Sync,
    ) -> impl Future<Output = Result<usize, KernelError>> + Send {
        async move {
            let mut n = 0;
            for rule in self
                .rules(Family::V4)
                .await?
                .into_iter()
                .filter(|r| pred(r))
            {
                if self.delete_rule(&rule).await? {
                    n += 1;
                }
            }
            Ok(n)
        }
    }

    /// Makes `addr` the only global IPv4 address of link `ifindex` (upstream
    /// `setupENINetwork`).
    fn replace_global_addresses(
        &self,
        ifindex: u32,
        addr: Ipv4Net,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        async move {
            for existing in self.addresses(Some(ifindex)).await? {
                if existing.scope == crate::netlink::Scope::Universe && existing.addr != addr {
                    self.delete_address(ifindex, existing.addr).await?;
                }
            }
            self.replace_address(ifindex, addr).await
        }
    }
}

/// Polls the IPv6 addresses of link `index` every `poll` until `pick` finds something (DAD
/// done, a link-local address present), at most `timeout` (upstream's egress plugin: 10 s,
/// 50 ms apart).
pub async fn wait_for_v6<K: Kernel, T>(
    k: &K,
    index: u32,
    what: &str,
    (timeout, poll): (Duration, Duration),
    pick: impl Fn(&[Address6]) -> Option<T>,
) -> Result<T, KernelError> {
    let start = Instant::now();
    loop {
        let addrs = k.addresses_v6(Some(index)).await?;
        if let Some(found) = pick(&addrs) {
            return Ok(found);
        }
        if start.elapsed() >= timeout {
            return Err(KernelError::Timeout {
                what: format!("{what} (addresses: {addrs:?})"),
                after: timeout,
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// Writes `/proc/sys/<key>` in the calling thread's namespace.
fn write_proc_sys(key: &str, value: &str) -> Result<bool, KernelError> {
    let path = format!("/proc/sys/{key}");
    match std::fs::write(&path, value) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(KernelError::Sysctl { path, source }),
    }
}

impl Kernel for NetlinkHandle {
    type Peer = Netns;

    fn peer(&self) -> Result<Netns, KernelError> {
        Ok(match self.netns() {
            Some(ns) => ns.try_clone()?,
            None => Netns::current()?,
        })
    }
    fn open_netns(&self, path: &Path) -> Result<(Self, Netns), KernelError> {
        let ns = Netns::open(path)?;
        Ok((NetlinkHandle::in_netns(&ns)?, ns))
    }
    fn describe(&self) -> String {
        self.netns()
            .map_or_else(|| "current".into(), |ns| ns.path().display().to_string())
    }
    fn links(&self) -> impl Future<Output = Result<Vec<Link>, KernelError>> + Send {
        NetlinkHandle::links(self)
    }
    fn link_by_name(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Link>, KernelError>> + Send {
        NetlinkHandle::link_by_name(self, name)
    }
    fn set_link_up(
        &self,
        index: u32,
        mtu: Option<u32>,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        NetlinkHandle::set_link_up(self, index, mtu)
    }
    fn delete_link_by_name(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<bool, KernelError>> + Send {
        NetlinkHandle::delete_link_by_name(self, name)
    }
    fn create_veth(
        &self,
        pair: &VethPair<'_, Netns>,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        NetlinkHandle::create_veth(self, pair)
    }
    fn create_dummy(
        &self,
        name: &str,
        mtu: u32,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        NetlinkHandle::create_dummy(self, name, mtu)
    }
    fn create_vlan(
        &self,
        vlan: &VlanLink<'_>,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        NetlinkHandle::create_vlan(self, vlan)
    }
    fn addresses(
        &self,
        ifindex: Option<u32>,
    ) -> impl Future<Output = Result<Vec<Address>, KernelError>> + Send {
        NetlinkHandle::addresses(self, ifindex)
    }
    fn replace_address(
        &self,
        ifindex: u32,
        addr: Ipv4Net,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        NetlinkHandle::replace_address(self, ifindex, addr)
    }
    fn delete_address(
        &self,
        ifindex: u32,
        addr: Ipv4Net,
    ) -> impl Future<Output = Result<bool, KernelError>> + Send {
        NetlinkHandle::delete_address(self, ifindex, addr)
    }
    fn addresses_v6(
        &self,
        ifindex: Option<u32>,
    ) -> impl Future<Output = Result<Vec<Address6>, KernelError>> + Send {
        NetlinkHandle::addresses_v6(self, ifindex)
    }
    fn replace_address_v6(
        &self,
        ifindex: u32,
        addr: Ipv6Net,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        NetlinkHandle::replace_address_v6(self, ifindex, addr)
    }
    fn replace_link_scope_address(
        &self,
        ifindex: u32,
        addr: Ipv4Net,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        NetlinkHandle::replace_link_scope_address(self, ifindex, addr)
    }
    fn routes(
        &self,
        family: Family,
        table: Option<u32>,
    ) -> impl Future<Output = Result<Vec<Route>, KernelError>> + Send {
        NetlinkHandle::routes(self, family, table)
    }
    fn add_route(&self, route: &Route) -> impl Future<Output = Result<(), KernelError>> + Send {
        NetlinkHandle::add_route(self, route)
    }
    fn replace_route(&self, route: &Route) -> impl Future<Output = Result<(), KernelError>> + Send {
        NetlinkHandle::replace_route(self, route)
    }
    fn delete_route(
        &self,
        route: &Route,
    ) -> impl Future<Output = Result<bool, KernelError>> + Send {
        NetlinkHandle::delete_route(self, route)
    }
    fn rules(&self, family: Family) -> impl Future<Output = Result<Vec<Rule>, KernelError>> + Send {
        NetlinkHandle::rules(self, family)
    }
    fn add_rule(&self, rule: &Rule) -> impl Future<Output = Result<(), KernelError>> + Send {
        NetlinkHandle::add_rule(self, rule)
    }
    fn delete_rule(&self, rule: &Rule) -> impl Future<Output = Result<bool, KernelError>> + Send {
        NetlinkHandle::delete_rule(self, rule)
    }
    fn neighbours(
        &self,
        ifindex: Option<u32>,
    ) -> impl Future<Output = Result<Vec<Neighbour>, KernelError>> + Send {
        NetlinkHandle::neighbours(self, ifindex)
    }
    fn replace_permanent_neighbour(
        &self,
        ifindex: u32,
        ip: IpAddr,
        mac: Mac,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        NetlinkHandle::replace_permanent_neighbour(self, ifindex, ip, mac)
    }
    fn write_sysctl(&self, key: &str, value: &str) -> Result<bool, KernelError> {
        match self.netns() {
            Some(ns) => ns.run(|| write_proc_sys(key, value))?,
            None => write_proc_sys(key, value),
        }
    }
    fn firewall_save(
        &self,
        backend: Backend,
        family: Family,
        table: Option<&str>,
    ) -> impl Future<Output = Result<String, KernelError>> + Send {
        let netns = self.netns().map(|ns| ns.path().to_path_buf());
        async move {
            let mut args = vec![family.save(backend)];
            if let Some(t) = table {
                args.extend(["-t", t]);
            }
            runner::run(netns.as_deref(), &args, None).await
        }
    }
    fn firewall_restore(
        &self,
        backend: Backend,
        family: Family,
        batch: &str,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        let netns = self.netns().map(|ns| ns.path().to_path_buf());
        async move {
            let args = runner::restore_args(backend, family);
            runner::run(netns.as_deref(), &args, Some(batch))
                .await
                .map(drop)
        }
    }
    fn firewall_version(
        &self,
        backend: Backend,
    ) -> impl Future<Output = Result<String, KernelError>> + Send {
        let netns = self.netns().map(|ns| ns.path().to_path_buf());
        async move { runner::run(netns.as_deref(), &[backend.iptables(), "--version"], None).await }
    }
    fn nft_list(&self, what: &[&str]) -> impl Future<Output = Result<String, KernelError>> + Send {
        let netns = self.netns().map(|ns| ns.path().to_path_buf());
        let args: Vec<String> = ["nft", "-j", "list"]
            .into_iter()
            .chain(what.iter().copied())
            .map(str::to_owned)
            .collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            runner::run(netns.as_deref(), &args, None).await
        }
    }
    fn nft_apply(&self, batch: &str) -> impl Future<Output = Result<(), KernelError>> + Send {
        let netns = self.netns().map(|ns| ns.path().to_path_buf());
        async move {
            runner::run(netns.as_deref(), &runner::NFT_APPLY, Some(batch))
                .await
                .map(drop)
        }
    }
}

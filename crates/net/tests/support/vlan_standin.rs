//! A real kernel whose `create_vlan` makes a macvlan instead, for kernels built without
//! 802.1Q support (`CONFIG_VLAN_8021Q` unset: `ip link add … type vlan` answers "Unknown
//! device type"). A macvlan is the nearest stand-in the kernel has: a child of the trunk
//! link, with its own name and MAC, that receives the frames addressed to that MAC; only
//! the tag is missing. Every other call goes to the real [`NetlinkHandle`] unchanged, and
//! every VLAN request is kept so that tests can assert what was asked for.

use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use net::firewall::Family;
use net::iptables_backend::Backend;
use net::kernel::Kernel;
use net::netlink::link::{VethPair, VlanLink};
use net::netlink::{
    Address, Address6, KernelError, Link, Mac, Neighbour, NetlinkHandle, Route, Rule,
};
use net::netns::Netns;

/// Whether this kernel can make VLAN links (tried once, in a scratch namespace).
pub fn kernel_has_vlans() -> bool {
    static HAS_VLANS: OnceLock<bool> = OnceLock::new();
    *HAS_VLANS.get_or_init(|| {
        let ns = net::testing::TestNetns::new("vlanprobe");
        ns.ip(&["link", "add", "p0", "type", "veth", "peer", "name", "p1"]);
        let args = [
            "ip", "link", "add", "link", "p0", "name", "p0.7", "type", "vlan", "id", "7",
        ];
        let has = ns.try_exec(&args, None).is_ok();
        if !has {
            eprintln!("this kernel has no 802.1Q VLANs: VLAN links are macvlans in these tests");
        }
        has
    })
}

/// One VLAN request: (name, VLAN id, parent index, MAC).
pub type VlanRequest = (String, u16, u32, Mac);

/// The real kernel of one namespace, with macvlans for VLAN links.
pub struct MacvlanForVlan {
    pub nl: NetlinkHandle,
    /// The namespace's name (for `ip -n`).
    pub ns: String,
    /// Every `create_vlan` request so far.
    pub asked: Arc<Mutex<Vec<VlanRequest>>>,
    /// Make real VLAN links (the kernel has 802.1Q); macvlans otherwise.
    pub real_vlans: bool,
}

impl MacvlanForVlan {
    pub fn new(ns: &net::testing::TestNetns) -> Self {
        Self {
            nl: NetlinkHandle::in_netns(&ns.netns()).unwrap(),
            ns: ns.name().to_owned(),
            asked: Arc::default(),
            real_vlans: false,
        }
    }

    pub fn asked(&self) -> Vec<VlanRequest> {
        self.asked.lock().unwrap().clone()
    }
}

type R<T> = Result<T, KernelError>;
type K = NetlinkHandle;

impl Kernel for MacvlanForVlan {
    type Peer = Netns;

    fn peer(&self) -> R<Netns> {
        <K as Kernel>::peer(&self.nl)
    }
    fn open_netns(&self, path: &Path) -> R<(Self, Netns)> {
        let (nl, peer) = <K as Kernel>::open_netns(&self.nl, path)?;
        let ns = path.display().to_string();
        let (asked, real_vlans) = (self.asked.clone(), self.real_vlans);
        let me = Self {
            nl,
            ns,
            asked,
            real_vlans,
        };
        Ok((me, peer))
    }
    fn describe(&self) -> String {
        <K as Kernel>::describe(&self.nl)
    }
    fn links(&self) -> impl Future<Output = R<Vec<Link>>> + Send {
        <K as Kernel>::links(&self.nl)
    }
    fn link_by_name(&self, name: &str) -> impl Future<Output = R<Option<Link>>> + Send {
        <K as Kernel>::link_by_name(&self.nl, name)
    }
    fn set_link_up(&self, index: u32, mtu: Option<u32>) -> impl Future<Output = R<()>> + Send {
        <K as Kernel>::set_link_up(&self.nl, index, mtu)
    }
    fn delete_link_by_name(&self, name: &str) -> impl Future<Output = R<bool>> + Send {
        <K as Kernel>::delete_link_by_name(&self.nl, name)
    }
    fn create_veth(&self, pair: &VethPair<'_, Netns>) -> impl Future<Output = R<()>> + Send {
        <K as Kernel>::create_veth(&self.nl, pair)
    }
    fn create_dummy(&self, name: &str, mtu: u32) -> impl Future<Output = R<()>> + Send {
        <K as Kernel>::create_dummy(&self.nl, name, mtu)
    }
    fn create_vlan(&self, vlan: &VlanLink<'_>) -> impl Future<Output = R<()>> + Send {
        let req = (vlan.name.to_owned(), vlan.vlan_id, vlan.parent, vlan.mac);
        self.asked.lock().unwrap().push(req.clone());
        let ns = self.ns.clone();
        let real = self
            .real_vlans
            .then(|| <K as Kernel>::create_vlan(&self.nl, vlan));
        async move {
            if let Some(real) = real {
                return real.await;
            }
            let links = <K as Kernel>::links(&self.nl).await?;
            let parent = links
                .iter()
                .find(|l| l.index == req.2)
                .map(|l| l.name.clone());
            let parent = parent.ok_or_else(|| KernelError::LinkNotFound(req.2.to_string()))?;
            let mac = req.3.to_string();
            let args = [
                "-n", &ns, "link", "add", "link", &parent, "name", &req.0, "address", &mac, "type",
                "macvlan", "mode", "bridge",
            ];
            let out = std::process::Command::new("ip").args(args).output();
            match out {
                Ok(o) if o.status.success() => Ok(()),
                Ok(o) => Err(KernelError::Command {
                    cmd: format!("ip {args:?}"),
                    detail: String::from_utf8_lossy(&o.stderr).into_owned(),
                }),
                Err(e) => Err(KernelError::Invalid(e.to_string())),
            }
        }
    }
    fn addresses(&self, ifindex: Option<u32>) -> impl Future<Output = R<Vec<Address>>> + Send {
        <K as Kernel>::addresses(&self.nl, ifindex)
    }
    fn replace_address(&self, i: u32, a: Ipv4Net) -> impl Future<Output = R<()>> + Send {
        <K as Kernel>::replace_address(&self.nl, i, a)
    }
    fn delete_address(&self, i: u32, a: Ipv4Net) -> impl Future<Output = R<bool>> + Send {
        <K as Kernel>::delete_address(&self.nl, i, a)
    }
    fn addresses_v6(&self, i: Option<u32>) -> impl Future<Output = R<Vec<Address6>>> + Send {
        <K as Kernel>::addresses_v6(&self.nl, i)
    }
    fn replace_address_v6(&self, i: u32, a: Ipv6Net) -> impl Future<Output = R<()>> + Send {
        <K as Kernel>::replace_address_v6(&self.nl, i, a)
    }
    fn replace_link_scope_address(&self, i: u32, a: Ipv4Net) -> impl Future<Output = R<()>> + Send {
        <K as Kernel>::replace_link_scope_address(&self.nl, i, a)
    }
    fn routes(&self, f: Family, table: Option<u32>) -> impl Future<Output = R<Vec<Route>>> + Send {
        <K as Kernel>::routes(&self.nl, f, table)
    }
    fn add_route(&self, r: &Route) -> impl Future<Output = R<()>> + Send {
        <K as Kernel>::add_route(&self.nl, r)
    }
    fn replace_route(&self, r: &Route) -> impl Future<Output = R<()>> + Send {
        <K as Kernel>::replace_route(&self.nl, r)
    }
    fn delete_route(&self, r: &Route) -> impl Future<Output = R<bool>> + Send {
        <K as Kernel>::delete_route(&self.nl, r)
    }
    fn rules(&self, f: Family) -> impl Future<Output = R<Vec<Rule>>> + Send {
        <K as Kernel>::rules(&self.nl, f)
    }
    fn add_rule(&self, r: &Rule) -> impl Future<Output = R<()>> + Send {
        <K as Kernel>::add_rule(&self.nl, r)
    }
    fn delete_rule(&self, r: &Rule) -> impl Future<Output = R<bool>> + Send {
        <K as Kernel>::delete_rule(&self.nl, r)
    }
    fn neighbours(&self, i: Option<u32>) -> impl Future<Output = R<Vec<Neighbour>>> + Send {
        <K as Kernel>::neighbours(&self.nl, i)
    }
    fn replace_permanent_neighbour(
        &self,
        i: u32,
        ip: IpAddr,
        mac: Mac,
    ) -> impl Future<Output = R<()>> + Send {
        <K as Kernel>::replace_permanent_neighbour(&self.nl, i, ip, mac)
    }
    fn write_sysctl(&self, key: &str, value: &str) -> R<bool> {
        <K as Kernel>::write_sysctl(&self.nl, key, value)
    }
    fn firewall_save(
        &self,
        b: Backend,
        f: Family,
        t: Option<&str>,
    ) -> impl Future<Output = R<String>> + Send {
        <K as Kernel>::firewall_save(&self.nl, b, f, t)
    }
    fn firewall_restore(
        &self,
        b: Backend,
        f: Family,
        s: &str,
    ) -> impl Future<Output = R<()>> + Send {
        <K as Kernel>::firewall_restore(&self.nl, b, f, s)
    }
    fn firewall_version(&self, b: Backend) -> impl Future<Output = R<String>> + Send {
        <K as Kernel>::firewall_version(&self.nl, b)
    }
    fn nft_list(&self, what: &[&str]) -> impl Future<Output = R<String>> + Send {
        <K as Kernel>::nft_list(&self.nl, what)
    }
    fn nft_apply(&self, batch: &str) -> impl Future<Output = R<()>> + Send {
        <K as Kernel>::nft_apply(&self.nl, batch)
    }
    fn link_by_mac(
        &self,
        mac: Mac,
        attempts: u32,
        interval: Duration,
    ) -> impl Future<Output = R<Link>> + Send {
        <K as Kernel>::link_by_mac(&self.nl, mac, attempts, interval)
    }
}

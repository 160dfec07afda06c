//! A recording [`crate::kernel::Kernel`] for tests without root: every change is appended to a journal
//! shared by all namespaces of one recording, and queries are answered from an in-memory
//! model of each namespace (links, IPv4/IPv6 addresses, routes, rules, neighbours,
//! sysctls). Firewall reads answer preset `*-save` (and `nft -j list`) output; restore
//! batches are recorded with their command line, `nft -f` batches as they are. The model follows the kernel where our wiring depends on it: EEXIST
//! on duplicate links and `add` routes, deleting a veth takes its peer (and the link's
//! addresses and routes) with it, rule deletion matches on the attributes given.
//!
//! For tests with root: [`TestNetns`], a named network namespace deleted on drop (the one
//! namespace helper of the workspace; `ec2_emulator::testing` re-exports it).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

mod kernel_impl;
mod netns;

pub use netns::TestNetns;

use ipnet::{Ipv4Net, Ipv6Net};

use crate::firewall::Family;
use crate::iptables_backend::Backend;
use crate::netlink::link::{VethPair, VlanLink};
use crate::netlink::{Address, Address6, KernelError, Link, Mac, Neighbour, Route, Rule, Scope};

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `create_veth`.
    CreateVeth {
        name: String,
        peer_name: String,
        peer_netns: String,
        mtu: u32,
    },
    /// `create_dummy`.
    CreateDummy { name: String, mtu: u32 },
    /// `create_vlan` (`parent`: the parent link's name).
    CreateVlan {
        name: String,
        vlan_id: u16,
        parent: String,
        mac: Mac,
    },
    /// `set_link_up`.
    SetLinkUp { link: String, mtu: Option<u32> },
    /// `delete_link_by_name` of an existing link.
    DeleteLink(String),
    /// `replace_address`.
    ReplaceAddress { link: String, addr: Ipv4Net },
    /// `delete_address` of an existing address.
    DeleteAddress { link: String, addr: Ipv4Net },
    /// `replace_address_v6`.
    ReplaceAddressV6 { link: String, addr: Ipv6Net },
    /// `replace_link_scope_address`.
    ReplaceLinkScopeAddress { link: String, addr: Ipv4Net },
    /// `add_route`.
    AddRoute(Route),
    /// `replace_route`.
    ReplaceRoute(Route),
    /// `delete_route` of an existing route.
    DeleteRoute(Route),
    /// `add_rule` of a new rule.
    AddRule(Rule),
    /// `delete_rule` of an existing rule.
    DeleteRule(Rule),
    /// `replace_permanent_neighbour`.
    ReplaceNeighbour { link: String, ip: IpAddr, mac: Mac },
    /// `write_sysctl`.
    Sysctl { key: String, value: String },
    /// `firewall_restore`: the command line and the batch.
    FirewallRestore { command: String, batch: String },
    /// `nft_apply`: the batch given to `nft -f -`.
    NftApply(String),
}

/// The modelled state of one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub links: Vec<Link>,
    pub addresses: Vec<Address>,
    pub addresses_v6: Vec<Address6>,
    /// Routes of both families.
    pub routes: Vec<Route>,
    /// Rules of both families.
    pub rules: Vec<Rule>,
    pub neighbours: Vec<Neighbour>,
    pub sysctls: BTreeMap<String, String>,
    /// veth name → (peer namespace, peer name).
    pub veth_peers: BTreeMap<String, (String, String)>,
}

impl Model {
    fn link_name(&self, index: u32) -> String {
        self.links
            .iter()
            .find(|l| l.index == index)
            .map_or_else(|| format!("#{index}"), |l| l.name.clone())
    }

    fn forget_link(&mut self, index: u32) {
        self.links.retain(|l| l.index != index);
        self.addresses.retain(|a| a.ifindex != index);
        self.addresses_v6.retain(|a| a.ifindex != index);
        self.routes.retain(|r| r.oif != Some(index));
        self.neighbours.retain(|n| n.ifindex != index);
    }
}

#[derive(Debug, Default)]
struct Shared {
    namespaces: BTreeMap<String, Model>,
    journal: Vec<(String, Call)>,
    next_index: u32,
    next_mac: u8,
    saves: HashMap<(Backend, Family, Option<String>), String>,
    version: Option<String>,
    /// `nft -j list <key>` answers; `None`: `nft` fails (missing binary or nf_tables).
    nft_lists: Option<HashMap<String, String>>,
}

/// A handle on one namespace of a recording; clones share everything.
#[derive(Debug, Clone)]
pub struct Recording {
    ns: String,
    shared: Arc<Mutex<Shared>>,
}

fn errno(op: impl Into<String>, errno: i32) -> KernelError {
    KernelError::Errno {
        op: op.into(),
        errno,
    }
}

/// Kernel matching of `ip rule del`: every attribute given must match.
fn rule_matches(want: &Rule, have: &Rule) -> bool {
    want.family() == have.family()
        && want.priority.is_none_or(|p| have.priority == Some(p))
        && want.src.is_none_or(|s| have.src == Some(s))
        && want.dst.is_none_or(|d| have.dst == Some(d))
        && want.fwmark.is_none_or(|m| have.fwmark == Some(m))
        && want
            .iif
            .as_ref()
            .is_none_or(|i| have.iif.as_ref() == Some(i))
        && (want.table == 0 || want.table == have.table)
}

/// Kernel matching of `ip route del`: table, prefix and type, plus gateway/device if given.
fn route_matches(want: &Route, have: &Route) -> bool {
    want.table == have.table
        && want.dst == have.dst
        && want.kind == have.kind
        && want.oif.is_none_or(|o| have.oif == Some(o))
        && want.gateway.is_none_or(|g| have.gateway == Some(g))
}

impl Recording {
    /// A new recording with one empty namespace called `ns`.
    pub fn new(ns: &str) -> Self {
        let rec = Recording {
            ns: ns.to_owned(),
            shared: Arc::new(Mutex::new(Shared {
                next_index: 2,
                nft_lists: Some(HashMap::new()),
                ..Shared::default()
            })),
        };
        rec.lock().namespaces.entry(ns.to_owned()).or_default();
        rec
    }

    /// The namespace `ns` of the same recording (created empty when new).
    pub fn namespace(&self, ns: &str) -> Self {
        self.lock().namespaces.entry(ns.to_owned()).or_default();
        Recording {
            ns: ns.to_owned(),
            shared: Arc::clone(&self.shared),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on this namespace's model and the journal.
    fn with<T>(&self, f: impl FnOnce(&mut Model, &mut Vec<(String, Call)>) -> T) -> T {
        let mut guard = self.lock();
        let shared = &mut *guard;
        let model = shared.namespaces.entry(self.ns.clone()).or_default();
        f(model, &mut shared.journal)
    }

    fn record(&self, call: Call) {
        self.lock().journal.push((self.ns.clone(), call));
    }

    /// A copy of this namespace's model.
    pub fn model(&self) -> Model {
        self.with(|m, _| m.clone())
    }

    /// Every change so far, with the namespace it was made in.
    pub fn journal(&self) -> Vec<(String, Call)> {
        self.lock().journal.clone()
    }

    /// The changes made in this namespace.
    pub fn calls(&self) -> Vec<Call> {
        self.journal()
            .into_iter()
            .filter(|(ns, _)| *ns == self.ns)
            .map(|(_, c)| c)
            .collect()
    }

    /// Forgets the journal (the model stays).
    pub fn clear_journal(&self) {
        self.lock().journal.clear();
    }

    /// Test set-up: a link that is already there (not journalled); returns its index.
    pub fn add_link(&self, name: &str, mac: Option<Mac>, kind: Option<&str>) -> u32 {
        let mut guard = self.lock();
        let index = guard.next_index;
        guard.next_index += 1;
        let model = guard.namespaces.entry(self.ns.clone()).or_default();
        model.links.push(Link {
            name: name.to_owned(),
            index,
            mac,
            mtu: 1500,
            up: false,
            kind: kind.map(str::to_owned),
        });
        index
    }

    /// Test set-up: an IPv4 address already on link `ifindex` (not journalled).
    pub fn add_address(&self, ifindex: u32, addr: Ipv4Net) {
        self.with(|m, _| {
            m.addresses.push(Address {
                ifindex,
                addr,
                scope: Scope::Universe,
            })
        });
    }

    /// What `<backend>-save` of `family` (and `table`, `None` = all) prints from now on.
    pub fn set_firewall_save(
        &self,
        backend: Backend,
        family: Family,
        table: Option<&str>,
        text: &str,
    ) {
        self.lock()
            .saves
            .insert((backend, family, table.map(str::to_owned)), text.to_owned());
    }

    /// What `iptables --version` prints from now on (default `iptables v1.8.9 (nf_tables)`).
    pub fn set_firewall_version(&self, text: &str) {
        self.lock().version = Some(text.to_owned());
    }

    /// What `nft -j list <what>` prints from now on (`what` like `tables ip`; default: an
    /// empty listing).
    pub fn set_nft_list(&self, what: &str, json: &str) {
        self.lock()
            .nft_lists
            .get_or_insert_with(HashMap::new)
            .insert(what.to_owned(), json.to_owned());
    }

    /// Makes every `nft` call fail from now on (no `nft` binary, no nf_tables).
    pub fn set_nft_unavailable(&self) {
        self.lock().nft_lists = None;
    }

    fn new_veth_end(&self, ns: &str, name: &str, mac: Option<Mac>, mtu: u32, up: bool) {
        let mut guard = self.lock();
        let index = guard.next_index;
        guard.next_index += 1;
        guard.next_mac = guard.next_mac.wrapping_add(1);
        let mac = mac.unwrap_or(Mac([0x02, 0, 0, 0, 0, guard.next_mac]));
        let model = guard.namespaces.entry(ns.to_owned()).or_default();
        model.links.push(Link {
            name: name.to_owned(),
            index,
            mac: Some(mac),
            mtu,
            up,
            kind: Some("veth".into()),
        });
        let ll = Ipv6Addr::new(
            0xfe80,
            0,
            0,
            0,
            0,
            0,
            0,
            u16::try_from(index).unwrap_or(u16::MAX),
        );
        model.addresses_v6.push(Address6 {
            ifindex: index,
            addr: Ipv6Net::new(ll, 64).unwrap_or_default(),
            tentative: false,
        });
    }

    fn create_veth_now(&self, pair: &VethPair<'_, Recording>) -> Result<(), KernelError> {
        let op = format!("create veth pair {} (peer {})", pair.name, pair.peer_name);
        let peer_ns = pair.peer_netns.ns.clone();
        {
            let guard = self.lock();
            let taken = |ns: &str, name: &str| {
                guard
                    .namespaces
                    .get(ns)
                    .is_some_and(|m| m.links.iter().any(|l| l.name == name))
            };
            if taken(&self.ns, pair.name) || taken(&peer_ns, pair.peer_name) {
                return Err(errno(op, nix::libc::EEXIST));
            }
        }
        self.new_veth_end(&self.ns, pair.name, None, pair.mtu, pair.up);
        self.new_veth_end(&peer_ns, pair.peer_name, pair.peer_mac, pair.mtu, false);
        let mut guard = self.lock();
        let own = (self.ns.clone(), pair.name.to_owned());
        let peer = (peer_ns.clone(), pair.peer_name.to_owned());
        if let Some(m) = guard.namespaces.get_mut(&self.ns) {
            m.veth_peers.insert(pair.name.to_owned(), peer.clone());
        }
        if let Some(m) = guard.namespaces.get_mut(&peer_ns) {
            m.veth_peers.insert(pair.peer_name.to_owned(), own);
        }
        guard.journal.push((
            self.ns.clone(),
            Call::CreateVeth {
                name: pair.name.to_owned(),
                peer_name: pair.peer_name.to_owned(),
                peer_netns: peer_ns,
                mtu: pair.mtu,
            },
        ));
        Ok(())
    }

    /// `create_vlan`: EEXIST when the name is taken, ENODEV without the parent; the new
    /// link is down with the parent's MTU, as the kernel makes it.
    fn create_vlan_now(&self, vlan: &VlanLink<'_>) -> Result<(), KernelError> {
        let op = format!("create VLAN link {}", vlan.name);
        let model = self.model();
        if model.links.iter().any(|l| l.name == vlan.name) {
            return Err(errno(op, nix::libc::EEXIST));
        }
        let Some(parent) = model.links.iter().find(|l| l.index == vlan.parent) else {
            return Err(errno(op, nix::libc::ENODEV));
        };
        let index = self.add_link(vlan.name, Some(vlan.mac), Some("vlan"));
        self.with(|m, _| {
            if let Some(l) = m.links.iter_mut().find(|l| l.index == index) {
                l.mtu = parent.mtu;
            }
        });
        self.record(Call::CreateVlan {
            name: vlan.name.to_owned(),
            vlan_id: vlan.vlan_id,
            parent: parent.name.clone(),
            mac: vlan.mac,
        });
        Ok(())
    }

    fn delete_link_now(&self, name: &str) -> bool {
        let mut guard = self.lock();
        let Some(model) = guard.namespaces.get_mut(&self.ns) else {
            return false;
        };
        let Some(index) = model.links.iter().find(|l| l.name == name).map(|l| l.index) else {
            return false;
        };
        model.forget_link(index);
        let peer = model.veth_peers.remove(name);
        if let Some((peer_ns, peer_name)) = peer
            && let Some(pm) = guard.namespaces.get_mut(&peer_ns)
        {
            pm.veth_peers.remove(&peer_name);
            if let Some(pi) = pm
                .links
                .iter()
                .find(|l| l.name == peer_name)
                .map(|l| l.index)
            {
                pm.forget_link(pi);
            }
        }
        guard
            .journal
            .push((self.ns.clone(), Call::DeleteLink(name.to_owned())));
        true
    }
}

/// An immediately ready future (the model answers synchronously).
fn ready<T: Send>(v: T) -> impl Future<Output = T> + Send {
    std::future::ready(v)
}

/// SNAT settings for tests: a node at 10.0.0.10 on `eth0` in VPC `10.0.0.0/16`, with
/// upstream's defaults (no excluded CIDRs, on-node SNAT with `--random-fully`, NodePort
/// support, veth prefix `eni`, connmark `0x80` in iptables).
pub fn snat_settings() -> crate::snat::SnatSettings {
    crate::snat::SnatSettings {
        primary_ip: Ipv4Addr::new(10, 0, 0, 10),
        primary_if: "eth0".into(),
        vpc_cidrs: vec![Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 16).expect("a /16")],
        exclude_cidrs: vec![],
        external_snat: false,
        node_port_support: true,
        randomize: crate::snat::Randomize::Prng,
        random_fully_supported: true,
        veth_prefix: "eni".into(),
        connmark: 0x80,
        connmark_backend: crate::connmark::ConnmarkBackend::Iptables,
    }
}

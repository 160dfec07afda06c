//! [`Kernel`] for [`Recording`]: changes go to the model and the journal, queries are
//! answered from the model.

use std::future::Future;
use std::net::IpAddr;
use std::path::Path;

use ipnet::{Ipv4Net, Ipv6Net};

use super::{Call, Recording, errno, ready, route_matches, rule_matches};
use crate::firewall::{Family, restore_args};
use crate::iptables_backend::Backend;
use crate::kernel::Kernel;
use crate::netlink::link::{VethPair, VlanLink};
use crate::netlink::{Address, Address6, KernelError, Link, Mac, Neighbour, Route, Rule, Scope};

impl Kernel for Recording {
    type Peer = Recording;

    fn peer(&self) -> Result<Recording, KernelError> {
        Ok(self.clone())
    }
    fn open_netns(&self, path: &Path) -> Result<(Self, Recording), KernelError> {
        let other = self.namespace(&path.display().to_string());
        Ok((other.clone(), other))
    }
    fn describe(&self) -> String {
        self.ns.clone()
    }
    fn links(&self) -> impl Future<Output = Result<Vec<Link>, KernelError>> + Send {
        ready(Ok(self.model().links))
    }
    fn link_by_name(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Link>, KernelError>> + Send {
        ready(Ok(self.model().links.into_iter().find(|l| l.name == name)))
    }
    fn set_link_up(
        &self,
        index: u32,
        mtu: Option<u32>,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        ready(self.with(|m, j| {
            let Some(link) = m.links.iter_mut().find(|l| l.index == index) else {
                return Err(errno(format!("set link {index} up"), nix::libc::ENODEV));
            };
            link.up = true;
            if let Some(mtu) = mtu {
                link.mtu = mtu;
            }
            let call = Call::SetLinkUp {
                link: link.name.clone(),
                mtu,
            };
            j.push((self.ns.clone(), call));
            Ok(())
        }))
    }
    fn delete_link_by_name(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<bool, KernelError>> + Send {
        ready(Ok(self.delete_link_now(name)))
    }
    fn create_veth(
        &self,
        pair: &VethPair<'_, Recording>,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        ready(self.create_veth_now(pair))
    }
    fn create_dummy(
        &self,
        name: &str,
        mtu: u32,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        let res = if self.model().links.iter().any(|l| l.name == name) {
            Err(errno(
                format!("create dummy link {name}"),
                nix::libc::EEXIST,
            ))
        } else {
            let index = self.add_link(name, None, Some("dummy"));
            self.with(|m, _| {
                if let Some(l) = m.links.iter_mut().find(|l| l.index == index) {
                    l.mtu = mtu;
                }
            });
            self.record(Call::CreateDummy {
                name: name.to_owned(),
                mtu,
            });
            Ok(())
        };
        ready(res)
    }
    fn create_vlan(
        &self,
        vlan: &VlanLink<'_>,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        ready(self.create_vlan_now(vlan))
    }
    fn addresses(
        &self,
        ifindex: Option<u32>,
    ) -> impl Future<Output = Result<Vec<Address>, KernelError>> + Send {
        let mut all = self.model().addresses;
        all.retain(|a| ifindex.is_none_or(|i| a.ifindex == i));
        ready(Ok(all))
    }
    fn replace_address(
        &self,
        ifindex: u32,
        addr: Ipv4Net,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        self.put_address(ifindex, addr, Scope::Universe);
        ready(Ok(()))
    }
    fn delete_address(
        &self,
        ifindex: u32,
        addr: Ipv4Net,
    ) -> impl Future<Output = Result<bool, KernelError>> + Send {
        ready(self.with(|m, j| {
            let before = m.addresses.len();
            m.addresses
                .retain(|a| !(a.ifindex == ifindex && a.addr == addr));
            let gone = m.addresses.len() < before;
            if gone {
                j.push((
                    self.ns.clone(),
                    Call::DeleteAddress {
                        link: m.link_name(ifindex),
                        addr,
                    },
                ));
            }
            Ok(gone)
        }))
    }
    fn addresses_v6(
        &self,
        ifindex: Option<u32>,
    ) -> impl Future<Output = Result<Vec<Address6>, KernelError>> + Send {
        let mut all = self.model().addresses_v6;
        all.retain(|a| ifindex.is_none_or(|i| a.ifindex == i));
        ready(Ok(all))
    }
    fn replace_address_v6(
        &self,
        ifindex: u32,
        addr: Ipv6Net,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        ready(self.with(|m, j| {
            m.addresses_v6
                .retain(|a| !(a.ifindex == ifindex && a.addr == addr));
            // DAD completes at once in the model.
            m.addresses_v6.push(Address6 {
                ifindex,
                addr,
                tentative: false,
            });
            j.push((
                self.ns.clone(),
                Call::ReplaceAddressV6 {
                    link: m.link_name(ifindex),
                    addr,
                },
            ));
            Ok(())
        }))
    }
    fn replace_link_scope_address(
        &self,
        ifindex: u32,
        addr: Ipv4Net,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        self.put_address(ifindex, addr, Scope::Link);
        ready(Ok(()))
    }
    fn routes(
        &self,
        family: Family,
        table: Option<u32>,
    ) -> impl Future<Output = Result<Vec<Route>, KernelError>> + Send {
        let mut all = self.model().routes;
        all.retain(|r| r.family() == family && table.is_none_or(|t| r.table == t));
        ready(Ok(all))
    }
    fn add_route(&self, route: &Route) -> impl Future<Output = Result<(), KernelError>> + Send {
        ready(self.with(|m, j| {
            if m.routes
                .iter()
                .any(|r| r.table == route.table && r.dst == route.dst)
            {
                return Err(errno(format!("add route {}", route.dst), nix::libc::EEXIST));
            }
            m.routes.push(route.clone());
            j.push((self.ns.clone(), Call::AddRoute(route.clone())));
            Ok(())
        }))
    }
    fn replace_route(&self, route: &Route) -> impl Future<Output = Result<(), KernelError>> + Send {
        ready(self.with(|m, j| {
            m.routes
                .retain(|r| !(r.table == route.table && r.dst == route.dst));
            m.routes.push(route.clone());
            j.push((self.ns.clone(), Call::ReplaceRoute(route.clone())));
            Ok(())
        }))
    }
    fn delete_route(
        &self,
        route: &Route,
    ) -> impl Future<Output = Result<bool, KernelError>> + Send {
        ready(self.with(|m, j| {
            let Some(pos) = m.routes.iter().position(|r| route_matches(route, r)) else {
                return Ok(false);
            };
            m.routes.remove(pos);
            j.push((self.ns.clone(), Call::DeleteRoute(route.clone())));
            Ok(true)
        }))
    }
    fn rules(&self, family: Family) -> impl Future<Output = Result<Vec<Rule>, KernelError>> + Send {
        let mut rules = self.model().rules;
        rules.retain(|r| r.family() == family);
        rules.sort_by_key(|r| r.priority);
        ready(Ok(rules))
    }
    fn add_rule(&self, rule: &Rule) -> impl Future<Output = Result<(), KernelError>> + Send {
        ready(self.with(|m, j| {
            if !m.rules.contains(rule) {
                m.rules.push(rule.clone());
                j.push((self.ns.clone(), Call::AddRule(rule.clone())));
            }
            Ok(())
        }))
    }
    fn delete_rule(&self, rule: &Rule) -> impl Future<Output = Result<bool, KernelError>> + Send {
        ready(self.with(|m, j| {
            let Some(pos) = m.rules.iter().position(|r| rule_matches(rule, r)) else {
                return Ok(false);
            };
            let gone = m.rules.remove(pos);
            j.push((self.ns.clone(), Call::DeleteRule(gone)));
            Ok(true)
        }))
    }
    fn neighbours(
        &self,
        ifindex: Option<u32>,
    ) -> impl Future<Output = Result<Vec<Neighbour>, KernelError>> + Send {
        // As the kernel's listing through the seam: IPv4 entries only.
        let mut all = self.model().neighbours;
        all.retain(|n| n.ip.is_ipv4() && ifindex.is_none_or(|i| n.ifindex == i));
        ready(Ok(all))
    }
    fn replace_permanent_neighbour(
        &self,
        ifindex: u32,
        ip: IpAddr,
        mac: Mac,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        ready(self.with(|m, j| {
            m.neighbours
                .retain(|n| !(n.ifindex == ifindex && n.ip == ip));
            m.neighbours.push(Neighbour {
                ifindex,
                ip,
                mac: Some(mac),
                permanent: true,
            });
            j.push((
                self.ns.clone(),
                Call::ReplaceNeighbour {
                    link: m.link_name(ifindex),
                    ip,
                    mac,
                },
            ));
            Ok(())
        }))
    }
    fn write_sysctl(&self, key: &str, value: &str) -> Result<bool, KernelError> {
        self.with(|m, j| {
            m.sysctls.insert(key.to_owned(), value.to_owned());
            let call = Call::Sysctl {
                key: key.to_owned(),
                value: value.to_owned(),
            };
            j.push((self.ns.clone(), call));
        });
        Ok(true)
    }
    fn firewall_save(
        &self,
        backend: Backend,
        family: Family,
        table: Option<&str>,
    ) -> impl Future<Output = Result<String, KernelError>> + Send {
        let key = (backend, family, table.map(str::to_owned));
        ready(Ok(self.lock().saves.get(&key).cloned().unwrap_or_default()))
    }
    fn firewall_restore(
        &self,
        backend: Backend,
        family: Family,
        batch: &str,
    ) -> impl Future<Output = Result<(), KernelError>> + Send {
        let command = restore_args(backend, family).join(" ");
        self.record(Call::FirewallRestore {
            command,
            batch: batch.to_owned(),
        });
        ready(Ok(()))
    }
    fn firewall_version(
        &self,
        _backend: Backend,
    ) -> impl Future<Output = Result<String, KernelError>> + Send {
        let v = self.lock().version.clone();
        ready(Ok(
            v.unwrap_or_else(|| "iptables v1.8.9 (nf_tables)\n".into())
        ))
    }
    fn nft_list(&self, what: &[&str]) -> impl Future<Output = Result<String, KernelError>> + Send {
        let key = what.join(" ");
        let res = match &self.lock().nft_lists {
            Some(lists) => Ok(lists.get(&key).cloned().unwrap_or_default()),
            None => Err(nft_missing(&format!("nft -j list {key}"))),
        };
        ready(res)
    }
    fn nft_apply(&self, batch: &str) -> impl Future<Output = Result<(), KernelError>> + Send {
        let res = if self.lock().nft_lists.is_some() {
            self.record(Call::NftApply(batch.to_owned()));
            Ok(())
        } else {
            Err(nft_missing("nft -f -"))
        };
        ready(res)
    }
}

impl Recording {
    /// `replace_address` (scope global) and `replace_link_scope_address` (scope link).
    fn put_address(&self, ifindex: u32, addr: Ipv4Net, scope: Scope) {
        self.with(|m, j| {
            m.addresses
                .retain(|a| !(a.ifindex == ifindex && a.addr == addr));
            m.addresses.push(Address {
                ifindex,
                addr,
                scope,
            });
            let link = m.link_name(ifindex);
            let call = match scope {
                Scope::Link => Call::ReplaceLinkScopeAddress { link, addr },
                _ => Call::ReplaceAddress { link, addr },
            };
            j.push((self.ns.clone(), call));
        });
    }
}

/// What the runner reports when `nft` cannot run.
fn nft_missing(cmd: &str) -> KernelError {
    KernelError::Command {
        cmd: cmd.to_owned(),
        detail: "No such file or directory (os error 2)".to_owned(),
    }
}

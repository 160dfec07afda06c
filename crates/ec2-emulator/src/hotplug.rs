//! Hot-plug of attached ENIs as links in a node network namespace, the way the hypervisor
//! hot-plugs a NIC: attach creates a link with the ENI's MAC, detach removes it. The primary
//! ENI (card 0, device 0) is left to whoever built the namespace. Each hot-plugged NIC is
//! one end of a veth pair (the other end, `<name>-hv`, plays the hypervisor's side).
//!
//! An ENI with IPv6 gets its first IPv6 address on the link as a /128 (`nodad`), as a real
//! instance's DHCPv6 client configures it (the on-link /64 comes from router
//! advertisements, which nothing sends here); see docs/ec2-emulator.md "IPv6".
//!
//! Uses `ip` from iproute2: this is test support, not shipped in the node image.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::process::Command;

/// One attached ENI as the hypervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluggedEni {
    pub mac: String,
    pub card: u32,
    pub device: u32,
    /// The ENI's first IPv6 address, configured on the link.
    pub ipv6: Option<Ipv6Addr>,
}

/// A link this emulator created: its name and the IPv6 address put on it.
#[derive(Debug, Clone)]
struct Link {
    name: String,
    ipv6: Option<Ipv6Addr>,
}

/// The links this emulator created in one namespace, by MAC.
#[derive(Debug, Clone)]
pub struct HotPlug {
    netns: String,
    links: BTreeMap<String, Link>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The link name for an ENI: `eth<device>` on card 0, `eth<card>d<device>` elsewhere.
pub fn link_name(card: u32, device: u32) -> String {
    if card == 0 {
        format!("eth{device}")
    } else {
        format!("eth{card}d{device}")
    }
}

impl HotPlug {
    pub fn new(netns: &str) -> Self {
        Self {
            netns: netns.to_string(),
            links: BTreeMap::new(),
        }
    }

    /// Makes the namespace's links (and their IPv6 address) match `attached`.
    pub fn sync(&mut self, attached: &[PluggedEni]) -> Result<(), String> {
        let wanted: BTreeMap<&str, (String, Option<Ipv6Addr>)> = attached
            .iter()
            .filter(|e| !(e.card == 0 && e.device == 0))
            .map(|e| (e.mac.as_str(), (link_name(e.card, e.device), e.ipv6)))
            .collect();
        let gone: Vec<String> = self
            .links
            .keys()
            .filter(|mac| !wanted.contains_key(mac.as_str()))
            .cloned()
            .collect();
        let mut errors = Vec::new();
        for mac in gone {
            if let Some(link) = self.links.remove(&mac)
                && let Err(e) = ip(&["-n", &self.netns, "link", "del", &link.name])
            {
                errors.push(e);
            }
        }
        for (mac, (name, ipv6)) in wanted {
            if !self.links.contains_key(mac) {
                match self.plug(mac, &name) {
                    Ok(()) => {
                        let link = Link { name, ipv6: None };
                        self.links.insert(mac.to_string(), link);
                    }
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                }
            }
            if let Err(e) = self.set_ipv6(mac, ipv6) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Puts `ipv6` (as a /128) on the link of `mac` in place of the one there, if any.
    fn set_ipv6(&mut self, mac: &str, ipv6: Option<Ipv6Addr>) -> Result<(), String> {
        let Some(link) = self.links.get_mut(mac) else {
            return Ok(());
        };
        if link.ipv6 == ipv6 {
            return Ok(());
        }
        let ns = self.netns.as_str();
        if let Some(old) = link.ipv6.take() {
            let old = format!("{old}/128");
            ip(&["-n", ns, "-6", "addr", "del", &old, "dev", &link.name])?;
        }
        if let Some(new) = ipv6 {
            let new = format!("{new}/128");
            ip(&[
                "-n", ns, "-6", "addr", "add", &new, "dev", &link.name, "nodad",
            ])?;
            link.ipv6 = ipv6;
        }
        Ok(())
    }

    /// Creates the link `name` with `mac`.
    fn plug(&self, mac: &str, name: &str) -> Result<(), String> {
        // A veth pair stands in for the NIC (the `dummy` driver is not always
        // available); its peer is the "hypervisor side" and stays in the namespace.
        let peer = format!("{name}-hv");
        let add = [
            "-n",
            &self.netns,
            "link",
            "add",
            name,
            "address",
            mac,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ];
        ip(&add)
    }
}

//! Hot-plug of attached ENIs as links in a node network namespace, the way the hypervisor
//! hot-plugs a NIC: attach creates a link with the ENI's MAC, detach removes it. The primary
//! ENI (card 0, device 0) is left to whoever built the namespace. Each hot-plugged NIC is
//! one end of a veth pair (the other end, `<name>-hv`, plays the hypervisor's side).
//!
//! Uses `ip` from iproute2: this is test support, not shipped in the node image.

use std::collections::BTreeMap;
use std::process::Command;

/// The links this emulator created in one namespace, by MAC.
#[derive(Debug, Clone)]
pub struct HotPlug {
    netns: String,
    links: BTreeMap<String, String>,
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

    /// Makes the namespace's links match `attached` (MAC, card, device index).
    pub fn sync(&mut self, attached: &[(String, u32, u32)]) -> Result<(), String> {
        let wanted: BTreeMap<&str, String> = attached
            .iter()
            .filter(|(_, card, device)| !(*card == 0 && *device == 0))
            .map(|(mac, card, device)| (mac.as_str(), link_name(*card, *device)))
            .collect();
        let gone: Vec<String> = self
            .links
            .keys()
            .filter(|mac| !wanted.contains_key(mac.as_str()))
            .cloned()
            .collect();
        let mut errors = Vec::new();
        for mac in gone {
            if let Some(name) = self.links.remove(&mac)
                && let Err(e) = ip(&["-n", &self.netns, "link", "del", &name])
            {
                errors.push(e);
            }
        }
        for (mac, name) in wanted {
            if self.links.contains_key(mac) {
                continue;
            }
            // A veth pair stands in for the NIC (the `dummy` driver is not always
            // available); its peer is the "hypervisor side" and stays in the namespace.
            let peer = format!("{name}-hv");
            let add = [
                "-n",
                &self.netns,
                "link",
                "add",
                &name,
                "address",
                mac,
                "type",
                "veth",
                "peer",
                "name",
                &peer,
            ];
            match ip(&add) {
                Ok(()) => {
                    self.links.insert(mac.to_string(), name);
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

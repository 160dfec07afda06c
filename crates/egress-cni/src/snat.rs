//! The pod's `nat` rules (upstream `snat.Add` / `snat.Del` in `cmd/egress-cni-plugin`): a
//! per-pod chain accepting multicast and SNATing everything else to the node's address,
//! jumped to from `POSTROUTING` for the pod's egress address; ip6tables for IPv6 egress
//! (`cmdAddEgressV6`), iptables for IPv4 egress (`cmdAddEgressV4`). Batches are pure text;
//! [`apply`] runs them through `net`'s one firewall runner ([`Kernel::firewall_restore`]:
//! `ip[6]tables-restore --wait --noflush` of the node's iptables backend, so concurrent plugin
//! runs wait for the xtables lock on legacy nodes).

use std::net::IpAddr;

use cni::error::CniError;
use net::firewall::{self, Family};
use net::iptables_backend::Backend;
use net::iptables_save::{SavedTable, parse_table, quote};
use net::kernel::Kernel;
use net::netlink::KernelError;

/// SNAT chain of one pod: `CNI-` + prefix + hex SHA-512 of `<network><containerID>`, cut to
/// 28 characters (containernetworking `FormatChainNameWithPrefix`). `v6` selects the `E6-`
/// prefix, else `E4-`.
pub fn snat_chain_name(network: &str, container_id: &str, v6: bool) -> String {
    let prefix = if v6 { "E6-" } else { "E4-" };
    let digest = sha512_hex(format!("{network}{container_id}").as_bytes());
    let mut name = format!("CNI-{prefix}{digest}");
    name.truncate(28);
    name
}

fn sha512_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha512::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Error code of an iptables / ip6tables failure (plugin-specific range).
pub const IPTABLES_FAILED: u32 = 103;

/// The rule comment: `name: "<network>" id: "<containerID>"`.
pub fn comment(network: &str, container_id: &str) -> String {
    format!("name: \"{network}\" id: \"{container_id}\"")
}

/// The SNAT randomisation flag for `randomizeSNAT`: `none` → none, `hashrandom` →
/// `--random`, anything else (default `prng`) → `--random-fully`.
pub fn random_flag(randomize: Option<&str>) -> Option<&'static str> {
    match randomize {
        Some("none") => None,
        Some("hashrandom") => Some("--random"),
        _ => Some("--random-fully"),
    }
}

/// What the ADD batch needs to know.
#[derive(Debug, Clone)]
pub struct PodSnat<'a> {
    pub chain: &'a str,
    pub comment: &'a str,
    pub pod_ip: IpAddr,
    pub node_ip: IpAddr,
    pub random: Option<&'static str>,
}

impl PodSnat<'_> {
    /// The firewall family of the pod's egress address.
    pub fn family(&self) -> Family {
        family_of(self.pod_ip)
    }

    /// The pod's address as `iptables-save` prints a source (`/32`, `/128`).
    fn saved_source(&self) -> String {
        let len = if self.pod_ip.is_ipv4() { 32 } else { 128 };
        format!("{}/{len}", self.pod_ip)
    }

    /// The multicast range the chain accepts unSNATed (upstream `ipv4MulticastRange` /
    /// `ipv6MulticastRange`).
    fn multicast(&self) -> &'static str {
        if self.pod_ip.is_ipv4() {
            "224.0.0.0/4"
        } else {
            "ff00::/8"
        }
    }
}

/// The firewall family of `ip`.
pub fn family_of(ip: IpAddr) -> Family {
    if ip.is_ipv4() { Family::V4 } else { Family::V6 }
}

/// Whether `POSTROUTING` already jumps to `chain` for `pod_ip`.
fn has_jump(current: &SavedTable, s: &PodSnat<'_>) -> bool {
    let src = s.saved_source();
    current.rules.iter().any(|r| {
        r.chain == "POSTROUTING"
            && r.args.windows(2).any(|w| w == ["-s", src.as_str()])
            && r.args.windows(2).any(|w| w == ["-j", s.chain])
    })
}

/// The ADD batch. Declaring the chain flushes it, so its two rules are never duplicated; the
/// `POSTROUTING` jump is appended only when absent (append-unique), and jumps to the chain for
/// another source (an earlier address of the same container) are removed.
pub fn add_batch(current: &SavedTable, s: &PodSnat<'_>) -> String {
    let c = quote(s.comment);
    let src = s.saved_source();
    let mut out = String::from("*nat\n");
    for r in current.rules.iter().filter(|r| {
        r.chain == "POSTROUTING"
            && r.args.windows(2).any(|w| w == ["-j", s.chain])
            && !r.args.windows(2).any(|w| w == ["-s", src.as_str()])
    }) {
        out.push_str(&format!("-D POSTROUTING {}\n", r.args_line()));
    }
    out.push_str(&format!(":{} - [0:0]\n", s.chain));
    out.push_str(&format!(
        "-A {} -d {} -j ACCEPT -m comment --comment {c}\n",
        s.chain,
        s.multicast()
    ));
    out.push_str(&format!(
        "-A {} -j SNAT --to-source {} -m comment --comment {c}",
        s.chain, s.node_ip
    ));
    if let Some(flag) = s.random {
        out.push_str(&format!(" {flag}"));
    }
    out.push('\n');
    if !has_jump(current, s) {
        out.push_str(&format!(
            "-A POSTROUTING -s {} -j {} -m comment --comment {c}\n",
            s.pod_ip, s.chain
        ));
    }
    out.push_str("COMMIT\n");
    out
}

/// The DEL batch: every `POSTROUTING` jump to `chain`, then the chain itself; `None` when
/// neither exists (DEL is idempotent).
pub fn del_batch(current: &SavedTable, chain: &str) -> Option<String> {
    let jumps: Vec<_> = current
        .rules
        .iter()
        .filter(|r| r.chain == "POSTROUTING" && r.args.windows(2).any(|w| w == ["-j", chain]))
        .collect();
    let exists = current.chains.iter().any(|c| c == chain);
    if jumps.is_empty() && !exists {
        return None;
    }
    let mut out = String::from("*nat\n");
    for r in jumps {
        out.push_str(&format!("-D POSTROUTING {}\n", r.args_line()));
    }
    if exists {
        out.push_str(&format!(":{chain} - [0:0]\n-X {chain}\n"));
    }
    out.push_str("COMMIT\n");
    Some(out)
}

fn fw_err(e: KernelError) -> CniError {
    CniError {
        code: IPTABLES_FAILED,
        msg: format!("egress-cni: {e}"),
        details: String::new(),
    }
}

/// The node's backend and its current `nat` table of `family`.
async fn current_nat<K: Kernel>(k: &K, family: Family) -> Result<(Backend, SavedTable), CniError> {
    let backend = firewall::detect_backend(k).await;
    let saved = k
        .firewall_save(backend, family, Some("nat"))
        .await
        .map_err(fw_err)?;
    Ok((backend, parse_table(&saved, "nat")))
}

/// Installs the pod's rules (one restore batch) through the node's kernel `k`.
pub async fn apply<K: Kernel>(k: &K, s: &PodSnat<'_>) -> Result<(), CniError> {
    let (backend, current) = current_nat(k, s.family()).await?;
    k.firewall_restore(backend, s.family(), &add_batch(&current, s))
        .await
        .map_err(fw_err)
}

/// Removes the pod's jump and chain from the `family` table (one restore batch; nothing to
/// do is success).
pub async fn remove<K: Kernel>(k: &K, chain: &str, family: Family) -> Result<(), CniError> {
    let (backend, current) = current_nat(k, family).await?;
    match del_batch(&current, chain) {
        Some(batch) => k
            .firewall_restore(backend, family, &batch)
            .await
            .map_err(fw_err),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_match_upstream_test_vectors() {
        assert_eq!(
            snat_chain_name("aws-cni", "containerId-123", false),
            "CNI-E4-5740307710ebfd5fb24f5"
        );
        assert_eq!(
            snat_chain_name("aws-cni", "containerId-789", true),
            "CNI-E6-e335b08ae90730d0a659a"
        );
    }

    fn pod() -> PodSnat<'static> {
        PodSnat {
            chain: "CNI-E6-e335b08ae90730d0a659a",
            comment: "name: \"aws-cni\" id: \"containerId-789\"",
            pod_ip: "fd00::ac:2".parse().unwrap(),
            node_ip: "2600:1f14::10".parse().unwrap(),
            random: random_flag(Some("prng")),
        }
    }

    #[test]
    fn add_batch_is_upstream_rules_and_unique() {
        let batch = add_batch(&SavedTable::default(), &pod());
        let c = r#""name: \"aws-cni\" id: \"containerId-789\"""#;
        assert_eq!(
            batch,
            format!(
                "*nat\n:CNI-E6-e335b08ae90730d0a659a - [0:0]\n\
                 -A CNI-E6-e335b08ae90730d0a659a -d ff00::/8 -j ACCEPT -m comment --comment {c}\n\
                 -A CNI-E6-e335b08ae90730d0a659a -j SNAT --to-source 2600:1f14::10 -m comment --comment {c} --random-fully\n\
                 -A POSTROUTING -s fd00::ac:2 -j CNI-E6-e335b08ae90730d0a659a -m comment --comment {c}\n\
                 COMMIT\n"
            )
        );
        let saved = parse_table(
            "*nat\n:POSTROUTING ACCEPT [0:0]\n:CNI-E6-e335b08ae90730d0a659a - [0:0]\n\
             -A POSTROUTING -s fd00::ac:2/128 -m comment --comment \"x\" -j CNI-E6-e335b08ae90730d0a659a\nCOMMIT\n",
            "nat",
        );
        assert!(!add_batch(&saved, &pod()).contains("POSTROUTING"));
        // The same container's chain with an older address: that jump goes.
        let moved = PodSnat {
            pod_ip: "fd00::ac:9".parse().unwrap(),
            ..pod()
        };
        let batch = add_batch(&saved, &moved);
        assert!(
            batch.contains("-D POSTROUTING -s fd00::ac:2/128"),
            "{batch}"
        );
        assert!(batch.contains("-A POSTROUTING -s fd00::ac:9 "), "{batch}");
        let del = del_batch(&saved, pod().chain).unwrap();
        assert!(del.contains("-D POSTROUTING -s fd00::ac:2/128"), "{del}");
        assert!(del.contains("-X CNI-E6-e335b08ae90730d0a659a"), "{del}");
        assert_eq!(del_batch(&SavedTable::default(), pod().chain), None);
    }

    #[test]
    fn ipv4_batch_is_upstreams_test_cmd_add_v4() {
        // Upstream `TestCmdAddV4`'s expected rules.
        let s = PodSnat {
            chain: "CNI-E4-5740307710ebfd5fb24f5",
            comment: "name: \"aws-cni\" id: \"containerId-123\"",
            pod_ip: "169.254.172.10".parse().unwrap(),
            node_ip: "192.168.1.123".parse().unwrap(),
            random: random_flag(Some("prng")),
        };
        assert_eq!(s.family(), Family::V4);
        let batch = add_batch(&SavedTable::default(), &s);
        assert!(
            batch.contains("-A CNI-E4-5740307710ebfd5fb24f5 -d 224.0.0.0/4 -j ACCEPT"),
            "{batch}"
        );
        assert!(
            batch.contains("-j SNAT --to-source 192.168.1.123 -m comment"),
            "{batch}"
        );
        assert!(
            batch.contains("-A POSTROUTING -s 169.254.172.10 -j CNI-E4-5740307710ebfd5fb24f5"),
            "{batch}"
        );
        let saved = parse_table(
            "*nat\n:POSTROUTING ACCEPT [0:0]\n:CNI-E4-5740307710ebfd5fb24f5 - [0:0]\n\
             -A POSTROUTING -s 169.254.172.10/32 -j CNI-E4-5740307710ebfd5fb24f5\nCOMMIT\n",
            "nat",
        );
        assert!(
            !add_batch(&saved, &s).contains("POSTROUTING"),
            "jump already there"
        );
    }

    #[test]
    fn randomisation_flags() {
        assert_eq!(random_flag(None), Some("--random-fully"));
        assert_eq!(random_flag(Some("none")), None);
        assert_eq!(random_flag(Some("hashrandom")), Some("--random"));
    }
}

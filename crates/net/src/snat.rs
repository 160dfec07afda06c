//! The SNAT, NodePort and connmark rules of upstream's `updateHostIptablesRules`
//! (`pkg/networkutils/network.go`) and `iptablesConnmark`
//! (`pkg/networkutils/iptables_connmark.go`), as a desired state, and the one
//! `iptables-restore` batch per table that takes the kernel there. With the nftables
//! connmark backend ([`crate::nft_connmark`]) the `nat` table holds no connmark rules, so
//! the batch removes any left by the iptables backend (the iptables→nftables migration).
//!
//! Ownership: chains named `AWS-SNAT-CHAIN-*` / `AWS-CONNMARK-CHAIN-*` are ours and are
//! rewritten whole; in built-in chains, a rule is ours when its comment starts with `AWS`.
//! Every other rule (kube-proxy's, the operator's) is never touched. A batch is committed
//! atomically by `iptables-restore --noflush`, so replacing our rules leaves no gap.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::connmark::ConnmarkBackend;
use crate::iptables_save::{Rule, SavedTable};

/// `AWS_VPC_K8S_CNI_RANDOMIZESNAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Randomize {
    /// `--random-fully` (falls back to `--random` when iptables lacks it).
    Prng,
    /// `--random`.
    HashRandom,
    /// No flag.
    None,
}

/// Everything the host rules depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnatSettings {
    pub primary_ip: Ipv4Addr,
    /// Name of the primary ENI's link.
    pub primary_if: String,
    pub vpc_cidrs: Vec<Ipv4Net>,
    pub exclude_cidrs: Vec<Ipv4Net>,
    pub external_snat: bool,
    pub node_port_support: bool,
    pub randomize: Randomize,
    pub random_fully_supported: bool,
    pub veth_prefix: String,
    pub connmark: u32,
    /// Where the connmark rules live ([`crate::connmark`]).
    pub connmark_backend: ConnmarkBackend,
}

impl SnatSettings {
    /// The destinations that are never marked: VPC CIDRs, then excluded CIDRs (upstream's
    /// `append(vpcCIDRs, n.excludeSNATCIDRs...)`).
    pub fn exempt_cidrs(&self) -> Vec<Ipv4Net> {
        self.vpc_cidrs
            .iter()
            .chain(&self.exclude_cidrs)
            .copied()
            .collect()
    }
}

pub const SNAT_CHAIN: &str = "AWS-SNAT-CHAIN-0";
pub const CONNMARK_CHAIN: &str = "AWS-CONNMARK-CHAIN-0";
const OWN_CHAIN_PREFIXES: [&str; 2] = ["AWS-SNAT-CHAIN", "AWS-CONNMARK-CHAIN"];

fn is_own_chain(chain: &str) -> bool {
    OWN_CHAIN_PREFIXES.iter().any(|p| chain.starts_with(p))
}

fn is_own_rule(rule: &Rule) -> bool {
    is_own_chain(&rule.chain) || rule.comment().is_some_and(|c| c.starts_with("AWS"))
}

/// `-d <cidr>` or nothing for `0.0.0.0/0` (the kernel drops it).
fn dst(cidr: &Ipv4Net) -> String {
    if cidr.prefix_len() == 0 {
        String::new()
    } else {
        format!("-d {cidr} ")
    }
}

/// Desired `nat` rules, in order (built-in chains first, then our chains' contents).
pub fn desired_nat(s: &SnatSettings) -> Vec<Rule> {
    if s.external_snat {
        return Vec::new();
    }
    let mark = s.connmark;
    let iptables_connmark = s.connmark_backend == ConnmarkBackend::Iptables;
    let mut rules = Vec::new();
    if iptables_connmark {
        rules.push(Rule::new(
            "PREROUTING",
            &format!(
                r#"-i {}+ -m comment --comment "AWS, outbound connections" -j {CONNMARK_CHAIN}"#,
                s.veth_prefix
            ),
        ));
        rules.push(Rule::new(
            "PREROUTING",
            &format!(
                r#"-m comment --comment "AWS, CONNMARK" -j CONNMARK --restore-mark --nfmask {mark:#x} --ctmask {mark:#x}"#
            ),
        ));
    }
    rules.push(Rule::new(
        "POSTROUTING",
        &format!(r#"-m comment --comment "AWS SNAT CHAIN" -j {SNAT_CHAIN}"#),
    ));
    for cidr in &s.vpc_cidrs {
        rules.push(Rule::new(
            SNAT_CHAIN,
            &format!(
                r#"{}-m comment --comment "AWS SNAT CHAIN" -j RETURN"#,
                dst(cidr)
            ),
        ));
    }
    for cidr in &s.exclude_cidrs {
        rules.push(Rule::new(
            SNAT_CHAIN,
            &format!(
                r#"{}-m comment --comment "AWS SNAT CHAIN EXCLUSION" -j RETURN"#,
                dst(cidr)
            ),
        ));
    }
    let random = match (s.randomize, s.random_fully_supported) {
        (Randomize::Prng, true) => " --random-fully",
        (Randomize::Prng, false) | (Randomize::HashRandom, _) => " --random",
        (Randomize::None, _) => "",
    };
    rules.push(Rule::new(
        SNAT_CHAIN,
        &format!(r#"! -o vlan+ -m comment --comment "AWS, SNAT" -m addrtype ! --dst-type LOCAL -j SNAT --to-source {}{random}"#, s.primary_ip),
    ));
    if !iptables_connmark {
        return rules;
    }
    for cidr in s.vpc_cidrs.iter().chain(&s.exclude_cidrs) {
        rules.push(Rule::new(
            CONNMARK_CHAIN,
            &format!(
                r#"{}-m comment --comment "AWS CONNMARK CHAIN" -j RETURN"#,
                dst(cidr)
            ),
        ));
    }
    rules.push(Rule::new(
        CONNMARK_CHAIN,
        &format!(
            r#"-m comment --comment "AWS, CONNMARK" -j CONNMARK --set-xmark {mark:#x}/{mark:#x}"#
        ),
    ));
    rules
}

/// Desired `mangle` rules (NodePort support and connmark restore for pod replies).
pub fn desired_mangle(s: &SnatSettings) -> Vec<Rule> {
    let mark = s.connmark;
    let mut rules = Vec::new();
    if s.node_port_support {
        rules.push(Rule::new("PREROUTING", &format!(r#"-i {} -m comment --comment "AWS, primary ENI" -m addrtype --dst-type LOCAL --limit-iface-in -j CONNMARK --set-xmark {mark:#x}/{mark:#x}"#, s.primary_if)));
    }
    if s.node_port_support || !s.external_snat {
        rules.push(Rule::new("PREROUTING", &format!(r#"-i {}+ -m comment --comment "AWS, primary ENI" -j CONNMARK --restore-mark --nfmask {mark:#x} --ctmask {mark:#x}"#, s.veth_prefix)));
    }
    if s.node_port_support {
        rules.push(Rule::new("PREROUTING", &format!(r#"-i vlan+ -m comment --comment "AWS, primary ENI" -j CONNMARK --restore-mark --nfmask {mark:#x} --ctmask {mark:#x}"#)));
    }
    rules
}

/// Rules grouped by chain, keeping their order within each chain.
fn by_chain<'a>(rules: impl Iterator<Item = &'a Rule>) -> BTreeMap<&'a str, Vec<&'a Rule>> {
    let mut map: BTreeMap<&str, Vec<&Rule>> = BTreeMap::new();
    for rule in rules {
        map.entry(rule.chain.as_str()).or_default().push(rule);
    }
    map
}

/// The `iptables-restore --noflush` input that turns `current` into `desired` for `table`,
/// or `None` when our rules are already exactly as desired.
pub fn restore_batch(table: &str, current: &SavedTable, desired: &[Rule]) -> Option<String> {
    let current_ours: Vec<&Rule> = current.rules.iter().filter(|r| is_own_rule(r)).collect();
    // Order matters within a chain only: iptables-save groups rules by chain.
    let same = by_chain(current_ours.iter().copied()) == by_chain(desired.iter());
    let mut wanted_chains: Vec<&str> = desired
        .iter()
        .map(|r| r.chain.as_str())
        .filter(|c| is_own_chain(c))
        .collect();
    wanted_chains.dedup();
    let stale_chains: Vec<&str> = current
        .chains
        .iter()
        .map(String::as_str)
        .filter(|c| is_own_chain(c) && !wanted_chains.contains(c))
        .collect();
    let missing_chains = wanted_chains
        .iter()
        .any(|c| !current.chains.iter().any(|x| x == c));
    if same && stale_chains.is_empty() && !missing_chains {
        return None;
    }
    let mut out = format!("*{table}\n");
    // Declaring a chain in --noflush mode creates or flushes it.
    for chain in wanted_chains.iter().chain(&stale_chains) {
        out.push_str(&format!(":{chain} - [0:0]\n"));
    }
    for rule in current_ours.iter().filter(|r| !is_own_chain(&r.chain)) {
        out.push_str(&format!("-D {} {}\n", rule.chain, rule.args_line()));
    }
    for rule in desired {
        out.push_str(&format!("-A {} {}\n", rule.chain, rule.args_line()));
    }
    for chain in &stale_chains {
        out.push_str(&format!("-X {chain}\n"));
    }
    out.push_str("COMMIT\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iptables_save::parse_table;

    fn settings() -> SnatSettings {
        SnatSettings {
            primary_ip: Ipv4Addr::new(10, 10, 10, 20),
            primary_if: "eth0".into(),
            vpc_cidrs: vec![],
            exclude_cidrs: vec![],
            external_snat: false,
            node_port_support: false,
            randomize: Randomize::None,
            random_fully_supported: true,
            veth_prefix: "eni".into(),
            connmark: 0x80,
            connmark_backend: ConnmarkBackend::Iptables,
        }
    }

    fn lines(rules: &[Rule]) -> Vec<String> {
        rules
            .iter()
            .map(|r| format!("{} {}", r.chain, r.args_line()))
            .collect()
    }

    #[test]
    fn upstream_dataplane_nodeport_disabled_snat_enabled() {
        // upstream network_test.go: TestSetupHostNetworkNodePortDisabledAndSNATEnabled
        let s = settings();
        let nat = lines(&desired_nat(&s));
        assert!(nat.contains(&r#"AWS-SNAT-CHAIN-0 ! -o vlan+ -m comment --comment "AWS, SNAT" -m addrtype ! --dst-type LOCAL -j SNAT --to-source 10.10.10.20"#.to_string()));
        assert!(nat.contains(
            &r#"POSTROUTING -m comment --comment "AWS SNAT CHAIN" -j AWS-SNAT-CHAIN-0"#.to_string()
        ));
        assert_eq!(
            lines(&desired_mangle(&s)),
            [
                r#"PREROUTING -i eni+ -m comment --comment "AWS, primary ENI" -j CONNMARK --restore-mark --nfmask 0x80 --ctmask 0x80"#
            ]
        );
    }

    #[test]
    fn cidrs_exclusions_randomisation_and_external_snat() {
        let mut s = settings();
        s.vpc_cidrs = vec!["10.0.0.0/16".parse().unwrap()];
        s.exclude_cidrs = vec!["0.0.0.0/0".parse().unwrap()];
        s.randomize = Randomize::Prng;
        let nat = lines(&desired_nat(&s));
        let snat: Vec<_> = nat
            .iter()
            .filter(|l| l.starts_with("AWS-SNAT-CHAIN-0"))
            .collect();
        assert_eq!(snat.len(), 3);
        assert!(snat[0].contains("-d 10.0.0.0/16"));
        assert_eq!(
            snat[1],
            r#"AWS-SNAT-CHAIN-0 -m comment --comment "AWS SNAT CHAIN EXCLUSION" -j RETURN"#
        );
        assert!(snat[2].ends_with("--random-fully"), "SNAT stays last");
        s.random_fully_supported = false;
        assert!(
            lines(&desired_nat(&s))
                .iter()
                .any(|l| l.ends_with("--to-source 10.10.10.20 --random"))
        );
        let connmark: Vec<_> = nat
            .iter()
            .filter(|l| l.starts_with("AWS-CONNMARK-CHAIN-0"))
            .collect();
        assert_eq!(connmark.len(), 3);
        assert!(connmark[2].ends_with("--set-xmark 0x80/0x80"));
        s.external_snat = true;
        assert!(desired_nat(&s).is_empty());
        assert!(
            desired_mangle(&s).is_empty(),
            "no NodePort, external SNAT: no mangle rules"
        );
        s.node_port_support = true;
        assert_eq!(desired_mangle(&s).len(), 3);
    }

    #[test]
    fn batch_replaces_only_our_rules_and_is_empty_when_converged() {
        let s = settings();
        let desired = desired_nat(&s);
        let dump = r#"*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-POSTROUTING - [0:0]
:AWS-SNAT-CHAIN-1 - [0:0]
-A PREROUTING -i eni+ -m comment --comment "AWS, outbound connections" -m state --state NEW -j AWS-CONNMARK-CHAIN-0
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
COMMIT
"#;
        let current = parse_table(dump, "nat");
        let batch = restore_batch("nat", &current, &desired).unwrap();
        for chain in [SNAT_CHAIN, CONNMARK_CHAIN, "AWS-SNAT-CHAIN-1"] {
            assert!(
                batch.contains(&format!("\n:{chain} - [0:0]\n")),
                "{chain} declared: {batch}"
            );
        }
        assert!(batch.contains(r#"-D PREROUTING -i eni+ -m comment --comment "AWS, outbound connections" -m state --state NEW -j AWS-CONNMARK-CHAIN-0"#), "the legacy rule goes");
        assert!(
            !batch.contains("KUBE-POSTROUTING\n-D"),
            "kube-proxy's rules are not touched"
        );
        assert!(!batch.contains("-D POSTROUTING -m comment --comment \"kubernetes"));
        assert!(
            batch.contains("-X AWS-SNAT-CHAIN-1"),
            "legacy multi-chain layout removed"
        );
        assert!(batch.ends_with("COMMIT\n"));

        // Apply the batch to the model: what the kernel would then print.
        let mut after = SavedTable {
            chains: vec![
                "PREROUTING".into(),
                "POSTROUTING".into(),
                "KUBE-POSTROUTING".into(),
                SNAT_CHAIN.into(),
                CONNMARK_CHAIN.into(),
            ],
            rules: current
                .rules
                .iter()
                .filter(|r| !is_own_rule(r))
                .cloned()
                .collect(),
        };
        after.rules.extend(desired.iter().cloned());
        assert_eq!(
            restore_batch("nat", &after, &desired),
            None,
            "converged: no batch"
        );
    }

    #[test]
    fn nftables_backend_leaves_no_iptables_connmark_rules() {
        // Upstream's nftConnmark.cleanupIptablesConnmarkRules, as a desired state.
        let mut s = settings();
        s.vpc_cidrs = vec!["10.0.0.0/16".parse().unwrap()];
        let with = desired_nat(&s);
        s.connmark_backend = ConnmarkBackend::Nftables;
        let without = desired_nat(&s);
        assert_eq!(
            lines(&without),
            lines(&with)
                .into_iter()
                .filter(|l| !l.contains("CONNMARK"))
                .collect::<Vec<_>>()
        );
        assert!(lines(&without).iter().any(|l| l.contains("-j SNAT")));
        let mut current = SavedTable {
            chains: vec![
                "PREROUTING".into(),
                SNAT_CHAIN.into(),
                CONNMARK_CHAIN.into(),
            ],
            rules: with,
        };
        current.chains.push("POSTROUTING".into());
        let batch = restore_batch("nat", &current, &without).unwrap();
        assert!(batch.contains(r#"-D PREROUTING -i eni+ -m comment --comment "AWS, outbound connections" -j AWS-CONNMARK-CHAIN-0"#), "{batch}");
        assert!(
            batch.contains(r#"-D PREROUTING -m comment --comment "AWS, CONNMARK" -j CONNMARK"#),
            "{batch}"
        );
        assert!(
            batch.contains(&format!(":{CONNMARK_CHAIN} - [0:0]\n")),
            "flushed: {batch}"
        );
        assert!(
            batch.contains(&format!("-X {CONNMARK_CHAIN}\n")),
            "deleted: {batch}"
        );
        // The mangle restore rule for pod replies stays in both backends.
        assert_eq!(desired_mangle(&s).len(), 1);
    }
}

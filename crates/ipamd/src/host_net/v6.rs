//! Node set-up in an IPv6 cluster (upstream `SetupHostNetwork` with `v6Enabled`,
//! `pkg/networkutils/network.go`): the primary link's MTU, egress-cni's IPv4 range blocked
//! in `FORWARD` (`enableIPv6`), the main-ENI fwmark rule in the IPv6 family, in strict
//! security-groups-for-pods mode the IPv6 `local` rule at priority 20 and the ICMPv6 gateway
//! rule, and no SNAT, connmark or external-service rules (`UpdateHostSNATRules` is a no-op
//! in IPv6 mode).

use net::firewall::{self, Family};
use net::kernel::Kernel;
use net::netlink::{Family as IpFamily, Rule};
use net::route_table::{MAIN_TABLE, priority};

use super::{HostNet, HostNetError, mac};

/// egress-cni's IPv4 range for pods in IPv6 clusters (upstream's conflist default).
pub const EGRESS_V4_RANGE: &str = "169.254.172.0/22";

impl<K: Kernel> HostNet<K> {
    /// [`HostNet::setup_node`] in an IPv6 cluster. Returns how many firewall batches were
    /// applied (0 when the block was already there).
    pub(super) async fn setup_node_v6(&self, primary_mac: &str) -> Result<usize, HostNetError> {
        let s = &self.settings;
        let link = self
            .nl
            .link_by_mac(mac(primary_mac)?, s.link_attempts, s.link_interval)
            .await?;
        self.nl.set_link_up(link.index, Some(s.eni_mtu)).await?;
        let backend = firewall::detect_backend(&self.nl).await;
        tracing::info!(backend = backend.name(), "iptables backend (IPv6 cluster)");
        let applied = self.block_node_local_range(backend, Family::V4).await?;
        // Upstream deletes the rule and adds it back when NodePort support is on or SNAT
        // is not external (which it never is in IPv6): the rule is there unless
        // AWS_VPC_CNI_NODE_PORT_SUPPORT=false with AWS_VPC_K8S_CNI_EXTERNALSNAT=true.
        let fwmark = Rule {
            priority: Some(priority::MAIN_ENI_FWMARK),
            fwmark: Some(s.connmark),
            fwmask: Some(s.connmark),
            table: MAIN_TABLE,
            family: IpFamily::V6,
            ..Rule::default()
        };
        self.nl.delete_rule_all(&fwmark).await?;
        if s.node_port_support || !s.external_snat {
            self.nl.add_rule(&fwmark).await?;
        }
        if s.strict_pod_eni {
            net::host::setup_ipv6_strict_mode(&self.nl).await?;
        }
        Ok(applied)
    }

    /// The trunk ENI's link in an IPv6 cluster, once it appears: up, with the ENI MTU (the
    /// part of upstream's `SetupENINetwork` a trunk needs: branch pods' VLAN links ride on
    /// it; no addresses, routes or rules of its own). Returns its ifindex.
    pub async fn bring_up_trunk(&self, trunk_mac: &str) -> Result<u32, HostNetError> {
        let s = &self.settings;
        let link = self
            .nl
            .link_by_mac(mac(trunk_mac)?, s.link_attempts, s.link_interval)
            .await?;
        self.nl.set_link_up(link.index, Some(s.eni_mtu)).await?;
        Ok(link.index)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use net::testing::{Call, Recording};

    use super::*;

    fn settings() -> super::super::HostNetSettings {
        let mut s = super::super::tests::settings();
        s.ipv6 = true;
        s.v6_egress = false;
        s
    }

    #[tokio::test]
    async fn an_ipv6_node_gets_the_ipv4_block_and_the_ipv6_fwmark_rule_and_no_snat() {
        let node = Recording::new("node");
        node.add_link("eth0", Some(mac("02:00:00:00:00:01").unwrap()), None);
        let host = HostNet::with_kernel(node.clone(), settings());
        let applied = host
            .setup_node("02:00:00:00:00:01", Ipv4Addr::new(10, 0, 0, 10))
            .await
            .unwrap();
        assert_eq!(applied, 1, "only the FORWARD block");
        let restores: Vec<(String, String)> = node
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::FirewallRestore { command, batch } => Some((command, batch)),
                _ => None,
            })
            .collect();
        assert_eq!(restores.len(), 1, "{restores:?}");
        let (command, batch) = &restores[0];
        assert!(command.starts_with("iptables"), "IPv4 iptables: {command}");
        assert!(
            batch.contains(
                "-I FORWARD 1 -d 169.254.172.0/22 -m conntrack --ctstate NEW -m comment --comment \"Block Node Local Pod access via IPv4\" -j REJECT"
            ),
            "{batch}"
        );
        assert!(!node.calls().iter().any(|c| matches!(c, Call::NftApply(_))));
        let model = node.model();
        assert_eq!(
            model.rules,
            [Rule {
                priority: Some(1024),
                fwmark: Some(0x80),
                fwmask: Some(0x80),
                table: MAIN_TABLE,
                family: IpFamily::V6,
                ..Rule::default()
            }],
            "the IPv6 fwmark rule and no IPv4 rules"
        );
        assert!(node.calls().contains(&Call::SetLinkUp {
            link: "eth0".into(),
            mtu: Some(9001)
        }));
    }

    #[tokio::test]
    async fn a_restart_converges_without_a_second_block_and_external_snat_drops_the_rule() {
        let node = Recording::new("node");
        node.add_link("eth0", Some(mac("02:00:00:00:00:01").unwrap()), None);
        let ip = Ipv4Addr::new(10, 0, 0, 10);
        let first = HostNet::with_kernel(node.clone(), settings());
        first.setup_node("02:00:00:00:00:01", ip).await.unwrap();
        let v6_rules = || {
            let rules = node.model().rules;
            assert!(
                rules.iter().all(|r| r.family() == IpFamily::V6),
                "{rules:?}"
            );
            rules.len()
        };
        assert_eq!(v6_rules(), 1);
        let mut off = settings();
        off.node_port_support = false;
        off.external_snat = true;
        let second = HostNet::with_kernel(node.clone(), off);
        second.setup_node("02:00:00:00:00:01", ip).await.unwrap();
        assert_eq!(v6_rules(), 0);
    }
}

//! Host networking done by ipamd (upstream `SetupHostNetwork`, `setupENINetwork` and
//! `updateHostIptablesRules` in `pkg/networkutils/network.go`): the primary ENI's MTU and
//! main-ENI fwmark rule, the external-service rules, the SNAT/NodePort/connmark firewall (one
//! `iptables-restore --wait` batch per table, the connmark rules in iptables or, when the
//! node's iptables is nf_tables, one `nft -f` batch for table `ip aws-cni`; re-run when the
//! VPC's CIDRs change), each secondary ENI's route table and rule once its link shows up,
//! and the rules of a freed ENI.
//! Every kernel side effect goes through `net`'s [`Kernel`] seam (the real kernel by default,
//! `net::testing::Recording` in unit tests), optionally inside a given network namespace
//! (the demo node and the tests).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ipnet::Ipv4Net;
use net::connmark::ConnmarkBackend;
use net::firewall::{self, Family};
use net::host::{EniSetup, setup_eni};
use net::iptables_backend::Backend;
use net::kernel::Kernel;
use net::netlink::{Mac, NetlinkError, NetlinkHandle, Rule};
use net::netns::Netns;
use net::route_table::{MAIN_TABLE, priority};
use net::snat::{Randomize, SnatSettings};

use crate::metrics::Metrics;

mod v6;

/// Host networking failures.
#[derive(Debug, thiserror::Error)]
pub enum HostNetError {
    #[error("network namespace: {0}")]
    Netns(#[from] net::netns::NetnsError),
    #[error("netlink: {0}")]
    Netlink(#[from] NetlinkError),
    #[error("bad MAC {0:?}")]
    Mac(String),
    #[error("the node's SNAT rules were never set up")]
    NotSetUp,
}

/// Node-wide settings of the host network.
#[derive(Debug, Clone)]
pub struct HostNetSettings {
    /// Run everything inside this network namespace (else the current one).
    pub netns: Option<PathBuf>,
    pub eni_mtu: u32,
    pub vpc_cidrs: Vec<Ipv4Net>,
    pub exclude_snat_cidrs: Vec<Ipv4Net>,
    /// `AWS_EXTERNAL_SERVICE_CIDRS`: `to <cidr> lookup main priority 1535` each.
    pub external_service_cidrs: Vec<Ipv4Net>,
    pub external_snat: bool,
    pub node_port_support: bool,
    pub randomize: Randomize,
    pub veth_prefix: String,
    pub connmark: u32,
    /// `ENABLE_V6_EGRESS`: block connections into egress-cni's IPv6 pod range (upstream
    /// `SetupHostNetwork`).
    pub v6_egress: bool,
    /// IPv6 cluster: node set-up is [`HostNet::setup_node`]'s IPv6 form (no SNAT, the
    /// fwmark rule in IPv6, egress-cni's IPv4 range blocked).
    pub ipv6: bool,
    /// `ENABLE_POD_ENI=true` with `POD_SECURITY_GROUP_ENFORCING_MODE=strict`: the `local`
    /// rule moves from priority 0 to 20, below branch pods' priority-10 `iif` rules.
    pub strict_pod_eni: bool,
    /// Attempts and pause when waiting for a hot-plugged link.
    pub link_attempts: u32,
    pub link_interval: Duration,
}

/// egress-cni's IPv6 range for pods in IPv4 clusters (upstream's conflist default).
pub const EGRESS_V6_RANGE: &str = "fd00::ac:00/118";

/// The node namespace's kernel plus the settings.
pub struct HostNet<K: Kernel = NetlinkHandle> {
    nl: K,
    settings: HostNetSettings,
    /// `awscni_connmark_*` and `awscni_ipamd_error_count` (optional: tests).
    metrics: OnceLock<Arc<Metrics>>,
    /// The backend and SNAT settings last programmed (re-run when the VPC CIDRs change).
    snat: Mutex<Option<(Backend, SnatSettings)>>,
}

fn mac(text: &str) -> Result<Mac, HostNetError> {
    Mac::from_str(text).map_err(|_| HostNetError::Mac(text.to_string()))
}

impl HostNet<NetlinkHandle> {
    /// Host networking on the real kernel, in `settings.netns` or the current namespace.
    pub fn new(settings: HostNetSettings) -> Result<Self, HostNetError> {
        let nl = match &settings.netns {
            Some(path) => NetlinkHandle::in_netns(&Netns::open(path)?)?,
            None => NetlinkHandle::current()?,
        };
        Ok(Self::with_kernel(nl, settings))
    }
}

impl<K: Kernel> HostNet<K> {
    /// Host networking on `kernel` (a handle bound to the node's namespace).
    pub fn with_kernel(kernel: K, settings: HostNetSettings) -> Self {
        Self {
            nl: kernel,
            settings,
            metrics: OnceLock::new(),
            snat: Mutex::new(None),
        }
    }

    /// Counts firewall programming outcomes and rule failures in `metrics` from now on (the
    /// first call wins).
    pub fn set_metrics(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// egress-cni's IPv6 pod addresses are for egress only; nothing may open a connection to
    /// them (upstream `SetupHostNetwork` with `ENABLE_V6_EGRESS`). One ip6tables rule at the
    /// top of FORWARD, added once.
    async fn block_egress_range(&self, backend: Backend) -> Result<usize, HostNetError> {
        self.block_node_local_range(backend, Family::V6).await
    }

    /// egress-cni's pod range of `family` (IPv6 in IPv4 clusters, IPv4 in IPv6 clusters) is
    /// for egress only: one `REJECT` of new connections to it at the top of `FORWARD`,
    /// added once (upstream `setupRuleToBlockNodeLocalAccess`).
    async fn block_node_local_range(
        &self,
        backend: Backend,
        family: Family,
    ) -> Result<usize, HostNetError> {
        let (range, comment) = match family {
            Family::V6 => (EGRESS_V6_RANGE, "Block Node Local Pod access via IPv6"),
            Family::V4 => (v6::EGRESS_V4_RANGE, "Block Node Local Pod access via IPv4"),
        };
        let saved = self
            .nl
            .firewall_save(backend, family, Some("filter"))
            .await?;
        if saved.contains(comment) {
            return Ok(0);
        }
        let batch = format!(
            "*filter\n-I FORWARD 1 -d {range} -m conntrack --ctstate NEW -m comment --comment \"{comment}\" -j REJECT\nCOMMIT\n"
        );
        self.nl.firewall_restore(backend, family, &batch).await?;
        Ok(1)
    }

    /// The ifindex of the link with `eni_mac` (the trunk ENI: a branch pod's
    /// `ParentIfIndex`), waiting as upstream's `getTrunkLinkIndex` does (5 × 100 ms).
    pub async fn link_index_by_mac(&self, eni_mac: &str) -> Result<u32, HostNetError> {
        let pause = Duration::from_millis(100);
        let link = self.nl.link_by_mac(mac(eni_mac)?, 5, pause).await?;
        Ok(link.index)
    }

    /// Names of the node's links (for the stale-allocation check at restore).
    pub async fn link_names(&self) -> Result<Vec<String>, HostNetError> {
        Ok(self.nl.links().await?.into_iter().map(|l| l.name).collect())
    }

    /// Removes a pod's to-pod and from-pod rules (stale allocations at restore; upstream
    /// `nodeInit` deletes the rules of pods that are gone).
    pub async fn delete_pod_rules(&self, ip: Ipv4Addr) -> Result<usize, HostNetError> {
        let host = net::netlink::Route::host(ip);
        Ok(self
            .nl
            .delete_rules_where(|r| {
                (r.priority == Some(priority::FROM_POD) && r.src == Some(host))
                    || (r.priority == Some(priority::TO_POD) && r.dst == Some(host))
            })
            .await?)
    }

    /// Restored pods' from-pod rules, each collapsed into one `from <ip>/32 lookup <table>
    /// priority 1536` (upstream's `configureIPRulesForPods` → `UpdateRuleListBySrc`; see
    /// [`net::host::collapse_from_pod_rules`]). The rule list is read once; a pod whose
    /// rules cannot be rewritten is logged and skipped, as upstream. Returns how many pods'
    /// rules were rewritten.
    pub async fn collapse_pod_rules(&self, ips: &[Ipv4Addr]) -> Result<usize, HostNetError> {
        use net::host::FromPodRules;
        let rules = self.nl.rules(net::netlink::Family::V4).await?;
        let mut rewritten = 0;
        for &ip in ips {
            match net::host::collapse_from_pod_rules(&self.nl, &rules, ip).await {
                Ok(FromPodRules::Rewritten { table, deleted }) => {
                    tracing::info!(%ip, table, deleted, "from-pod rules rewritten to one priority-1536 rule");
                    rewritten += 1;
                }
                Ok(FromPodRules::None | FromPodRules::Converged { .. }) => {}
                Err(e) => tracing::warn!(%ip, "rewriting the from-pod rules at start: {e}"),
            }
        }
        Ok(rewritten)
    }

    /// Node set-up (upstream's `SetupHostNetwork`): primary link MTU, the fwmark rule, the
    /// external-service rules, SNAT/connmark/mangle. Returns how many firewall batches were
    /// applied (0 when already converged).
    pub async fn setup_node(
        &self,
        primary_mac: &str,
        primary_ip: Ipv4Addr,
    ) -> Result<usize, HostNetError> {
        if self.settings.ipv6 {
            return self.setup_node_v6(primary_mac).await;
        }
        let s = &self.settings;
        let link = self
            .nl
            .link_by_mac(mac(primary_mac)?, s.link_attempts, s.link_interval)
            .await?;
        self.nl.set_link_up(link.index, Some(s.eni_mtu)).await?;
        let fwmark = Rule {
            priority: Some(priority::MAIN_ENI_FWMARK),
            fwmark: Some(s.connmark),
            fwmask: Some(s.connmark),
            table: MAIN_TABLE,
            ..Rule::default()
        };
        self.nl.delete_rule_all(&fwmark).await?;
        if s.node_port_support || !s.external_snat {
            self.nl.add_rule(&fwmark).await?;
        }
        if s.strict_pod_eni {
            net::host::move_local_rule_below_branch_rules(&self.nl, net::firewall::Family::V4)
                .await?;
        }
        // A failure is logged and start-up goes on (upstream's `configureIPRulesForPods`).
        if let Err(e) =
            net::host::set_external_service_rules(&self.nl, &s.external_service_cidrs).await
        {
            tracing::warn!("AWS_EXTERNAL_SERVICE_CIDRS rules at start: {e}");
        }
        let (backend, random_fully_supported, connmark_backend) = self.detect_firewall().await;
        let snat = SnatSettings {
            primary_ip,
            primary_if: link.name.clone(),
            vpc_cidrs: s.vpc_cidrs.clone(),
            exclude_cidrs: s.exclude_snat_cidrs.clone(),
            external_snat: s.external_snat,
            node_port_support: s.node_port_support,
            randomize: s.randomize,
            random_fully_supported,
            veth_prefix: s.veth_prefix.clone(),
            connmark: s.connmark,
            connmark_backend,
        };
        let mut applied = self.program_snat(backend, snat).await?;
        if s.v6_egress {
            applied += self.block_egress_range(backend).await?;
        }
        Ok(applied)
    }

    /// The host's iptables flavour (legacy or nft, as kube-proxy picks it), whether it has
    /// `--random-fully`, and the connmark backend (upstream's `NewConnmark`: chosen once at
    /// start, `awscni_connmark_backend` set at once).
    async fn detect_firewall(&self) -> (Backend, bool, ConnmarkBackend) {
        let backend = firewall::detect_backend(&self.nl).await;
        tracing::info!(backend = backend.name(), "iptables backend");
        let random_fully_supported = firewall::detect_random_fully(&self.nl, backend).await;
        if self.settings.randomize == Randomize::Prng && !random_fully_supported {
            tracing::warn!(
                "{} does not support --random-fully (iptables < 1.6.2): SNAT uses --random",
                backend.iptables()
            );
        }
        let connmark = firewall::detect_connmark_backend(&self.nl, backend).await;
        tracing::info!(backend = connmark.name(), "connmark backend");
        if let Some(m) = self.metrics.get() {
            m.connmark_backend
                .with_label_values(&[connmark.name()])
                .set(1.0);
        }
        (backend, random_fully_supported, connmark)
    }

    /// Takes the SNAT/connmark tables (and the nftables connmark table) to `snat` and
    /// remembers it; counts the outcome in `awscni_connmark_reconcile_total`.
    async fn program_snat(
        &self,
        backend: Backend,
        snat: SnatSettings,
    ) -> Result<usize, HostNetError> {
        let result = firewall::reconcile_snat(&self.nl, backend, &snat).await;
        if let Some(m) = self.metrics.get() {
            let outcome = if result.is_ok() { "success" } else { "error" };
            m.connmark_reconcile_total
                .with_label_values(&[outcome])
                .inc();
        }
        let applied = result?;
        *self.snat.lock().unwrap_or_else(|e| e.into_inner()) = Some((backend, snat));
        Ok(applied)
    }

    /// The VPC's CIDRs changed (upstream's `updateCIDRsRulesOnChange`): the SNAT exemptions
    /// follow. Returns how many batches were applied.
    pub async fn update_vpc_cidrs(&self, vpc_cidrs: &[Ipv4Net]) -> Result<usize, HostNetError> {
        let current = self.snat.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some((backend, mut snat)) = current else {
            return Err(HostNetError::NotSetUp);
        };
        snat.vpc_cidrs = vpc_cidrs.to_vec();
        self.program_snat(backend, snat).await
    }

    /// A secondary ENI (upstream's `SetupENINetwork`), once its link with `eni_mac` appears.
    /// A trunk ENI gets no `from <eniIP> lookup <table> priority 32765` rule: its traffic is
    /// the branch ENIs' VLANs, routed by their own rules.
    pub async fn setup_secondary(
        &self,
        eni_mac: &str,
        eni_ip: Ipv4Addr,
        subnet: Ipv4Net,
        table: u32,
        trunk: bool,
    ) -> Result<(), HostNetError> {
        let mut setup = EniSetup::new(mac(eni_mac)?, eni_ip, subnet, table, self.settings.eni_mtu);
        setup.find_attempts = self.settings.link_attempts;
        setup.find_interval = self.settings.link_interval;
        setup.add_rule = !trunk;
        setup_eni(&self.nl, &setup).await?;
        Ok(())
    }

    /// A freed ENI's rules (upstream's `tryFreeENI`): every rule from its primary IP. When
    /// the primary IP is unknown (EC2 no longer knows the ENI), its priority-32765 rule is
    /// found by its route table. Failures count as `freeENIDeleteRulesFailed`.
    pub async fn delete_eni_rules(
        &self,
        eni_ip: Option<Ipv4Addr>,
        table: u32,
    ) -> Result<usize, HostNetError> {
        let result = match eni_ip {
            Some(ip) => net::host::teardown_eni_rules(&self.nl, ip).await,
            None => {
                self.nl
                    .delete_rules_where(|r| {
                        r.priority == Some(priority::ENI_PRIMARY) && r.table == table
                    })
                    .await
            }
        };
        if let (Err(_), Some(m)) = (&result, self.metrics.get()) {
            m.ipamd_error_count
                .with_label_values(&["freeENIDeleteRulesFailed"])
                .inc();
        }
        Ok(result?)
    }
}

#[cfg(test)]
mod tests {
    use net::testing::{Call, Recording};

    use super::*;

    pub(super) fn settings() -> HostNetSettings {
        HostNetSettings {
            netns: None,
            eni_mtu: 9001,
            vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
            exclude_snat_cidrs: vec![],
            external_service_cidrs: vec!["172.16.0.0/12".parse().unwrap()],
            external_snat: false,
            node_port_support: true,
            randomize: Randomize::Prng,
            veth_prefix: "eni".into(),
            connmark: 0x80,
            v6_egress: true,
            ipv6: false,
            strict_pod_eni: false,
            link_attempts: 1,
            link_interval: Duration::ZERO,
        }
    }

    fn restores(rec: &Recording) -> Vec<(String, String)> {
        rec.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::FirewallRestore { command, batch } => Some((command, batch)),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn node_setup_goes_through_the_seam() {
        let node = Recording::new("node");
        node.add_link("eth0", Some(mac("02:00:00:00:00:01").unwrap()), None);
        let host = HostNet::with_kernel(node.clone(), settings());
        let applied = host
            .setup_node("02:00:00:00:00:01", Ipv4Addr::new(10, 0, 0, 10))
            .await
            .unwrap();
        assert_eq!(
            applied, 4,
            "the nft connmark table (iptables says nf_tables), nat, mangle and the IPv6 egress block"
        );
        assert!(
            matches!(&node.calls()[..], [.., Call::NftApply(b), _, _, _] if b.contains("ip daddr 10.0.0.0/16"))
        );
        let rules = node.model().rules;
        assert!(
            rules
                .iter()
                .any(|r| r.priority == Some(priority::MAIN_ENI_FWMARK)
                    && r.fwmark == Some(0x80)
                    && r.table == MAIN_TABLE)
        );
        assert!(
            rules
                .iter()
                .any(|r| r.priority == Some(priority::EXTERNAL_SERVICE)
                    && r.dst == Some("172.16.0.0/12".parse().unwrap()))
        );
        let cmds: Vec<String> = restores(&node).into_iter().map(|(c, _)| c).collect();
        assert_eq!(
            cmds,
            [
                "iptables-nft-restore --wait=10 --noflush",
                "iptables-nft-restore --wait=10 --noflush",
                "ip6tables-nft-restore --wait=10 --noflush",
            ]
        );
        assert!(node.calls().contains(&Call::SetLinkUp {
            link: "eth0".into(),
            mtu: Some(9001)
        }));

        // New VPC CIDRs: the nat table is rewritten with the new exemption.
        node.clear_journal();
        let cidrs = [
            "10.0.0.0/16".parse().unwrap(),
            "100.64.0.0/16".parse().unwrap(),
        ];
        assert_eq!(host.update_vpc_cidrs(&cidrs).await.unwrap(), 3);
        let (_, nat) = &restores(&node)[0];
        assert!(nat.contains("-d 100.64.0.0/16"), "{nat}");
        assert!(!nat.contains("CONNMARK"), "connmark is in nftables: {nat}");
        assert!(
            node.calls().iter().any(
                |c| matches!(c, Call::NftApply(b) if b.contains("counter ip daddr 100.64.0.0/16 return"))
            ),
            "the exempt rule follows"
        );
    }

    #[tokio::test]
    async fn legacy_iptables_keeps_connmark_in_iptables_and_the_gauge_says_so() {
        let node = Recording::new("node");
        node.add_link("eth0", Some(mac("02:00:00:00:00:01").unwrap()), None);
        node.set_firewall_version("iptables v1.8.7 (legacy)\n");
        // A table left by an nftables-backend run: removed (upstream's cleanupNFTStaleRules).
        node.set_nft_list(
            "tables ip",
            r#"{"nftables": [{"table": {"family": "ip", "name": "aws-cni"}}]}"#,
        );
        let metrics = Arc::new(Metrics::new("v0").unwrap());
        let host = HostNet::with_kernel(node.clone(), settings());
        host.set_metrics(metrics.clone());
        host.setup_node("02:00:00:00:00:01", Ipv4Addr::new(10, 0, 0, 10))
            .await
            .unwrap();
        let (_, nat) = &restores(&node)[0];
        assert!(nat.contains("-j AWS-CONNMARK-CHAIN-0"), "{nat}");
        let calls = node.calls();
        let delete = Call::NftApply("delete table ip aws-cni\n".into());
        let nft_at = calls.iter().position(|c| *c == delete);
        let nat_at = calls
            .iter()
            .position(|c| matches!(c, Call::FirewallRestore { .. }));
        assert!(
            nft_at > nat_at && nat_at.is_some(),
            "after the nat batch: {calls:?}"
        );
        let text = metrics.render().unwrap();
        for line in [
            r#"awscni_connmark_backend{backend="iptables"} 1"#,
            r#"awscni_connmark_reconcile_total{result="success"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains(r#"backend="nftables""#), "{text}");
    }

    /// The rule calls at priority 1535 since the journal was last cleared.
    fn external_rule_calls(rec: &Recording) -> Vec<Call> {
        rec.calls()
            .into_iter()
            .filter(|c| matches!(c, Call::AddRule(r) | Call::DeleteRule(r) if r.priority == Some(priority::EXTERNAL_SERVICE)))
            .collect()
    }

    #[tokio::test]
    async fn external_service_rules_replace_the_main_table_ones_at_1535() {
        let ext = |cidr: &str, table| Rule {
            priority: Some(priority::EXTERNAL_SERVICE),
            dst: Some(cidr.parse().unwrap()),
            table,
            ..Rule::default()
        };
        let node = Recording::new("node");
        node.add_link("eth0", Some(mac("02:00:00:00:00:01").unwrap()), None);
        // Left by an earlier AWS_EXTERNAL_SERVICE_CIDRS: goes. Another table's: stays.
        let stale = ext("203.0.113.0/24", MAIN_TABLE);
        let other = ext("100.64.0.0/16", 100);
        node.add_rule(&stale).await.unwrap();
        node.add_rule(&other).await.unwrap();
        node.clear_journal();
        let wanted = ext("172.16.0.0/12", MAIN_TABLE);
        let start = || async {
            HostNet::with_kernel(node.clone(), settings())
                .setup_node("02:00:00:00:00:01", Ipv4Addr::new(10, 0, 0, 10))
                .await
                .unwrap()
        };
        start().await;
        assert_eq!(
            external_rule_calls(&node),
            [Call::DeleteRule(stale), Call::AddRule(wanted.clone())]
        );
        // A restart with the same setting: the same rule set (upstream deletes and adds back).
        node.clear_journal();
        start().await;
        assert_eq!(
            external_rule_calls(&node),
            [
                Call::DeleteRule(wanted.clone()),
                Call::AddRule(wanted.clone())
            ]
        );
        // The setting changed (restart): the old CIDR goes, the new ones come.
        node.clear_journal();
        let mut changed = settings();
        changed.external_service_cidrs = vec![
            "192.0.2.0/24".parse().unwrap(),
            "198.51.100.7/24".parse().unwrap(),
        ];
        HostNet::with_kernel(node.clone(), changed)
            .setup_node("02:00:00:00:00:01", Ipv4Addr::new(10, 0, 0, 10))
            .await
            .unwrap();
        let (a, b) = (
            ext("192.0.2.0/24", MAIN_TABLE),
            ext("198.51.100.0/24", MAIN_TABLE),
        );
        assert_eq!(
            external_rule_calls(&node),
            [
                Call::DeleteRule(wanted),
                Call::AddRule(a.clone()),
                Call::AddRule(b.clone())
            ]
        );
        let mut at_1535: Vec<Rule> = node
            .model()
            .rules
            .into_iter()
            .filter(|r| r.priority == Some(priority::EXTERNAL_SERVICE))
            .collect();
        at_1535.sort_by_key(|r| r.dst);
        assert_eq!(at_1535, [other, a, b]);
    }

    #[tokio::test]
    async fn pod_and_eni_rules_are_removed_through_the_seam() {
        let node = Recording::new("node");
        let host = HostNet::with_kernel(node.clone(), settings());
        assert!(matches!(
            host.update_vpc_cidrs(&[]).await,
            Err(HostNetError::NotSetUp)
        ));
        let ip = Ipv4Addr::new(10, 0, 1, 15);
        node.add_rule(&Rule::to_ip(ip, MAIN_TABLE, priority::TO_POD))
            .await
            .unwrap();
        node.add_rule(&Rule::from_ip(ip, 3, priority::FROM_POD))
            .await
            .unwrap();
        node.add_rule(&Rule::from_ip(
            Ipv4Addr::new(10, 0, 2, 20),
            3,
            priority::ENI_PRIMARY,
        ))
        .await
        .unwrap();
        assert_eq!(host.delete_pod_rules(ip).await.unwrap(), 2);
        assert_eq!(host.delete_eni_rules(None, 3).await.unwrap(), 1);
        assert!(node.model().rules.is_empty());
    }
}

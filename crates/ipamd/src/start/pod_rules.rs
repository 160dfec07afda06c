//! Start-up, after host networking: the from-pod rules of the pods restored from the
//! checkpoint are collapsed into one `from <podIP>/32 lookup <table> priority 1536` each
//! (upstream's `configureIPRulesForPods` in `pkg/ipamd/ipamd.go`, which calls
//! `UpdateRuleListBySrc` for every allocated address; spec 7.5). Plugins before upstream
//! v1.6 wrote one `from <podIP> to <vpcCIDR>` rule per VPC CIDR; a pod with no rule (its ENI
//! is the primary, table main) gets none. Pending allocations (kept while EC2 does not list
//! their address) are left alone: upstream drops them at restore.

use std::net::Ipv4Addr;

use ipam::Datastore;
use net::kernel::Kernel;

use crate::host_net::HostNet;

/// Rewrites the restored pods' from-pod rules; failures are logged, never fatal (upstream
/// logs them and goes on). The addresses are read from `ds` before the returned future
/// runs (the datastore is not `Sync`).
pub fn collapse_restored<'a, K: Kernel>(
    host: &'a HostNet<K>,
    ds: &Datastore,
) -> impl Future<Output = ()> + Send + 'a {
    let ips: Vec<Ipv4Addr> = ds.allocated_ips().into_iter().map(|a| a.ip).collect();
    async move {
        if ips.is_empty() {
            return;
        }
        match host.collapse_pod_rules(&ips).await {
            Ok(n) => tracing::info!(
                pods = ips.len(),
                rewritten = n,
                "restored pods' from-pod rules checked"
            ),
            Err(e) => tracing::warn!("listing ip rules to rewrite restored pods' rules: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use net::netlink::Rule;
    use net::route_table::{MAIN_TABLE, priority};
    use net::testing::{Call, Recording};

    use super::*;
    use crate::host_net::HostNetSettings;

    fn host(node: &Recording) -> HostNet<Recording> {
        let settings = HostNetSettings {
            vpc_cidrs: vec![],
            ..crate::testing::host_settings(None, 1, Duration::ZERO)
        };
        HostNet::with_kernel(node.clone(), settings)
    }

    /// `from <ip> to <cidr> lookup <table> priority 1536`, as plugins before v1.6 wrote them.
    fn per_cidr(ip: Ipv4Addr, cidr: &str, table: u32) -> Rule {
        Rule {
            dst: Some(cidr.parse().unwrap()),
            ..Rule::from_ip(ip, table, priority::FROM_POD)
        }
    }

    #[tokio::test]
    async fn old_per_cidr_rules_become_one_rule_and_nothing_else_moves() {
        let node = Recording::new("node");
        let old = Ipv4Addr::new(10, 0, 1, 15);
        let done = Ipv4Addr::new(10, 0, 1, 16);
        let bare = Ipv4Addr::new(10, 0, 1, 17);
        let old_rules = [
            per_cidr(old, "10.0.0.0/16", 3),
            per_cidr(old, "100.64.0.0/16", 3),
        ];
        let untouched = [
            Rule::to_ip(old, MAIN_TABLE, priority::TO_POD),
            Rule::from_ip(done, 3, priority::FROM_POD),
            // Not a restored pod's.
            per_cidr(Ipv4Addr::new(10, 0, 1, 99), "10.0.0.0/16", 3),
            Rule::from_ip(Ipv4Addr::new(10, 0, 1, 5), 3, priority::ENI_PRIMARY),
        ];
        for r in old_rules.iter().chain(&untouched) {
            node.add_rule(r).await.unwrap();
        }
        node.clear_journal();
        let host = host(&node);
        assert_eq!(
            host.collapse_pod_rules(&[old, done, bare]).await.unwrap(),
            1
        );
        let collapsed = Rule::from_ip(old, 3, priority::FROM_POD);
        assert_eq!(
            node.calls(),
            [
                Call::DeleteRule(old_rules[0].clone()),
                Call::DeleteRule(old_rules[1].clone()),
                Call::AddRule(collapsed.clone()),
            ]
        );
        let mut want: Vec<Rule> = untouched.to_vec();
        want.push(collapsed);
        let mut have = node.model().rules;
        let key = |r: &Rule| format!("{r}");
        want.sort_by_key(key);
        have.sort_by_key(key);
        assert_eq!(have, want);
        // Converged: a second start changes nothing.
        node.clear_journal();
        assert_eq!(
            host.collapse_pod_rules(&[old, done, bare]).await.unwrap(),
            0
        );
        assert_eq!(node.calls(), []);
    }

    #[tokio::test]
    async fn the_last_rule_names_the_table_as_upstream() {
        let node = Recording::new("node");
        let ip = Ipv4Addr::new(10, 0, 1, 15);
        node.add_rule(&per_cidr(ip, "10.0.0.0/16", 2))
            .await
            .unwrap();
        let mut later = per_cidr(ip, "100.64.0.0/16", 4);
        later.priority = Some(1600);
        node.add_rule(&later).await.unwrap();
        host(&node).collapse_pod_rules(&[ip]).await.unwrap();
        assert_eq!(
            node.model().rules,
            [Rule::from_ip(ip, 4, priority::FROM_POD)]
        );
    }
}

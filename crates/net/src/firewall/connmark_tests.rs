//! The connmark drivers on the recording kernel: what each backend asks of `nft` and in
//! which order relative to the `nat` batch.

use super::*;
use crate::firewall::reconcile_snat;
use crate::testing::{Call, Recording, snat_settings};

const LISTED_TABLES: &str = r#"{"nftables": [{"metainfo": {}}, {"table": {"family": "ip", "name": "aws-cni", "handle": 3}}]}"#;

/// What the calls were, as short labels: `nft` batches and restore commands.
fn labels(rec: &Recording) -> Vec<String> {
    rec.calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::NftApply(b) => Some(format!("nft: {}", b.lines().next().unwrap_or_default())),
            Call::FirewallRestore { batch, .. } => Some(format!(
                "restore: {}",
                batch.lines().next().unwrap_or_default()
            )),
            _ => None,
        })
        .collect()
}

fn nft_settings() -> SnatSettings {
    SnatSettings {
        connmark_backend: ConnmarkBackend::Nftables,
        exclude_cidrs: vec!["192.168.0.0/16".parse().unwrap()],
        ..snat_settings()
    }
}

#[tokio::test]
async fn nftables_backend_builds_the_table_before_the_nat_batch() {
    let node = Recording::new("node");
    let s = nft_settings();
    assert_eq!(reconcile_snat(&node, Backend::Nft, &s).await.unwrap(), 3);
    assert_eq!(
        labels(&node),
        [
            "nft: add table ip aws-cni",
            "restore: *nat",
            "restore: *mangle"
        ]
    );
    let want = NftConnmark::new("eni", 0x80, s.exempt_cidrs()).unwrap();
    assert_eq!(node.calls()[0], Call::NftApply(want.render()));
    let Call::FirewallRestore { batch, .. } = &node.calls()[1] else {
        panic!("nat batch second")
    };
    assert!(
        !batch.contains("CONNMARK"),
        "no iptables connmark rules: {batch}"
    );
}

#[tokio::test]
async fn external_snat_or_iptables_backend_removes_the_table() {
    let node = Recording::new("node");
    node.set_nft_list("tables ip", LISTED_TABLES);
    let s = SnatSettings {
        external_snat: true,
        ..nft_settings()
    };
    assert_eq!(reconcile_nft_connmark(&node, &s).await.unwrap(), 1);
    assert_eq!(
        node.calls(),
        [Call::NftApply("delete table ip aws-cni\n".into())]
    );

    // Migration nftables → iptables: the nat batch with the iptables connmark rules first,
    // then the table goes.
    node.clear_journal();
    let s = snat_settings();
    assert_eq!(reconcile_snat(&node, Backend::Nft, &s).await.unwrap(), 3);
    assert_eq!(
        labels(&node),
        [
            "restore: *nat",
            "restore: *mangle",
            "nft: delete table ip aws-cni"
        ]
    );
}

#[tokio::test]
async fn without_nft_the_iptables_backend_carries_on_and_nftables_fails() {
    let node = Recording::new("node");
    node.set_nft_unavailable();
    assert_eq!(
        reconcile_snat(&node, Backend::Legacy, &snat_settings())
            .await
            .unwrap(),
        2
    );
    assert!(
        reconcile_snat(&node, Backend::Nft, &nft_settings())
            .await
            .is_err()
    );
    let empty = SnatSettings {
        vpc_cidrs: vec![],
        ..nft_settings()
    };
    let fresh = Recording::new("fresh");
    assert!(matches!(
        reconcile_nft_connmark(
            &fresh,
            &SnatSettings {
                exclude_cidrs: vec![],
                ..empty
            }
        )
        .await,
        Err(KernelError::Invalid(_))
    ));
}

#[tokio::test]
async fn converged_table_gets_no_batch() {
    let node = Recording::new("node");
    let s = SnatSettings {
        vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
        ..nft_settings()
    };
    node.set_nft_list("tables ip", LISTED_TABLES);
    let table = r#"{"nftables": [{"table": {"family": "ip", "name": "aws-cni"}},
      {"chain": {"table": "aws-cni", "name": "nat-prerouting", "type": "nat", "hook": "prerouting", "prio": -90, "policy": "accept"}},
      {"chain": {"table": "aws-cni", "name": "snat-mark"}},
      {"rule": {"chain": "nat-prerouting", "expr": [{"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}, {"return": null}]}},
      {"rule": {"chain": "nat-prerouting", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eni*"}}, {"counter": {"packets": 0, "bytes": 0}}, {"jump": {"target": "snat-mark"}}]}},
      {"rule": {"chain": "nat-prerouting", "expr": [{"match": {"op": "==", "left": {"&": [{"ct": {"key": "mark"}}, 128]}, "right": 0}}, {"counter": {"packets": 0, "bytes": 0}}, {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"&": [{"meta": {"key": "mark"}}, 4294967167]}}}]}},
      {"rule": {"chain": "nat-prerouting", "expr": [{"match": {"op": "==", "left": {"&": [{"ct": {"key": "mark"}}, 128]}, "right": 128}}, {"counter": {"packets": 0, "bytes": 0}}, {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"meta": {"key": "mark"}}, 128]}}}]}},
      {"rule": {"chain": "snat-mark", "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "192.168.0.0", "len": 16}}}}, {"return": null}]}},
      {"rule": {"chain": "snat-mark", "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "10.0.0.0", "len": 16}}}}, {"return": null}]}},
      {"rule": {"chain": "snat-mark", "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"mangle": {"key": {"ct": {"key": "mark"}}, "value": {"|": [{"ct": {"key": "mark"}}, 128]}}}]}}]}"#;
    node.set_nft_list("table ip aws-cni", table);
    assert_eq!(reconcile_nft_connmark(&node, &s).await.unwrap(), 0);
    assert!(node.calls().is_empty());
    node.set_nft_list("table ip aws-cni", "not json");
    assert!(reconcile_nft_connmark(&node, &s).await.is_err());
}

#[tokio::test]
async fn detection_follows_the_version_of_the_programmed_iptables() {
    let node = Recording::new("node");
    assert_eq!(
        detect_connmark_backend(&node, Backend::Nft).await,
        ConnmarkBackend::Nftables,
        "iptables v1.8.9 (nf_tables)"
    );
    node.set_firewall_version("iptables v1.8.9 (legacy)\n");
    assert_eq!(
        detect_connmark_backend(&node, Backend::Legacy).await,
        ConnmarkBackend::Iptables
    );
}

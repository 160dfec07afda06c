//! Restart recovery, step 2 of upstream's `ReadBackingStore` (docs/upstream-compat.md): an
//! allocation in the checkpoint whose pod's host-side veth no longer exists belongs to a pod
//! that went away while ipamd was down (its DEL tore the pod down from `prevResult` but could
//! not release the address). Keeping it would leak the address forever; it is dropped, and
//! its rules with it.

use ipam::{Checkpoint, CheckpointEntry};

/// Splits the checkpoint into what stays and the stale allocations, given the host's link
/// names. An allocation stays when some link name ends with the pod's 11-hex veth suffix
/// (any prefix: `eni…`, `vlan…`), or when it has no pod metadata (older checkpoints).
pub fn split_stale(doc: &Checkpoint, links: &[String]) -> (Checkpoint, Vec<CheckpointEntry>) {
    let mut kept = Vec::new();
    let mut stale = Vec::new();
    for entry in &doc.allocations {
        let meta = &entry.metadata;
        if meta.k8s_pod_namespace.is_empty() || meta.k8s_pod_name.is_empty() {
            kept.push(entry.clone());
            continue;
        }
        let suffix = net::names::pod_hash(&meta.k8s_pod_namespace, &meta.k8s_pod_name, 0);
        if links.iter().any(|l| l.ends_with(&suffix)) {
            kept.push(entry.clone());
        } else {
            stale.push(entry.clone());
        }
    }
    let mut out = doc.clone();
    out.allocations = kept;
    (out, stale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam::{IpamKey, IpamMetadata};

    fn entry(id: &str, ns: &str, name: &str, ip: &str) -> CheckpointEntry {
        CheckpointEntry {
            key: IpamKey::new("aws-cni", id, "eth0"),
            ipv4: ip.into(),
            ipv6: String::new(),
            allocation_timestamp: 1,
            metadata: IpamMetadata::new(ns, name, 1),
        }
    }

    #[test]
    fn allocations_without_a_veth_are_stale_and_others_stay() {
        let doc = Checkpoint::new(vec![
            entry("a", "default", "web", "10.0.0.5"),
            entry("b", "default", "gone", "10.0.0.6"),
            entry("c", "", "", "10.0.0.7"),
            entry("d", "kube-system", "dns", "10.0.0.8"),
        ]);
        let links = vec![
            "lo".to_string(),
            net::names::host_veth_name("eni", "default", "web", 0),
            // A branch-ENI pod's vlan link carries the same suffix.
            format!("vlan{}", net::names::pod_hash("kube-system", "dns", 0)),
        ];
        let (kept, stale) = split_stale(&doc, &links);
        let ids: Vec<&str> = kept
            .allocations
            .iter()
            .map(|e| e.key.container_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "c", "d"]);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].ipv4, "10.0.0.6");
        assert_eq!(kept.version, doc.version);
    }
}

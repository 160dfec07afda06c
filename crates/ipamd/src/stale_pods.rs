//! Restart recovery, step 2 of upstream's `ReadBackingStore` (docs/upstream-compat.md): an
//! allocation in the checkpoint whose pod's host-side veth no longer exists belongs to a pod
//! that went away while ipamd was down (its DEL tore the pod down from `prevResult` but could
//! not release the address). Keeping it would leak the address forever; it is released, and
//! its rules with it. Upstream drops such allocations at restore, before serving; here the
//! veth must stay gone at two looks after serving begins ([`SWEEP_AFTER`]), because an ADD
//! in flight when the agent was killed may have its address but not yet its veth.

use std::time::Duration;

use ipam::{Checkpoint, CheckpointEntry, IpamKey};

use crate::host_net::HostNet;
use crate::shared_datastore::{self, SharedDatastore};

/// When the second sweep looks (after gRPC serving began), and again to confirm: a DEL that
/// could not reach ipamd while it was starting has finished its `prevResult` teardown by then.
pub const SWEEP_AFTER: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(2)];

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

/// An entry's address: its IPv4 one, or its IPv6 one in IPv6 mode.
fn address(e: &CheckpointEntry) -> &str {
    if e.ipv4.is_empty() { &e.ipv6 } else { &e.ipv4 }
}

/// The restored allocations of `restored` (the datastore when gRPC serving began) still
/// held, under the same key and address, in `now_held`.
pub fn still_held(
    restored: &[CheckpointEntry],
    now_held: &[(IpamKey, String)],
) -> Vec<CheckpointEntry> {
    restored
        .iter()
        .filter(|e| {
            now_held
                .iter()
                .any(|(k, ip)| *k == e.key && ip == address(e))
        })
        .cloned()
        .collect()
}

/// The sweep (both families): `restored` is the datastore when serving began; an allocation
/// of it whose veth is gone at both looks of [`SWEEP_AFTER`] and that is still held as it was
/// is released, and its rules deleted (IPv4 pods have to/from rules; IPv6 pods none). The
/// looks come after serving so that a DEL that could not reach the starting agent has
/// finished its `prevResult` teardown, and an ADD in flight at the kill has made its veth.
pub async fn sweep_after_start(
    ds: SharedDatastore,
    host: std::sync::Arc<HostNet>,
    restored: Checkpoint,
) {
    let mut doc = restored;
    for wait in SWEEP_AFTER {
        tokio::time::sleep(wait).await;
        match host.link_names().await {
            Ok(links) => doc.allocations = split_stale(&doc, &links).1,
            Err(e) => {
                tracing::warn!("stale allocation sweep: listing links: {e}");
                return;
            }
        }
    }
    for entry in release_held(&ds, &doc.allocations) {
        let pod = format!(
            "{}/{}",
            entry.metadata.k8s_pod_namespace, entry.metadata.k8s_pod_name
        );
        tracing::info!(%pod, ip = %address(&entry), "stale allocation released: the pod's veth is gone");
        if let Ok(ip) = entry.ipv4.parse()
            && let Err(e) = host.delete_pod_rules(ip).await
        {
            tracing::warn!("rules of stale {ip}: {e}");
        }
    }
}

/// Releases `stale` allocations the datastore still holds as they were; returns those.
fn release_held(ds: &SharedDatastore, stale: &[CheckpointEntry]) -> Vec<CheckpointEntry> {
    let mut ds = shared_datastore::lock(ds);
    let held: Vec<(IpamKey, String)> = ds
        .checkpoint()
        .allocations
        .iter()
        .map(|e| (e.key.clone(), address(e).to_string()))
        .collect();
    let now = shared_datastore::now();
    still_held(stale, &held)
        .into_iter()
        .filter(|e| {
            let released = if e.ipv4.is_empty() {
                ds.unassign_pod_ipv6(&e.key, now).map(drop)
            } else {
                ds.unassign_pod(&e.key, now).map(drop)
            };
            match released {
                Ok(()) => true,
                Err(err) => {
                    tracing::warn!(ip = %address(e), "releasing a stale allocation: {err}");
                    false
                }
            }
        })
        .collect()
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

    #[test]
    fn only_allocations_still_held_as_restored_are_released() {
        let restored = vec![
            entry("a", "default", "web", "10.0.0.5"),
            entry("b", "default", "gone", "10.0.0.6"),
            entry("c", "default", "moved", "10.0.0.7"),
        ];
        let held = vec![
            (IpamKey::new("aws-cni", "a", "eth0"), "10.0.0.5".to_string()),
            // "b" was released by a DEL meanwhile; "c"'s key now holds another address.
            (IpamKey::new("aws-cni", "c", "eth0"), "10.0.0.9".to_string()),
            (
                IpamKey::new("aws-cni", "new", "eth0"),
                "10.0.0.6".to_string(),
            ),
        ];
        let ids: Vec<String> = still_held(&restored, &held)
            .into_iter()
            .map(|e| e.key.container_id)
            .collect();
        assert_eq!(ids, ["a"]);
    }
}

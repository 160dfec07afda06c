//! How ipamd drives the host's iptables: `--random-fully` only where iptables has it
//! (>= 1.6.2, as go-iptables' `HasRandomFully` decides for upstream), and restore batches
//! that wait for the xtables lock instead of failing while kube-proxy holds it. The lock
//! test runs iptables-legacy inside a namespace made for it (root); the lock file
//! (`/run/xtables.lock`) is shared by every namespace, so it is held for about a second.

use std::process::Command;
use std::time::{Duration, Instant};

use net::firewall::{Family, detect_random_fully, reconcile_snat};
use net::iptables_backend::{Backend, random_fully_supported};
use net::netlink::NetlinkHandle;
use net::testing::{Call, Recording, TestNetns, snat_settings};

#[tokio::test]
async fn random_fully_needs_iptables_1_6_2() {
    assert!(random_fully_supported("iptables v1.8.9 (nf_tables)\n"));
    assert!(random_fully_supported("iptables v1.8.4 (legacy)\n"));
    assert!(random_fully_supported("iptables v1.6.2"));
    assert!(random_fully_supported("iptables v1.10.0"));
    assert!(!random_fully_supported("iptables v1.6.1"));
    assert!(!random_fully_supported("iptables v1.4.21"));
    assert!(!random_fully_supported("iptables: command not found"));
    let old = Recording::new("node");
    old.set_firewall_version("iptables v1.4.21\n");
    assert!(!detect_random_fully(&old, Backend::Legacy).await);
    // This host's iptables (Debian's 1.8.x) has it; asked through the one runner.
    let here = NetlinkHandle::current().unwrap();
    assert!(detect_random_fully(&here, Backend::Nft).await);
}

#[tokio::test]
async fn restore_batches_wait_for_the_xtables_lock() {
    let rec = Recording::new("node");
    let applied = reconcile_snat(&rec, Backend::Legacy, &snat_settings())
        .await
        .unwrap();
    assert_eq!(applied, 2, "nat and mangle");
    let restores: Vec<String> = rec
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::FirewallRestore { command, .. } => Some(command),
            _ => None,
        })
        .collect();
    assert_eq!(restores.len(), 2);
    for cmd in restores {
        assert_eq!(cmd, "iptables-legacy-restore --wait=10 --noflush");
    }
    assert_eq!(
        net::firewall::restore_args(Backend::Nft, Family::V6),
        ["ip6tables-nft-restore", "--wait=10", "--noflush"]
    );
}

#[tokio::test]
async fn legacy_batch_waits_while_the_xtables_lock_is_held() {
    let ns = TestNetns::new("xtlock");
    let mut holder = Command::new("flock")
        .args(["/run/xtables.lock", "sleep", "1"])
        .spawn()
        .expect("flock (util-linux)");
    // Wait until the holder has the lock (a non-blocking probe fails while it does).
    let started = Instant::now();
    while Command::new("flock")
        .args(["-n", "/run/xtables.lock", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "flock never held"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The one firewall runner, bound to the test namespace.
    let nl = NetlinkHandle::in_netns(&ns.netns()).unwrap();
    let applied = reconcile_snat(&nl, Backend::Legacy, &snat_settings())
        .await
        .map_err(|e| e.to_string());
    let waited = started.elapsed();
    let _ = holder.wait();
    assert_eq!(
        applied,
        Ok(2),
        "both batches went in after the lock was free"
    );
    assert!(waited >= Duration::from_millis(500), "waited {waited:?}");
    let nat = ns.exec_ok(&["iptables-legacy-save", "-t", "nat"]);
    assert!(
        nat.contains("-j SNAT --to-source 10.0.0.10 --random-fully"),
        "{nat}"
    );
}

//! The SNAT/connmark batches against the real kernel, inside a network namespace made for
//! the test: after applying the batch, what `iptables-save` prints is exactly our desired
//! state (so the next reconcile is a no-op), foreign rules survive, and a settings change
//! converges in one batch. Needs root and iptables (installed by scripts/install-deps.sh).

use net::iptables_save::parse_table;
use net::snat::{SnatSettings, desired_mangle, desired_nat, restore_batch};
use net::testing::TestNetns;

fn settings() -> SnatSettings {
    SnatSettings {
        exclude_cidrs: vec!["192.168.0.0/16".parse().unwrap()],
        ..net::testing::snat_settings()
    }
}

/// Applies our desired state for both tables; returns how many batches were needed.
fn reconcile(ns: &TestNetns, s: &SnatSettings) -> usize {
    let mut batches = 0;
    for (table, desired) in [("nat", desired_nat(s)), ("mangle", desired_mangle(s))] {
        let current = parse_table(&ns.exec_ok(&["iptables-save", "-t", table]), table);
        if let Some(batch) = restore_batch(table, &current, &desired) {
            ns.try_exec(&["iptables-restore", "--noflush"], Some(&batch))
                .unwrap_or_else(|e| panic!("{e}"));
            batches += 1;
        }
    }
    batches
}

#[test]
fn batches_converge_and_leave_foreign_rules_alone() {
    let ns = TestNetns::new("snat");
    // A kube-proxy-like rule that must survive.
    ns.exec_ok(&["iptables", "-t", "nat", "-N", "KUBE-POSTROUTING"]);
    ns.exec_ok(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-m",
        "comment",
        "--comment",
        "kubernetes postrouting rules",
        "-j",
        "KUBE-POSTROUTING",
    ]);

    let s = settings();
    assert_eq!(reconcile(&ns, &s), 2, "first run writes nat and mangle");
    assert_eq!(
        reconcile(&ns, &s),
        0,
        "what the kernel prints equals our desired state"
    );

    let nat = ns.exec_ok(&["iptables-save", "-t", "nat"]);
    assert!(nat.contains("kubernetes postrouting rules"), "{nat}");
    assert!(
        nat.contains("-j SNAT --to-source 10.0.0.10 --random-fully"),
        "{nat}"
    );
    let mangle = ns.exec_ok(&["iptables-save", "-t", "mangle"]);
    assert!(mangle.contains("--limit-iface-in"), "{mangle}");

    // A VPC CIDR change converges in one batch per table that changed.
    let mut s2 = s.clone();
    s2.vpc_cidrs.push("100.64.0.0/16".parse().unwrap());
    assert_eq!(reconcile(&ns, &s2), 1, "only nat changes");
    assert_eq!(reconcile(&ns, &s2), 0);
    let nat = ns.exec_ok(&["iptables-save", "-t", "nat"]);
    assert_eq!(
        nat.matches("-d 100.64.0.0/16").count(),
        2,
        "SNAT and connmark exemptions"
    );

    // External SNAT on, NodePort off: every rule of ours goes, kube-proxy's stays.
    let mut off = s.clone();
    off.external_snat = true;
    off.node_port_support = false;
    assert_eq!(reconcile(&ns, &off), 2);
    let nat = ns.exec_ok(&["iptables-save", "-t", "nat"]);
    assert!(!nat.contains("AWS"), "{nat}");
    assert!(nat.contains("kubernetes postrouting rules"));
    assert_eq!(reconcile(&ns, &off), 0);
}

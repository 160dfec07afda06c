//! The SNAT/connmark batches against the real kernel, inside a network namespace made for
//! the test: after applying the batch, what `iptables-save` prints is exactly our desired
//! state (so the next reconcile is a no-op), foreign rules survive, and a settings change
//! converges in one batch. Needs root and iptables (installed by scripts/install-deps.sh).

use std::io::Write;
use std::process::{Command, Stdio};

use net::iptables_save::parse_table;
use net::snat::{Randomize, SnatSettings, desired_mangle, desired_nat, restore_batch};

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("net-{tag}-{}", std::process::id());
        assert!(
            Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .unwrap()
                .success()
        );
        Netns(name)
    }

    fn exec(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn settings() -> SnatSettings {
    SnatSettings {
        primary_ip: "10.0.0.10".parse().unwrap(),
        primary_if: "eth0".into(),
        vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
        exclude_cidrs: vec!["192.168.0.0/16".parse().unwrap()],
        external_snat: false,
        node_port_support: true,
        randomize: Randomize::Prng,
        random_fully_supported: true,
        veth_prefix: "eni".into(),
        connmark: 0x80,
    }
}

/// Applies our desired state for both tables; returns how many batches were needed.
fn reconcile(ns: &Netns, s: &SnatSettings) -> usize {
    let mut batches = 0;
    for (table, desired) in [("nat", desired_nat(s)), ("mangle", desired_mangle(s))] {
        let current = parse_table(&ns.exec(&["iptables-save", "-t", table], None), table);
        if let Some(batch) = restore_batch(table, &current, &desired) {
            ns.exec(&["iptables-restore", "--noflush"], Some(&batch));
            batches += 1;
        }
    }
    batches
}

#[test]
fn batches_converge_and_leave_foreign_rules_alone() {
    let ns = Netns::new("snat");
    // A kube-proxy-like rule that must survive.
    ns.exec(&["iptables", "-t", "nat", "-N", "KUBE-POSTROUTING"], None);
    ns.exec(
        &[
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
        ],
        None,
    );

    let s = settings();
    assert_eq!(reconcile(&ns, &s), 2, "first run writes nat and mangle");
    assert_eq!(
        reconcile(&ns, &s),
        0,
        "what the kernel prints equals our desired state"
    );

    let nat = ns.exec(&["iptables-save", "-t", "nat"], None);
    assert!(nat.contains("kubernetes postrouting rules"), "{nat}");
    assert!(
        nat.contains("-j SNAT --to-source 10.0.0.10 --random-fully"),
        "{nat}"
    );
    let mangle = ns.exec(&["iptables-save", "-t", "mangle"], None);
    assert!(mangle.contains("--limit-iface-in"), "{mangle}");

    // A VPC CIDR change converges in one batch per table that changed.
    let mut s2 = s.clone();
    s2.vpc_cidrs.push("100.64.0.0/16".parse().unwrap());
    assert_eq!(reconcile(&ns, &s2), 1, "only nat changes");
    assert_eq!(reconcile(&ns, &s2), 0);
    let nat = ns.exec(&["iptables-save", "-t", "nat"], None);
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
    let nat = ns.exec(&["iptables-save", "-t", "nat"], None);
    assert!(!nat.contains("AWS"), "{nat}");
    assert!(nat.contains("kubernetes postrouting rules"));
    assert_eq!(reconcile(&ns, &off), 0);
}

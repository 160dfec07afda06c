//! How ipamd drives the host's iptables: `--random-fully` only where iptables has it
//! (>= 1.6.2, as go-iptables' `HasRandomFully` decides for upstream), and restore batches
//! that wait for the xtables lock instead of failing while kube-proxy holds it. The lock
//! test runs iptables-legacy inside a namespace made for it (root); the lock file
//! (`/run/xtables.lock`) is shared by every namespace, so it is held for about a second.

mod support;

use std::cell::RefCell;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use net::iptables_backend::{Backend, detect_random_fully, random_fully_supported, reconcile};
use net::snat::{Randomize, SnatSettings};
use support::TestNs;

fn settings() -> SnatSettings {
    SnatSettings {
        primary_ip: "10.0.0.10".parse().unwrap(),
        primary_if: "eth0".into(),
        vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
        exclude_cidrs: vec![],
        external_snat: false,
        node_port_support: true,
        randomize: Randomize::Prng,
        random_fully_supported: true,
        veth_prefix: "eni".into(),
        connmark: 0x80,
    }
}

#[test]
fn random_fully_needs_iptables_1_6_2() {
    assert!(random_fully_supported("iptables v1.8.9 (nf_tables)\n"));
    assert!(random_fully_supported("iptables v1.8.4 (legacy)\n"));
    assert!(random_fully_supported("iptables v1.6.2"));
    assert!(random_fully_supported("iptables v1.10.0"));
    assert!(!random_fully_supported("iptables v1.6.1"));
    assert!(!random_fully_supported("iptables v1.4.21"));
    assert!(!random_fully_supported("iptables: command not found"));
    let asked = RefCell::new(Vec::new());
    let old = detect_random_fully(Backend::Legacy, |args| {
        asked.borrow_mut().push(args.join(" "));
        Ok::<_, ()>("iptables v1.4.21\n".to_string())
    });
    assert!(!old);
    assert_eq!(asked.into_inner(), ["iptables-legacy --version"]);
    assert!(!detect_random_fully(Backend::Nft, |_| Err::<String, _>(
        "no such binary"
    )));
    // This host's iptables (Debian's 1.8.x) has it.
    assert!(detect_random_fully(Backend::Nft, |args| {
        let out = Command::new(args[0]).args(&args[1..]).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).to_string())
    }));
}

#[test]
fn restore_batches_wait_for_the_xtables_lock() {
    let restores = RefCell::new(Vec::new());
    let applied = reconcile(Backend::Legacy, &settings(), |args, stdin| {
        if stdin.is_some() {
            restores.borrow_mut().push(args.join(" "));
        }
        Ok::<_, ()>(String::new())
    })
    .unwrap();
    assert_eq!(applied, 2, "nat and mangle");
    for cmd in restores.into_inner() {
        assert!(
            cmd.starts_with("iptables-legacy-restore --wait") && cmd.ends_with("--noflush"),
            "{cmd}"
        );
    }
}

/// Runs `args` in `ns` with `stdin`; stdout or the stderr as the error.
fn exec_in(ns: &TestNs, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

#[test]
fn legacy_batch_waits_while_the_xtables_lock_is_held() {
    let ns = TestNs::new("xtlock");
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
    let applied = reconcile(Backend::Legacy, &settings(), |args, stdin| {
        exec_in(&ns, args, stdin)
    });
    let waited = started.elapsed();
    let _ = holder.wait();
    assert_eq!(
        applied,
        Ok(2),
        "both batches went in after the lock was free"
    );
    assert!(waited >= Duration::from_millis(500), "waited {waited:?}");
    let nat = exec_in(&ns, &["iptables-legacy-save", "-t", "nat"], None).unwrap();
    assert!(
        nat.contains("-j SNAT --to-source 10.0.0.10 --random-fully"),
        "{nat}"
    );
}

//! The whole agent, with host networking in a node network namespace made for the test,
//! converges from a cold start to what the planner predicts for three policies, and then
//! three views agree: EC2 (the emulator), ipamd's own `/v1/enis`, and the kernel (one link
//! per attached ENI, a route table and a rule per secondary ENI).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use ec2_emulator::server;
use ec2_emulator::testing::TestNetns;
use ipamd::agent::HostNetOptions;
use support::{Harness, add_pod, free_port, http_get};

/// ENI id → CIDRs, as EC2 has them.
fn ec2_cidrs(h: &Harness) -> BTreeMap<String, BTreeSet<String>> {
    let emu = server::lock(h.emu());
    emu.world
        .attached_enis(&h.node.instance_id)
        .iter()
        .map(|e| {
            let cidrs = e
                .secondary_ips
                .iter()
                .map(|ip| format!("{ip}/32"))
                .chain(e.prefixes.iter().map(ToString::to_string))
                .collect();
            (e.id.clone(), cidrs)
        })
        .collect()
}

/// ENI id → CIDRs, as ipamd reports them on `/v1/enis`.
async fn ipamd_cidrs(addr: SocketAddr) -> BTreeMap<String, BTreeSet<String>> {
    let body = http_get(addr, "/v1/enis").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["0"]["ENIs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, eni)| {
            let cidrs = eni["AvailableIPv4Cidrs"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            (id.clone(), cidrs)
        })
        .collect()
}

struct Expect {
    enis: usize,
    ips: usize,
    prefixes: usize,
}

async fn converge(tag: &str, vars: &[(&str, &str)], pods: usize, expect: Expect) {
    let ns = TestNetns::new(tag);
    let h = Harness::new("m5.large", "10.0.0.0/24", tag).await;
    ns.add_primary_interface(&h.node.primary_mac, h.node.primary_ip);
    server::lock(h.emu()).set_hotplug(&h.node.instance_id, &ns.0);
    let intro = free_port();
    let mut opts = h.options(Duration::from_millis(500), Some(intro));
    opts.host_network = Some(HostNetOptions {
        netns: Some(format!("/var/run/netns/{}", ns.0).into()),
        link_attempts: 50,
        link_interval: Duration::from_millis(100),
    });
    let agent = h.start(h.config(vars), opts);
    let mut c = h.client().await;
    for i in 0..pods {
        add_pod(&mut c, i).await;
    }
    let view = |h: &Harness| {
        let e = ec2_cidrs(h);
        let ips = e.values().flatten().filter(|c| c.ends_with("/32")).count();
        (e.len(), ips, e.values().flatten().count() - ips)
    };
    let want = (expect.enis, expect.ips, expect.prefixes);
    for _ in 0..300 {
        if view(&h) == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(view(&h), want, "{tag}: EC2 view (ENIs, IPs, prefixes)");
    // Stays there (converged, not passing through).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(view(&h), want, "{tag}: EC2 view moved after convergence");

    // ipamd agrees with EC2, ENI by ENI and CIDR by CIDR (it may lag by one tick).
    let ec2 = ec2_cidrs(&h);
    let mut agreed = false;
    for _ in 0..50 {
        if ipamd_cidrs(intro).await == ec2 {
            agreed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        agreed,
        "{tag}: /v1/enis {:?} vs EC2 {ec2:?}",
        ipamd_cidrs(intro).await
    );

    // The kernel agrees: a link per attached ENI (by MAC), a table and a rule per
    // secondary ENI.
    let enis: Vec<(String, u32, std::net::Ipv4Addr)> = {
        let emu = server::lock(h.emu());
        emu.world
            .attached_enis(&h.node.instance_id)
            .iter()
            .map(|e| {
                (
                    e.mac.clone(),
                    e.attachment.as_ref().unwrap().device_index,
                    e.primary_ip,
                )
            })
            .collect()
    };
    let links = ns.ip(&["-o", "link"]);
    let rules = ns.ip(&["rule"]);
    for (mac, device, primary_ip) in &enis {
        assert!(
            links.contains(mac.as_str()),
            "{tag}: no link for {mac}: {links}"
        );
        if *device == 0 {
            continue;
        }
        let table = device + 1;
        let routes = ns.ip(&["route", "show", "table", &table.to_string()]);
        assert!(
            routes.contains(&format!("default via 10.0.0.1 dev eth{device}")),
            "{tag}: table {table}: {routes}"
        );
        assert!(
            rules.contains(&format!("from {primary_ip} lookup {table}")),
            "{tag}: {rules}"
        );
    }
    // eth0 and its "hypervisor" peer eth0-hv are the test's primary interface.
    let eth_links = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name))
        .filter(|name| name.starts_with("eth") && !name.ends_with("-hv"))
        .count();
    assert_eq!(eth_links, enis.len(), "{tag}: one link per ENI: {links}");
    assert!(!agent.is_finished(), "{tag}: the agent is running");
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_eni_target_1_converges_and_all_views_agree() {
    // m5.large: 9 usable per ENI. Three pods leave 6 free < 9: a second ENI.
    converge(
        "conv-eni",
        &[],
        3,
        Expect {
            enis: 2,
            ips: 18,
            prefixes: 0,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_ip_5_minimum_10_converges_and_all_views_agree() {
    // 8 pods + 5 warm = 13: the primary's 9 and 4 on a second ENI.
    converge(
        "conv-ip",
        &[("WARM_IP_TARGET", "5"), ("MINIMUM_IP_TARGET", "10")],
        8,
        Expect {
            enis: 2,
            ips: 13,
            prefixes: 0,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_delegation_converges_and_all_views_agree() {
    // 10 pods leave 6 of one /28 free, less than WARM_PREFIX_TARGET=1's 16: a second
    // /28. A third is not added: 32 addresses already cover the node's max pods (29 on an
    // m5.large, upstream's `datastoreTargetState`).
    converge(
        "conv-pd",
        &[
            ("ENABLE_PREFIX_DELEGATION", "true"),
            ("WARM_PREFIX_TARGET", "1"),
        ],
        10,
        Expect {
            enis: 1,
            ips: 0,
            prefixes: 2,
        },
    )
    .await;
}

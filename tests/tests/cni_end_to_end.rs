//! End to end in a node network namespace with the real agent and the EC2 emulator: ADD changes
//! the node and the pod exactly as upstream's `SetupPodNetwork` does (nothing more), the pod
//! carries traffic, CHECK passes and then names what an operator broke, STATUS and GC answer,
//! the log file gets the ADD line while stdout is only the result, and DEL returns the node to
//! exactly its state before ADD.

use std::net::Ipv4Addr;

use integration_tests::TestNetns;
use integration_tests::agent::NodeAgent;
use integration_tests::plugin::{cni_env, plugin, settled, snapshot};
use ipnet::Ipv4Net;
use net::netlink::{Route, Rule, Scope};
use net::route_table::{MAIN_TABLE, priority};
use net::state::NetnsState;
use serde_json::Value;

fn added<T: PartialEq + Clone>(before: &[T], after: &[T]) -> Vec<T> {
    after
        .iter()
        .filter(|x| !before.contains(x))
        .cloned()
        .collect()
}

/// The node-side difference ADD may make: the host veth, its /32 route in main, the to-pod
/// rule and (off the primary ENI) the from-pod rule. Nothing removed, no address changes.
fn assert_node_delta(
    before: &NetnsState,
    after: &NetnsState,
    veth: &str,
    ip: Ipv4Addr,
    table: u32,
) {
    let links = added(&before.links, &after.links);
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(
        (
            links[0].name.as_str(),
            links[0].kind.as_deref(),
            links[0].up,
            links[0].mtu
        ),
        (veth, Some("veth"), true, 9001)
    );
    assert!(
        added(&after.links, &before.links).is_empty(),
        "no link removed"
    );
    assert_eq!(
        after.addresses, before.addresses,
        "host addresses untouched"
    );
    assert_eq!(after.neighbours, before.neighbours);
    let routes = added(&before.routes, &after.routes);
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(
        (
            routes[0].table,
            routes[0].dst,
            routes[0].dev.as_deref(),
            routes[0].scope
        ),
        (MAIN_TABLE, Route::host(ip), Some(veth), Scope::Link)
    );
    assert!(added(&after.routes, &before.routes).is_empty());
    let mut want = vec![Rule::to_ip(ip, MAIN_TABLE, priority::TO_POD)];
    if table > 1 && table != MAIN_TABLE {
        want.push(Rule::from_ip(ip, table, priority::FROM_POD));
    }
    let mut rules = added(&before.rules, &after.rules);
    rules.sort();
    want.sort();
    assert_eq!(rules, want);
    assert!(added(&after.rules, &before.rules).is_empty());
}

/// The pod's whole state after ADD (as upstream's `SetupPodNetwork` leaves it).
fn assert_pod_state(pod: &NetnsState, ip: Ipv4Addr, host_mac: Option<net::netlink::Mac>) {
    let gw = Ipv4Addr::new(169, 254, 1, 1);
    let eth0 = pod.link("eth0").expect("eth0");
    assert_eq!(
        (eth0.kind.as_deref(), eth0.up, eth0.mtu),
        (Some("veth"), true, 9001)
    );
    assert_eq!(pod.links.len(), 2, "lo and eth0 only: {:?}", pod.links);
    assert_eq!(pod.addresses_of("eth0"), vec![Ipv4Net::from(ip)]);
    let main = pod.unicast_routes(MAIN_TABLE);
    assert_eq!(main.len(), 2, "{main:?}");
    assert!(
        main.iter()
            .any(|r| r.dst == Route::host(gw) && r.scope == Scope::Link)
    );
    assert!(
        main.iter()
            .any(|r| r.dst.prefix_len() == 0 && r.gateway == Some(gw.into()))
    );
    assert_eq!(pod.unicast_routes(2).len() + pod.unicast_routes(3).len(), 0);
    assert_eq!(pod.neighbours.len(), 1);
    assert_eq!(
        (pod.neighbours[0].ip, pod.neighbours[0].mac),
        (gw.into(), host_mac)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_check_del_against_a_running_agent() {
    let node = TestNetns::new("cni-e2e");
    let agent = NodeAgent::start(&node, "e2e", 9, |_| {}).await;
    let sock = agent.socket.clone();
    let pods = [TestNetns::new("cni-e2e-p0"), TestNetns::new("cni-e2e-p1")];
    let log = agent.dir.join("log/plugin.log");
    let conf_logged = format!(
        r#"{{"cniVersion":"1.0.0","name":"aws-cni","type":"aws-cni","vethPrefix":"eni","mtu":"9001","pluginLogFile":"{}","pluginLogLevel":"Debug"}}"#,
        log.display()
    );
    // An unwritable log file must not fail anything.
    let conf_bad_log = r#"{"cniVersion":"0.4.0","name":"aws-cni","type":"aws-cni","vethPrefix":"eni","mtu":"9001","pluginLogFile":"/proc/aws-cni-test/plugin.log"}"#;
    let confs = [conf_logged.as_str(), conf_bad_log];
    let run = |env: &[(&str, &str)], stdin: &str| {
        tokio::task::block_in_place(|| plugin(Some(&node.0), env, stdin))
    };

    // Warm-up pod: the first assignment makes the agent attach its warm ENI.
    let warm = TestNetns::new("cni-e2e-w");
    let wpath = warm.path();
    let wargs = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=warm";
    assert_eq!(
        run(&cni_env("ADD", "cw", &wpath, wargs, &sock), confs[0]).rc,
        0
    );

    let before = settled(&node).await;
    // Firewall: the agent's SNAT/connmark rules are there; the plugin never changes them.
    let rules = |table: &str| -> Vec<String> {
        node.exec(&["iptables-save", "-t", table])
            .lines()
            .filter(|l| l.starts_with('-'))
            .map(str::to_string)
            .collect()
    };
    let firewall = (rules("nat"), rules("mangle"));
    assert!(
        firewall
            .0
            .iter()
            .any(|l| l.contains("AWS-SNAT-CHAIN-0") && l.contains("--to-source")),
        "{:#?}",
        firewall.0
    );
    assert!(
        firewall
            .1
            .iter()
            .any(|l| l.contains("-i eni+") && l.contains("--restore-mark"))
    );
    let mut results = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let args = format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-{i}");
        let cid = format!("c{i}");
        let path = pod.path();
        let pre = snapshot(&node).await;
        let r = run(&cni_env("ADD", &cid, &path, &args, &sock), confs[i]);
        assert_eq!(r.rc, 0, "{} {}", r.stdout, r.stderr);
        let result: Value = r.json();
        assert_eq!(result["cniVersion"], if i == 0 { "1.0.0" } else { "0.4.0" });
        // CNI 0.4.0 IP entries carry "version"; 1.0.0 dropped the field.
        let want_version = if i == 0 { None } else { Some("4") };
        assert_eq!(
            result["ips"][0]["version"].as_str(),
            want_version,
            "{result}"
        );
        let ip: Ipv4Addr = result["ips"][0]["address"]
            .as_str()
            .unwrap()
            .trim_end_matches("/32")
            .parse()
            .unwrap();
        let veth = result["interfaces"][0]["name"]
            .as_str()
            .unwrap()
            .to_string();
        let table: u32 = result["interfaces"][1]["mac"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let post = snapshot(&node).await;
        assert_node_delta(&pre, &post, &veth, ip, table);
        let host_mac = post.link(&veth).unwrap().mac;
        assert_eq!(
            result["interfaces"][0]["mac"].as_str().unwrap(),
            host_mac.unwrap().to_string()
        );
        assert_pod_state(&snapshot(pod).await, ip, host_mac);
        assert!(agent.checkpoint_containers().contains(&cid));
        if i == 1 {
            assert!(r.stderr.contains("cannot open log file"), "{}", r.stderr);
        }
        results.push((cid, args, path, ip, result));
    }
    assert_eq!(
        (rules("nat"), rules("mangle")),
        firewall,
        "ADD left the firewall alone"
    );
    // The log file has the ADD line; stdout (checked above) was exactly the result.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("ADD") && l.contains(r#""container":"c0""#)),
        "{text}"
    );
    assert!(text.contains("ADD ok"), "{text}");

    // Traffic: pod0 -> pod1 and pod -> node, through the node's routes.
    let (ns0, ns1) = (
        net::netns::Netns::open(pods[0].path()).unwrap(),
        net::netns::Netns::open(pods[1].path()).unwrap(),
    );
    let peer = results[1].3.to_string();
    let echo = tokio::task::block_in_place(|| {
        let l = ns1
            .run(|| std::net::TcpListener::bind((peer.as_str(), 0)))
            .unwrap()
            .unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || l.accept().map(|(_, p)| p.ip()));
        let c = ns0
            .run(|| std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)))
            .unwrap();
        (c.is_ok(), t.join().unwrap().ok())
    });
    assert_eq!(echo, (true, Some(std::net::IpAddr::V4(results[0].3))));

    // CHECK passes on the live pods, with each one's prevResult.
    for (cid, args, path, _, result) in &results {
        let mut conf: Value = serde_json::from_str(confs[0]).unwrap();
        conf["prevResult"] = result.clone();
        let r = run(&cni_env("CHECK", cid, path, args, &sock), &conf.to_string());
        assert_eq!(
            (r.rc, r.stdout.as_str()),
            (0, ""),
            "CHECK {cid}: {}",
            r.stdout
        );
    }
    // Break pod 0 (its to-pod rule and its pod-side default route): CHECK names both.
    let (cid, args, path, ip, result) = &results[0];
    node.ip(&["rule", "del", "to", &ip.to_string(), "priority", "512"]);
    pods[0].ip(&["route", "del", "default"]);
    let mut conf: Value = serde_json::from_str(confs[0]).unwrap();
    conf["prevResult"] = result.clone();
    let r = run(&cni_env("CHECK", cid, path, args, &sock), &conf.to_string());
    assert_eq!((r.rc, r.code()), (1, 102), "{}", r.stdout);
    assert!(
        r.stdout
            .contains(&format!("to {ip}/32 lookup main priority 512"))
            || r.stdout.contains("priority 512"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("pod default route via 169.254.1.1 dev eth0 is missing"),
        "{}",
        r.stdout
    );

    // STATUS with the agent up; GC releases nothing.
    let r = run(
        &cni_env("STATUS", "", "", "", &sock),
        r#"{"cniVersion":"1.1.0","name":"aws-cni"}"#,
    );
    assert_eq!((r.rc, r.stdout.as_str()), (0, ""), "{}", r.stdout);
    let r = run(
        &[("CNI_COMMAND", "GC")],
        r#"{"cniVersion":"1.1.0","name":"aws-cni","cni.dev/valid-attachments":[]}"#,
    );
    assert_eq!(r.rc, 0, "{}", r.stdout);
    assert!(agent.checkpoint_containers().contains(&"c0".to_string()));

    // DEL both (twice: idempotent): the node is exactly as before the ADDs.
    for (cid, args, path, _, _) in &results {
        for _ in 0..2 {
            let r = run(&cni_env("DEL", cid, path, args, &sock), confs[0]);
            assert_eq!((r.rc, r.stdout.as_str()), (0, ""), "{}", r.stdout);
        }
        assert!(!agent.checkpoint_containers().contains(cid));
    }
    // DEL removed the pods' routes and rules and left their veths to go with their
    // namespaces, as upstream; the runtime removes those next.
    let after_del = settled(&node).await;
    assert_eq!(
        (&after_del.routes, &after_del.rules),
        (&before.routes, &before.rules),
        "DEL leaves no route or rule of the pods"
    );
    assert_eq!(
        after_del.links.len(),
        before.links.len() + 2,
        "the two veths"
    );
    drop((ns0, ns1, pods));
    let mut after = settled(&node).await;
    for _ in 0..250 {
        if after == before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        after = settled(&node).await;
    }
    assert_eq!(
        after, before,
        "node state once the pods' namespaces are gone == before ADD"
    );
    assert_eq!((rules("nat"), rules("mangle")), firewall);
    let r = run(&cni_env("DEL", "cw", &wpath, wargs, &sock), confs[0]);
    assert_eq!(r.rc, 0, "{}", r.stdout);
}

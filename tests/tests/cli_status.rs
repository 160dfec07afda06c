//! `vpc-cni status` against a live agent (real introspection and metrics endpoints), with
//! pods added and deleted through gRPC and an EC2 fault injected so error counters move.

use std::time::Duration;

use ec2_emulator::faults::FailNext;
use integration_tests::agent::LiveNode;
use serde_json::Value;

fn args(node: &LiveNode, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        "status".to_string(),
        "--introspection".to_string(),
        node.introspection.to_string(),
        "--metrics".to_string(),
        format!("http://{}", node.metrics),
    ];
    a.extend(extra.iter().map(ToString::to_string));
    a
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn sample<'a>(samples: &'a Value, key: &str, value: &str) -> Option<&'a Value> {
    samples
        .as_array()?
        .iter()
        .find(|s| s["labels"][key] == value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_pool_enis_pods_and_error_counters() {
    let mut node = LiveNode::start_with("m5.large", "status", &[], |emu| {
        emu.faults.fail_next.push(FailNext {
            action: "AssignPrivateIpAddresses".into(),
            code: ec2_emulator::server::parse_code("UnauthorizedOperation").unwrap(),
            remaining: 2, // the full request and its retry with count 1
        });
    })
    .await;
    let mut ips = Vec::new();
    for i in 0..4 {
        ips.push(node.add_pod(i).await);
    }
    node.del_pod(0).await;
    // WARM_ENI_TARGET=1: 4 pods leave 5 < 9 free, so a second ENI joins: 2 ENIs, 18 IPs.
    let ec2 = node.settle(Duration::from_secs(1)).await;
    assert_eq!((ec2.enis, ec2.secondary_ips), (2, 18), "{ec2:?}");
    // Gauges are published every pool tick.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let out = node.cli(args(&node, &["--output", "json"])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let card = &doc["cards"][0];
    assert_eq!(card["network_card"], 0);
    assert_eq!(card["total_ips"], 18);
    assert_eq!(card["assigned_ips"], 3);
    assert_eq!(card["free_ips"], 15);
    assert_eq!(card["cooldown_ips"], 1, "pod-0's address is cooling down");
    assert_eq!(card["prefixes"], 0);
    let enis = card["enis"].as_array().unwrap();
    assert_eq!(enis.len(), 2);
    assert_eq!(enis[0]["primary"], true);
    assert_eq!(enis[0]["device_number"], 0);
    // Each ENI as EC2 has it: same ids, same number of secondary addresses.
    for (id, secondary, _) in &ec2.per_eni {
        let e = enis
            .iter()
            .find(|e| e["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} missing from status"));
        assert_eq!(e["ips"].as_u64(), Some(*secondary), "{id}");
        assert_eq!(e["secondary_ips"].as_u64(), Some(*secondary), "{id}");
    }
    let pods: Vec<(String, String)> = enis
        .iter()
        .flat_map(|e| e["cidrs"].as_array().unwrap().iter())
        .flat_map(|c| c["pods"].as_array().unwrap().iter())
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["ip"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut names: Vec<&str> = pods.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["pod-1", "pod-2", "pod-3"]);
    for (name, ip) in &pods {
        let i: usize = name.trim_start_matches("pod-").parse().unwrap();
        assert_eq!(ip, &ips[i], "{name}");
    }

    let m = &doc["metrics"];
    assert!(doc["metrics_error"].is_null(), "{}", doc["metrics_error"]);
    assert_eq!(num(&m["eni_allocated"]), 2.0);
    assert_eq!(num(&m["total_ip_addresses"]), 18.0);
    assert_eq!(num(&m["assigned_ip_addresses"]), 3.0);
    assert!(num(&m["add_ip_req_count"]) >= 4.0);
    assert_eq!(num(&m["del_ip_req_count"]), 1.0);
    let api =
        sample(&m["aws_api_errors"], "api", "AssignPrivateIpAddresses").unwrap_or_else(|| {
            panic!(
                "no AssignPrivateIpAddresses error in {}",
                m["aws_api_errors"]
            )
        });
    assert_eq!(api["labels"]["error"], "UnauthorizedOperation");
    assert!(num(&api["value"]) >= 1.0);
    let ipamd = sample(
        &m["ipamd_errors"],
        "fn",
        "increaseIPPoolAllocIPAddressesFailed",
    )
    .unwrap_or_else(|| panic!("no pool error in {}", m["ipamd_errors"]));
    assert!(num(&ipamd["value"]) >= 1.0);

    // The table says the same.
    let out = node.cli(args(&node, &["--pods"])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("vpc-cni status --pods:\n{text}");
    assert!(
        text.contains("Card 0: 18 IPs, 3 assigned, 15 free (1 cooling down), 0 prefixes, 2 ENIs"),
        "{text}"
    );
    for (id, _, _) in &ec2.per_eni {
        assert!(text.contains(id.as_str()), "{id} in {text}");
    }
    assert!(text.contains("default/pod-3"), "{text}");
    assert!(text.contains("UnauthorizedOperation"), "{text}");
    assert!(
        text.contains("increaseIPPoolAllocIPAddressesFailed"),
        "{text}"
    );

    // A zero cooldown period: nothing is cooling.
    let out = node
        .cli(args(
            &node,
            &["--output", "json", "--ip-cooldown-period", "0"],
        ))
        .await;
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["cards"][0]["cooldown_ips"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoints_are_clear() {
    let node = LiveNode::start("m5.large", "status-down", &[]).await;
    let closed = integration_tests::free_addr();
    // Metrics down: the ENIs are still shown, with a warning.
    let out = node
        .cli(vec![
            "status".into(),
            "--introspection".into(),
            node.introspection.to_string(),
            "--metrics".into(),
            closed.to_string(),
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Card 0:"), "{text}");
    assert!(text.contains("cannot read ipamd metrics"), "{text}");
    // Introspection down: exit 1 and say what to check.
    let out = node
        .cli(vec![
            "status".into(),
            "--introspection".into(),
            closed.to_string(),
        ])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read ipamd introspection"), "{err}");
    assert!(err.contains("DISABLE_INTROSPECTION"), "{err}");
    let out = node
        .cli(vec![
            "status".into(),
            "--introspection".into(),
            "nonsense".into(),
        ])
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad address"));
}

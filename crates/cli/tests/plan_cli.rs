//! `vpc-cni plan` through the real binary: the operator documents' examples (seeds), every
//! worked example of upstream's `docs/eni-and-ip-target.md` and
//! `docs/prefix-and-ip-target.md`, subnet exhaustion, and clear errors for bad input.

use std::process::{Command, Output};

use serde_json::Value;

fn vpc_cni(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .args(args)
        .env_clear()
        .output()
        .expect("run vpc-cni")
}

/// Runs `plan … --output json` and returns the document (asserting success).
fn plan(args: &[&str]) -> Value {
    let mut all = vec!["plan"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--output", "json"]);
    let out = vpc_cni(&all);
    assert!(
        out.status.success(),
        "vpc-cni {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// The first node of the first instance type.
fn node(doc: &Value) -> &Value {
    &doc["instance_types"][0]["node_results"][0]
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn list(v: &Value) -> Vec<u64> {
    v.as_array().expect("array").iter().map(u).collect()
}

/// One row of upstream's worked-example tables: pods on one node → ENIs, pool IPs, unused
/// IPs, IPs per ENI.
struct Row {
    pods: u32,
    enis: u64,
    pool_ips: u64,
    unused: u64,
    per_eni: &'static [u64],
}

fn check_rows(instance: &str, flags: &[&str], rows: &[Row]) {
    for r in rows {
        let nodes = format!("{instance}:1:{}", r.pods);
        let mut args = vec!["--nodes", nodes.as_str()];
        args.extend_from_slice(flags);
        let doc = plan(&args);
        let n = node(&doc);
        let ctx = format!("{instance} {flags:?} pods={}", r.pods);
        assert_eq!(
            u(&n["pods_running"]),
            u64::from(r.pods),
            "{ctx}: pods hosted"
        );
        assert_eq!(u(&n["enis"]), r.enis, "{ctx}: ENIs");
        assert_eq!(u(&n["pool_ips"]), r.pool_ips, "{ctx}: pool IPs");
        assert_eq!(u(&n["warm_ips"]), r.unused, "{ctx}: unused IPs");
        assert_eq!(list(&n["ips_per_eni"]), r.per_eni, "{ctx}: IPs per ENI");
        assert_eq!(u(&n["assigned_ips"]), u64::from(r.pods), "{ctx}: assigned");
    }
}

const fn row(pods: u32, enis: u64, pool_ips: u64, unused: u64, per_eni: &'static [u64]) -> Row {
    Row {
        pods,
        enis,
        pool_ips,
        unused,
        per_eni,
    }
}

#[test]
fn seed_minimum_12_warm_2_holds_12_then_keeps_2_spare() {
    // Operator note (seed 001): MINIMUM_IP_TARGET=10+2, WARM_IP_TARGET=2 on a small
    // instance: 12 addresses at start, 12 pods fit, then the pool grows keeping 2 spare.
    let flags = ["--minimum-ip-target", "12", "--warm-ip-target", "2"];
    for (pods, pool) in [(0, 12), (5, 12), (10, 12), (11, 13), (12, 14), (20, 22)] {
        let nodes = format!("t3.large:1:{pods}");
        let mut args = vec!["--nodes", nodes.as_str()];
        args.extend_from_slice(&flags);
        let n = plan(&args);
        let n = node(&n);
        assert_eq!(u(&n["pool_ips"]), pool, "{pods} pods");
        assert_eq!(u(&n["secondary_ips"]), pool, "{pods} pods");
        assert_eq!(u(&n["pods_running"]), pods, "{pods} pods");
        if pods >= 10 {
            assert_eq!(u(&n["warm_ips"]), 2, "{pods} pods keep 2 spare");
        }
    }
}

#[test]
fn seed_warm_eni_1_on_m5_large() {
    // WARM_ENI_TARGET=1 (the default): one ENI's worth (9) free at all times; the primary
    // ENI is filled first, then a whole ENI is added as soon as a pod eats into it.
    let doc = plan(&["--nodes", "m5.large:1:0", "--warm-eni-target", "1"]);
    let n = node(&doc);
    assert_eq!(
        (u(&n["enis"]), u(&n["pool_ips"]), u(&n["warm_ips"])),
        (1, 9, 9)
    );
    let doc = plan(&["--nodes", "m5.large:1:1"]);
    let n = node(&doc);
    assert_eq!(
        (u(&n["enis"]), u(&n["pool_ips"]), u(&n["warm_ips"])),
        (2, 18, 17)
    );
    // Subnet cost: the node's primary address + the second ENI's own address + 18.
    assert_eq!(u(&n["subnet_ips"]), 20);
    let doc = plan(&["--nodes", "m5.large:1:27"]);
    let n = node(&doc);
    assert_eq!(list(&n["ips_per_eni"]), [9, 9, 9], "max ENIs reached");
    assert_eq!(u(&n["warm_ips"]), 0);
}

#[test]
fn seed_prefix_mode_48_pods_take_3_prefixes() {
    // Seed 001: 48 pods need three /28 prefixes (16 addresses each).
    let doc = plan(&[
        "--nodes",
        "m5.large:1:48",
        "--enable-prefix-delegation",
        "--minimum-ip-target",
        "48",
    ]);
    let n = node(&doc);
    assert_eq!((u(&n["prefixes"]), u(&n["pool_ips"])), (3, 48));
    assert_eq!(u(&n["pods_running"]), 48);
    assert_eq!(doc["instance_types"][0]["max_pods"], 110, "PD max pods");
    // WARM_PREFIX_TARGET=1 keeps one more, free prefix.
    let doc = plan(&[
        "--nodes",
        "m5.large:1:48",
        "--enable-prefix-delegation",
        "--warm-prefix-target",
        "1",
    ]);
    assert_eq!(u(&node(&doc)["prefixes"]), 4);
    assert_eq!(u(&node(&doc)["warm_ips"]), 16);
}

#[test]
fn seed_max_pods_table_per_node_count() {
    // Seed 001's table: max pods per node for t3 sizes, times 1..4 nodes.
    for (ty, per_node) in [
        ("t3.nano", 4),
        ("t3.micro", 4),
        ("t3.small", 11),
        ("t3.medium", 17),
        ("t3.large", 35),
        ("t3.xlarge", 58),
        ("t3.2xlarge", 58),
    ] {
        for nodes in 1..=4u64 {
            // Ask for max pods on each node; aws-node and kube-proxy (host network) are two
            // of them, the rest need VPC addresses.
            let spec = format!("{ty}:{nodes}:{}", per_node - 2);
            let doc = plan(&["--nodes", &spec]);
            assert_eq!(u(&doc["instance_types"][0]["max_pods"]), per_node, "{ty}");
            let hosted = u(&doc["totals"]["pods_hosted"]) + 2 * nodes;
            assert_eq!(hosted, per_node * nodes, "{ty} × {nodes}");
            assert_eq!(u(&doc["totals"]["pods_without_ip"]), 0, "{ty}");
        }
    }
    // One more pod than max pods per node is never scheduled.
    let doc = plan(&["--nodes", "t3.small:3:10"]);
    assert_eq!(u(&doc["totals"]["pods_over_max_pods"]), 3);
    assert_eq!(u(&doc["totals"]["pods_hosted"]), 27);
    assert_eq!(doc["nodes_short"].as_array().map(Vec::len), Some(3));
}

#[test]
fn spec_3_14_secondary_ip_tables() {
    check_rows(
        "t3.small",
        &["--warm-eni-target", "1"],
        &[
            row(0, 1, 3, 3, &[3]),
            row(5, 3, 9, 4, &[3, 3, 3]),
            row(9, 3, 9, 0, &[3, 3, 3]),
        ],
    );
    check_rows(
        "t3.small",
        &["--warm-ip-target", "1", "--minimum-ip-target", "1"],
        &[
            row(0, 1, 1, 1, &[1]),
            row(5, 2, 6, 1, &[3, 3]),
            row(9, 3, 9, 0, &[3, 3, 3]),
        ],
    );
    check_rows(
        "t3.small",
        &["--warm-ip-target", "2", "--minimum-ip-target", "5"],
        &[
            row(0, 2, 5, 5, &[3, 2]),
            row(5, 3, 7, 2, &[3, 3, 1]),
            row(9, 3, 9, 0, &[3, 3, 3]),
        ],
    );
    check_rows(
        "p3dn.24xlarge",
        &["--warm-eni-target", "1"],
        &[
            row(0, 1, 49, 49, &[49]),
            row(3, 2, 98, 95, &[49, 49]),
            row(95, 3, 147, 52, &[49, 49, 49]),
        ],
    );
    check_rows(
        "p3dn.24xlarge",
        &["--warm-ip-target", "5", "--minimum-ip-target", "10"],
        &[
            row(0, 1, 10, 10, &[10]),
            row(7, 1, 12, 5, &[12]),
            row(15, 1, 20, 5, &[20]),
            row(45, 2, 50, 5, &[49, 1]),
        ],
    );
}

#[test]
fn spec_3_14_prefix_delegation_tables() {
    // (pods, ENIs, prefixes, unused IPs, prefixes per ENI); where upstream's doc table
    // disagrees with its algorithm, the algorithm's value (docs/pool-planner.md).
    type PdRow = (u32, u64, u64, u64, &'static [u64]);
    let cases: [(&str, &[&str], &[PdRow]); 5] = [
        (
            "t3.small",
            &["--warm-prefix-target", "1"],
            &[
                (0, 1, 1, 16, &[1]),
                (5, 1, 2, 27, &[2]),
                (16, 1, 2, 16, &[2]),
                (17, 1, 3, 31, &[3]),
                (58, 2, 5, 22, &[3, 2]),
            ],
        ),
        (
            "t3.small",
            &["--warm-ip-target", "1", "--minimum-ip-target", "1"],
            &[
                (0, 1, 1, 16, &[1]),
                (5, 1, 1, 11, &[1]),
                (17, 1, 2, 15, &[2]),
                (58, 2, 4, 6, &[3, 1]),
            ],
        ),
        (
            "t3.small",
            &["--warm-ip-target", "7", "--minimum-ip-target", "20"],
            &[
                (0, 1, 2, 32, &[2]),
                (5, 1, 2, 27, &[2]),
                (17, 1, 2, 15, &[2]),
                (58, 2, 5, 22, &[3, 2]),
            ],
        ),
        (
            "p3dn.24xlarge",
            &["--warm-prefix-target", "1"],
            &[
                (0, 1, 1, 16, &[1]),
                (3, 1, 2, 29, &[2]),
                (95, 1, 7, 17, &[7]),
            ],
        ),
        (
            "p3dn.24xlarge",
            &["--warm-ip-target", "5", "--minimum-ip-target", "10"],
            &[
                (0, 1, 1, 16, &[1]),
                (7, 1, 1, 9, &[1]),
                (15, 1, 2, 17, &[2]),
                (45, 1, 4, 19, &[4]),
            ],
        ),
    ];
    for (ty, flags, rows) in cases {
        for &(pods, enis, prefixes, unused, per_eni) in rows {
            let spec = format!("{ty}:1:{pods}");
            let mut args = vec!["--nodes", spec.as_str(), "--enable-prefix-delegation"];
            args.extend_from_slice(flags);
            let doc = plan(&args);
            let n = node(&doc);
            let ctx = format!("{ty} {flags:?} pods={pods}");
            assert_eq!(u(&n["pods_running"]), u64::from(pods), "{ctx}");
            assert_eq!(u(&n["enis"]), enis, "{ctx}: ENIs");
            assert_eq!(u(&n["prefixes"]), prefixes, "{ctx}: prefixes");
            assert_eq!(u(&n["warm_ips"]), unused, "{ctx}: unused IPs");
            let per: Vec<u64> = list(&n["ips_per_eni"]).iter().map(|i| i / 16).collect();
            assert_eq!(per, per_eni, "{ctx}: prefixes per ENI");
            assert_eq!(u(&n["secondary_ips"]), 0, "{ctx}");
        }
    }
}

#[test]
fn subnet_accounting_and_exhaustion() {
    // Enough room: 3 × m5.large with 20 pods (3 ENIs, 27 IPs each) + 2 × t3.medium with 10
    // pods (3 ENIs, 15 IPs): every ENI's own address and every pool address counts.
    let doc = plan(&[
        "--subnet",
        "10.0.0.0/24",
        "--nodes",
        "m5.large:3:20",
        "--nodes",
        "t3.medium:2:10",
    ]);
    let s = &doc["subnet"];
    assert_eq!((u(&s["size"]), u(&s["usable"])), (256, 251));
    assert_eq!(u(&s["used"]), 3 * (3 + 27) + 2 * (3 + 15));
    assert_eq!(u(&s["free"]), 251 - u(&s["used"]));
    assert_eq!(s["exhausted"], false);
    assert_eq!(u(&doc["totals"]["pods_hosted"]), 80);

    // A /26 cannot: the subnet runs out, pods go without addresses, and the nodes are named.
    let doc = plan(&[
        "--subnet",
        "10.0.0.0/26",
        "--nodes",
        "m5.large:3:20",
        "--nodes",
        "t3.medium:2:10",
    ]);
    let s = &doc["subnet"];
    assert_eq!(s["exhausted"], true);
    assert_eq!(u(&s["used"]) + u(&s["free"]), 59);
    let t = &doc["totals"];
    assert!(u(&t["pods_without_ip"]) > 0);
    assert_eq!(u(&t["pods_hosted"]) + u(&t["pods_without_ip"]), 80);
    assert_eq!(u(&t["subnet_ips"]), u(&s["used"]));
    let short = doc["nodes_short"].as_array().unwrap();
    assert!(!short.is_empty());
    for ty in doc["instance_types"].as_array().unwrap() {
        for n in ty["node_results"].as_array().unwrap() {
            let named = short.contains(&n["name"]);
            assert_eq!(named, u(&n["pods_without_ip"]) > 0, "{n}");
            if u(&n["pods_without_ip"]) > 0 {
                assert_eq!(n["shortfall"], "subnet_exhausted", "{n}");
            }
        }
    }
    // The table says the same.
    let out = vpc_cni(&[
        "plan",
        "--subnet",
        "10.0.0.0/26",
        "--nodes",
        "m5.large:3:20",
        "--nodes",
        "t3.medium:2:10",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("EXHAUSTED"), "{text}");
    assert!(
        text.contains("Nodes that cannot run all their pods"),
        "{text}"
    );
}

#[test]
fn from_env_reads_the_variables_and_flags_win() {
    let run = |env: &[(&str, &str)], extra: &[&str]| -> Value {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vpc-cni"));
        cmd.env_clear().args([
            "plan",
            "--from-env",
            "--nodes",
            "m5.large:1:0",
            "--output",
            "json",
        ]);
        cmd.args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let doc = run(&[("WARM_IP_TARGET", "3"), ("MINIMUM_IP_TARGET", "4")], &[]);
    assert_eq!(doc["mode"]["warm_ip_target"], 3);
    assert_eq!(u(&node(&doc)["pool_ips"]), 4);
    let doc = run(&[("WARM_IP_TARGET", "3")], &["--warm-ip-target", "6"]);
    assert_eq!(u(&node(&doc)["pool_ips"]), 6);
    let doc = run(
        &[
            ("ENABLE_PREFIX_DELEGATION", "true"),
            ("WARM_PREFIX_TARGET", "2"),
        ],
        &[],
    );
    assert_eq!(u(&node(&doc)["prefixes"]), 2);
    // Without --from-env the environment is ignored.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vpc-cni"));
    let out = cmd
        .env_clear()
        .env("WARM_IP_TARGET", "3")
        .args(["plan", "--nodes", "m5.large:1:0", "--output", "json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["mode"]["warm_ip_target"], 0);
}

fn fails_with(args: &[&str], needle: &str) {
    let out = vpc_cni(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    assert!(out.stdout.is_empty(), "{args:?}");
}

#[test]
fn bad_inputs_are_clear_errors() {
    fails_with(
        &["plan", "--nodes", "m5.huge:1:3"],
        "unknown instance type \"m5.huge\"",
    );
    fails_with(
        &["plan", "--subnet", "10.0.0.7/24", "--nodes", "m5.large:1:3"],
        "did you mean 10.0.0.0/24",
    );
    fails_with(
        &["plan", "--subnet", "10.0.0.0/30", "--nodes", "m5.large:1:3"],
        "between /16 and /28",
    );
    fails_with(
        &["plan", "--subnet", "ten", "--nodes", "m5.large:1:3"],
        "bad subnet",
    );
    fails_with(
        &["plan", "--subnet-size", "100", "--nodes", "m5.large:1:3"],
        "power of two",
    );
    fails_with(&["plan", "--nodes", "m5.large:3"], "TYPE:COUNT:PODS");
    fails_with(&["plan", "--nodes", "m5.large:0:3"], "at least 1");
    fails_with(
        &["plan", "--nodes", "m5.large:1:3", "--warm-ip-target", "-2"],
        "WARM_IP_TARGET=\"-2\"",
    );
    fails_with(
        &[
            "plan",
            "--nodes",
            "m5.large:1:3",
            "--enable-prefix-delegation",
            "maybe",
        ],
        "ENABLE_PREFIX_DELEGATION",
    );
    fails_with(
        &["plan", "--subnet", "/28", "--nodes", "m5.large:12:1"],
        "primary network interfaces alone need 12",
    );
    fails_with(
        &[
            "plan",
            "--nodes",
            "m5.large:1:3",
            "--custom-networking",
            "--max-eni",
            "1",
        ],
        "impossible inputs",
    );
}

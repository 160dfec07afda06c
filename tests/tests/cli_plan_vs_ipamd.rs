//! `vpc-cni plan` agrees with the real agent: for each policy, the real ipamd pool manager
//! runs against the EC2 emulator, pods arrive through gRPC, and once the pool is still, EC2's
//! ENIs, secondary IPs and prefixes for the node equal what the plan predicts for the same
//! instance type, pod count and settings.

use std::time::Duration;

use integration_tests::agent::LiveNode;
use serde_json::Value;

/// ipamd without the Kubernetes API takes max pods from the eni-max-pods table (upstream's
/// fallback, `misc/eni-max-pods.txt`); the plan is given the same value so the inputs are the
/// same.
fn agent_max_pods(instance_type: &str) -> u32 {
    limits::lookup(instance_type)
        .expect("known type")
        .eni_max_pods()
}

async fn check(tag: &str, instance_type: &str, pods: usize, env: &[(&str, &str)], flags: &[&str]) {
    let mut node = LiveNode::start(instance_type, tag, env).await;
    for i in 0..pods {
        node.add_pod(i).await;
    }
    let ec2 = node.settle(Duration::from_secs(2)).await;

    let mut args: Vec<String> = vec![
        "plan".into(),
        "--nodes".into(),
        format!("{instance_type}:1:{pods}"),
        "--max-pods".into(),
        agent_max_pods(instance_type).to_string(),
        "--output".into(),
        "json".into(),
    ];
    args.extend(flags.iter().map(ToString::to_string));
    let out = node.cli(args.clone()).await;
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let n = &doc["instance_types"][0]["node_results"][0];
    let predicted = (
        n["enis"].as_u64().unwrap(),
        n["secondary_ips"].as_u64().unwrap(),
        n["prefixes"].as_u64().unwrap(),
    );
    let ctx = format!("{instance_type} {env:?} with {pods} pods: EC2 {ec2:?}, plan {n}");
    assert_eq!(
        (ec2.enis, ec2.secondary_ips, ec2.prefixes),
        predicted,
        "{ctx}"
    );
    // Per ENI too: EC2's addresses per ENI (device order) = the plan's pool per ENI.
    let unit = if predicted.2 > 0 { 16 } else { 1 };
    let ec2_per_eni: Vec<u64> = ec2
        .per_eni
        .iter()
        .map(|(_, ips, prefixes)| ips + prefixes * unit)
        .collect();
    let plan_per_eni: Vec<u64> = n["ips_per_eni"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let mut sorted_ec2 = ec2_per_eni.clone();
    let mut sorted_plan = plan_per_eni.clone();
    sorted_ec2.sort_unstable();
    sorted_plan.sort_unstable();
    assert_eq!(sorted_ec2, sorted_plan, "{ctx}");
    assert_eq!(n["pods_running"].as_u64(), Some(pods as u64), "{ctx}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_eni_target_1() {
    // 12 pods on m5.large: 3 ENIs of 9 (the third once 12 pods leave only 6 free).
    check(
        "warm-eni-target-1",
        "m5.large",
        12,
        &[("WARM_ENI_TARGET", "1")],
        &["--warm-eni-target", "1"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_ip_5_minimum_10() {
    check(
        "warm-ip-5-minimum-10",
        "m5.large",
        12,
        &[("WARM_IP_TARGET", "5"), ("MINIMUM_IP_TARGET", "10")],
        &["--warm-ip-target", "5", "--minimum-ip-target", "10"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_delegation_warm_prefix_1() {
    // 20 pods: two prefixes hold 32 ≥ max pods 29, so ipamd stops there (the max-pods ceiling of
    // upstream's `isDatastorePoolTooLow`).
    check(
        "prefix-delegation-warm-prefix-1",
        "m5.large",
        20,
        &[
            ("ENABLE_PREFIX_DELEGATION", "true"),
            ("WARM_PREFIX_TARGET", "1"),
        ],
        &["--enable-prefix-delegation", "--warm-prefix-target", "1"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_delegation_warm_prefix_1_few_pods() {
    check(
        "prefix-delegation-warm-prefix-1-few-pods",
        "m5.large",
        5,
        &[
            ("ENABLE_PREFIX_DELEGATION", "true"),
            ("WARM_PREFIX_TARGET", "1"),
        ],
        &["--enable-prefix-delegation", "--warm-prefix-target", "1"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_minimum_12_warm_2_on_t3_large() {
    check(
        "seed-minimum-12-warm-2-on-t3-large",
        "t3.large",
        15,
        &[("WARM_IP_TARGET", "2"), ("MINIMUM_IP_TARGET", "12")],
        &["--warm-ip-target", "2", "--minimum-ip-target", "12"],
    )
    .await;
}

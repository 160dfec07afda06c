//! The client backs off and succeeds through throttling, and its token bucket keeps the
//! call rate under the configured limit (counted by the emulator).

mod common;

use std::time::{Duration, Instant};

use aws::Ec2;
use aws::token_bucket::RateLimits;
use ec2_emulator::faults::FailNext;
use ec2_emulator::model::ErrorCode;
use ec2_emulator::server::lock;

#[tokio::test]
async fn ten_throttled_calls_in_a_row_are_retried_to_success() {
    let t = common::emulator(|_| {}).await;
    let shared = t.emulator.clone().unwrap();
    lock(&shared).faults.fail_next.push(FailNext {
        action: "DescribeInstances".into(),
        code: ErrorCode::RequestLimitExceeded,
        remaining: 10,
    });
    let instance = t.ec2.describe_instance(&t.instance_id).await.unwrap();
    assert_eq!(instance.id, t.instance_id);
    let emu = lock(&shared);
    assert_eq!(emu.faults.calls["DescribeInstances"], 11);
    assert_eq!(emu.faults.injected["DescribeInstances"], 10);
    let stats = t.stats.snapshot();
    assert_eq!(stats["DescribeInstances"].calls, 11);
    assert_eq!(
        stats["DescribeInstances"].errors["RequestLimitExceeded"],
        10
    );
}

#[tokio::test]
async fn non_retryable_errors_are_not_retried() {
    let t = common::emulator(|_| {}).await;
    let shared = t.emulator.clone().unwrap();
    lock(&shared).faults.fail_next.push(FailNext {
        action: "AssignPrivateIpAddresses".into(),
        code: ErrorCode::InsufficientFreeAddressesInSubnet,
        remaining: 1,
    });
    let primary = t.ec2.describe_instance_enis(&t.instance_id).await.unwrap()[0]
        .id
        .clone();
    let err = t.ec2.assign_ips(&primary, 1).await.unwrap_err();
    assert_eq!(err.kind, aws::ErrorKind::InsufficientAddresses);
    assert_eq!(lock(&shared).faults.calls["AssignPrivateIpAddresses"], 1);
}

#[tokio::test]
async fn the_bucket_keeps_the_rate_under_the_limit() {
    let t = common::emulator(|s| {
        s.rate_limits = RateLimits {
            describe: (20.0, 5.0),
            mutate: (20.0, 5.0),
        };
    })
    .await;
    let start = Instant::now();
    for _ in 0..25 {
        t.ec2.describe_instance(&t.instance_id).await.unwrap();
    }
    let elapsed = start.elapsed();
    // 5 calls from the burst, 20 more at 20/s: never faster than one second.
    assert!(elapsed >= Duration::from_millis(990), "{elapsed:?}");
    let calls = lock(t.emulator.as_ref().unwrap()).faults.calls["DescribeInstances"];
    assert_eq!(calls, 25);
    let rate = f64::from(calls as u32 - 5) / elapsed.as_secs_f64();
    assert!(rate <= 20.5, "{rate} calls/s");
}

#[tokio::test]
async fn aws_ec2_endpoint_reaches_the_ec2_client() {
    // The emulator target built with explicit settings; now build a client the way ipamd
    // does, from the environment variable upstream documents but never applied.
    let t = common::emulator(|_| {}).await;
    let endpoint = t.ec2_endpoint.clone();
    let mut settings = aws::Ec2Settings::from_lookup("us-west-2", |name| {
        (name == "AWS_EC2_ENDPOINT").then(|| endpoint.clone())
    });
    assert_eq!(settings.endpoint.as_deref(), Some(endpoint.as_str()));
    settings.static_credentials = Some(("testing".into(), "testing".into()));
    let ec2 = aws::ec2_client(&settings, t.stats.clone()).await;
    let instance = ec2.describe_instance(&t.instance_id).await.unwrap();
    assert_eq!(instance.id, t.instance_id);
    assert!(lock(t.emulator.as_ref().unwrap()).faults.calls["DescribeInstances"] >= 1);
    let unset = aws::Ec2Settings::from_lookup("us-west-2", |_| Some(String::new()));
    assert_eq!(unset.endpoint, None, "an empty value means unset");
}

//! Freeing an ENI (upstream's `FreeENI` / `tryFreeENI`) against the EC2 emulator over HTTP:
//! a detach that fails a few times and a delete that answers `InvalidNetworkInterface.InUse`
//! for longer than 2 s still end with the ENI deleted in EC2; failures are counted in
//! `awscni_aws_utils_error_count`; and in a node network namespace (root), the freed ENI's
//! rules leave with it.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws::backoff::Backoff;
use aws::sdk_ec2::SdkEc2;
use aws::{CreateEniRequest, Ec2, Ec2Settings, token_bucket::RateLimits};
use ec2_emulator::server;
use ec2_emulator::testing::{EmulatedNode, TestNetns};
use ipam::{Datastore, DatastoreConfig, NullSink, Timestamp};
use ipamd::free_eni::FreeEniSettings;
use ipamd::host_net::{HostNet, HostNetSettings};
use ipamd::metrics::Metrics;
use ipamd::node;
use ipamd::pool::{self, NodeFacts, PoolManager, SharedDatastore};
use planner::{NodeCapacity, PoolPolicy};

/// A node with one spare ENI (device 1, no addresses, attached two minutes ago as far as the
/// datastore knows) that the planner frees at the next tick.
struct Node {
    emulated: EmulatedNode,
    ec2: Arc<SdkEc2>,
    ds: SharedDatastore,
    spare: String,
    spare_ip: Ipv4Addr,
    spare_mac: String,
}

async fn node() -> Node {
    node_in(None).await
}

/// `netns`: hot-plug the ENIs as links there (its primary interface is set up here).
async fn node_in(netns: Option<&TestNetns>) -> Node {
    let emulated = EmulatedNode::start("m5.large", "10.0.0.0/24").await;
    if let Some(ns) = netns {
        ns.add_primary_interface(&emulated.primary_mac, emulated.primary_ip);
        server::lock(&emulated.emu).set_hotplug(&emulated.instance_id, &ns.0);
    }
    let mut settings = Ec2Settings::from_lookup("us-west-2", |_| None);
    settings.endpoint = Some(emulated.ec2_endpoint.clone());
    settings.static_credentials = Some(("testing".into(), "testing".into()));
    settings.rate_limits = RateLimits {
        describe: (1000.0, 1000.0),
        mutate: (1000.0, 1000.0),
    };
    let ec2 = Arc::new(aws::ec2_client(&settings, Arc::new(aws::ApiStats::default())).await);
    let instance = emulated.instance_id.clone();
    let primary = ec2.describe_instance_enis(&instance).await.unwrap()[0].clone();
    // One free address on the primary: WARM_IP_TARGET=1 holds without the spare ENI.
    ec2.assign_ips(&primary.id, 1).await.unwrap();
    let spare = ec2
        .create_eni(&CreateEniRequest {
            subnet_id: emulated.subnet_id.clone(),
            security_groups: vec![emulated.security_group.clone()],
            description: format!("aws-K8S-{instance}"),
            secondary_ips: 0,
            prefixes: 0,
            ipv6_addresses: 0,
            tags: Default::default(),
            conntrack: None,
        })
        .await
        .unwrap();
    ec2.attach_eni(&spare.id, &instance, 1, 0).await.unwrap();
    let mut ds = Datastore::new(DatastoreConfig::default(), Box::new(NullSink));
    let long_ago = Timestamp::from_system_time(SystemTime::now() - Duration::from_secs(120));
    for eni in ec2.describe_instance_enis(&instance).await.unwrap() {
        let added = if eni.id == spare.id {
            long_ago
        } else {
            pool::now()
        };
        node::add_eni_from_ec2(&mut ds, &eni, added).unwrap();
    }
    Node {
        ec2,
        ds: Arc::new(Mutex::new(ds)),
        spare: spare.id.clone(),
        spare_ip: spare.primary_ip.expect("the spare ENI's primary address"),
        spare_mac: spare.mac.clone(),
        emulated,
    }
}

/// Short, upstream-shaped retries: 12 attempts each, delays capped at 400 ms.
fn fast() -> FreeEniSettings {
    let backoff = |base_ms| Backoff {
        base: Duration::from_millis(base_ms),
        max: Duration::from_millis(400),
        factor: 2.0,
        jitter: 0.15,
        max_attempts: 12,
    };
    FreeEniSettings {
        detach: backoff(50),
        settle: Duration::from_millis(100),
        delete: backoff(100),
    }
}

impl Node {
    fn pool(&self, settings: FreeEniSettings) -> PoolManager<SdkEc2> {
        let e = &self.emulated;
        let facts = NodeFacts {
            instance_id: e.instance_id.clone(),
            subnet_id: e.subnet_id.clone(),
            security_groups: vec![e.security_group.clone()],
            cluster_name: "demo".into(),
            additional_tags: Default::default(),
            subnet_cidr: Some("10.0.0.0/24".parse().unwrap()),
            vpc_id: e.vpc_id.clone(),
            availability_zone: "us-west-2a".into(),
            subnet_discovery: false,
        };
        let policy = PoolPolicy {
            warm_eni_target: 0,
            warm_ip_target: 1,
            minimum_ip_target: 0,
            warm_prefix_target: 0,
            prefix_delegation: false,
            custom_networking: false,
            max_pods: 110,
        };
        let capacity = NodeCapacity {
            max_enis: 3,
            ipv4_per_eni: 10,
            unmanaged_enis: 0,
            reserve_trunk_slot: false,
        };
        PoolManager::new(self.ec2.clone(), self.ds.clone(), facts, policy, capacity)
            .with_free_eni_settings(settings)
            .expect("valid settings")
    }

    /// Whether EC2 still has the spare ENI (attached or not).
    fn spare_exists(&self) -> bool {
        server::lock(&self.emulated.emu)
            .world
            .enis
            .contains_key(&self.spare)
    }

    /// `POST /control/fail-next` on the emulator's control API.
    async fn fail_next(&self, action: &str, code: &str, count: u32) {
        let body = format!(r#"{{"action":"{action}","code":"{code}","count":{count}}}"#);
        let reply = http_post(&self.emulated.ec2_endpoint, "/control/fail-next", &body).await;
        assert!(reply.contains(r#""ok":true"#), "{reply}");
    }
}

/// POST a JSON body over HTTP/1.1 to `endpoint` (`http://host:port`); returns the body.
async fn http_post(endpoint: &str, path: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = endpoint.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or(out)
}

/// The `awscni_aws_utils_error_count` lines of the exposition.
fn utils_errors(metrics: &Metrics) -> Vec<String> {
    metrics
        .render()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("awscni_aws_utils_error_count{"))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn free_eni_retries_a_failing_detach() {
    let n = node().await;
    let mut pool = n.pool(fast());
    n.fail_next("DetachNetworkInterface", "IncorrectState", 3)
        .await;
    let out = pool.tick().await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.enis_freed, 1);
    assert!(!n.spare_exists(), "the ENI is deleted in EC2");
    assert!(pool::lock(&n.ds).eni(&n.spare).is_none());
}

#[tokio::test]
async fn free_eni_outlasts_delete_in_use_beyond_two_seconds() {
    let n = node().await;
    let mut pool = n.pool(fast());
    // EC2 is still detaching: ten InUse answers, spread over more than 2 s of retries.
    n.fail_next(
        "DeleteNetworkInterface",
        "InvalidNetworkInterface.InUse",
        10,
    )
    .await;
    let started = Instant::now();
    let out = pool.tick().await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "the InUse window lasted {:?}",
        started.elapsed()
    );
    assert_eq!(out.enis_freed, 1);
    assert!(!n.spare_exists(), "the ENI is deleted in EC2");
}

#[tokio::test]
async fn free_eni_failures_are_counted_in_aws_utils_error_count() {
    // The attachment cannot be read: getENIAttachmentIDFailed, and nothing is detached.
    let n = node().await;
    let metrics = Arc::new(Metrics::new("test").unwrap());
    let mut pool = n.pool(fast()).with_metrics(metrics.clone());
    n.fail_next("DescribeNetworkInterfaces", "UnauthorizedOperation", 1)
        .await;
    let out = pool.tick().await;
    assert_eq!(out.errors.len(), 1, "{out:?}");
    let errors = utils_errors(&metrics);
    assert!(
        errors
            .iter()
            .any(|l| l.contains(r#"fn="getENIAttachmentIDFailed""#)
                && l.contains("UnauthorizedOperation")
                && l.ends_with(" 1")),
        "{errors:?}"
    );
    assert!(n.spare_exists());

    // The delete keeps failing: FreeENIDeleteErr once, after every attempt.
    let n = node().await;
    let metrics = Arc::new(Metrics::new("test").unwrap());
    let settings = FreeEniSettings {
        delete: Backoff {
            max_attempts: 3,
            ..fast().delete
        },
        ..fast()
    };
    let mut pool = n.pool(settings).with_metrics(metrics.clone());
    n.fail_next("DeleteNetworkInterface", "UnauthorizedOperation", 3)
        .await;
    let out = pool.tick().await;
    assert_eq!(out.errors.len(), 1, "{out:?}");
    let errors = utils_errors(&metrics);
    assert!(
        errors.iter().any(|l| l.contains(r#"fn="FreeENIDeleteErr""#)
            && l.contains("UnauthorizedOperation")
            && l.ends_with(" 1")),
        "{errors:?}"
    );
    let calls = server::lock(&n.emulated.emu).faults.calls["DeleteNetworkInterface"];
    assert_eq!(calls, 3, "every attempt was made");
}

#[test]
fn free_eni_settings_are_validated() {
    let n = FreeEniSettings {
        detach: Backoff {
            max_attempts: 0,
            ..FreeEniSettings::default().detach
        },
        ..FreeEniSettings::default()
    };
    assert!(n.validate().is_err());
    assert!(FreeEniSettings::default().validate().is_ok());
    assert_eq!(FreeEniSettings::default().settle, Duration::from_secs(2));
}

fn host_settings(ns: &TestNetns) -> HostNetSettings {
    ipamd::testing::host_settings(Some(ns.path().into()), 50, Duration::from_millis(100))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freed_eni_leaves_no_rule_from_its_primary_ip() {
    let ns = TestNetns::new("free-eni-rules");
    let n = node_in(Some(&ns)).await;
    let metrics = Arc::new(Metrics::new("test").unwrap());
    let host = Arc::new(HostNet::new(host_settings(&ns)).unwrap());
    host.set_metrics(metrics.clone());
    let subnet = "10.0.0.0/24".parse().unwrap();
    host.setup_secondary(&n.spare_mac, n.spare_ip, subnet, 2, false)
        .await
        .unwrap();
    let ip = n.spare_ip.to_string();
    let rules = ns.ip(&["rule"]);
    assert!(
        rules.contains(&format!("32765:\tfrom {ip} lookup 2")),
        "{rules}"
    );
    let mut pool = n.pool(fast()).with_host_network(host.clone());
    let out = pool.tick().await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.enis_freed, 1);
    assert!(!n.spare_exists());
    let rules = ns.ip(&["rule"]);
    assert!(!rules.contains(&format!("from {ip} ")), "{rules}");
    assert!(
        !metrics
            .render()
            .unwrap()
            .contains("freeENIDeleteRulesFailed"),
        "no rule failure counted"
    );
}

//! The pool manager against the EC2 emulator over real HTTP: from a cold start the pool
//! converges to what the planner predicts, EC2's view and the datastore agree, growth
//! allocates and attaches ENIs, and a shrink gives addresses back. With host networking on
//! the recording kernel (no root): a new ENI is wired through the kernel seam before it
//! enters the datastore, and one whose link never shows up is never handed to pods.

use std::sync::{Arc, Mutex};

use aws::{Ec2, Ec2Settings, token_bucket::RateLimits};
use ec2_emulator::server::{self, Shared};
use ec2_emulator::testing::EmulatedNode;
use ipam::{Datastore, DatastoreConfig, IpamKey, IpamMetadata, NullSink};
use ipamd::host_net::HostNet;
use ipamd::node;
use ipamd::pool::{self, NodeFacts, PoolManager, SharedDatastore};
use net::kernel::Kernel;
use net::netlink::NetlinkHandle;
use planner::{NodeCapacity, PoolPolicy};

struct Node<K: Kernel = NetlinkHandle> {
    emu: Shared,
    pool: PoolManager<aws::sdk_ec2::SdkEc2, K>,
    ds: SharedDatastore,
    instance: String,
}

async fn node(instance_type: &str, policy: PoolPolicy) -> Node {
    node_on::<NetlinkHandle>(instance_type, policy, None).await
}

/// A node whose new ENIs are wired through `host` (none: no host networking).
async fn node_on<K: Kernel>(
    instance_type: &str,
    policy: PoolPolicy,
    host: Option<Arc<HostNet<K>>>,
) -> Node<K> {
    let emulated = EmulatedNode::start(instance_type, "10.0.0.0/22").await;
    let ty = ec2_emulator::catalog::instance_type(instance_type).unwrap();
    let (max_enis, ipv4) = (ty.max_enis_on(0), ty.ipv4_per_eni);
    let (emu, endpoint, instance) = (
        emulated.emu.clone(),
        emulated.ec2_endpoint.clone(),
        emulated.instance_id.clone(),
    );
    let (subnet, sg) = (emulated.subnet_id.clone(), emulated.security_group.clone());
    let mut settings = Ec2Settings::from_lookup("us-west-2", |_| None);
    settings.endpoint = Some(endpoint);
    settings.static_credentials = Some(("testing".into(), "testing".into()));
    settings.rate_limits = RateLimits {
        describe: (1000.0, 1000.0),
        mutate: (1000.0, 1000.0),
    };
    let ec2 = Arc::new(aws::ec2_client(&settings, Arc::new(aws::ApiStats::default())).await);

    let config = DatastoreConfig {
        prefix_delegation: policy.prefix_delegation,
        ..DatastoreConfig::default()
    };
    let mut ds = Datastore::new(config, Box::new(NullSink));
    for eni in ec2.describe_instance_enis(&instance).await.unwrap() {
        node::add_eni_from_ec2(&mut ds, &eni, pool::now()).unwrap();
    }
    let ds: SharedDatastore = Arc::new(Mutex::new(ds));
    let facts = NodeFacts {
        instance_id: instance.clone(),
        subnet_id: subnet,
        security_groups: vec![sg],
        cluster_name: "demo".into(),
        additional_tags: Default::default(),
        subnet_cidr: None,
        vpc_id: emulated.vpc_id.clone(),
        availability_zone: "us-west-2a".into(),
        subnet_discovery: true,
    };
    let capacity = NodeCapacity {
        max_enis,
        ipv4_per_eni: ipv4,
        unmanaged_enis: 0,
        reserve_trunk_slot: false,
    };
    let mut pool = PoolManager::new(ec2, ds.clone(), facts, policy, capacity);
    if let Some(host) = host {
        pool = pool.with_host_network(host);
    }
    Node {
        emu,
        pool,
        ds,
        instance,
    }
}

fn policy() -> PoolPolicy {
    PoolPolicy {
        warm_eni_target: 1,
        warm_ip_target: 0,
        minimum_ip_target: 0,
        warm_prefix_target: 0,
        prefix_delegation: false,
        custom_networking: false,
        max_pods: 110,
    }
}

impl<K: Kernel> Node<K> {
    /// Ticks until the planner asks for nothing (bounded).
    async fn settle(&mut self) -> usize {
        for tick in 0..20 {
            if self.pool.plan().actions.is_empty() {
                return tick;
            }
            let out = self.pool.tick().await;
            assert!(out.errors.is_empty(), "{:?}", out.errors);
        }
        panic!("the pool did not converge in 20 ticks");
    }

    /// (ENIs attached, secondary IPs, prefixes) as EC2 sees them.
    fn ec2_view(&self) -> (usize, usize, usize) {
        let emu = server::lock(&self.emu);
        let enis = emu.world.attached_enis(&self.instance);
        (
            enis.len(),
            enis.iter().map(|e| e.secondary_ips.len()).sum(),
            enis.iter().map(|e| e.prefixes.len()).sum(),
        )
    }

    fn ds_view(&self) -> (usize, u32) {
        let ds = pool::lock(&self.ds);
        (ds.eni_count(), ds.stats(pool::now()).total_ips)
    }

    fn add_pods(&self, n: usize, from: usize) {
        let mut ds = pool::lock(&self.ds);
        for i in from..from + n {
            let key = IpamKey::new("aws-cni", format!("c{i}"), "eth0");
            ds.assign_pod_ipv4(
                &key,
                &IpamMetadata::new("default", format!("p{i}"), 1),
                pool::now(),
            )
            .unwrap();
        }
    }
}

#[tokio::test]
async fn warm_eni_target_1_on_m5_large_keeps_one_enis_worth_of_ips() {
    let mut n = node("m5.large", policy()).await;
    n.settle().await;
    // m5.large: 10 IPv4 per ENI → 9 usable; WARM_ENI_TARGET=1 → 9 free IPs on the primary.
    assert_eq!(n.ec2_view(), (1, 9, 0));
    assert_eq!(n.ds_view(), (1, 9));
    // Three pods leave 6 free < 9: a second ENI with 9 more.
    n.add_pods(3, 0);
    n.settle().await;
    assert_eq!(n.ec2_view(), (2, 18, 0));
    assert_eq!(n.ds_view(), (2, 18));
    let emu = server::lock(&n.emu);
    let eni = emu.world.attached_enis(&n.instance)[1].clone();
    assert_eq!(eni.tags.get(node::tags::INSTANCE_ID), Some(&n.instance));
    assert_eq!(
        eni.tags.get(node::tags::CLUSTER_NAME).map(String::as_str),
        Some("demo")
    );
    assert!(eni.tags.contains_key(node::tags::CREATED_AT));
    assert!(eni.description.starts_with("aws-K8S-"));
    assert!(eni.attachment.as_ref().unwrap().delete_on_termination);
}

#[tokio::test]
async fn warm_ip_5_minimum_10_holds_ten_then_keeps_five_spare() {
    let mut n = node(
        "m5.large",
        PoolPolicy {
            warm_ip_target: 5,
            minimum_ip_target: 10,
            ..policy()
        },
    )
    .await;
    n.settle().await;
    // short = max(5 - 0, 10 - 0) = 10: the primary takes 9, a second ENI 1.
    assert_eq!(n.ds_view().1, 10);
    assert_eq!(n.ec2_view().1, 10);
    n.add_pods(8, 0);
    n.settle().await;
    assert_eq!(n.ds_view().1, 13, "8 pods + 5 warm");
    assert_eq!(n.ec2_view().1, 13);
}

#[tokio::test]
async fn prefix_delegation_with_warm_prefix_1_keeps_one_free_prefix() {
    let mut n = node(
        "m5.large",
        PoolPolicy {
            prefix_delegation: true,
            warm_prefix_target: 1,
            warm_eni_target: 0,
            ..policy()
        },
    )
    .await;
    n.settle().await;
    assert_eq!(n.ec2_view(), (1, 0, 1));
    assert_eq!(n.ds_view(), (1, 16));
    n.add_pods(1, 0);
    n.settle().await;
    assert_eq!(n.ec2_view(), (1, 0, 2), "the used prefix plus one free");
}

#[tokio::test]
async fn shrink_returns_addresses_to_ec2() {
    let mut n = node(
        "m5.large",
        PoolPolicy {
            warm_ip_target: 2,
            warm_eni_target: 0,
            ..policy()
        },
    )
    .await;
    n.settle().await;
    assert_eq!(n.ec2_view().1, 2);
    for i in 0..6 {
        n.add_pods(1, i);
        n.settle().await;
    }
    assert_eq!(n.ec2_view().1, 8, "6 pods + 2 warm");
    {
        let mut ds = pool::lock(&n.ds);
        for i in 0..6 {
            ds.unassign_pod(
                &IpamKey::new("aws-cni", format!("c{i}"), "eth0"),
                pool::now(),
            )
            .unwrap();
        }
    }
    // The first decrease is not gated; cooldown addresses count as available (upstream).
    let out = n.pool.tick().await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.cidrs_released, 6);
    assert_eq!(n.ec2_view().1, 2);
    assert_eq!(n.ds_view().1, 2);
}

/// Host networking settings for the recording kernel: links are looked for `attempts`
/// times, 10 ms apart.
fn recorded_host(
    kernel: net::testing::Recording,
    attempts: u32,
) -> Arc<HostNet<net::testing::Recording>> {
    let settings =
        ipamd::testing::host_settings(None, attempts, std::time::Duration::from_millis(10));
    Arc::new(HostNet::with_kernel(kernel, settings))
}

/// Plays the hypervisor for the recording kernel: every ENI EC2 attaches to the instance
/// (besides the primary) shows up as link `eth<device>` with the ENI's MAC.
fn hotplug(
    emu: Shared,
    instance: String,
    kernel: net::testing::Recording,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let attached: Vec<(String, u32)> = {
                let emu = server::lock(&emu);
                emu.world
                    .attached_enis(&instance)
                    .iter()
                    .filter_map(|e| {
                        e.attachment
                            .as_ref()
                            .map(|a| (e.mac.clone(), a.device_index))
                    })
                    .filter(|(_, device)| *device > 0)
                    .collect()
            };
            let present = kernel.model().links;
            for (mac, device) in attached {
                let mac: net::netlink::Mac = mac.parse().unwrap();
                if !present.iter().any(|l| l.mac == Some(mac)) {
                    kernel.add_link(&format!("eth{device}"), Some(mac), None);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
}

#[tokio::test]
async fn a_new_eni_is_wired_through_the_kernel_seam_before_it_serves_pods() {
    use net::netlink::{Route, Rule};
    use net::testing::Call;
    let kernel = net::testing::Recording::new("node");
    let mut n = node_on(
        "m5.large",
        policy(),
        Some(recorded_host(kernel.clone(), 500)),
    )
    .await;
    let plug = hotplug(n.emu.clone(), n.instance.clone(), kernel.clone());
    n.settle().await;
    assert!(
        kernel.journal().is_empty(),
        "the primary ENI needs no host work"
    );
    n.add_pods(3, 0);
    n.settle().await;
    plug.abort();
    assert_eq!(n.ds_view(), (2, 18));
    let eni = {
        let emu = server::lock(&n.emu);
        emu.world.attached_enis(&n.instance)[1].clone()
    };
    let eth1 = kernel
        .model()
        .links
        .iter()
        .find(|l| l.name == "eth1")
        .map(|l| l.index)
        .expect("hot-plugged link");
    // Device 1 on card 0 → route table 2; the VPC router is the subnet's first address.
    let gw = std::net::Ipv4Addr::new(10, 0, 0, 1);
    assert_eq!(
        kernel.calls(),
        [
            Call::SetLinkUp {
                link: "eth1".into(),
                mtu: Some(9001)
            },
            Call::ReplaceAddress {
                link: "eth1".into(),
                addr: ipnet::Ipv4Net::new(eni.primary_ip, 22).unwrap()
            },
            Call::ReplaceRoute(Route::link_scope(2, Route::host(gw), eth1)),
            Call::ReplaceRoute(Route::default_via(2, gw, eth1)),
            Call::AddRule(Rule::from_ip(
                eni.primary_ip,
                2,
                net::route_table::priority::ENI_PRIMARY
            )),
        ]
    );
}

#[tokio::test]
async fn an_eni_whose_link_never_shows_up_is_not_handed_to_pods() {
    let kernel = net::testing::Recording::new("node");
    let mut n = node_on("m5.large", policy(), Some(recorded_host(kernel.clone(), 3))).await;
    n.settle().await;
    n.add_pods(3, 0);
    // No hypervisor: the attached ENI's link never appears.
    let out = n.pool.tick().await;
    assert_eq!(out.enis_added, 0);
    assert!(
        out.errors
            .iter()
            .any(|e| e.contains("no link with MAC") && e.contains("after 3 attempts")),
        "{:?}",
        out.errors
    );
    assert_eq!(
        n.ds_view(),
        (1, 9),
        "the datastore never holds the unwired ENI"
    );
    assert_eq!(
        n.ec2_view().0,
        2,
        "left attached for reconcile to pick up, as upstream"
    );
    assert!(kernel.journal().is_empty(), "nothing half-done on the host");
}

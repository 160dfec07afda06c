//! The IPv6-mode replies (upstream `rpc_handler.go`'s `enableIPv6` branches): `/128`s in
//! `IPv6Addr`, the VPC's IPv6 CIDRs in `VPCv6CIDRs`, no SNAT fields, `NodeIPv6`.

use std::sync::{Arc, Mutex};

use ipam::{Datastore, DatastoreConfig, MemorySink, NewEni, Timestamp};
use rpc::{AddNetworkRequest, CniBackend, ConfigServerBackend, DelNetworkRequest};
use tokio::sync::{Notify, watch};
use tonic::Request;

use super::*;
use crate::checkpointer::Checkpointer;

fn service(ipv6: bool) -> CniService {
    let (checkpointer, sink) = Checkpointer::new(Box::new(MemorySink::new()));
    let cfg = DatastoreConfig {
        prefix_delegation: true,
        ..DatastoreConfig::default()
    };
    let mut ds = Datastore::new(cfg, Box::new(sink));
    let eni = NewEni {
        id: "eni-primary".into(),
        is_primary: true,
        route_table_id: 254,
        ..NewEni::default()
    };
    ds.add_eni(eni, Timestamp::default()).unwrap();
    ds.add_ipv6_cidr("eni-primary", "2600:1f13:a:b:c::/80".parse().unwrap())
        .unwrap();
    let (_tx, blocker) = watch::channel(None);
    CniService {
        stores: crate::datastores::Datastores::single(Arc::new(Mutex::new(ds)), checkpointer),
        facts: Arc::new(ReplyFacts {
            ipv6,
            vpc_cidrs: ["2600:1f13:a::/56".to_string()].into_iter().collect(),
            exclude_snat_cidrs: vec!["192.0.2.0/24".into()],
            node_ipv4: "10.0.0.10".into(),
            node_ipv6: "2600:1f13:a:b::10".into(),
            ..ReplyFacts::default()
        }),
        metrics: Arc::new(Metrics::new("test").unwrap()),
        blocker,
        kick: Arc::new(Notify::new()),
        waiting: Arc::default(),
        annotate: None,
        branch: None,
    }
}

fn add(i: u32) -> Request<AddNetworkRequest> {
    Request::new(AddNetworkRequest {
        container_id: format!("sandbox-{i}"),
        if_name: "eth0".into(),
        network_name: "aws-cni".into(),
        k8s_pod_namespace: "default".into(),
        k8s_pod_name: format!("pod-{i}"),
        ..Default::default()
    })
}

fn del(i: u32) -> Request<DelNetworkRequest> {
    Request::new(DelNetworkRequest {
        container_id: format!("sandbox-{i}"),
        if_name: "eth0".into(),
        network_name: "aws-cni".into(),
        reason: "PodDeleted".into(),
        ..Default::default()
    })
}

#[tokio::test]
async fn add_and_del_carry_ipv6_addresses_and_the_vpcs_ipv6_cidrs() {
    let svc = service(true);
    let _writer = svc.stores.primary().checkpointer.spawn_writer();
    let first = svc.add_network(add(0)).await.unwrap().into_inner();
    assert!(first.success);
    let row = &first.ip_allocation_metadata[0];
    assert_eq!(
        (row.i_pv4_addr.as_str(), row.i_pv6_addr.as_str()),
        ("", "2600:1f13:a:b:c::")
    );
    assert_eq!((row.device_number, row.route_table_id), (0, 254));
    assert_eq!(first.vp_cv6_cid_rs, ["2600:1f13:a::/56"]);
    assert!(first.vp_cv4_cid_rs.is_empty() && !first.use_external_snat);
    let second = svc.add_network(add(1)).await.unwrap().into_inner();
    assert_eq!(
        second.ip_allocation_metadata[0].i_pv6_addr,
        "2600:1f13:a:b:c::1"
    );
    let released = svc.del_network(del(0)).await.unwrap().into_inner();
    assert!(released.success);
    assert_eq!(
        released.ip_allocation_metadata[0].i_pv6_addr,
        "2600:1f13:a:b:c::"
    );
    let again = svc.del_network(del(0)).await.unwrap_err();
    assert!(
        again.message().contains("datastore: unknown pod"),
        "{again:?}"
    );
    let rendered = svc.metrics.render().unwrap();
    assert!(
        rendered.contains("awscni_assigned_ip_addresses 1"),
        "{rendered}"
    );
}

#[tokio::test]
async fn the_config_reply_names_the_nodes_address_of_the_clusters_family() {
    let v6 = service(true)
        .get_network_policy_configs(Request::new(()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (v6.node_i_pv4.as_str(), v6.node_i_pv6.as_str()),
        ("", "2600:1f13:a:b::10")
    );
    let v4 = service(false)
        .get_network_policy_configs(Request::new(()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (v4.node_i_pv4.as_str(), v4.node_i_pv6.as_str()),
        ("10.0.0.10", "")
    );
}

#[tokio::test]
async fn an_ipv4_agent_does_not_hand_out_the_ipv6_prefix() {
    let svc = service(false);
    let err = svc.add_network(add(0)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
}

#[tokio::test]
async fn the_gauges_count_the_ipv6_prefix() {
    let svc = service(true);
    let _writer = svc.stores.primary().checkpointer.spawn_writer();
    for i in 0..2 {
        assert!(svc.add_network(add(i)).await.unwrap().into_inner().success);
    }
    crate::node_loop::publish_gauges(&svc.metrics, &svc.stores.by_card());
    let text = svc.metrics.render().unwrap();
    for line in [
        "awscni_total_ip_addresses 281474976710656",
        "awscni_assigned_ip_addresses 2",
        r#"awscni_assigned_ip_per_cidr{cidr="2600:1f13:a:b:c::/80"} 2"#,
        r#"awscni_assigned_ip_per_eni{eni="eni-primary"} 2"#,
        "awscni_eni_allocated 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

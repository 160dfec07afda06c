//! IPv6 mode beyond the happy path (docs/ipv6.md): an instance type without prefix
//! delegation refuses to start naming the variables, and the primary ENI's /80 taken away
//! behind the agent's back is replaced from EC2 once no pod holds an address in it (ours:
//! upstream runs no reconciliation in IPv6 mode), and kept while pods do.

mod support;

use std::net::Ipv6Addr;
use std::time::Duration;

use aws::Ec2;
use ipamd::agent::AgentError;
use ipnet::Ipv6Net;
use rpc::CniBackendClient;
use support::{Harness, add};
use tonic::transport::Channel;

const IPV6_MODE: [(&str, &str); 3] = [
    ("ENABLE_IPv6", "true"),
    ("ENABLE_IPv4", "false"),
    ("ENABLE_PREFIX_DELEGATION", "true"),
];

async fn add_v6(c: &mut CniBackendClient<Channel>, i: usize) -> Ipv6Addr {
    let r = c.add_network(add(i)).await.unwrap().into_inner();
    assert!(r.success, "pod {i}: {r:?}");
    r.ip_allocation_metadata[0].i_pv6_addr.parse().unwrap()
}

/// (primary ENI id, its IPv6 prefixes) as EC2 has them.
async fn primary(h: &Harness) -> (String, Vec<Ipv6Net>) {
    let enis = h
        .operator
        .describe_instance_enis(&h.node.instance_id)
        .await
        .unwrap();
    let eni = enis.iter().find(|e| e.mac == h.node.primary_mac).unwrap();
    (eni.id.clone(), eni.ipv6_prefixes.clone())
}

#[tokio::test]
async fn an_instance_without_prefix_delegation_refuses_ipv6() {
    let h = Harness::new_dual_stack("t2.medium", "10.0.0.0/24", "v6xen").await;
    let opts = h.options(Duration::from_secs(60), None);
    let result = h.start(h.config(&IPV6_MODE), opts).await.unwrap();
    let Err(e @ AgentError::Policy(_)) = result else {
        panic!("expected a policy error, got {result:?}");
    };
    assert!(e.to_string().contains("ENABLE_IPv6=true"), "{e}");
    assert!(e.to_string().contains("prefix delegation"), "{e}");
    assert!(e.to_string().contains("ENABLE_PREFIX_DELEGATION"), "{e}");
    assert!(primary(&h).await.1.is_empty(), "no prefix was asked for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_prefix_is_replaced_once_free_and_kept_while_pods_hold_it() {
    let h = Harness::new_dual_stack("m5.large", "10.0.0.0/24", "v6gone").await;
    let opts = h.options(Duration::from_millis(200), None);
    let agent = h.start(h.config(&IPV6_MODE), opts);
    let mut c = h.client().await;
    let (eni, first) = primary(&h).await;
    assert_eq!(first.len(), 1);

    // Taken away while free: the agent asks EC2 for one again (the emulator may hand back
    // the same /80) and hands out from it.
    h.operator
        .unassign_ipv6_prefixes(&eni, &first)
        .await
        .unwrap();
    assert!(primary(&h).await.1.is_empty());
    let mut second = Vec::new();
    for _ in 0..100 {
        second = primary(&h).await.1;
        if second.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(second.len(), 1, "EC2 lists a prefix again");
    let ip = add_v6(&mut c, 0).await;
    assert!(second[0].contains(&ip), "{ip} in {second:?}");

    // Taken away while a pod holds an address: kept, pods still get addresses from it.
    h.operator
        .unassign_ipv6_prefixes(&eni, &second)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let next = add_v6(&mut c, 100).await;
    assert!(second[0].contains(&next), "{next} still from {second:?}");
    assert!(
        primary(&h).await.1.is_empty(),
        "no prefix asked for while held"
    );
    assert!(!agent.is_finished(), "the agent is running");
    agent.abort();
    let _ = agent.await;
}

//! Both egress families through the recording kernel (`net::testing::Recording`): the calls
//! ADD's kernel part makes, and DEL's.

use std::net::Ipv6Addr;

use net::iptables_backend::Backend;
use net::netlink::{Route, Scope};
use net::testing::{Call, Recording};

use super::*;

fn conf() -> EgressConf {
    EgressConf::parse(
        br#"{"cniVersion":"1.0.0","name":"aws-cni","enabled":"true","randomizeSNAT":"prng"}"#,
    )
    .unwrap()
}

fn env() -> CniEnv {
    CniEnv {
        command: "ADD".into(),
        container_id: "containerId-789".into(),
        netns: "/var/run/netns/pod".into(),
        ifname: "eth0".into(),
        path: "/opt/cni/bin".into(),
        ..CniEnv::default()
    }
}

/// The last firewall batch of `host`, with its command line.
fn last_batch(host: &Recording) -> (String, String) {
    match host.calls().pop() {
        Some(Call::FirewallRestore { command, batch }) => (command, batch),
        other => panic!("no firewall batch: {other:?}"),
    }
}

/// DEL's kernel part: the chain goes through the same runner, the egress veth with its
/// peer.
async fn del_through_the_seam(host: &Recording, pod: &Recording, family: Family) {
    let chain = snat_chain_name("aws-cni", "containerId-789", family == Family::V6);
    let source = match family {
        Family::V6 => "fd00::ac:2/128",
        Family::V4 => "169.254.172.2/32",
    };
    let saved = format!(
        "*nat\n:POSTROUTING ACCEPT [0:0]\n:{chain} - [0:0]\n-A POSTROUTING -s {source} -j {chain}\nCOMMIT\n"
    );
    host.set_firewall_save(Backend::Nft, family, Some("nat"), &saved);
    snat::remove(host, &chain, family).await.unwrap();
    wire::teardown_in(pod, pod_ifname(family)).await.unwrap();
    assert!(pod.model().links.is_empty() && host.model().links.is_empty());
    let (_, batch) = last_batch(host);
    assert!(batch.contains(&format!("-X {chain}")), "{batch}");
}

#[tokio::test]
async fn ipv6_egress_wiring_and_snat_through_the_seam() {
    let host = Recording::new("node");
    let pod = host.namespace("/var/run/netns/pod");
    let addr: Ipv6Net = "fd00::ac:2/118".parse().unwrap();
    let node_ip: Ipv6Addr = "2600:1f14::10".parse().unwrap();
    let egress = (EgressAddr::V6(addr), node_ip.into());
    let wired = wire_and_snat((&host, &pod), &conf(), &env(), egress, 9001)
        .await
        .unwrap();
    assert!(wired.host_veth.starts_with("veth") && wired.host_veth.len() == 12);
    let pod_calls = pod.calls();
    assert_eq!(
        pod_calls[0],
        Call::Sysctl {
            key: "net/ipv6/conf/eth0/disable_ipv6".into(),
            value: "1".into()
        }
    );
    assert!(pod_calls.contains(&Call::ReplaceAddressV6 {
        link: wire::POD_IFNAME.into(),
        addr
    }));
    let model = host.model();
    let veth = model
        .links
        .iter()
        .find(|l| l.name == wired.host_veth)
        .unwrap();
    let host_ll = model
        .addresses_v6
        .iter()
        .find(|a| a.ifindex == veth.index)
        .unwrap()
        .addr
        .addr();
    let v6if0 = pod.model().links[0].index;
    assert_eq!(
        pod.model().routes,
        [Route::default_via(254, host_ll, v6if0)]
    );
    assert_eq!(model.routes[0].dst.to_string(), "fd00::ac:2/128");
    assert_eq!(model.routes[0].scope, Scope::Host);
    let (command, batch) = last_batch(&host);
    assert_eq!(command, "ip6tables-nft-restore --wait=10 --noflush");
    assert!(
        batch.contains("-j SNAT --to-source 2600:1f14::10"),
        "{batch}"
    );
    assert!(
        batch.contains("-A POSTROUTING -s fd00::ac:2 -j CNI-E6-"),
        "{batch}"
    );
    del_through_the_seam(&host, &pod, Family::V6).await;
}

#[tokio::test]
async fn ipv4_egress_wiring_and_snat_through_the_seam() {
    let host = Recording::new("node");
    let pod = host.namespace("/var/run/netns/pod");
    let e = egress_address(
        r#"{"ips":[{"address":"169.254.172.2/22","gateway":"169.254.172.1"}]}"#,
        Ipv4Addr::new(192, 0, 2, 10).into(),
    )
    .unwrap();
    let egress = (e, Ipv4Addr::new(192, 0, 2, 10).into());
    let wired = wire_and_snat((&host, &pod), &conf(), &env(), egress, 9001)
        .await
        .unwrap();
    let veth = host.model().links[0].index;
    let v4if0 = pod.model().links[0].index;
    assert_eq!(host.model().links[0].name, wired.host_veth);
    let gw = Ipv4Addr::new(169, 254, 172, 1);
    let host_calls = host.calls();
    assert_eq!(
        host_calls[0],
        Call::Sysctl {
            key: "net/ipv4/ip_forward".into(),
            value: "1".into()
        }
    );
    assert!(host_calls.contains(&Call::ReplaceLinkScopeAddress {
        link: wired.host_veth.clone(),
        addr: Ipv4Net::from(gw)
    }));
    assert!(host_calls.contains(&Call::AddRoute(Route::link_scope(
        254,
        Route::host(Ipv4Addr::new(169, 254, 172, 2)),
        veth
    ))));
    let pod_routes: Vec<String> = pod
        .model()
        .routes
        .iter()
        .map(|r| format!("{} {:?} {:?}", r.dst, r.gateway, r.pref_src))
        .collect();
    assert_eq!(
        pod_routes,
        [
            "0.0.0.0/0 Some(169.254.172.1) None",
            "169.254.172.1/32 None Some(169.254.172.2)",
            "169.254.172.0/22 Some(169.254.172.1) Some(169.254.172.2)",
        ],
        "the subnet route goes through the gateway"
    );
    assert!(pod.model().routes.iter().all(|r| r.oif == Some(v4if0)));
    let (command, batch) = last_batch(&host);
    assert_eq!(command, "iptables-nft-restore --wait=10 --noflush");
    assert!(batch.contains("-j SNAT --to-source 192.0.2.10"), "{batch}");
    del_through_the_seam(&host, &pod, Family::V4).await;
}

#[test]
fn egress_address_and_gateway_from_host_local() {
    let v4: IpAddr = Ipv4Addr::new(192, 0, 2, 10).into();
    let with_gw = r#"{"ips":[{"address":"169.254.172.5/22","gateway":"169.254.172.1"}]}"#;
    let Ok(EgressAddr::V4(e)) = egress_address(with_gw, v4) else {
        panic!("not IPv4");
    };
    assert_eq!(e.addr.to_string(), "169.254.172.5/22");
    assert_eq!(e.gateway, Ipv4Addr::new(169, 254, 172, 1));
    let without = r#"{"ips":[{"address":"169.254.173.9/22"}]}"#;
    let Ok(EgressAddr::V4(e)) = egress_address(without, v4) else {
        panic!("not IPv4");
    };
    assert_eq!(e.gateway, Ipv4Addr::new(169, 254, 172, 1));
    let ula = r#"{"ips":[{"address":"fd00::ac:2/118"}]}"#;
    assert!(egress_address(ula, v4).is_err());
    assert!(egress_address(with_gw, "2600:1f14::10".parse().unwrap()).is_err());
    assert!(matches!(
        egress_address(ula, "2600:1f14::10".parse().unwrap()),
        Ok(EgressAddr::V6(_))
    ));
}

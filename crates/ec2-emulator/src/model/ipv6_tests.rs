//! IPv6 in the model: dual-stack set-up, the primary ENI's address, /80 prefixes with the
//! per-ENI limit, exhaustion and all-or-nothing requests.

use std::collections::BTreeSet;

use super::*;

struct Node {
    world: World,
    instance: String,
    subnet: String,
    primary: String,
}

/// A dual-stack VPC with one subnet and an m5.large (10 addresses per ENI).
fn dual_stack(ty: InstanceTypeInfo) -> Node {
    let mut world = World::new();
    let vpc = world.create_vpc("10.0.0.0/16".parse().unwrap());
    let subnet = world
        .create_subnet(&vpc, "10.0.0.0/24".parse().unwrap(), "us-west-2a")
        .unwrap();
    let block = world.enable_ipv6(&vpc).unwrap();
    assert_eq!(block, "2600:1f14:c0de::/56".parse().unwrap());
    let instance = world.run_instance(ty, &subnet, &[]).unwrap();
    let primary = world.instances[&instance].primary_eni.clone();
    Node {
        world,
        instance,
        subnet,
        primary,
    }
}

fn m5_large() -> InstanceTypeInfo {
    InstanceTypeInfo::single_card("m5.large", 3, 10)
}

fn prefixes(n: u32) -> AssignIpv6 {
    AssignIpv6 {
        prefix_count: n,
        ..Default::default()
    }
}

#[test]
fn a_dual_stack_subnet_gives_the_instance_a_primary_ipv6() {
    let n = dual_stack(m5_large());
    let subnet = &n.world.subnets[&n.subnet];
    assert_eq!(
        subnet.ipv6_cidr(),
        Some("2600:1f14:c0de::/64".parse().unwrap())
    );
    let primary = n.world.eni(&n.primary).unwrap();
    assert_eq!(
        primary.ipv6_addresses,
        vec!["2600:1f14:c0de::4".parse::<std::net::Ipv6Addr>().unwrap()]
    );
}

#[test]
fn an_ipv4_only_world_has_no_ipv6_anywhere() {
    let mut world = World::new();
    let vpc = world.create_vpc("10.0.0.0/16".parse().unwrap());
    let subnet = world
        .create_subnet(&vpc, "10.0.0.0/24".parse().unwrap(), "a")
        .unwrap();
    let i = world.run_instance(m5_large(), &subnet, &[]).unwrap();
    let primary = world.instances[&i].primary_eni.clone();
    assert!(world.eni(&primary).unwrap().ipv6_addresses.is_empty());
    let err = world
        .assign_ipv6_addresses(&primary, &prefixes(1))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParameterValue, "{err}");
    let err = world
        .create_network_interface(&CreateEni {
            subnet_id: subnet,
            ipv6_address_count: Some(1),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParameterValue, "{err}");
    assert_eq!(world.enis.len(), 1, "a failed create leaves nothing behind");
}

#[test]
fn create_follows_the_subnet_unless_the_count_says_otherwise() {
    let mut n = dual_stack(m5_large());
    let mut create = |count: Option<u32>| {
        let id = n
            .world
            .create_network_interface(&CreateEni {
                subnet_id: n.subnet.clone(),
                ipv6_address_count: count,
                ..Default::default()
            })
            .unwrap();
        n.world.eni(&id).unwrap().ipv6_addresses.len()
    };
    assert_eq!(create(None), 1, "AssignIpv6AddressOnCreation");
    assert_eq!(create(Some(0)), 0, "0 overrides the subnet");
    assert_eq!(create(Some(3)), 3);
}

#[test]
fn prefixes_are_aligned_slash_80s_counted_against_the_per_eni_limit() {
    let mut n = dual_stack(m5_large());
    let got = n
        .world
        .assign_ipv6_addresses(&n.primary, &prefixes(2))
        .unwrap();
    assert_eq!(
        got.prefixes,
        vec![
            "2600:1f14:c0de:0:1::/80".parse().unwrap(),
            "2600:1f14:c0de:0:2::/80".parse().unwrap()
        ]
    );
    assert!(got.addresses.is_empty(), "only the new ones");
    // 1 address + 2 prefixes on the ENI; m5.large allows 10.
    let err = n
        .world
        .assign_ipv6_addresses(&n.primary, &prefixes(8))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParameterValue);
    assert!(
        err.message.contains("exceeds the limit for m5.large"),
        "{err}"
    );
    assert_eq!(n.world.eni(&n.primary).unwrap().ipv6_prefixes.len(), 2);
    n.world
        .assign_ipv6_addresses(&n.primary, &prefixes(7))
        .unwrap();
    // Prefix delegation needs Nitro.
    let mut xen = dual_stack(InstanceTypeInfo {
        hypervisor: "xen".into(),
        ..m5_large()
    });
    let err = xen
        .world
        .assign_ipv6_addresses(&xen.primary, &prefixes(1))
        .unwrap_err();
    assert!(err.message.contains("Prefix delegation"), "{err}");
}

#[test]
fn bad_requests_and_unassign_are_all_or_nothing() {
    let mut n = dual_stack(m5_large());
    let err = n
        .world
        .assign_ipv6_addresses(&n.primary, &AssignIpv6::default())
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::MissingParameter);
    let both = AssignIpv6 {
        prefix_count: 1,
        prefixes: vec!["2600:1f14:c0de:0:9::/80".parse().unwrap()],
        ..Default::default()
    };
    let err = n
        .world
        .assign_ipv6_addresses(&n.primary, &both)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParameterCombination);
    // The second named prefix is taken: neither is granted.
    let taken = n
        .world
        .assign_ipv6_addresses(&n.primary, &prefixes(1))
        .unwrap()
        .prefixes[0];
    let two = AssignIpv6 {
        prefixes: vec!["2600:1f14:c0de:0:9::/80".parse().unwrap(), taken],
        ..Default::default()
    };
    let err = n.world.assign_ipv6_addresses(&n.primary, &two).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidIpAddressInUse, "{err}");
    assert_eq!(n.world.eni(&n.primary).unwrap().ipv6_prefixes.len(), 1);
    // Unassign: one unknown prefix and nothing is released.
    let err = n
        .world
        .unassign_ipv6_addresses(&n.primary, &[], &[taken, two.prefixes[0]])
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParameterValue);
    n.world
        .unassign_ipv6_addresses(&n.primary, &[], &[taken])
        .unwrap();
    assert!(n.world.eni(&n.primary).unwrap().ipv6_prefixes.is_empty());
    let again = n
        .world
        .assign_ipv6_addresses(&n.primary, &prefixes(1))
        .unwrap();
    assert_eq!(again.prefixes, vec![taken], "the released /80 comes back");
}

#[test]
fn a_subnet_runs_out_of_prefixes_with_insufficient_cidr_blocks() {
    let mut n = dual_stack(m5_large());
    // An unattached ENI has no per-instance limit: take every /80 of the /64.
    let eni = n
        .world
        .create_network_interface(&CreateEni {
            subnet_id: n.subnet.clone(),
            ..Default::default()
        })
        .unwrap();
    let got = n
        .world
        .assign_ipv6_addresses(&eni, &prefixes(65_534))
        .unwrap();
    assert_eq!(got.prefixes.len(), 65_534);
    let err = n
        .world
        .assign_ipv6_addresses(&n.primary, &prefixes(1))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InsufficientCidrBlocks, "{err}");
    // Deleting the ENI gives them all back.
    n.world.delete_network_interface(&eni).unwrap();
    n.world
        .assign_ipv6_addresses(&n.primary, &prefixes(1))
        .unwrap();
}

#[test]
fn nothing_is_on_two_enis_across_the_vpc() {
    let mut world = World::new();
    let vpc = world.create_vpc("10.0.0.0/16".parse().unwrap());
    let a = world
        .create_subnet(&vpc, "10.0.0.0/24".parse().unwrap(), "a")
        .unwrap();
    let b = world
        .create_subnet(&vpc, "10.0.1.0/24".parse().unwrap(), "a")
        .unwrap();
    world.enable_ipv6(&vpc).unwrap();
    assert_ne!(world.subnets[&a].ipv6_cidr(), world.subnets[&b].ipv6_cidr());
    for subnet in [&a, &b, &a, &b] {
        let eni = world
            .create_network_interface(&CreateEni {
                subnet_id: subnet.clone(),
                ipv6_address_count: Some(2),
                ..Default::default()
            })
            .unwrap();
        world.assign_ipv6_addresses(&eni, &prefixes(3)).unwrap();
    }
    let (addrs, prefixes) = world.all_assigned_ipv6();
    assert_eq!(addrs.len(), 8);
    assert_eq!(addrs.iter().collect::<BTreeSet<_>>().len(), 8);
    assert_eq!(prefixes.len(), 12);
    assert_eq!(prefixes.iter().collect::<BTreeSet<_>>().len(), 12);
    for p in &prefixes {
        assert!(addrs.iter().all(|a| !p.contains(a)));
        assert!(world.vpcs[&vpc].ipv6_cidrs[0].contains(p));
    }
}

#[test]
fn attach_refuses_an_eni_with_more_ipv6_than_the_type_allows() {
    let mut n = dual_stack(m5_large());
    let eni = n
        .world
        .create_network_interface(&CreateEni {
            subnet_id: n.subnet.clone(),
            ipv6_address_count: Some(11),
            ..Default::default()
        })
        .unwrap();
    let err = n
        .world
        .attach_network_interface(&eni, &n.instance, 1, 0)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParameterValue, "{err}");
}

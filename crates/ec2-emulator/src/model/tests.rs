use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

struct Node {
    world: World,
    instance: String,
    subnet: String,
    sg: String,
}

fn node(subnet_cidr: &str, ty: InstanceTypeInfo) -> Node {
    let mut world = World::new();
    let vpc = world.create_vpc("10.0.0.0/16".parse().unwrap());
    let subnet = world
        .create_subnet(&vpc, subnet_cidr.parse().unwrap(), "us-west-2a")
        .unwrap();
    let sg = world.create_security_group(&vpc, "nodes");
    let instance = world
        .run_instance(ty, &subnet, std::slice::from_ref(&sg))
        .unwrap();
    Node {
        world,
        instance,
        subnet,
        sg,
    }
}

fn m5_large() -> InstanceTypeInfo {
    InstanceTypeInfo::single_card("m5.large", 3, 10)
}

impl Node {
    fn new_eni(&mut self, ips: u32) -> Result<String, Ec2Error> {
        self.world.create_network_interface(&CreateEni {
            subnet_id: self.subnet.clone(),
            groups: vec![self.sg.clone()],
            description: "aws-K8S-test".into(),
            secondary_ip_count: ips,
            ..CreateEni::default()
        })
    }
}

#[test]
fn m5_large_takes_three_enis_and_refuses_a_fourth() {
    let mut n = node("10.0.0.0/24", m5_large());
    for device in 1..=2 {
        let eni = n.new_eni(0).unwrap();
        n.world
            .attach_network_interface(&eni, &n.instance, device, 0)
            .unwrap();
    }
    let fourth = n.new_eni(0).unwrap();
    let err = n
        .world
        .attach_network_interface(&fourth, &n.instance, 3, 0)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::AttachmentLimitExceeded);
    assert_eq!(n.world.attached_enis(&n.instance).len(), 3);
    assert_eq!(n.world.eni(&fourth).unwrap().status(), EniStatus::Available);
}

#[test]
fn m5_large_refuses_an_eleventh_ip_on_one_eni() {
    let mut n = node("10.0.0.0/24", m5_large());
    let primary = n.world.instance(&n.instance).unwrap().primary_eni.clone();
    let got = n
        .world
        .assign_private_ip_addresses(&primary, &AssignRequest::Count(9))
        .unwrap();
    assert_eq!(got.ips.len(), 9, "EC2 answers with the new addresses only");
    let err = n
        .world
        .assign_private_ip_addresses(&primary, &AssignRequest::Count(1))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PrivateIpAddressLimitExceeded);
    assert_eq!(n.world.eni(&primary).unwrap().address_slots(), 10);
}

#[test]
fn a_slash_27_runs_out_with_insufficient_free_addresses() {
    let mut n = node(
        "10.0.0.0/27",
        InstanceTypeInfo::single_card("m5.4xlarge", 8, 30),
    );
    // 27 usable addresses, the instance's primary ENI took one.
    let primary = n.world.instance(&n.instance).unwrap().primary_eni.clone();
    n.world
        .assign_private_ip_addresses(&primary, &AssignRequest::Count(20))
        .unwrap();
    let err = n
        .world
        .assign_private_ip_addresses(&primary, &AssignRequest::Count(7))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InsufficientFreeAddressesInSubnet);
    // All or nothing: the failed request took nothing.
    assert_eq!(n.world.subnets[&n.subnet].pool.available(), 6);
    let err = n.new_eni(6).unwrap_err();
    assert_eq!(err.code, ErrorCode::InsufficientFreeAddressesInSubnet);
    assert_eq!(
        n.world.enis.len(),
        1,
        "a failed create leaves no ENI behind"
    );
    assert_eq!(n.world.subnets[&n.subnet].pool.available(), 6);
}

#[test]
fn prefixes_need_a_nitro_type_and_count_against_the_address_limit() {
    let mut xen = InstanceTypeInfo::single_card("m4.large", 2, 10);
    xen.hypervisor = "xen".into();
    let mut n = node("10.0.0.0/24", xen);
    let primary = n.world.instance(&n.instance).unwrap().primary_eni.clone();
    let err = n
        .world
        .assign_private_ip_addresses(&primary, &AssignRequest::PrefixCount(1))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParameterValue);

    let mut n = node(
        "10.0.0.0/24",
        InstanceTypeInfo::single_card("t3.small", 3, 4),
    );
    let primary = n.world.instance(&n.instance).unwrap().primary_eni.clone();
    let got = n
        .world
        .assign_private_ip_addresses(&primary, &AssignRequest::PrefixCount(3))
        .unwrap();
    assert_eq!(got.prefixes.len(), 3);
    assert!(got.prefixes.iter().all(|p| p.prefix_len() == 28));
    let err = n
        .world
        .assign_private_ip_addresses(&primary, &AssignRequest::PrefixCount(1))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PrivateIpAddressLimitExceeded);
}

#[test]
fn prefixes_exhaust_with_insufficient_cidr_blocks() {
    // A /26 has only two /28s free of reserved addresses.
    let mut n = node(
        "10.0.0.0/26",
        InstanceTypeInfo::single_card("m5.large", 3, 10),
    );
    let primary = n.world.instance(&n.instance).unwrap().primary_eni.clone();
    let err = n
        .world
        .assign_private_ip_addresses(&primary, &AssignRequest::PrefixCount(3))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InsufficientCidrBlocks);
    assert!(n.world.eni(&primary).unwrap().prefixes.is_empty());
}

#[test]
fn lifecycle_errors_are_the_ones_ec2_gives() {
    let mut n = node("10.0.0.0/24", m5_large());
    let primary = n.world.instance(&n.instance).unwrap().primary_eni.clone();
    let primary_attachment = n.world.eni(&primary).unwrap().attachment.clone().unwrap();
    assert_eq!(
        n.world
            .detach_network_interface(&primary_attachment.id)
            .unwrap_err()
            .code,
        ErrorCode::OperationNotPermitted
    );
    let eni = n.new_eni(2).unwrap();
    let att = n
        .world
        .attach_network_interface(&eni, &n.instance, 1, 0)
        .unwrap();
    assert_eq!(
        n.world
            .attach_network_interface(&eni, &n.instance, 2, 0)
            .unwrap_err()
            .code,
        ErrorCode::InvalidNetworkInterfaceInUse
    );
    let other = n.new_eni(0).unwrap();
    assert_eq!(
        n.world
            .attach_network_interface(&other, &n.instance, 1, 0)
            .unwrap_err()
            .code,
        ErrorCode::InvalidParameterValue,
        "device index 1 is taken"
    );
    assert_eq!(
        n.world.delete_network_interface(&eni).unwrap_err().code,
        ErrorCode::InvalidNetworkInterfaceInUse
    );
    n.world.detach_network_interface(&att).unwrap();
    assert_eq!(
        n.world.detach_network_interface(&att).unwrap_err().code,
        ErrorCode::InvalidAttachmentIdNotFound
    );
    let before = n.world.subnets[&n.subnet].pool.available();
    n.world.delete_network_interface(&eni).unwrap();
    assert_eq!(n.world.subnets[&n.subnet].pool.available(), before + 3);
    assert_eq!(
        n.world.delete_network_interface(&eni).unwrap_err().code,
        ErrorCode::InvalidNetworkInterfaceIdNotFound
    );
    let ip = n.world.eni(&primary).unwrap().primary_ip;
    assert_eq!(
        n.world
            .unassign_private_ip_addresses(&primary, &[ip], &[])
            .unwrap_err()
            .code,
        ErrorCode::InvalidParameterValue
    );
}

#[test]
fn terminate_honours_delete_on_termination() {
    let mut n = node("10.0.0.0/24", m5_large());
    let keep = n.new_eni(1).unwrap();
    let drop = n.new_eni(1).unwrap();
    n.world
        .attach_network_interface(&keep, &n.instance, 1, 0)
        .unwrap();
    let att = n
        .world
        .attach_network_interface(&drop, &n.instance, 2, 0)
        .unwrap();
    n.world
        .set_delete_on_termination(&drop, &att, true)
        .unwrap();
    n.world.terminate_instance(&n.instance).unwrap();
    assert_eq!(n.world.eni(&keep).unwrap().status(), EniStatus::Available);
    assert!(n.world.eni(&drop).is_err());
    assert!(n.world.instances.is_empty());
}

#[derive(Debug, Clone)]
enum Op {
    CreateAttach(u32),
    AssignIps(usize, u32),
    AssignPrefixes(usize, u32),
    Unassign(usize),
    DetachDelete(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u32..6).prop_map(Op::CreateAttach),
        (any::<usize>(), 1u32..8).prop_map(|(i, n)| Op::AssignIps(i, n)),
        (any::<usize>(), 1u32..3).prop_map(|(i, n)| Op::AssignPrefixes(i, n)),
        any::<usize>().prop_map(Op::Unassign),
        any::<usize>().prop_map(Op::DetachDelete),
    ]
}

proptest! {
    /// Whatever the agent asks, no address is ever on two ENIs, the subnet's free count is
    /// exact, the instance limits hold, and prefixes are aligned and unique.
    #[test]
    fn limits_and_uniqueness_hold(ops in proptest::collection::vec(op(), 0..60)) {
        let mut n = node("10.0.0.0/25", InstanceTypeInfo::single_card("t3.medium", 3, 6));
        for op in ops {
            let enis: Vec<String> = n.world.attached_enis(&n.instance).iter().map(|e| e.id.clone()).collect();
            let pick = |i: usize| enis[i % enis.len()].clone();
            let _ = match op {
                Op::CreateAttach(ips) => n.new_eni(ips).and_then(|eni| {
                    let used: BTreeSet<u32> = n.world.attached_enis(&n.instance).iter()
                        .filter_map(|e| e.attachment.as_ref().map(|a| a.device_index)).collect();
                    let device = (0..).find(|d| !used.contains(d)).unwrap_or(0);
                    n.world.attach_network_interface(&eni, &n.instance, device, 0).map(|_| ())
                }),
                Op::AssignIps(i, c) => n.world.assign_private_ip_addresses(&pick(i), &AssignRequest::Count(c)).map(|_| ()),
                Op::AssignPrefixes(i, c) => n.world.assign_private_ip_addresses(&pick(i), &AssignRequest::PrefixCount(c)).map(|_| ()),
                Op::Unassign(i) => {
                    let eni = pick(i);
                    let e = n.world.eni(&eni).unwrap().clone();
                    let ips: Vec<_> = e.secondary_ips.iter().copied().take(2).collect();
                    let prefixes: Vec<_> = e.prefixes.iter().copied().take(1).collect();
                    n.world.unassign_private_ip_addresses(&eni, &ips, &prefixes)
                }
                Op::DetachDelete(i) => {
                    let eni = pick(i);
                    let att = n.world.eni(&eni).unwrap().attachment.clone().unwrap();
                    n.world.detach_network_interface(&att.id).and_then(|_| n.world.delete_network_interface(&eni))
                }
            };
            let all = n.world.all_assigned_addresses();
            let unique: BTreeSet<_> = all.iter().copied().collect();
            prop_assert_eq!(all.len(), unique.len(), "an address is on two ENIs");
            prop_assert_eq!(n.world.subnets[&n.subnet].pool.available() as usize, 128 - 5 - all.len());
            let attached = n.world.attached_enis(&n.instance);
            prop_assert!(attached.len() <= 3);
            for eni in attached {
                prop_assert!(eni.address_slots() <= 6);
                for p in &eni.prefixes {
                    prop_assert_eq!(u32::from(p.network()) % 16, 0);
                }
            }
        }
    }
}

#[test]
fn an_associated_vpc_cidr_shows_in_imds_and_overlaps_are_refused() {
    let mut n = node("10.0.1.0/24", m5_large());
    let vpc = n.world.instances[&n.instance].vpc_id.clone();
    n.world
        .associate_vpc_cidr(&vpc, "10.1.0.0/16".parse().unwrap())
        .unwrap();
    let err = n
        .world
        .associate_vpc_cidr(&vpc, "10.1.128.0/17".parse().unwrap())
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParameterValue);
    let err = n
        .world
        .associate_vpc_cidr("vpc-nope", "10.2.0.0/16".parse().unwrap())
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidVpcIdNotFound);
    let view = imds::view_of(&n.world, &n.instance, "us-west-2").unwrap();
    let mac = &n.world.enis[&n.world.instances[&n.instance].primary_eni].mac;
    let cidrs = imds::lookup(
        &view,
        &format!("meta-data/network/interfaces/macs/{mac}/vpc-ipv4-cidr-blocks"),
    );
    assert_eq!(cidrs.as_deref(), Some("10.0.0.0/16\n10.1.0.0/16"));
}

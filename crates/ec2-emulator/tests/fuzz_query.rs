//! Property fuzzing of the emulator's Query API front end (`query::Params` and
//! `Emulator::ec2_call`): arbitrary form bodies, parameter maps with hostile names and values
//! for every action the agent calls, and list/filter/tag parameters with out-of-range indexes
//! get an EC2 answer (a document or an EC2 error), never a panic. Bounded case counts (CI).

use std::sync::Arc;

use ec2_emulator::model::World;
use ec2_emulator::query::Params;
use ec2_emulator::server::Emulator;
use proptest::prelude::*;

/// An emulator with one m5.large, as the tests' node.
fn emulator() -> (Emulator, String, String) {
    let mut world = World::new();
    let vpc = world.create_vpc("10.0.0.0/16".parse().expect("CIDR"));
    let subnet = world
        .create_subnet(&vpc, "10.0.0.0/24".parse().expect("CIDR"), "us-west-2a")
        .expect("subnet");
    let sg = world.create_security_group(&vpc, "node");
    let ty = ec2_emulator::catalog::instance_type("m5.large").expect("type");
    let instance = world.run_instance(ty, &subnet, &[sg]).expect("instance");
    let eni = world.instances[&instance].primary_eni.clone();
    let emu = Emulator::new(
        world,
        "us-west-2",
        Arc::new(ec2_emulator::catalog::instance_type),
    );
    (emu, instance, eni)
}

const ACTIONS: &[&str] = &[
    "CreateNetworkInterface",
    "AttachNetworkInterface",
    "DetachNetworkInterface",
    "DeleteNetworkInterface",
    "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses",
    "DescribeNetworkInterfaces",
    "DescribeInstances",
    "DescribeInstanceTypes",
    "DescribeSubnets",
    "DescribeSecurityGroups",
    "CreateTags",
    "DeleteTags",
    "ModifyNetworkInterfaceAttribute",
    "NoSuchAction",
    "",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("NetworkInterfaceId".to_string()),
        Just("InstanceId".to_string()),
        Just("SubnetId".to_string()),
        Just("DeviceIndex".to_string()),
        Just("NetworkCardIndex".to_string()),
        Just("AttachmentId".to_string()),
        Just("SecondaryPrivateIpAddressCount".to_string()),
        Just("Ipv4PrefixCount".to_string()),
        Just("MaxResults".to_string()),
        Just("NextToken".to_string()),
        Just("Force".to_string()),
        (0u64..u64::MAX).prop_map(|i| format!("PrivateIpAddress.{i}")),
        (0u64..4).prop_map(|i| format!("NetworkInterfaceId.{i}")),
        (0u64..3, 0u64..3).prop_map(|(i, j)| format!("Filter.{i}.Value.{j}")),
        (0u64..3).prop_map(|i| format!("Filter.{i}.Name")),
        (0u64..3, 0u64..3).prop_map(|(i, j)| format!("TagSpecification.{i}.Tag.{j}.Key")),
        (0u64..3).prop_map(|i| format!("Tag.{i}.Value")),
        ".{0,20}",
    ]
}

fn value(eni: String, instance: String) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(eni),
        Just(instance),
        Just("-1".to_string()),
        Just("4294967296".to_string()),
        Just("99999999999999999999".to_string()),
        Just("10.0.0.300".to_string()),
        Just("true".to_string()),
        Just(String::new()),
        Just("x".repeat(5000)),
        "[0-9]{1,4}",
        ".{0,30}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_form_bodies_get_an_answer(body in prop::collection::vec(any::<u8>(), 0..400)) {
        let (mut emu, _, _) = emulator();
        let pairs = form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned()));
        let (status, text) = emu.ec2_call(&Params::new(pairs));
        prop_assert!(status.is_success() || text.contains("<Code>"), "{} {}", status, text);
    }

    #[test]
    fn hostile_parameters_get_an_answer(
        action in prop::sample::select(ACTIONS),
        params in prop::collection::vec((key(), value("eni-x".into(), "i-x".into())), 0..8),
        real in any::<bool>(),
    ) {
        let (mut emu, instance, eni) = emulator();
        let mut pairs = vec![("Action".to_string(), action.to_string())];
        for (k, v) in params {
            let v = match (real, v.as_str()) {
                (true, "eni-x") => eni.clone(),
                (true, "i-x") => instance.clone(),
                _ => v,
            };
            pairs.push((k, v));
        }
        let (status, text) = emu.ec2_call(&Params::new(pairs));
        prop_assert!(status.is_success() || text.contains("<Code>"), "{} {}", status, text);
    }
}

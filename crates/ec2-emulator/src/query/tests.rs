use super::*;
use crate::model::{InstanceTypeInfo, World};

fn catalog(name: &str) -> Option<InstanceTypeInfo> {
    (name == "m5.large").then(|| InstanceTypeInfo::single_card("m5.large", 3, 10))
}

struct Fixture {
    world: World,
    instance: String,
    subnet: String,
    sg: String,
}

fn fixture() -> Fixture {
    let mut world = World::new();
    world.now = 1_795_305_600;
    let vpc = world.create_vpc("10.0.0.0/16".parse().unwrap());
    let subnet = world
        .create_subnet(&vpc, "10.0.0.0/24".parse().unwrap(), "us-west-2a")
        .unwrap();
    let sg = world.create_security_group(&vpc, "nodes");
    let ty = catalog("m5.large").unwrap();
    let instance = world
        .run_instance(ty, &subnet, std::slice::from_ref(&sg))
        .unwrap();
    Fixture {
        world,
        instance,
        subnet,
        sg,
    }
}

fn call(f: &mut Fixture, pairs: &[(&str, &str)]) -> Result<String, crate::model::Ec2Error> {
    handle(
        &mut f.world,
        &Params::new(pairs.iter().copied()),
        &catalog,
        "req-1",
    )
}

fn between<'a>(doc: &'a str, open: &str, close: &str) -> &'a str {
    let start = doc.find(open).map(|i| i + open.len()).unwrap_or(0);
    let end = doc[start..]
        .find(close)
        .map(|i| start + i)
        .unwrap_or(doc.len());
    &doc[start..end]
}

#[test]
fn the_agent_flow_create_attach_assign_describe_release() {
    let mut f = fixture();
    let (subnet, sg) = (f.subnet.clone(), f.sg.clone());
    let created = call(
        &mut f,
        &[
            ("Action", "CreateNetworkInterface"),
            ("SubnetId", &subnet),
            ("SecurityGroupId.1", &sg),
            ("Description", "aws-K8S-i-1"),
            ("SecondaryPrivateIpAddressCount", "2"),
            ("TagSpecification.1.ResourceType", "network-interface"),
            (
                "TagSpecification.1.Tag.1.Key",
                "node.k8s.amazonaws.com/instance_id",
            ),
            ("TagSpecification.1.Tag.1.Value", "i-1"),
        ],
    )
    .unwrap();
    assert!(created.contains("<CreateNetworkInterfaceResponse"));
    assert!(created.contains("<status>available</status>"));
    let eni = between(&created, "<networkInterfaceId>", "</networkInterfaceId>").to_string();
    let instance = f.instance.clone();
    let attached = call(
        &mut f,
        &[
            ("Action", "AttachNetworkInterface"),
            ("NetworkInterfaceId", &eni),
            ("InstanceId", &instance),
            ("DeviceIndex", "1"),
            ("NetworkCardIndex", "0"),
        ],
    )
    .unwrap();
    let attachment = between(&attached, "<attachmentId>", "</attachmentId>").to_string();
    call(
        &mut f,
        &[
            ("Action", "ModifyNetworkInterfaceAttribute"),
            ("NetworkInterfaceId", &eni),
            ("Attachment.AttachmentId", &attachment),
            ("Attachment.DeleteOnTermination", "true"),
        ],
    )
    .unwrap();
    let assigned = call(
        &mut f,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", &eni),
            ("SecondaryPrivateIpAddressCount", "3"),
        ],
    )
    .unwrap();
    assert_eq!(
        assigned.matches("<privateIpAddress>").count(),
        3,
        "only the new ones"
    );

    let described = call(
        &mut f,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("Filter.1.Name", "attachment.instance-id"),
            ("Filter.1.Value.1", &instance),
        ],
    )
    .unwrap();
    assert_eq!(described.matches("<networkInterfaceId>").count(), 2);
    assert!(described.contains("<deleteOnTermination>true</deleteOnTermination>"));
    assert!(described.contains("<key>node.k8s.amazonaws.com/instance_id</key><value>i-1</value>"));
    assert!(described.contains("<attachTime>2026-11-22T00:00:00Z</attachTime>"));

    let eni_doc = call(
        &mut f,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("NetworkInterfaceId.1", &eni),
        ],
    )
    .unwrap();
    let ip = between(
        between(
            &eni_doc,
            "<primary>true</primary>",
            "</privateIpAddressesSet>",
        ),
        "<privateIpAddress>",
        "</privateIpAddress>",
    )
    .to_string();
    call(
        &mut f,
        &[
            ("Action", "UnassignPrivateIpAddresses"),
            ("NetworkInterfaceId", &eni),
            ("PrivateIpAddress.1", &ip),
        ],
    )
    .unwrap();
    assert_eq!(f.world.eni(&eni).unwrap().secondary_ips.len(), 4);
    let vpc = f.world.subnets[&subnet].vpc_id.clone();
    let subnets = call(
        &mut f,
        &[
            ("Action", "DescribeSubnets"),
            ("Filter.1.Name", "vpc-id"),
            ("Filter.1.Value.1", &vpc),
        ],
    )
    .unwrap();
    // 251 usable - primary of the node - primary + 4 secondaries of the new ENI.
    assert!(subnets.contains("<availableIpAddressCount>245</availableIpAddressCount>"));
}

#[test]
fn errors_and_pagination() {
    let mut f = fixture();
    let err = call(
        &mut f,
        &[
            ("Action", "DeleteNetworkInterface"),
            ("NetworkInterfaceId", "eni-nope"),
        ],
    )
    .unwrap_err();
    assert_eq!(err.code.as_str(), "InvalidNetworkInterfaceID.NotFound");
    let err = call(
        &mut f,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("Filter.1.Name", "bogus"),
            ("Filter.1.Value.1", "x"),
        ],
    )
    .unwrap_err();
    assert_eq!(err.code.as_str(), "InvalidParameterValue");
    let err = call(
        &mut f,
        &[
            ("Action", "DescribeInstanceTypes"),
            ("InstanceType.1", "x9.huge"),
        ],
    )
    .unwrap_err();
    assert_eq!(err.code.as_str(), "InvalidInstanceType");
    let err = call(&mut f, &[("Action", "RunInstances")]).unwrap_err();
    assert_eq!(err.code.as_str(), "InvalidParameterValue");

    let subnet = f.subnet.clone();
    for _ in 0..6 {
        f.world
            .create_network_interface(&crate::model::CreateEni {
                subnet_id: subnet.clone(),
                ..Default::default()
            })
            .unwrap();
    }
    let first = call(
        &mut f,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("Filter.1.Name", "status"),
            ("Filter.1.Value.1", "available"),
            ("MaxResults", "5"),
        ],
    )
    .unwrap();
    assert_eq!(first.matches("<networkInterfaceId>").count(), 5);
    let token = between(&first, "<nextToken>", "</nextToken>").to_string();
    let second = call(
        &mut f,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("Filter.1.Name", "status"),
            ("Filter.1.Value.1", "available"),
            ("MaxResults", "5"),
            ("NextToken", &token),
        ],
    )
    .unwrap();
    assert_eq!(second.matches("<networkInterfaceId>").count(), 1);
    assert!(!second.contains("<nextToken>"));
    assert!(describe::is_unfiltered(&Params::new([(
        "Action",
        "DescribeNetworkInterfaces"
    )])));
    assert!(!describe::is_unfiltered(&Params::new([
        ("Action", "DescribeNetworkInterfaces"),
        ("NetworkInterfaceId.1", "eni-1")
    ])));
}

#[test]
fn instance_types_and_instances_are_described() {
    let mut f = fixture();
    let doc = call(
        &mut f,
        &[
            ("Action", "DescribeInstanceTypes"),
            ("InstanceType.1", "m5.large"),
        ],
    )
    .unwrap();
    assert!(doc.contains("<maximumNetworkInterfaces>3</maximumNetworkInterfaces><ipv4AddressesPerInterface>10</ipv4AddressesPerInterface>"));
    let instance = f.instance.clone();
    let doc = call(
        &mut f,
        &[("Action", "DescribeInstances"), ("InstanceId.1", &instance)],
    )
    .unwrap();
    assert!(doc.contains(&format!(
        "<instanceId>{instance}</instanceId><instanceType>m5.large</instanceType>"
    )));
    assert!(doc.contains("<deviceIndex>0</deviceIndex>"));
}

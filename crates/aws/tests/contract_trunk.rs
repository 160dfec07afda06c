//! Trunk and branch ENIs (security groups for pods) through the real `aws-sdk-ec2` client
//! against our emulator: `CreateNetworkInterface` with `InterfaceType=trunk|branch`,
//! `AssociateTrunkInterface`, `DescribeTrunkInterfaceAssociations`,
//! `DisassociateTrunkInterface`, how `DescribeNetworkInterfaces` shows them, and the
//! emulator's VPC Resource Controller stand-in (`/control/branch-eni`'s model call) seen
//! through the same client and through the agent's `Ec2` trait. moto 5.2.1 has no trunk
//! interfaces, so this suite runs against the emulator only.

mod common;

use aws::Ec2;
use aws_sdk_ec2::types::{
    Filter, InterfaceProtocolType, NetworkInterfaceCreationType, NetworkInterfaceType,
};
use ec2_emulator::server;

async fn raw_client(endpoint: &str) -> aws_sdk_ec2::Client {
    let creds = aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "static");
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(aws::connect::https_client())
        .region(aws_sdk_ec2::config::Region::new("us-west-2"))
        .credentials_provider(creds)
        .endpoint_url(endpoint)
        .load()
        .await;
    aws_sdk_ec2::Client::new(&conf)
}

async fn create(
    c: &aws_sdk_ec2::Client,
    subnet: &str,
    kind: NetworkInterfaceCreationType,
) -> String {
    c.create_network_interface()
        .subnet_id(subnet)
        .interface_type(kind)
        .send()
        .await
        .expect("CreateNetworkInterface")
        .network_interface()
        .and_then(|e| e.network_interface_id())
        .expect("ENI id")
        .to_string()
}

#[tokio::test]
async fn trunk_and_branch_enis_as_ec2_shows_them() {
    let t = common::emulator(|_| {}).await;
    let c = raw_client(&t.ec2_endpoint).await;

    let trunk = create(&c, &t.subnet_id, NetworkInterfaceCreationType::Trunk).await;
    c.attach_network_interface()
        .network_interface_id(&trunk)
        .instance_id(&t.instance_id)
        .device_index(1)
        .send()
        .await
        .expect("AttachNetworkInterface");
    let branch = create(&c, &t.subnet_id, NetworkInterfaceCreationType::Branch).await;

    let assoc = c
        .associate_trunk_interface()
        .branch_interface_id(&branch)
        .trunk_interface_id(&trunk)
        .vlan_id(7)
        .send()
        .await
        .expect("AssociateTrunkInterface");
    let assoc = assoc.interface_association().expect("association");
    assert_eq!(assoc.branch_interface_id(), Some(branch.as_str()));
    assert_eq!(assoc.trunk_interface_id(), Some(trunk.as_str()));
    assert_eq!(assoc.vlan_id(), Some(7));
    assert_eq!(
        assoc.interface_protocol(),
        Some(&InterfaceProtocolType::Vlan)
    );
    let assoc_id = assoc.association_id().expect("association id").to_string();

    // The VLAN id is taken on this trunk; a non-trunk cannot carry branches.
    let again = create(&c, &t.subnet_id, NetworkInterfaceCreationType::Branch).await;
    let err = c
        .associate_trunk_interface()
        .branch_interface_id(&again)
        .trunk_interface_id(&trunk)
        .vlan_id(7)
        .send()
        .await
        .expect_err("VLAN 7 is in use");
    assert_eq!(
        err.as_service_error().and_then(|e| e.meta().code()),
        Some("InvalidParameterValue")
    );

    let listed = c
        .describe_trunk_interface_associations()
        .filters(
            Filter::builder()
                .name("trunk-interface-association.trunk-interface-id")
                .values(&trunk)
                .build(),
        )
        .send()
        .await
        .expect("DescribeTrunkInterfaceAssociations");
    let ids: Vec<_> = listed
        .interface_associations()
        .iter()
        .filter_map(|a| a.association_id())
        .collect();
    assert_eq!(ids, [assoc_id.as_str()]);

    // DescribeNetworkInterfaces: the interface types; the branch is not attached to the
    // instance, so the agent's per-instance listing shows the trunk and not the branch.
    let described = c
        .describe_network_interfaces()
        .network_interface_ids(&trunk)
        .network_interface_ids(&branch)
        .send()
        .await
        .expect("DescribeNetworkInterfaces");
    for eni in described.network_interfaces() {
        let want = if eni.network_interface_id() == Some(trunk.as_str()) {
            NetworkInterfaceType::Trunk
        } else {
            NetworkInterfaceType::Branch
        };
        assert_eq!(eni.interface_type(), Some(&want));
    }
    let mine = t.ec2.describe_instance_enis(&t.instance_id).await.unwrap();
    let types: Vec<(&str, &str)> = mine
        .iter()
        .map(|e| (e.id.as_str(), e.interface_type.as_str()))
        .filter(|(id, _)| *id == trunk || *id == branch)
        .collect();
    assert_eq!(types, [(trunk.as_str(), "trunk")]);

    c.disassociate_trunk_interface()
        .association_id(&assoc_id)
        .send()
        .await
        .expect("DisassociateTrunkInterface");
    let after = c
        .describe_trunk_interface_associations()
        .send()
        .await
        .expect("DescribeTrunkInterfaceAssociations");
    assert!(after.interface_associations().is_empty());
}

#[tokio::test]
async fn the_controller_stand_in_creates_one_trunk_and_numbers_vlans() {
    let t = common::emulator(|_| {}).await;
    let c = raw_client(&t.ec2_endpoint).await;
    let emu = t.emulator.clone().expect("emulator target");
    let groups = vec![t.security_group.clone()];
    let (a, b) = {
        let mut e = server::lock(&emu);
        let a = e
            .branch_eni_for_pod(&t.instance_id, &t.subnet_id, &groups)
            .expect("first pod");
        let b = e
            .branch_eni_for_pod(&t.instance_id, &t.subnet_id, &groups)
            .expect("second pod");
        (a, b)
    };
    assert!(a.trunk_created && !b.trunk_created);
    assert_eq!((a.vlan_id, b.vlan_id), (1, 2));

    let enis = t.ec2.describe_instance_enis(&t.instance_id).await.unwrap();
    let trunk = enis
        .iter()
        .find(|e| e.interface_type == "trunk")
        .expect("the trunk is attached");
    assert_eq!(trunk.id, a.trunk_id);
    assert!(trunk.attachment.is_some());

    let branch = c
        .describe_network_interfaces()
        .network_interface_ids(&a.eni_id)
        .send()
        .await
        .expect("DescribeNetworkInterfaces");
    let branch = &branch.network_interfaces()[0];
    assert_eq!(branch.mac_address(), Some(a.mac.as_str()));
    assert_eq!(
        branch.private_ip_address(),
        Some(a.private_ip.to_string().as_str())
    );
    let sgs: Vec<_> = branch
        .groups()
        .iter()
        .filter_map(|g| g.group_id())
        .collect();
    assert_eq!(sgs, [t.security_group.as_str()]);

    let annotation = ec2_emulator::control::pod_eni_annotation(&a);
    let parsed: serde_json::Value = serde_json::from_str(&annotation).unwrap();
    assert_eq!(
        parsed,
        serde_json::json!([{
            "eniId": a.eni_id, "ifAddress": a.mac, "privateIp": a.private_ip.to_string(),
            "vlanID": 1, "subnetCidr": "10.0.0.0/24",
        }])
    );
}

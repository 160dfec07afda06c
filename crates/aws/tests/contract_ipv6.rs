//! The IPv6 part of the client contract (issue 13): the same cases against our emulator
//! and against moto, both in a dual-stack VPC. What moto cannot answer (/80 prefix
//! delegation, instance limits, IMDS) runs only on the emulator, and the suite names what
//! it skipped (docs/ec2-emulator.md "IPv6").

mod common;

use aws::{CreateEniRequest, Ec2, ErrorKind, Imds};
use common::Target;

async fn ipv6_contract(t: &Target) -> Vec<&'static str> {
    let mut skipped = Vec::new();
    let name = t.name;

    // The node subnet has one associated /64.
    let subnets = t
        .ec2
        .describe_subnets(&t.vpc_id, &t.availability_zone)
        .await
        .unwrap();
    let subnet = subnets.iter().find(|s| s.id == t.subnet_id).unwrap();
    let v6_subnet = t.subnet_ipv6.expect("a dual-stack target");
    assert_eq!(v6_subnet.prefix_len(), 64, "{name}");
    if t.caps.subnet_ipv6_state {
        assert_eq!(subnet.ipv6_cidrs, vec![v6_subnet], "{name}: {subnet:?}");
    } else {
        skipped.push("DescribeSubnets IPv6 association state");
    }

    // An ENI created with Ipv6AddressCount=1, as upstream's createENI does in IPv6 mode.
    let eni = t
        .ec2
        .create_eni(&CreateEniRequest {
            subnet_id: t.subnet_id.clone(),
            security_groups: vec![t.security_group.clone()],
            description: format!("aws-K8S-{}", t.instance_id),
            ipv6_addresses: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(eni.ipv6_addresses.len(), 1, "{name}: {eni:?}");
    assert!(v6_subnet.contains(&eni.ipv6_addresses[0]), "{name}");
    assert!(eni.ipv6_prefixes.is_empty(), "{name}");
    let seen = &t
        .ec2
        .describe_enis(std::slice::from_ref(&eni.id))
        .await
        .unwrap()[0];
    assert_eq!(seen.ipv6_addresses, eni.ipv6_addresses, "{name}: describe");
    let attachment = t
        .ec2
        .attach_eni(&eni.id, &t.instance_id, 1, 0)
        .await
        .unwrap();

    // One /80 prefix per ENI, as upstream's AllocIPv6Prefixes asks.
    if t.caps.ipv6_prefixes {
        let got = t.ec2.assign_ipv6_prefixes(&eni.id, 1).await.unwrap();
        assert_eq!(got.len(), 1, "{name}: only the new prefix");
        let prefix = got[0];
        assert_eq!(prefix.prefix_len(), 80, "{name}");
        assert_eq!(prefix.trunc(), prefix, "{name}: aligned");
        assert!(v6_subnet.contains(&prefix), "{name}: inside the subnet");
        let now = &t
            .ec2
            .describe_enis(std::slice::from_ref(&eni.id))
            .await
            .unwrap()[0];
        assert_eq!(now.ipv6_prefixes, got, "{name}: describe");
        assert_eq!(now.ipv6_addresses, eni.ipv6_addresses, "{name}");
        let stray = "2600:1f14:ffff:0:1::/80".parse().unwrap();
        let err = t
            .ec2
            .unassign_ipv6_prefixes(&eni.id, &[stray])
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidRequest, "{name}: {err}");
        t.ec2.unassign_ipv6_prefixes(&eni.id, &got).await.unwrap();
        t.ec2.unassign_ipv6_prefixes(&eni.id, &[]).await.unwrap();
        let now = &t
            .ec2
            .describe_enis(std::slice::from_ref(&eni.id))
            .await
            .unwrap()[0];
        assert!(now.ipv6_prefixes.is_empty(), "{name}");
        let stats = t.stats.snapshot();
        assert_eq!(stats["AssignIpv6Addresses"].calls, 1, "{name}");
        assert_eq!(
            stats["UnassignIpv6Addresses"].calls, 2,
            "{name}: none for []"
        );
    } else {
        skipped.push("IPv6 /80 prefix delegation");
    }

    // The per-ENI limit (m5.large: 10 IPv6 addresses and prefixes together).
    if t.caps.limits {
        let err = t.ec2.assign_ipv6_prefixes(&eni.id, 10).await.unwrap_err();
        assert_eq!(
            err.code.as_deref(),
            Some("InvalidParameterValue"),
            "{name}: {err}"
        );
    } else {
        skipped.push("per-ENI IPv6 limit");
    }

    t.ec2.detach_eni(&attachment, true).await.unwrap();
    t.ec2.delete_eni(&eni.id).await.unwrap();
    skipped
}

/// What IMDS shows a dual-stack instance: `ipv6`, and per MAC `ipv6s`, `ipv6-prefix`,
/// `subnet-ipv6-cidr-blocks`, `vpc-ipv6-cidr-blocks`.
async fn ipv6_imds(t: &Target) {
    let endpoint = t.imds_endpoint.as_deref().unwrap();
    let imds = aws::imds_client(Some(endpoint), t.stats.clone()).unwrap();
    let enis = t.ec2.describe_instance_enis(&t.instance_id).await.unwrap();
    let primary = &enis[0];
    assert_eq!(
        primary.ipv6_addresses.len(),
        1,
        "the subnet assigns on creation"
    );
    assert_eq!(
        imds.primary_ipv6().await.unwrap(),
        primary.ipv6_addresses.first().copied()
    );
    let id = imds.identity().await.unwrap();
    let p = imds.eni(&id.primary_mac).await.unwrap();
    assert_eq!(p.ipv6s, primary.ipv6_addresses);
    assert!(p.ipv6_prefixes.is_empty());
    assert_eq!(
        p.subnet_ipv6_cidrs,
        vec!["2600:1f14:c0de::/64".parse().unwrap()]
    );
    assert_eq!(
        imds.vpc_ipv6_cidrs(&id.primary_mac).await.unwrap(),
        vec!["2600:1f14:c0de::/56".parse().unwrap()]
    );
    let got = t.ec2.assign_ipv6_prefixes(&primary.id, 1).await.unwrap();
    let p = imds.eni(&id.primary_mac).await.unwrap();
    assert_eq!(p.ipv6_prefixes, got);
}

#[tokio::test]
async fn ipv6_contract_against_the_emulator() {
    let t = common::emulator_dual_stack().await;
    let skipped = ipv6_contract(&t).await;
    assert!(
        skipped.is_empty(),
        "the emulator answers every check: {skipped:?}"
    );
    ipv6_imds(&t).await;
}

#[tokio::test]
async fn ipv6_contract_against_moto() {
    let t = common::moto_dual_stack().await;
    let skipped = ipv6_contract(&t).await;
    println!("moto: skipped IPv6 checks it cannot answer: {skipped:?}");
    assert_eq!(skipped.len(), 3, "{skipped:?}");
}

/// An IPv4-only instance: every IPv6 key of IMDS is absent (404), which reads as empty.
#[tokio::test]
async fn ipv4_only_imds_reads_as_no_ipv6() {
    let t = common::emulator(|_| {}).await;
    let imds = aws::imds_client(t.imds_endpoint.as_deref(), t.stats.clone()).unwrap();
    assert_eq!(imds.primary_ipv6().await.unwrap(), None);
    let id = imds.identity().await.unwrap();
    let p = imds.eni(&id.primary_mac).await.unwrap();
    assert!(p.ipv6s.is_empty() && p.ipv6_prefixes.is_empty() && p.subnet_ipv6_cidrs.is_empty());
    assert!(
        imds.vpc_ipv6_cidrs(&id.primary_mac)
            .await
            .unwrap()
            .is_empty()
    );
    let subnets = t
        .ec2
        .describe_subnets(&t.vpc_id, &t.availability_zone)
        .await
        .unwrap();
    assert!(subnets.iter().all(|s| s.ipv6_cidrs.is_empty()));
}

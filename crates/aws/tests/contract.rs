//! One contract suite for the `Ec2`/`Imds` clients, run against our emulator and against
//! moto (an independent EC2 implementation). Checks moto cannot answer (prefixes, instance
//! limits, DeleteOnTermination, IMDS) run only where the target supports them, and the
//! suite says which it skipped.

mod common;

use std::collections::BTreeMap;

use aws::{ConnTrack, CreateEniRequest, Ec2, ErrorKind, Imds};
use common::Target;

async fn contract(t: &Target) -> Vec<&'static str> {
    let mut skipped = Vec::new();
    let name = t.name;

    // The instance and its primary ENI.
    let instance = t.ec2.describe_instance(&t.instance_id).await.unwrap();
    assert_eq!(instance.instance_type, "m5.large", "{name}");
    assert!(
        instance.attached.contains(&(0, 0)),
        "{name}: {:?}",
        instance.attached
    );
    let enis = t.ec2.describe_instance_enis(&t.instance_id).await.unwrap();
    assert_eq!(enis.len(), 1, "{name}");
    let primary = &enis[0];
    assert!(primary.primary_ip.is_some(), "{name}");
    assert_eq!(
        primary.attachment.as_ref().unwrap().device_index,
        0,
        "{name}"
    );

    // Instance type limits.
    let ty = t.ec2.describe_instance_type("m5.large").await.unwrap();
    assert_eq!((ty.max_enis, ty.ipv4_per_eni), (3, 10), "{name}");
    assert_eq!(ty.hypervisor, "nitro", "{name}");

    // Subnets of the VPC/AZ.
    let subnets = t
        .ec2
        .describe_subnets(&t.vpc_id, &t.availability_zone)
        .await
        .unwrap();
    let subnet = subnets
        .iter()
        .find(|s| s.id == t.subnet_id)
        .expect("node subnet listed");
    assert_eq!(subnet.cidr.map(|c| c.prefix_len()), Some(24), "{name}");
    assert!(subnet.available_ips > 0, "{name}");

    // Create + tag + attach + DeleteOnTermination, as ipamd does.
    let tags = BTreeMap::from([
        (
            "node.k8s.amazonaws.com/instance_id".to_string(),
            t.instance_id.clone(),
        ),
        (
            "cluster.k8s.amazonaws.com/name".to_string(),
            "demo".to_string(),
        ),
    ]);
    let eni = t
        .ec2
        .create_eni(&CreateEniRequest {
            subnet_id: t.subnet_id.clone(),
            security_groups: vec![t.security_group.clone()],
            description: format!("aws-K8S-{}", t.instance_id),
            secondary_ips: 2,
            prefixes: 0,
            ipv6_addresses: 0,
            tags: tags.clone(),
            conntrack: None,
        })
        .await
        .unwrap();
    assert_eq!(eni.status, "available", "{name}");
    assert_eq!(
        eni.conntrack, None,
        "{name}: no timeouts asked, none reported"
    );
    assert_eq!(eni.secondary_ips.len(), 2, "{name}");
    assert_eq!(eni.description, format!("aws-K8S-{}", t.instance_id));
    assert_eq!(
        eni.security_groups,
        vec![t.security_group.clone()],
        "{name}"
    );
    let device = instance.free_device_index(0).unwrap();
    assert_eq!(device, 1);
    let attachment = t
        .ec2
        .attach_eni(&eni.id, &t.instance_id, device, 0)
        .await
        .unwrap();
    t.ec2
        .set_delete_on_termination(&eni.id, &attachment)
        .await
        .unwrap();
    let seen = t
        .ec2
        .describe_enis(std::slice::from_ref(&eni.id))
        .await
        .unwrap();
    assert_eq!(seen.len(), 1);
    let att = seen[0].attachment.as_ref().expect("attached");
    assert_eq!(
        (att.device_index, att.instance_id.as_str()),
        (1, t.instance_id.as_str()),
        "{name}"
    );
    assert_eq!(
        seen[0]
            .tags
            .get("cluster.k8s.amazonaws.com/name")
            .map(String::as_str),
        Some("demo"),
        "{name}"
    );
    if t.caps.delete_on_termination {
        assert!(att.delete_on_termination, "{name}");
    } else {
        skipped.push("DeleteOnTermination is reflected in Describe");
    }
    assert_eq!(
        t.ec2
            .describe_instance_enis(&t.instance_id)
            .await
            .unwrap()
            .len(),
        2,
        "{name}"
    );

    // Grow and shrink secondary IPs; Describe is the truth.
    let got = t.ec2.assign_ips(&eni.id, 3).await.unwrap();
    if t.caps.assign_returns_only_new {
        assert_eq!(got.ips.len(), 3, "{name}: only the new addresses");
    } else {
        skipped.push("AssignPrivateIpAddresses answers only the new addresses");
    }
    let now = &t
        .ec2
        .describe_enis(std::slice::from_ref(&eni.id))
        .await
        .unwrap()[0];
    assert_eq!(now.secondary_ips.len(), 5, "{name}");
    let unique: std::collections::BTreeSet<_> = now.secondary_ips.iter().collect();
    assert_eq!(unique.len(), 5, "{name}");
    let release = now.secondary_ips[..2].to_vec();
    t.ec2.unassign_ips(&eni.id, &release).await.unwrap();
    let now = &t
        .ec2
        .describe_enis(std::slice::from_ref(&eni.id))
        .await
        .unwrap()[0];
    assert_eq!(now.secondary_ips.len(), 3, "{name}");
    assert!(
        release.iter().all(|ip| !now.secondary_ips.contains(ip)),
        "{name}"
    );

    // Tags and filtered listing (the leaked-ENI scan's filters).
    t.ec2
        .create_tags(
            std::slice::from_ref(&eni.id),
            &BTreeMap::from([("extra".to_string(), "1".to_string())]),
        )
        .await
        .unwrap();
    let listed = t
        .ec2
        .describe_enis_filtered(&[
            aws::Filter::new("tag-key", &["node.k8s.amazonaws.com/instance_id"]),
            aws::Filter::new("vpc-id", &[&t.vpc_id]),
        ])
        .await
        .unwrap();
    let mine = listed
        .iter()
        .find(|e| e.id == eni.id)
        .expect("tagged ENI listed");
    assert_eq!(
        mine.tags.get("extra").map(String::as_str),
        Some("1"),
        "{name}"
    );
    let unfiltered = t.ec2.describe_enis_filtered(&[]).await.unwrap_err();
    assert_eq!(
        unfiltered.kind,
        ErrorKind::InvalidRequest,
        "never an unfiltered Describe"
    );

    // Prefixes (Nitro).
    if t.caps.prefixes {
        let got = t.ec2.assign_prefixes(&eni.id, 2).await.unwrap();
        assert_eq!(got.prefixes.len(), 2, "{name}");
        assert!(
            got.prefixes
                .iter()
                .all(|p| p.prefix_len() == 28 && u32::from(p.network()) % 16 == 0)
        );
        t.ec2
            .unassign_prefixes(&eni.id, &got.prefixes[..1])
            .await
            .unwrap();
        let now = &t
            .ec2
            .describe_enis(std::slice::from_ref(&eni.id))
            .await
            .unwrap()[0];
        assert_eq!(now.prefixes, got.prefixes[1..].to_vec(), "{name}");
    } else {
        skipped.push("IPv4 prefix delegation");
    }

    conntrack_contract(t, &mut skipped).await;

    // Instance limits: a fourth ENI on an m5.large.
    if t.caps.limits {
        let second = t
            .ec2
            .create_eni(&CreateEniRequest {
                subnet_id: t.subnet_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        t.ec2
            .attach_eni(&second.id, &t.instance_id, 2, 0)
            .await
            .unwrap();
        let third = t
            .ec2
            .create_eni(&CreateEniRequest {
                subnet_id: t.subnet_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        let err = t
            .ec2
            .attach_eni(&third.id, &t.instance_id, 3, 0)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::LimitExceeded, "{name}: {err}");
        assert_eq!(err.code.as_deref(), Some("AttachmentLimitExceeded"));
        let err = t.ec2.assign_ips(&eni.id, 7).await.unwrap_err();
        assert_eq!(
            err.code.as_deref(),
            Some("PrivateIpAddressLimitExceeded"),
            "{name}"
        );
        t.ec2.delete_eni(&third.id).await.unwrap();
    } else {
        skipped.push("instance-type ENI and address limits");
    }

    // Errors are typed.
    let err = t.ec2.delete_eni("eni-0000000000000dead").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{name}: {err}");
    assert_eq!(
        err.code.as_deref(),
        Some("InvalidNetworkInterfaceID.NotFound")
    );
    let err = t
        .ec2
        .describe_enis(&["eni-0000000000000dead".to_string()])
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{name}: {err}");

    // Detach and delete, as FreeENI does.
    t.ec2.detach_eni(&attachment, true).await.unwrap();
    let err = t
        .ec2
        .detach_eni("eni-attach-0000000000dead", false)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{name}: {err}");
    t.ec2.delete_eni(&eni.id).await.unwrap();
    let err = t
        .ec2
        .describe_enis(std::slice::from_ref(&eni.id))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{name}");

    // IMDS.
    if let (true, Some(endpoint)) = (t.caps.imds, &t.imds_endpoint) {
        let imds = aws::imds_client(Some(endpoint), t.stats.clone()).unwrap();
        let id = imds.identity().await.unwrap();
        assert_eq!(id.instance_id, t.instance_id);
        assert_eq!(id.instance_type, "m5.large");
        assert_eq!(id.region, "us-west-2");
        assert_eq!(Some(id.local_ipv4), primary.primary_ip);
        let macs = imds.macs().await.unwrap();
        assert!(macs.contains(&id.primary_mac));
        let p = imds.eni(&id.primary_mac).await.unwrap();
        assert_eq!(
            (p.eni_id.as_str(), p.device_number, p.network_card),
            (primary.id.as_str(), 0, 0)
        );
        assert_eq!(
            p.ipv4s.first().copied(),
            primary.primary_ip,
            "primary first"
        );
        assert_eq!(
            p.subnet_cidr.map(|c| c.to_string()).as_deref(),
            Some("10.0.0.0/24")
        );
        assert_eq!(
            imds.security_group_ids(&id.primary_mac).await.unwrap(),
            vec![t.security_group.clone()]
        );
        assert_eq!(
            imds.vpc_ipv4_cidrs(&id.primary_mac).await.unwrap(),
            vec!["10.0.0.0/16".parse().unwrap()]
        );
        let err = imds.eni("02:00:00:00:00:99").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
    } else {
        skipped.push("IMDS (moto serves only a static stub)");
    }

    let stats = t.stats.snapshot();
    assert!(
        stats["DescribeNetworkInterfaces"].calls >= 6,
        "{name}: calls are counted"
    );
    assert!(
        stats["DeleteNetworkInterface"]
            .errors
            .contains_key("InvalidNetworkInterfaceID.NotFound")
    );
    skipped
}

/// Connection tracking timeouts (upstream's `createENIInput` copies the primary ENI's):
/// the ones set go in, come back on create and describe, the unset one stays unset; EC2's
/// ranges are enforced.
async fn conntrack_contract(t: &Target, skipped: &mut Vec<&'static str>) {
    let name = t.name;
    if !t.caps.conntrack {
        skipped.push("connection tracking timeouts");
        return;
    }
    let asked = ConnTrack {
        tcp_established_timeout: Some(3600),
        udp_stream_timeout: None,
        udp_timeout: Some(45),
    };
    let req = CreateEniRequest {
        subnet_id: t.subnet_id.clone(),
        conntrack: Some(asked),
        ..Default::default()
    };
    let eni = t.ec2.create_eni(&req).await.unwrap();
    assert_eq!(eni.conntrack, Some(asked), "{name}: create's answer");
    let seen = t
        .ec2
        .describe_enis(std::slice::from_ref(&eni.id))
        .await
        .unwrap();
    assert_eq!(seen[0].conntrack, Some(asked), "{name}: describe");
    t.ec2.delete_eni(&eni.id).await.unwrap();

    let too_short = CreateEniRequest {
        conntrack: Some(ConnTrack {
            udp_timeout: Some(10),
            ..Default::default()
        }),
        ..req
    };
    let err = t.ec2.create_eni(&too_short).await.unwrap_err();
    assert_eq!(
        err.code.as_deref(),
        Some("InvalidParameterValue"),
        "{name}: {err}"
    );
}

#[tokio::test]
async fn contract_against_the_emulator() {
    let t = common::emulator(|_| {}).await;
    let skipped = contract(&t).await;
    assert!(
        skipped.is_empty(),
        "the emulator answers every check: {skipped:?}"
    );
}

#[tokio::test]
async fn contract_against_moto() {
    let t = common::moto().await;
    let skipped = contract(&t).await;
    println!("moto: skipped checks it cannot answer: {skipped:?}");
    assert_eq!(skipped.len(), 6, "{skipped:?}");
}

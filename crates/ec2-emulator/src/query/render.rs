//! How model resources are written in EC2's response XML.

use crate::model::{ConnTrack, Eni, Instance, InstanceTypeInfo, Subnet, Tags, World};

use super::xml::Xml;

/// The account that owns everything in the emulated region.
pub const OWNER_ID: &str = "123456789012";

/// RFC 3339 UTC timestamp of Unix seconds (EC2's `dateTime` format).
pub fn rfc3339(unix: u64) -> String {
    ipam::Timestamp::from_unix_secs(i64::try_from(unix).unwrap_or(i64::MAX / 1_000_000_000))
        .to_rfc3339()
}

pub fn tag_set(x: &mut Xml, tags: &Tags) {
    x.items("tagSet", tags, |x, (k, v)| {
        x.leaf("key", k).leaf("value", v);
    });
}

/// The fields of one network interface (inside `<item>` or `<networkInterface>`).
pub fn eni_fields(x: &mut Xml, world: &World, eni: &Eni) {
    x.leaf("networkInterfaceId", &eni.id)
        .leaf("subnetId", &eni.subnet_id)
        .leaf("vpcId", &eni.vpc_id)
        .leaf("availabilityZone", &eni.availability_zone)
        .leaf("description", &eni.description)
        .leaf("ownerId", OWNER_ID)
        .leaf("requesterManaged", false)
        .leaf("status", eni.status().as_str())
        .leaf("macAddress", &eni.mac)
        .leaf("privateIpAddress", eni.primary_ip)
        .leaf("sourceDestCheck", eni.source_dest_check)
        .leaf("interfaceType", &eni.interface_type);
    x.items("groupSet", &eni.groups, |x, g| {
        let name = world.groups.get(g).map(|s| s.name.as_str()).unwrap_or("");
        x.leaf("groupId", g).leaf("groupName", name);
    });
    if let Some(att) = &eni.attachment {
        x.node("attachment", |x| {
            x.leaf("attachmentId", &att.id)
                .leaf("instanceId", &att.instance_id)
                .leaf("instanceOwnerId", OWNER_ID)
                .leaf("deviceIndex", att.device_index)
                .leaf("networkCardIndex", att.network_card)
                .leaf("status", "attached")
                .leaf("attachTime", rfc3339(att.attach_time))
                .leaf("deleteOnTermination", att.delete_on_termination);
        });
    }
    tag_set(x, &eni.tags);
    conntrack(x, &eni.conntrack);
    x.items("privateIpAddressesSet", eni.private_ips(), |x, ip| {
        x.leaf("privateIpAddress", ip)
            .leaf("primary", ip == eni.primary_ip);
    });
    x.items("ipv4PrefixSet", &eni.prefixes, |x, p| {
        x.leaf("ipv4Prefix", p);
    });
    x.items("ipv6AddressesSet", &eni.ipv6_addresses, |x, a| {
        x.leaf("ipv6Address", a).leaf("isPrimaryIpv6", false);
    });
    x.items("ipv6PrefixSet", &eni.ipv6_prefixes, |x, p| {
        x.leaf("ipv6Prefix", p);
    });
}

pub fn subnet_fields(x: &mut Xml, subnet: &Subnet) {
    x.leaf("subnetId", &subnet.id)
        .leaf(
            "subnetArn",
            format!("arn:aws:ec2:us-west-2:{OWNER_ID}:subnet/{}", subnet.id),
        )
        .leaf("state", "available")
        .leaf("vpcId", &subnet.vpc_id)
        .leaf("ownerId", OWNER_ID)
        .leaf("cidrBlock", subnet.cidr())
        .leaf("availableIpAddressCount", subnet.pool.available())
        .leaf("availabilityZone", &subnet.availability_zone)
        .leaf("defaultForAz", false)
        .leaf("mapPublicIpOnLaunch", false)
        .leaf(
            "assignIpv6AddressOnCreation",
            subnet.assign_ipv6_on_creation,
        );
    x.items(
        "ipv6CidrBlockAssociationSet",
        subnet.ipv6_cidr(),
        |x, cidr| {
            x.leaf(
                "associationId",
                format!(
                    "subnet-cidr-assoc-{}",
                    subnet.id.trim_start_matches("subnet-")
                ),
            )
            .leaf("ipv6CidrBlock", cidr)
            .node("ipv6CidrBlockState", |x| {
                x.leaf("state", "associated");
            });
        },
    );
    tag_set(x, &subnet.tags);
}

pub fn instance_fields(x: &mut Xml, world: &World, instance: &Instance) {
    let primary_ip = world
        .enis
        .get(&instance.primary_eni)
        .map(|e| e.primary_ip.to_string())
        .unwrap_or_default();
    x.leaf("instanceId", &instance.id)
        .leaf("instanceType", &instance.instance_type.name)
        .node("instanceState", |x| {
            x.leaf("code", 16).leaf("name", "running");
        })
        .node("placement", |x| {
            x.leaf("availabilityZone", &instance.availability_zone);
        })
        .leaf("subnetId", &instance.subnet_id)
        .leaf("vpcId", &instance.vpc_id)
        .leaf("privateIpAddress", primary_ip)
        .leaf("hypervisor", &instance.instance_type.hypervisor);
    x.items(
        "networkInterfaceSet",
        world.attached_enis(&instance.id),
        |x, eni| eni_fields(x, world, eni),
    );
    tag_set(x, &instance.tags);
}

pub fn instance_type_fields(x: &mut Xml, ty: &InstanceTypeInfo) {
    let total: u32 = ty.cards.values().sum();
    x.leaf("instanceType", &ty.name)
        .leaf("hypervisor", &ty.hypervisor)
        .leaf("bareMetal", ty.bare_metal);
    if let Some(vcpus) = ty.vcpus {
        x.node("vCpuInfo", |x| {
            x.leaf("defaultVCpus", vcpus);
        });
    }
    x.node("networkInfo", |x| {
        x.leaf("maximumNetworkInterfaces", total)
            .leaf("ipv4AddressesPerInterface", ty.ipv4_per_eni)
            .leaf("ipv6AddressesPerInterface", ty.ipv4_per_eni)
            .leaf("ipv6Supported", true)
            .leaf("maximumNetworkCards", ty.cards.len())
            .leaf("defaultNetworkCardIndex", ty.default_card)
            .items("networkCards", &ty.cards, |x, (index, max)| {
                x.leaf("networkCardIndex", index)
                    .leaf("maximumNetworkInterfaces", max);
            });
    });
}

/// `connectionTrackingConfiguration`, with the timeouts that are set (absent when none is).
fn conntrack(x: &mut Xml, ct: &ConnTrack) {
    if *ct == ConnTrack::default() {
        return;
    }
    x.node("connectionTrackingConfiguration", |x| {
        let fields = [
            ("tcpEstablishedTimeout", ct.tcp_established_timeout),
            ("udpStreamTimeout", ct.udp_stream_timeout),
            ("udpTimeout", ct.udp_timeout),
        ];
        for (name, v) in fields {
            if let Some(v) = v {
                x.leaf(name, v);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_305_600), "2026-11-22T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 3_661), "2000-02-29T01:01:01Z");
    }
}

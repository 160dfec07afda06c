//! Conversions between `aws-sdk-ec2` shapes and ours: responses into the [`crate::types`]
//! descriptions, our filters and tags into request shapes, SDK errors into [`AwsError`].

use std::net::{Ipv4Addr, Ipv6Addr};

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::assign_ipv6_addresses::AssignIpv6AddressesOutput;
use aws_sdk_ec2::operation::assign_private_ip_addresses::AssignPrivateIpAddressesOutput;
use aws_sdk_ec2::types as sdk;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use ipnet::{Ipv4Net, Ipv6Net};

use crate::error::{AwsError, ErrorKind, classify_code, classify_status};
use crate::types::{
    AssignedAddresses, ConnTrack, EniAttachment, EniDescription, Filter, InstanceDescription,
    InstanceTypeDescription, SubnetDescription, Tags,
};

/// Converts an SDK error into a typed [`AwsError`].
pub fn sdk_error<E>(api: &str, err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_string);
    let message = err
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| DisplayErrorContext(&err).to_string());
    let by_code = code.as_deref().map(classify_code);
    let kind = match (by_code, &err) {
        (Some(kind), _) if kind != ErrorKind::Other => kind,
        (_, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_)) => ErrorKind::Unavailable,
        _ => status.map(classify_status).unwrap_or(ErrorKind::Other),
    };
    AwsError::new(kind, api, code, message)
}

pub(super) fn to_filter(f: &Filter) -> sdk::Filter {
    sdk::Filter::builder()
        .name(&f.name)
        .set_values(Some(f.values.clone()))
        .build()
}

pub(super) fn tags_of(tags: &[sdk::Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

pub(super) fn sdk_tags(tags: &Tags) -> Vec<sdk::Tag> {
    tags.iter()
        .map(|(k, v)| sdk::Tag::builder().key(k).value(v).build())
        .collect()
}

fn to_u32(v: i32) -> Option<u32> {
    u32::try_from(v).ok()
}

pub(super) fn u32_of(v: Option<i32>) -> u32 {
    v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

pub(super) fn eni_of(n: &sdk::NetworkInterface) -> EniDescription {
    let primary_ip = n.private_ip_address().and_then(|ip| ip.parse().ok());
    let mut secondary_ips: Vec<Ipv4Addr> = n
        .private_ip_addresses()
        .iter()
        .filter(|a| a.primary() != Some(true))
        .filter_map(|a| a.private_ip_address()?.parse().ok())
        .filter(|ip| Some(*ip) != primary_ip)
        .collect();
    secondary_ips.sort();
    let mut prefixes: Vec<Ipv4Net> = n
        .ipv4_prefixes()
        .iter()
        .filter_map(|p| p.ipv4_prefix()?.parse().ok())
        .collect();
    prefixes.sort();
    let mut ipv6_addresses: Vec<Ipv6Addr> = n
        .ipv6_addresses()
        .iter()
        .filter_map(|a| a.ipv6_address()?.parse().ok())
        .collect();
    ipv6_addresses.sort();
    let mut ipv6_prefixes: Vec<Ipv6Net> = n
        .ipv6_prefixes()
        .iter()
        .filter_map(|p| p.ipv6_prefix()?.parse().ok())
        .collect();
    ipv6_prefixes.sort();
    EniDescription {
        id: n.network_interface_id().unwrap_or_default().to_string(),
        mac: n.mac_address().unwrap_or_default().to_string(),
        subnet_id: n.subnet_id().unwrap_or_default().to_string(),
        vpc_id: n.vpc_id().unwrap_or_default().to_string(),
        availability_zone: n.availability_zone().unwrap_or_default().to_string(),
        description: n.description().unwrap_or_default().to_string(),
        status: n
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        interface_type: n
            .interface_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_else(|| "interface".to_string()),
        primary_ip,
        secondary_ips,
        prefixes,
        ipv6_addresses,
        ipv6_prefixes,
        security_groups: n
            .groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect(),
        tags: tags_of(n.tag_set()),
        conntrack: n.connection_tracking_configuration().and_then(|c| {
            ConnTrack {
                tcp_established_timeout: c.tcp_established_timeout().and_then(to_u32),
                udp_stream_timeout: c.udp_stream_timeout().and_then(to_u32),
                udp_timeout: c.udp_timeout().and_then(to_u32),
            }
            .if_set()
        }),
        attachment: n.attachment().and_then(|a| {
            Some(EniAttachment {
                attachment_id: a.attachment_id()?.to_string(),
                instance_id: a.instance_id().unwrap_or_default().to_string(),
                device_index: u32_of(a.device_index()),
                network_card: u32_of(a.network_card_index()),
                delete_on_termination: a.delete_on_termination().unwrap_or(false),
            })
        }),
    }
}

/// The description of instance `instance_id` from its `DescribeInstances` entry.
pub(super) fn instance_of(instance_id: &str, instance: &sdk::Instance) -> InstanceDescription {
    InstanceDescription {
        id: instance_id.to_string(),
        instance_type: instance
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        availability_zone: instance
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .to_string(),
        subnet_id: instance.subnet_id().unwrap_or_default().to_string(),
        vpc_id: instance.vpc_id().unwrap_or_default().to_string(),
        attached: instance
            .network_interfaces()
            .iter()
            .filter_map(|n| n.attachment())
            .map(|a| (u32_of(a.network_card_index()), u32_of(a.device_index())))
            .collect(),
    }
}

/// The limits of `instance_type` from its `DescribeInstanceTypes` entry.
pub(super) fn instance_type_of(
    instance_type: &str,
    info: &sdk::InstanceTypeInfo,
) -> InstanceTypeDescription {
    let net = info.network_info();
    InstanceTypeDescription {
        instance_type: instance_type.to_string(),
        max_enis: u32_of(net.and_then(|n| n.maximum_network_interfaces())),
        ipv4_per_eni: u32_of(net.and_then(|n| n.ipv4_addresses_per_interface())),
        default_card: u32_of(net.and_then(|n| n.default_network_card_index())),
        cards: net
            .map(|n| {
                n.network_cards()
                    .iter()
                    .map(|c| {
                        (
                            u32_of(c.network_card_index()),
                            u32_of(c.maximum_network_interfaces()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        hypervisor: info
            .hypervisor()
            .map(|h| h.as_str().to_string())
            .unwrap_or_else(|| "unknown".into()),
        bare_metal: info.bare_metal().unwrap_or(false),
        vcpus: info
            .v_cpu_info()
            .and_then(|v| v.default_v_cpus())
            .and_then(|v| u32::try_from(v).ok()),
    }
}

pub(super) fn subnet_of(s: &sdk::Subnet) -> SubnetDescription {
    SubnetDescription {
        id: s.subnet_id().unwrap_or_default().to_string(),
        vpc_id: s.vpc_id().unwrap_or_default().to_string(),
        availability_zone: s.availability_zone().unwrap_or_default().to_string(),
        cidr: s.cidr_block().and_then(|c| c.parse().ok()),
        ipv6_cidrs: s
            .ipv6_cidr_block_association_set()
            .iter()
            .filter(|a| {
                a.ipv6_cidr_block_state().and_then(|st| st.state())
                    == Some(&sdk::SubnetCidrBlockStateCode::Associated)
            })
            .filter_map(|a| a.ipv6_cidr_block()?.parse().ok())
            .collect(),
        available_ips: u32_of(s.available_ip_address_count()),
        tags: tags_of(s.tags()),
    }
}

/// The new addresses of an `AssignPrivateIpAddresses` answer.
pub(super) fn assigned_of(out: &AssignPrivateIpAddressesOutput) -> AssignedAddresses {
    AssignedAddresses {
        ips: out
            .assigned_private_ip_addresses()
            .iter()
            .filter_map(|a| a.private_ip_address()?.parse().ok())
            .collect(),
        prefixes: out
            .assigned_ipv4_prefixes()
            .iter()
            .filter_map(|p| p.ipv4_prefix()?.parse().ok())
            .collect(),
    }
}

/// The new prefixes of an `AssignIpv6Addresses` answer.
pub(super) fn assigned_ipv6_prefixes_of(out: &AssignIpv6AddressesOutput) -> Vec<Ipv6Net> {
    out.assigned_ipv6_prefixes()
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect()
}

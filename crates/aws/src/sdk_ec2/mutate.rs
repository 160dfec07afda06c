//! The calls that change EC2 state: ENI create/attach/detach/delete and attribute changes,
//! address and prefix assignment, tagging.

use std::net::Ipv4Addr;

use aws_sdk_ec2::types as sdk;
use ipnet::{Ipv4Net, Ipv6Net};

use super::SdkEc2;
use super::convert::{assigned_ipv6_prefixes_of, assigned_of, eni_of, sdk_error, sdk_tags};
use crate::error::{AwsError, ErrorKind};
use crate::traits::AwsResult;
use crate::types::{AssignedAddresses, ConnTrack, CreateEniRequest, EniDescription, Tags};

/// `CreateNetworkInterface`.
pub(super) async fn create_network_interface(
    ec2: &SdkEc2,
    req: &CreateEniRequest,
) -> AwsResult<EniDescription> {
    let out = ec2
        .call("CreateNetworkInterface", || {
            let mut r = ec2
                .client
                .create_network_interface()
                .subnet_id(&req.subnet_id)
                .description(&req.description)
                .set_groups((!req.security_groups.is_empty()).then(|| req.security_groups.clone()));
            if req.secondary_ips > 0 {
                r = r.secondary_private_ip_address_count(req.secondary_ips as i32);
            }
            if req.prefixes > 0 {
                r = r.ipv4_prefix_count(req.prefixes as i32);
            }
            if req.ipv6_addresses > 0 {
                r = r.ipv6_address_count(req.ipv6_addresses as i32);
            }
            if let Some(ct) = req.conntrack {
                r = r.connection_tracking_specification(conntrack_request(ct));
            }
            if !req.tags.is_empty() {
                r = r.tag_specifications(
                    sdk::TagSpecification::builder()
                        .resource_type(sdk::ResourceType::NetworkInterface)
                        .set_tags(Some(sdk_tags(&req.tags)))
                        .build(),
                );
            }
            async move {
                r.send()
                    .await
                    .map_err(|e| sdk_error("CreateNetworkInterface", e))
            }
        })
        .await?;
    out.network_interface().map(eni_of).ok_or_else(|| {
        AwsError::new(
            ErrorKind::Other,
            "CreateNetworkInterface",
            None,
            "response without a network interface",
        )
    })
}

/// `AttachNetworkInterface`; answers the attachment ID.
pub(super) async fn attach_network_interface(
    ec2: &SdkEc2,
    eni_id: &str,
    instance_id: &str,
    device_index: u32,
    network_card: u32,
) -> AwsResult<String> {
    let out = ec2
        .call("AttachNetworkInterface", || {
            let r = ec2
                .client
                .attach_network_interface()
                .network_interface_id(eni_id)
                .instance_id(instance_id)
                .device_index(device_index as i32)
                .network_card_index(network_card as i32);
            async move {
                r.send()
                    .await
                    .map_err(|e| sdk_error("AttachNetworkInterface", e))
            }
        })
        .await?;
    out.attachment_id().map(str::to_string).ok_or_else(|| {
        AwsError::new(
            ErrorKind::Other,
            "AttachNetworkInterface",
            None,
            "response without an attachment ID",
        )
    })
}

/// `DetachNetworkInterface`.
pub(super) async fn detach_network_interface(
    ec2: &SdkEc2,
    attachment_id: &str,
    force: bool,
) -> AwsResult<()> {
    ec2.call("DetachNetworkInterface", || {
        let r = ec2
            .client
            .detach_network_interface()
            .attachment_id(attachment_id)
            .force(force);
        async move {
            r.send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("DetachNetworkInterface", e))
        }
    })
    .await
}

/// `DeleteNetworkInterface`.
pub(super) async fn delete_network_interface(ec2: &SdkEc2, eni_id: &str) -> AwsResult<()> {
    ec2.call("DeleteNetworkInterface", || {
        let r = ec2
            .client
            .delete_network_interface()
            .network_interface_id(eni_id);
        async move {
            r.send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("DeleteNetworkInterface", e))
        }
    })
    .await
}

/// `ModifyNetworkInterfaceAttribute` setting the attachment's delete-on-termination.
pub(super) async fn set_delete_on_termination(
    ec2: &SdkEc2,
    eni_id: &str,
    attachment_id: &str,
) -> AwsResult<()> {
    ec2.call("ModifyNetworkInterfaceAttribute", || {
        let r = ec2
            .client
            .modify_network_interface_attribute()
            .network_interface_id(eni_id)
            .attachment(
                sdk::NetworkInterfaceAttachmentChanges::builder()
                    .attachment_id(attachment_id)
                    .delete_on_termination(true)
                    .build(),
            );
        async move {
            r.send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("ModifyNetworkInterfaceAttribute", e))
        }
    })
    .await
}

/// `ModifyNetworkInterfaceAttribute` replacing the ENI's security groups.
pub(super) async fn set_security_groups(
    ec2: &SdkEc2,
    eni_id: &str,
    groups: &[String],
) -> AwsResult<()> {
    ec2.call("ModifyNetworkInterfaceAttribute", || {
        let r = ec2
            .client
            .modify_network_interface_attribute()
            .network_interface_id(eni_id)
            .set_groups(Some(groups.to_vec()));
        async move {
            r.send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("ModifyNetworkInterfaceAttribute", e))
        }
    })
    .await
}

/// `AssignPrivateIpAddresses` with a secondary-IP or a prefix count; answers only the
/// new addresses, as EC2 does.
pub(super) async fn assign_private_ip_addresses(
    ec2: &SdkEc2,
    eni_id: &str,
    count: u32,
    prefixes: bool,
) -> AwsResult<AssignedAddresses> {
    const API: &str = "AssignPrivateIpAddresses";
    let out = ec2
        .call(API, || {
            let r = ec2
                .client
                .assign_private_ip_addresses()
                .network_interface_id(eni_id);
            let r = if prefixes {
                r.ipv4_prefix_count(count as i32)
            } else {
                r.secondary_private_ip_address_count(count as i32)
            };
            async move { r.send().await.map_err(|e| sdk_error(API, e)) }
        })
        .await?;
    Ok(assigned_of(&out))
}

/// `UnassignPrivateIpAddresses`; nothing to give back is no call.
pub(super) async fn unassign_private_ip_addresses(
    ec2: &SdkEc2,
    eni_id: &str,
    ips: &[Ipv4Addr],
    prefixes: &[Ipv4Net],
) -> AwsResult<()> {
    const API: &str = "UnassignPrivateIpAddresses";
    if ips.is_empty() && prefixes.is_empty() {
        return Ok(());
    }
    let list = |v: Vec<String>| (!v.is_empty()).then_some(v);
    ec2.call(API, || {
        let r = ec2
            .client
            .unassign_private_ip_addresses()
            .network_interface_id(eni_id)
            .set_private_ip_addresses(list(ips.iter().map(ToString::to_string).collect()))
            .set_ipv4_prefixes(list(prefixes.iter().map(ToString::to_string).collect()));
        async move { r.send().await.map(|_| ()).map_err(|e| sdk_error(API, e)) }
    })
    .await
}

/// `AssignIpv6Addresses` with `Ipv6PrefixCount`; answers only the new prefixes, as EC2
/// does (upstream's `AllocIPv6Prefixes`).
pub(super) async fn assign_ipv6_prefixes(
    ec2: &SdkEc2,
    eni_id: &str,
    count: u32,
) -> AwsResult<Vec<Ipv6Net>> {
    const API: &str = "AssignIpv6Addresses";
    let out = ec2
        .call(API, || {
            let r = ec2
                .client
                .assign_ipv6_addresses()
                .network_interface_id(eni_id)
                .ipv6_prefix_count(count as i32);
            async move { r.send().await.map_err(|e| sdk_error(API, e)) }
        })
        .await?;
    Ok(assigned_ipv6_prefixes_of(&out))
}

/// `UnassignIpv6Addresses` with `Ipv6Prefix.N`; nothing to give back is no call.
pub(super) async fn unassign_ipv6_prefixes(
    ec2: &SdkEc2,
    eni_id: &str,
    prefixes: &[Ipv6Net],
) -> AwsResult<()> {
    const API: &str = "UnassignIpv6Addresses";
    if prefixes.is_empty() {
        return Ok(());
    }
    ec2.call(API, || {
        let r = ec2
            .client
            .unassign_ipv6_addresses()
            .network_interface_id(eni_id)
            .set_ipv6_prefixes(Some(prefixes.iter().map(ToString::to_string).collect()));
        async move { r.send().await.map(|_| ()).map_err(|e| sdk_error(API, e)) }
    })
    .await
}

/// `CreateTags`; no resources or no tags is no call.
pub(super) async fn create_tags(
    ec2: &SdkEc2,
    resource_ids: &[String],
    tags: &Tags,
) -> AwsResult<()> {
    if resource_ids.is_empty() || tags.is_empty() {
        return Ok(());
    }
    ec2.call("CreateTags", || {
        let r = ec2
            .client
            .create_tags()
            .set_resources(Some(resource_ids.to_vec()))
            .set_tags(Some(sdk_tags(tags)));
        async move {
            r.send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("CreateTags", e))
        }
    })
    .await
}

/// `ConnectionTrackingSpecification`: only the timeouts that are set (upstream's
/// `setConnectionTrackingSettings`).
fn conntrack_request(ct: ConnTrack) -> sdk::ConnectionTrackingSpecificationRequest {
    let secs = |v: Option<u32>| v.and_then(|v| i32::try_from(v).ok());
    sdk::ConnectionTrackingSpecificationRequest::builder()
        .set_tcp_established_timeout(secs(ct.tcp_established_timeout))
        .set_udp_stream_timeout(secs(ct.udp_stream_timeout))
        .set_udp_timeout(secs(ct.udp_timeout))
        .build()
}

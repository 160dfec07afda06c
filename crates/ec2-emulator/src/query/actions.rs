//! Dispatch of one EC2 Query API request to the model, and the mutating actions.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::model::{
    AssignRequest, ConnTrack, CreateEni, Ec2Error, ErrorCode, InstanceTypeInfo, World,
};

use super::describe;
use super::params::Params;
use super::render;
use super::xml::Xml;

/// The actions the emulator answers (what the agent's `Ec2` trait uses).
pub const ACTIONS: [&str; 20] = [
    "DescribeNetworkInterfaces",
    "DescribeInstances",
    "DescribeInstanceTypes",
    "DescribeSubnets",
    "DescribeSecurityGroups",
    "CreateNetworkInterface",
    "AttachNetworkInterface",
    "DetachNetworkInterface",
    "DeleteNetworkInterface",
    "ModifyNetworkInterfaceAttribute",
    "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses",
    "AssignIpv6Addresses",
    "UnassignIpv6Addresses",
    "CreateTags",
    "DeleteTags",
    "TerminateInstances",
    "AssociateTrunkInterface",
    "DisassociateTrunkInterface",
    "DescribeTrunkInterfaceAssociations",
];

/// Answers one request: the XML body of a successful response, or the model's error.
pub fn handle(
    world: &mut World,
    params: &Params,
    catalog: &dyn Fn(&str) -> Option<InstanceTypeInfo>,
    request_id: &str,
) -> Result<String, Ec2Error> {
    match params.action()? {
        "DescribeNetworkInterfaces" => {
            describe::describe_network_interfaces(world, params, request_id)
        }
        "DescribeInstances" => describe::describe_instances(world, params, request_id),
        "DescribeInstanceTypes" => describe::describe_instance_types(params, catalog, request_id),
        "DescribeSubnets" => describe::describe_subnets(world, params, request_id),
        "DescribeSecurityGroups" => describe::describe_security_groups(world, params, request_id),
        "CreateNetworkInterface" => create_network_interface(world, params, request_id),
        "AttachNetworkInterface" => attach_network_interface(world, params, request_id),
        "DetachNetworkInterface" => detach_network_interface(world, params, request_id),
        "DeleteNetworkInterface" => delete_network_interface(world, params, request_id),
        "ModifyNetworkInterfaceAttribute" => {
            modify_network_interface_attribute(world, params, request_id)
        }
        "AssignPrivateIpAddresses" => assign_private_ip_addresses(world, params, request_id),
        "UnassignPrivateIpAddresses" => unassign_private_ip_addresses(world, params, request_id),
        "AssignIpv6Addresses" => super::ipv6_actions::assign(world, params, request_id),
        "UnassignIpv6Addresses" => super::ipv6_actions::unassign(world, params, request_id),
        "CreateTags" => create_tags(world, params, request_id),
        "DeleteTags" => delete_tags(world, params, request_id),
        "TerminateInstances" => terminate_instances(world, params, request_id),
        "AssociateTrunkInterface" => super::trunk_actions::associate(world, params, request_id),
        "DisassociateTrunkInterface" => {
            super::trunk_actions::disassociate(world, params, request_id)
        }
        "DescribeTrunkInterfaceAssociations" => {
            super::trunk_actions::describe(world, params, request_id)
        }
        other => Err(Ec2Error::new(
            ErrorCode::InvalidParameterValue,
            format!("The action {other} is not valid for this web service."),
        )),
    }
}

/// The body of an action that answers only `<return>true</return>`.
pub(super) fn return_true(x: &mut Xml) {
    x.leaf("return", true);
}

fn create_network_interface(
    world: &mut World,
    params: &Params,
    request_id: &str,
) -> Result<String, Ec2Error> {
    let req = CreateEni {
        subnet_id: params.required("SubnetId")?.to_string(),
        groups: params.list("SecurityGroupId"),
        description: params.get("Description").unwrap_or_default().to_string(),
        secondary_ip_count: params.u32("SecondaryPrivateIpAddressCount")?.unwrap_or(0),
        prefix_count: params.u32("Ipv4PrefixCount")?.unwrap_or(0),
        ipv6_address_count: params.u32("Ipv6AddressCount")?,
        tags: params.tag_specifications("network-interface"),
        conntrack: ConnTrack {
            tcp_established_timeout: params
                .u32("ConnectionTrackingSpecification.TcpEstablishedTimeout")?,
            udp_stream_timeout: params.u32("ConnectionTrackingSpecification.UdpStreamTimeout")?,
            udp_timeout: params.u32("ConnectionTrackingSpecification.UdpTimeout")?,
        },
        interface_type: params.get("InterfaceType").map(str::to_string),
    };
    let id = world.create_network_interface(&req)?;
    let world = &*world;
    let eni = world.eni(&id)?;
    Ok(Xml::response("CreateNetworkInterface", request_id, |x| {
        x.node("networkInterface", |x| render::eni_fields(x, world, eni));
    }))
}

fn attach_network_interface(
    world: &mut World,
    params: &Params,
    request_id: &str,
) -> Result<String, Ec2Error> {
    let eni = params.required("NetworkInterfaceId")?;
    let instance = params.required("InstanceId")?;
    let device = params
        .u32("DeviceIndex")?
        .ok_or_else(|| missing("DeviceIndex"))?;
    let card = params.u32("NetworkCardIndex")?.unwrap_or(0);
    let attachment = world.attach_network_interface(eni, instance, device, card)?;
    Ok(Xml::response("AttachNetworkInterface", request_id, |x| {
        x.leaf("attachmentId", attachment)
            .leaf("networkCardIndex", card);
    }))
}

fn detach_network_interface(
    world: &mut World,
    params: &Params,
    request_id: &str,
) -> Result<String, Ec2Error> {
    world.detach_network_interface(params.required("AttachmentId")?)?;
    Ok(Xml::response(
        "DetachNetworkInterface",
        request_id,
        return_true,
    ))
}

fn delete_network_interface(
    world: &mut World,
    params: &Params,
    request_id: &str,
) -> Result<String, Ec2Error> {
    world.delete_network_interface(params.required("NetworkInterfaceId")?)?;
    Ok(Xml::response(
        "DeleteNetworkInterface",
        request_id,
        return_true,
    ))
}

/// Changes delete-on-termination, the security groups and/or source/dest check; at least
/// one must be given.
fn modify_network_interface_attribute(
    world: &mut World,
    params: &Params,
    request_id: &str,
) -> Result<String, Ec2Error> {
    let eni = params.required("NetworkInterfaceId")?.to_string();
    let mut changed = false;
    if let Some(attachment) = params.get("Attachment.AttachmentId") {
        let value = params
            .bool("Attachment.DeleteOnTermination")?
            .ok_or_else(|| missing("Attachment.DeleteOnTermination"))?;
        world.set_delete_on_termination(&eni, attachment, value)?;
        changed = true;
    }
    let groups = params.list("SecurityGroupId");
    if !groups.is_empty() {
        world.set_groups(&eni, &groups)?;
        changed = true;
    }
    if let Some(value) = params.bool("SourceDestCheck.Value")? {
        world.eni_mut(&eni)?.source_dest_check = value;
        changed = true;
    }
    if !changed {
        return Err(missing("Attachment, SecurityGroupId or SourceDestCheck"));
    }
    Ok(Xml::response(
        "ModifyNetworkInterfaceAttribute",
        request_id,
        return_true,
    ))
}

/// Exactly one of explicit addresses, a secondary-IP count or a prefix count.
fn assign_request(params: &Params) -> Result<AssignRequest, Ec2Error> {
    let ips = parse_all::<Ipv4Addr>(params, "PrivateIpAddress")?;
    let count = params.u32("SecondaryPrivateIpAddressCount")?;
    let prefixes = params.u32("Ipv4PrefixCount")?;
    match (ips.is_empty(), count, prefixes) {
        (false, None, None) => Ok(AssignRequest::Ips(ips)),
        (true, Some(n), None) => Ok(AssignRequest::Count(n)),
        (true, None, Some(n)) => Ok(AssignRequest::PrefixCount(n)),
        (true, None, None) => Err(missing(
            "PrivateIpAddress, SecondaryPrivateIpAddressCount or Ipv4PrefixCount",
        )),
        _ => Err(Ec2Error::new(
            ErrorCode::InvalidParameterCombination,
            "Only one of PrivateIpAddress, SecondaryPrivateIpAddressCount and Ipv4PrefixCount may be given",
        )),
    }
}

fn assign_private_ip_addresses(
    world: &mut World,
    params: &Params,
    request_id: &str,
) -> Result<String, Ec2Error> {
    let eni = params.required("NetworkInterfaceId")?.to_string();
    let req = assign_request(params)?;
    let got = world.assign_private_ip_addresses(&eni, &req)?;
    Ok(Xml::response("AssignPrivateIpAddresses", request_id, |x| {
        x.leaf("networkInterfaceId", &eni).leaf("return", true);
        x.items("assignedPrivateIpAddressesSet", &got.ips, |x, ip| {
            x.leaf("privateIpAddress", ip);
        });
        x.items("assignedIpv4PrefixSet", &got.prefixes, |x, p| {
            x.leaf("ipv4Prefix", p);
        });
    }))
}

fn unassign_private_ip_addresses(
    world: &mut World,
    params: &Params,
    request_id: &str,
) -> Result<String, Ec2Error> {
    let eni = params.required("NetworkInterfaceId")?;
    let ips = parse_all::<Ipv4Addr>(params, "PrivateIpAddress")?;
    let prefixes = parse_all::<Ipv4Net>(params, "Ipv4Prefix")?;
    world.unassign_private_ip_addresses(eni, &ips, &prefixes)?;
    Ok(Xml::response(
        "UnassignPrivateIpAddresses",
        request_id,
        return_true,
    ))
}

fn create_tags(world: &mut World, params: &Params, request_id: &str) -> Result<String, Ec2Error> {
    let resources = params.list("ResourceId");
    if resources.is_empty() {
        return Err(missing("ResourceId"));
    }
    world.create_tags(&resources, &params.tags("Tag"))?;
    Ok(Xml::response("CreateTags", request_id, return_true))
}

fn delete_tags(world: &mut World, params: &Params, request_id: &str) -> Result<String, Ec2Error> {
    let resources = params.list("ResourceId");
    let keys: Vec<String> = params.tags("Tag").into_keys().collect();
    world.delete_tags(&resources, &keys)?;
    Ok(Xml::response("DeleteTags", request_id, return_true))
}

fn terminate_instances(
    world: &mut World,
    params: &Params,
    request_id: &str,
) -> Result<String, Ec2Error> {
    for id in params.list("InstanceId") {
        world.terminate_instance(&id)?;
    }
    Ok(Xml::response("TerminateInstances", request_id, |x| {
        x.node("instancesSet", |_| {});
    }))
}

pub(super) fn missing(name: &str) -> Ec2Error {
    Ec2Error::new(
        ErrorCode::MissingParameter,
        format!("The request must contain the parameter {name}"),
    )
}

pub(super) fn parse_all<T: std::str::FromStr>(
    params: &Params,
    prefix: &str,
) -> Result<Vec<T>, Ec2Error> {
    params
        .list(prefix)
        .iter()
        .map(|v| {
            v.parse().map_err(|_| {
                Ec2Error::invalid(format!("Value ({v}) for parameter {prefix} is invalid."))
            })
        })
        .collect()
}

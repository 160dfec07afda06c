//! `AssignIpv6Addresses` and `UnassignIpv6Addresses` (docs/ec2-emulator.md "IPv6").

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use crate::model::{AssignIpv6, Ec2Error, World};

use super::actions::{parse_all, return_true};
use super::params::Params;
use super::xml::Xml;

/// `AssignIpv6Addresses`: `Ipv6AddressCount` or `Ipv6Addresses.N`, and/or
/// `Ipv6PrefixCount` or `Ipv6Prefix.N`; answers only the new ones.
pub fn assign(world: &mut World, params: &Params, request_id: &str) -> Result<String, Ec2Error> {
    let eni = params.required("NetworkInterfaceId")?.to_string();
    let req = AssignIpv6 {
        address_count: params.u32("Ipv6AddressCount")?.unwrap_or(0),
        addresses: parse_all::<Ipv6Addr>(params, "Ipv6Addresses")?,
        prefix_count: params.u32("Ipv6PrefixCount")?.unwrap_or(0),
        prefixes: parse_all::<Ipv6Net>(params, "Ipv6Prefix")?,
    };
    let got = world.assign_ipv6_addresses(&eni, &req)?;
    Ok(Xml::response("AssignIpv6Addresses", request_id, |x| {
        x.leaf("networkInterfaceId", &eni);
        x.items("assignedIpv6Addresses", &got.addresses, |x, a| {
            x.text(a);
        });
        x.items("assignedIpv6PrefixSet", &got.prefixes, |x, p| {
            x.text(p);
        });
    }))
}

/// `UnassignIpv6Addresses` with `Ipv6Addresses.N` and/or `Ipv6Prefix.N`.
pub fn unassign(world: &mut World, params: &Params, request_id: &str) -> Result<String, Ec2Error> {
    let eni = params.required("NetworkInterfaceId")?.to_string();
    let addresses = parse_all::<Ipv6Addr>(params, "Ipv6Addresses")?;
    let prefixes = parse_all::<Ipv6Net>(params, "Ipv6Prefix")?;
    world.unassign_ipv6_addresses(&eni, &addresses, &prefixes)?;
    Ok(Xml::response("UnassignIpv6Addresses", request_id, |x| {
        return_true(x);
        x.leaf("networkInterfaceId", &eni);
        x.items("unassignedIpv6Addresses", &addresses, |x, a| {
            x.text(a);
        });
        x.items("unassignedIpv6PrefixSet", &prefixes, |x, p| {
            x.text(p);
        });
    }))
}

//! Describe actions with EC2's filters and pagination.

use crate::model::{Ec2Error, Eni, InstanceTypeInfo, Subnet, Tags, World};

use super::params::{Filter, Params};
use super::render;
use super::xml::Xml;

/// `*` and `?` wildcards as EC2 filters accept them.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

fn any_value(filter: &Filter, value: Option<&str>) -> bool {
    value.is_some_and(|v| filter.values.iter().any(|f| wildcard_match(f, v)))
}

fn tag_filter(filter: &Filter, tags: &Tags) -> Option<bool> {
    if filter.name == "tag-key" {
        return Some(tags.keys().any(|k| any_value(filter, Some(k))));
    }
    let key = filter.name.strip_prefix("tag:")?;
    Some(any_value(filter, tags.get(key).map(String::as_str)))
}

fn unknown_filter(name: &str) -> Ec2Error {
    Ec2Error::invalid(format!("The filter '{name}' is invalid"))
}

fn eni_matches(eni: &Eni, filter: &Filter) -> Result<bool, Ec2Error> {
    if let Some(m) = tag_filter(filter, &eni.tags) {
        return Ok(m);
    }
    let att = eni.attachment.as_ref();
    let value: Option<String> = match filter.name.as_str() {
        "network-interface-id" => Some(eni.id.clone()),
        "attachment.instance-id" => att.map(|a| a.instance_id.clone()),
        "attachment.attachment-id" => att.map(|a| a.id.clone()),
        "attachment.status" => att.map(|_| "attached".to_string()),
        "attachment.device-index" => att.map(|a| a.device_index.to_string()),
        "status" => Some(eni.status().as_str().to_string()),
        "vpc-id" => Some(eni.vpc_id.clone()),
        "subnet-id" => Some(eni.subnet_id.clone()),
        "availability-zone" => Some(eni.availability_zone.clone()),
        "description" => Some(eni.description.clone()),
        "mac-address" => Some(eni.mac.clone()),
        "interface-type" => Some(eni.interface_type.clone()),
        "private-ip-address" => {
            return Ok(eni
                .private_ips()
                .iter()
                .any(|ip| any_value(filter, Some(&ip.to_string()))));
        }
        "ipv6-addresses.ipv6-address" => {
            return Ok(eni
                .ipv6_addresses
                .iter()
                .any(|ip| any_value(filter, Some(&ip.to_string()))));
        }
        other => return Err(unknown_filter(other)),
    };
    Ok(any_value(filter, value.as_deref()))
}

fn subnet_matches(subnet: &Subnet, filter: &Filter) -> Result<bool, Ec2Error> {
    if let Some(m) = tag_filter(filter, &subnet.tags) {
        return Ok(m);
    }
    let value = match filter.name.as_str() {
        "vpc-id" => subnet.vpc_id.clone(),
        "availability-zone" => subnet.availability_zone.clone(),
        "subnet-id" => subnet.id.clone(),
        "cidr-block" | "cidr" => subnet.cidr().to_string(),
        "ipv6-cidr-block-association.ipv6-cidr-block" => {
            return Ok(any_value(
                filter,
                subnet.ipv6_cidr().map(|c| c.to_string()).as_deref(),
            ));
        }
        other => return Err(unknown_filter(other)),
    };
    Ok(any_value(filter, Some(&value)))
}

fn all_match<T>(
    item: &T,
    filters: &[Filter],
    matches: fn(&T, &Filter) -> Result<bool, Ec2Error>,
) -> Result<bool, Ec2Error> {
    for f in filters {
        if !matches(item, f)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `MaxResults`/`NextToken` paging over an already filtered list.
fn page<T>(items: Vec<T>, params: &Params) -> Result<(Vec<T>, Option<String>), Ec2Error> {
    let start: usize = match params.get("NextToken") {
        Some(t) => t
            .parse()
            .map_err(|_| Ec2Error::invalid(format!("The token '{t}' is invalid")))?,
        None => 0,
    };
    let Some(max) = params.u32("MaxResults")? else {
        return Ok((items.into_iter().skip(start).collect(), None));
    };
    if !(5..=1000).contains(&max) {
        return Err(Ec2Error::invalid(format!(
            "Value ({max}) for parameter maxResults is invalid. Expecting a value between 5 and 1000."
        )));
    }
    let end = start + max as usize;
    let next = (items.len() > end).then(|| end.to_string());
    Ok((
        items.into_iter().skip(start).take(max as usize).collect(),
        next,
    ))
}

pub fn describe_network_interfaces(
    world: &World,
    params: &Params,
    request_id: &str,
) -> Result<String, Ec2Error> {
    let ids = params.list("NetworkInterfaceId");
    for id in &ids {
        world.eni(id)?;
    }
    let filters = params.filters();
    let mut found = Vec::new();
    for eni in world.enis.values() {
        if (ids.is_empty() || ids.contains(&eni.id)) && all_match(eni, &filters, eni_matches)? {
            found.push(eni);
        }
    }
    let (found, next) = page(found, params)?;
    Ok(Xml::response(
        "DescribeNetworkInterfaces",
        request_id,
        |x| {
            x.items("networkInterfaceSet", found, |x, eni| {
                render::eni_fields(x, world, eni)
            });
            if let Some(next) = next {
                x.leaf("nextToken", next);
            }
        },
    ))
}

pub fn describe_subnets(
    world: &World,
    params: &Params,
    request_id: &str,
) -> Result<String, Ec2Error> {
    let ids = params.list("SubnetId");
    for id in &ids {
        if !world.subnets.contains_key(id) {
            return Err(Ec2Error::new(
                crate::model::ErrorCode::InvalidSubnetIdNotFound,
                format!("The subnet ID '{id}' does not exist"),
            ));
        }
    }
    let filters = params.filters();
    let mut found = Vec::new();
    for s in world.subnets.values() {
        if (ids.is_empty() || ids.contains(&s.id)) && all_match(s, &filters, subnet_matches)? {
            found.push(s);
        }
    }
    Ok(Xml::response("DescribeSubnets", request_id, |x| {
        x.items("subnetSet", found, render::subnet_fields);
    }))
}

pub fn describe_instances(
    world: &World,
    params: &Params,
    request_id: &str,
) -> Result<String, Ec2Error> {
    let mut ids = params.list("InstanceId");
    for f in params.filters() {
        match f.name.as_str() {
            "instance-id" => ids.extend(f.values),
            other => return Err(unknown_filter(other)),
        }
    }
    let mut found = Vec::new();
    for id in &ids {
        found.push(world.instance(id)?);
    }
    if ids.is_empty() {
        found.extend(world.instances.values());
    }
    Ok(Xml::response("DescribeInstances", request_id, |x| {
        x.items("reservationSet", found, |x, instance| {
            x.leaf("reservationId", format!("r-{}", &instance.id[2..]))
                .leaf("ownerId", render::OWNER_ID);
            x.items("instancesSet", [instance], |x, i| {
                render::instance_fields(x, world, i)
            });
        });
    }))
}

pub fn describe_instance_types(
    params: &Params,
    catalog: &dyn Fn(&str) -> Option<InstanceTypeInfo>,
    request_id: &str,
) -> Result<String, Ec2Error> {
    let names = params.list("InstanceType");
    let mut found = Vec::new();
    for name in &names {
        found.push(catalog(name).ok_or_else(|| {
            Ec2Error::new(
                crate::model::ErrorCode::InvalidInstanceType,
                format!("The following supplied instance types do not exist: [{name}]"),
            )
        })?);
    }
    Ok(Xml::response("DescribeInstanceTypes", request_id, |x| {
        x.items("instanceTypeSet", &found, |x, ty| {
            render::instance_type_fields(x, ty)
        });
    }))
}

pub fn describe_security_groups(
    world: &World,
    params: &Params,
    request_id: &str,
) -> Result<String, Ec2Error> {
    let ids = params.list("GroupId");
    let found: Vec<_> = world
        .groups
        .values()
        .filter(|g| ids.is_empty() || ids.contains(&g.id))
        .collect();
    Ok(Xml::response("DescribeSecurityGroups", request_id, |x| {
        x.items("securityGroupInfo", found, |x, g| {
            x.leaf("ownerId", render::OWNER_ID)
                .leaf("groupId", &g.id)
                .leaf("groupName", &g.name)
                .leaf("groupDescription", &g.name)
                .leaf("vpcId", &g.vpc_id);
        });
    }))
}

/// Whether a Describe call names neither IDs nor filters (the agent must never send one).
pub fn is_unfiltered(params: &Params) -> bool {
    let action = params.get("Action").unwrap_or_default();
    let list = match action {
        "DescribeNetworkInterfaces" => "NetworkInterfaceId",
        "DescribeInstances" => "InstanceId",
        "DescribeSubnets" => "SubnetId",
        "DescribeInstanceTypes" => "InstanceType",
        _ => return false,
    };
    params.list(list).is_empty() && params.filters().is_empty()
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn wildcards_match_like_ec2_filters() {
        assert!(wildcard_match("aws-K8S-*", "aws-K8S-i-123"));
        assert!(!wildcard_match("aws-K8S-*", "other"));
        assert!(wildcard_match("eni-?", "eni-1"));
        assert!(wildcard_match("exact", "exact"));
    }
}

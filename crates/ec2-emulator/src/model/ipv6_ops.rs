//! IPv6 in the model: CIDRs on the VPC (/56) and subnets (/64), and the ENI address
//! actions `AssignIpv6Addresses` / `UnassignIpv6Addresses` with EC2's limits and errors
//! (docs/ec2-emulator.md "IPv6").

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::errors::{Ec2Error, ErrorCode};
use super::ipv6_pool::{Claim6Error, Ipv6Pool};
use super::world::World;

/// What `AssignIpv6Addresses` asks for: a count or a list of addresses, and/or a count or
/// a list of /80 prefixes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignIpv6 {
    /// `Ipv6AddressCount`
    pub address_count: u32,
    /// `Ipv6Addresses.N`
    pub addresses: Vec<Ipv6Addr>,
    /// `Ipv6PrefixCount`
    pub prefix_count: u32,
    /// `Ipv6Prefix.N`
    pub prefixes: Vec<Ipv6Net>,
}

impl AssignIpv6 {
    fn addresses_wanted(&self) -> u32 {
        self.address_count + self.addresses.len() as u32
    }

    fn prefixes_wanted(&self) -> u32 {
        self.prefix_count + self.prefixes.len() as u32
    }

    /// A count and a list of the same kind cannot go together; something must be asked.
    fn check(&self) -> Result<(), Ec2Error> {
        if (self.address_count > 0 && !self.addresses.is_empty())
            || (self.prefix_count > 0 && !self.prefixes.is_empty())
        {
            return Err(Ec2Error::new(
                ErrorCode::InvalidParameterCombination,
                "Ipv6AddressCount cannot be given with Ipv6Addresses, nor Ipv6PrefixCount with Ipv6Prefix",
            ));
        }
        if self.addresses_wanted() + self.prefixes_wanted() == 0 {
            return Err(Ec2Error::new(
                ErrorCode::MissingParameter,
                "Either Ipv6AddressCount, Ipv6Addresses, Ipv6PrefixCount or Ipv6Prefix must be specified",
            ));
        }
        Ok(())
    }
}

/// What `AssignIpv6Addresses` granted (only the new ones, as EC2 answers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignedIpv6 {
    pub addresses: Vec<Ipv6Addr>,
    pub prefixes: Vec<Ipv6Net>,
}

/// Over the per-ENI IPv6 limit. EC2's message for this case is "Address count N per
/// interface exceeds the limit for <type>"; the code is our choice (docs/ec2-emulator.md).
pub(crate) fn ipv6_limit(count: u32, instance_type: &str) -> Ec2Error {
    Ec2Error::invalid(format!(
        "Address count {count} per interface exceeds the limit for {instance_type}"
    ))
}

fn no_ipv6_cidr(subnet_id: &str) -> Ec2Error {
    Ec2Error::invalid(format!(
        "The subnet '{subnet_id}' does not have an IPv6 CIDR block"
    ))
}

fn claim_error(what: impl std::fmt::Display, subnet_id: &str, e: Claim6Error) -> Ec2Error {
    let code = match e {
        Claim6Error::InUse => ErrorCode::InvalidIpAddressInUse,
        _ => ErrorCode::InvalidParameterValue,
    };
    Ec2Error::new(
        code,
        format!("{what} cannot be assigned in subnet '{subnet_id}': {e}"),
    )
}

impl World {
    /// Associates an IPv6 /56 with a VPC (`AssociateVpcCidrBlock` with
    /// `AmazonProvidedIpv6CidrBlock`, here with the block given).
    pub fn associate_vpc_ipv6_cidr(&mut self, vpc_id: &str, cidr: Ipv6Net) -> Result<(), Ec2Error> {
        if cidr.prefix_len() != 56 {
            return Err(Ec2Error::invalid(format!(
                "The IPv6 CIDR '{cidr}' is invalid: VPC IPv6 blocks are /56"
            )));
        }
        let vpc = self.vpcs.get_mut(vpc_id).ok_or_else(|| {
            Ec2Error::new(
                ErrorCode::InvalidVpcIdNotFound,
                format!("The vpc ID '{vpc_id}' does not exist"),
            )
        })?;
        let cidr = cidr.trunc();
        if vpc.ipv6_cidrs.iter().any(|c| c.contains(&cidr)) {
            return Err(Ec2Error::invalid(format!(
                "The CIDR '{cidr}' overlaps a CIDR of {vpc_id}"
            )));
        }
        vpc.ipv6_cidrs.push(cidr);
        Ok(())
    }

    /// Associates an IPv6 /64 with a subnet (`AssociateSubnetCidrBlock`): inside one of
    /// the VPC's /56s, used by no other subnet, one per subnet.
    pub fn associate_subnet_ipv6_cidr(
        &mut self,
        subnet_id: &str,
        cidr: Ipv6Net,
    ) -> Result<(), Ec2Error> {
        let subnet = self
            .subnets
            .get(subnet_id)
            .ok_or_else(|| Ec2Error::subnet_not_found(subnet_id))?;
        let vpc_id = subnet.vpc_id.clone();
        let in_vpc = self
            .vpcs
            .get(&vpc_id)
            .is_some_and(|v| v.ipv6_cidrs.iter().any(|c| c.contains(&cidr)));
        if subnet.ipv6.is_some() || !in_vpc {
            return Err(Ec2Error::invalid(format!(
                "The IPv6 CIDR '{cidr}' is invalid for subnet '{subnet_id}'"
            )));
        }
        let taken = self
            .subnets
            .values()
            .any(|s| s.vpc_id == vpc_id && s.ipv6_cidr() == Some(cidr.trunc()));
        if taken {
            return Err(Ec2Error::invalid(format!(
                "The CIDR '{cidr}' conflicts with another subnet"
            )));
        }
        let pool = Ipv6Pool::new(cidr).ok_or_else(|| {
            Ec2Error::invalid(format!(
                "The IPv6 CIDR '{cidr}' is invalid: subnets are /64"
            ))
        })?;
        if let Some(s) = self.subnets.get_mut(subnet_id) {
            s.ipv6 = Some(pool);
        }
        Ok(())
    }

    /// Makes a VPC dual-stack the way an EKS IPv6 cluster's VPC is: an Amazon-style /56
    /// (`2600:1f14:c0de:NN00::/56`, NN counting VPCs made dual-stack) and, for each of its
    /// subnets in ID order, the next /64 with `AssignIpv6AddressOnCreation`. ENIs that
    /// already exist keep no IPv6 address. Answers the /56.
    pub fn enable_ipv6(&mut self, vpc_id: &str) -> Result<Ipv6Net, Ec2Error> {
        let index = self
            .vpcs
            .values()
            .filter(|v| !v.ipv6_cidrs.is_empty())
            .count() as u128;
        let base = u128::from(Ipv6Addr::new(0x2600, 0x1f14, 0xc0de, 0, 0, 0, 0, 0));
        let block = Ipv6Net::new(Ipv6Addr::from(base + (index << 72)), 56)
            .map_err(|e| Ec2Error::invalid(e.to_string()))?;
        self.associate_vpc_ipv6_cidr(vpc_id, block)?;
        let subnets: Vec<String> = self
            .subnets
            .values()
            .filter(|s| s.vpc_id == vpc_id && s.ipv6.is_none())
            .map(|s| s.id.clone())
            .collect();
        for (k, id) in subnets.iter().enumerate() {
            let net = Ipv6Net::new(
                Ipv6Addr::from(u128::from(block.network()) + ((k as u128) << 64)),
                64,
            )
            .map_err(|e| Ec2Error::invalid(e.to_string()))?;
            self.associate_subnet_ipv6_cidr(id, net)?;
            if let Some(s) = self.subnets.get_mut(id) {
                s.assign_ipv6_on_creation = true;
            }
        }
        Ok(block)
    }

    /// IPv6 addresses at ENI creation: `count`, or one if the subnet assigns on creation.
    pub(crate) fn ipv6_on_creation(
        &mut self,
        eni_id: &str,
        count: Option<u32>,
    ) -> Result<(), Ec2Error> {
        let subnet_id = self.eni(eni_id)?.subnet_id.clone();
        let auto = self
            .subnets
            .get(&subnet_id)
            .is_some_and(|s| s.assign_ipv6_on_creation);
        let count = count.unwrap_or(u32::from(auto));
        if count > 0 {
            let req = AssignIpv6 {
                address_count: count,
                ..Default::default()
            };
            self.grant_ipv6(eni_id, &req)?;
        }
        Ok(())
    }

    /// `AssignIpv6Addresses`: all or nothing, limited per ENI by the attached instance
    /// type (addresses and /80 prefixes together); prefixes only on Nitro.
    pub fn assign_ipv6_addresses(
        &mut self,
        eni_id: &str,
        req: &AssignIpv6,
    ) -> Result<AssignedIpv6, Ec2Error> {
        req.check()?;
        let eni = self.eni(eni_id)?;
        if let Some(att) = &eni.attachment {
            let ty = &self.instance(&att.instance_id)?.instance_type;
            let after = eni.ipv6_slots() + req.addresses_wanted() + req.prefixes_wanted();
            if after > ty.ipv6_per_eni() {
                return Err(ipv6_limit(after, &ty.name));
            }
            if req.prefixes_wanted() > 0 && !ty.supports_prefixes() {
                return Err(Ec2Error::invalid(format!(
                    "Prefix delegation is not supported for instance type {}",
                    ty.name
                )));
            }
        }
        self.grant_ipv6(eni_id, req)
    }

    /// Takes IPv6 addresses and prefixes from the ENI's subnet, all or none.
    fn grant_ipv6(&mut self, eni_id: &str, req: &AssignIpv6) -> Result<AssignedIpv6, Ec2Error> {
        let subnet_id = self.eni(eni_id)?.subnet_id.clone();
        let pool = self
            .subnets
            .get_mut(&subnet_id)
            .ok_or_else(|| Ec2Error::subnet_not_found(&subnet_id))?
            .ipv6
            .as_mut()
            .ok_or_else(|| no_ipv6_cidr(&subnet_id))?;
        let mut got = AssignedIpv6::default();
        let outcome = take_from(pool, req, &subnet_id, &mut got);
        if let Err(err) = outcome {
            for ip in &got.addresses {
                pool.release_address(*ip);
            }
            for p in &got.prefixes {
                pool.release_prefix(*p);
            }
            return Err(err);
        }
        let eni = self.eni_mut(eni_id)?;
        eni.ipv6_addresses.extend(got.addresses.iter().copied());
        eni.ipv6_prefixes.extend(got.prefixes.iter().copied());
        Ok(got)
    }

    /// `UnassignIpv6Addresses`: every address and prefix must be on the ENI; nothing is
    /// released unless all are.
    pub fn unassign_ipv6_addresses(
        &mut self,
        eni_id: &str,
        addresses: &[Ipv6Addr],
        prefixes: &[Ipv6Net],
    ) -> Result<(), Ec2Error> {
        let eni = self.eni(eni_id)?;
        if addresses.is_empty() && prefixes.is_empty() {
            return Err(Ec2Error::new(
                ErrorCode::MissingParameter,
                "Either Ipv6Addresses or Ipv6Prefix must be specified",
            ));
        }
        if addresses.iter().any(|a| !eni.ipv6_addresses.contains(a))
            || prefixes.iter().any(|p| !eni.ipv6_prefixes.contains(p))
        {
            return Err(Ec2Error::invalid(format!(
                "Some of the specified IPv6 addresses or prefixes are not assigned to interface {eni_id}"
            )));
        }
        let subnet_id = eni.subnet_id.clone();
        let eni = self.eni_mut(eni_id)?;
        eni.ipv6_addresses.retain(|a| !addresses.contains(a));
        for p in prefixes {
            eni.ipv6_prefixes.remove(p);
        }
        if let Some(pool) = self
            .subnets
            .get_mut(&subnet_id)
            .and_then(|s| s.ipv6.as_mut())
        {
            for a in addresses {
                pool.release_address(*a);
            }
            for p in prefixes {
                pool.release_prefix(*p);
            }
        }
        Ok(())
    }

    /// Every IPv6 address and prefix on every ENI: used by tests to prove that nothing is
    /// on two ENIs and that no address lies inside a delegated prefix.
    pub fn all_assigned_ipv6(&self) -> (Vec<Ipv6Addr>, Vec<Ipv6Net>) {
        let mut addrs = Vec::new();
        let mut prefixes = Vec::new();
        for eni in self.enis.values() {
            addrs.extend(eni.ipv6_addresses.iter().copied());
            prefixes.extend(eni.ipv6_prefixes.iter().copied());
        }
        (addrs, prefixes)
    }
}

/// Fills `got` from `pool` as `req` asks; stops at the first failure (the caller undoes).
fn take_from(
    pool: &mut Ipv6Pool,
    req: &AssignIpv6,
    subnet_id: &str,
    got: &mut AssignedIpv6,
) -> Result<(), Ec2Error> {
    for ip in &req.addresses {
        pool.claim_address(*ip)
            .map_err(|e| claim_error(ip, subnet_id, e))?;
        got.addresses.push(*ip);
    }
    for _ in 0..req.address_count {
        let ip = pool.allocate_address().ok_or_else(|| {
            Ec2Error::new(
                ErrorCode::InsufficientFreeAddressesInSubnet,
                format!("There are not enough free IPv6 addresses in subnet '{subnet_id}' to satisfy the requested number of addresses."),
            )
        })?;
        got.addresses.push(ip);
    }
    for p in &req.prefixes {
        pool.claim_prefix(*p)
            .map_err(|e| claim_error(p, subnet_id, e))?;
        got.prefixes.push(*p);
    }
    for _ in 0..req.prefix_count {
        let p = pool.allocate_prefix().ok_or_else(|| {
            Ec2Error::new(
                ErrorCode::InsufficientCidrBlocks,
                format!("The specified subnet '{subnet_id}' does not have enough free cidr blocks to satisfy the request."),
            )
        })?;
        got.prefixes.push(p);
    }
    Ok(())
}

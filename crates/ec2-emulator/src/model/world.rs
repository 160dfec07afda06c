//! The model's state and the set-up operations (VPC, subnets, security groups, instances).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::address_pool::AddressPool;
use super::errors::{Ec2Error, ErrorCode};
use super::resources::{
    Attachment, Eni, Instance, InstanceTypeInfo, SecurityGroup, Subnet, Tags, Vpc,
};

/// Everything the emulated region holds. IDs are deterministic (a counter), so tests and
/// seeded states are reproducible.
#[derive(Debug, Clone, Default)]
pub struct World {
    next_id: u64,
    /// Model time in Unix seconds, set by the caller (the server) before each operation.
    pub now: u64,
    pub vpcs: BTreeMap<String, Vpc>,
    pub subnets: BTreeMap<String, Subnet>,
    pub groups: BTreeMap<String, SecurityGroup>,
    pub instances: BTreeMap<String, Instance>,
    pub enis: BTreeMap<String, Eni>,
    /// Branch ENIs on trunk ENIs, by association id (`model::trunk`).
    pub trunk_associations: BTreeMap<String, super::trunk::TrunkAssociation>,
}

impl World {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn fresh_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:017x}", self.next_id)
    }

    pub(crate) fn fresh_mac(&mut self) -> String {
        self.next_id += 1;
        let b = self.next_id.to_be_bytes();
        format!(
            "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[3], b[4], b[5], b[6], b[7]
        )
    }

    pub fn create_vpc(&mut self, cidr: Ipv4Net) -> String {
        let id = self.fresh_id("vpc");
        self.vpcs.insert(
            id.clone(),
            Vpc {
                id: id.clone(),
                cidrs: vec![cidr.trunc()],
                ipv6_cidrs: Vec::new(),
            },
        );
        id
    }

    /// Associates another IPv4 CIDR with a VPC (`AssociateVpcCidrBlock`); it must not
    /// overlap the VPC's other CIDRs.
    pub fn associate_vpc_cidr(&mut self, vpc_id: &str, cidr: Ipv4Net) -> Result<(), Ec2Error> {
        let vpc = self.vpcs.get_mut(vpc_id).ok_or_else(|| {
            Ec2Error::new(
                ErrorCode::InvalidVpcIdNotFound,
                format!("The vpc ID '{vpc_id}' does not exist"),
            )
        })?;
        let cidr = cidr.trunc();
        if vpc
            .cidrs
            .iter()
            .any(|c| c.contains(&cidr) || cidr.contains(c))
        {
            return Err(Ec2Error::invalid(format!(
                "The CIDR '{cidr}' overlaps a CIDR of {vpc_id}"
            )));
        }
        vpc.cidrs.push(cidr);
        Ok(())
    }

    /// Adds a subnet; it must lie inside one of the VPC's CIDRs and overlap no other subnet.
    pub fn create_subnet(
        &mut self,
        vpc_id: &str,
        cidr: Ipv4Net,
        availability_zone: &str,
    ) -> Result<String, Ec2Error> {
        let vpc = self.vpcs.get(vpc_id).ok_or_else(|| {
            Ec2Error::new(
                ErrorCode::InvalidVpcIdNotFound,
                format!("The vpc ID '{vpc_id}' does not exist"),
            )
        })?;
        if !vpc.cidrs.iter().any(|c| c.contains(&cidr)) {
            return Err(Ec2Error::invalid(format!(
                "The CIDR '{cidr}' is invalid for the VPC."
            )));
        }
        let overlaps = self
            .subnets
            .values()
            .any(|s| s.vpc_id == vpc_id && (s.cidr().contains(&cidr) || cidr.contains(&s.cidr())));
        if overlaps {
            return Err(Ec2Error::invalid(format!(
                "The CIDR '{cidr}' conflicts with another subnet"
            )));
        }
        let pool = AddressPool::new(cidr).ok_or_else(|| {
            Ec2Error::invalid(format!(
                "The CIDR '{cidr}' is invalid: subnets are /16 to /28"
            ))
        })?;
        let id = self.fresh_id("subnet");
        self.subnets.insert(
            id.clone(),
            Subnet {
                id: id.clone(),
                vpc_id: vpc_id.to_string(),
                availability_zone: availability_zone.to_string(),
                pool,
                ipv6: None,
                assign_ipv6_on_creation: false,
                tags: Tags::new(),
            },
        );
        Ok(id)
    }

    pub fn create_security_group(&mut self, vpc_id: &str, name: &str) -> String {
        let id = self.fresh_id("sg");
        self.groups.insert(
            id.clone(),
            SecurityGroup {
                id: id.clone(),
                vpc_id: vpc_id.to_string(),
                name: name.to_string(),
            },
        );
        id
    }

    /// Launches an instance with its primary ENI attached at device 0 of the default card.
    pub fn run_instance(
        &mut self,
        instance_type: InstanceTypeInfo,
        subnet_id: &str,
        groups: &[String],
    ) -> Result<String, Ec2Error> {
        let instance_id = self.fresh_id("i");
        let eni_id = self.create_eni_in(subnet_id, groups, "Primary network interface")?;
        self.ipv6_on_creation(&eni_id, None)?;
        let (az, vpc_id) = {
            let subnet = self
                .subnets
                .get(subnet_id)
                .ok_or_else(|| Ec2Error::subnet_not_found(subnet_id))?;
            (subnet.availability_zone.clone(), subnet.vpc_id.clone())
        };
        let attachment = Attachment {
            id: self.fresh_id("eni-attach"),
            instance_id: instance_id.clone(),
            device_index: 0,
            network_card: instance_type.default_card,
            delete_on_termination: true,
            attach_time: self.now,
        };
        if let Some(eni) = self.enis.get_mut(&eni_id) {
            eni.attachment = Some(attachment);
        }
        self.instances.insert(
            instance_id.clone(),
            Instance {
                id: instance_id.clone(),
                instance_type,
                availability_zone: az,
                subnet_id: subnet_id.to_string(),
                vpc_id,
                primary_eni: eni_id,
                tags: Tags::new(),
            },
        );
        Ok(instance_id)
    }

    /// Creates an unattached ENI with a primary address from the subnet.
    pub(crate) fn create_eni_in(
        &mut self,
        subnet_id: &str,
        groups: &[String],
        description: &str,
    ) -> Result<String, Ec2Error> {
        for group in groups {
            if !self.groups.contains_key(group) {
                return Err(Ec2Error::new(
                    ErrorCode::InvalidGroupNotFound,
                    format!("The security group '{group}' does not exist"),
                ));
            }
        }
        let id = self.fresh_id("eni");
        let mac = self.fresh_mac();
        let subnet = self
            .subnets
            .get_mut(subnet_id)
            .ok_or_else(|| Ec2Error::subnet_not_found(subnet_id))?;
        let primary_ip = subnet.pool.allocate_ip().ok_or_else(|| {
            Ec2Error::new(
                ErrorCode::InsufficientFreeAddressesInSubnet,
                format!("There are not enough free addresses in subnet '{subnet_id}' to satisfy the requested number of addresses."),
            )
        })?;
        let eni = Eni {
            id: id.clone(),
            subnet_id: subnet_id.to_string(),
            vpc_id: subnet.vpc_id.clone(),
            availability_zone: subnet.availability_zone.clone(),
            description: description.to_string(),
            mac,
            interface_type: "interface".to_string(),
            groups: groups.iter().cloned().collect::<BTreeSet<_>>(),
            primary_ip,
            secondary_ips: BTreeSet::new(),
            prefixes: BTreeSet::new(),
            ipv6_addresses: Vec::new(),
            ipv6_prefixes: BTreeSet::new(),
            tags: Tags::new(),
            attachment: None,
            source_dest_check: true,
            conntrack: Default::default(),
        };
        self.enis.insert(id.clone(), eni);
        Ok(id)
    }

    /// The tags of an ENI, instance or subnet.
    pub(crate) fn tags_mut(&mut self, id: &str) -> Option<&mut Tags> {
        if let Some(e) = self.enis.get_mut(id) {
            Some(&mut e.tags)
        } else if let Some(i) = self.instances.get_mut(id) {
            Some(&mut i.tags)
        } else {
            self.subnets.get_mut(id).map(|s| &mut s.tags)
        }
    }

    pub fn eni(&self, id: &str) -> Result<&Eni, Ec2Error> {
        self.enis.get(id).ok_or_else(|| Ec2Error::eni_not_found(id))
    }

    pub fn eni_mut(&mut self, id: &str) -> Result<&mut Eni, Ec2Error> {
        self.enis
            .get_mut(id)
            .ok_or_else(|| Ec2Error::eni_not_found(id))
    }

    pub fn instance(&self, id: &str) -> Result<&Instance, Ec2Error> {
        self.instances
            .get(id)
            .ok_or_else(|| Ec2Error::instance_not_found(id))
    }

    /// ENIs attached to an instance, ordered by (card, device index).
    pub fn attached_enis(&self, instance_id: &str) -> Vec<&Eni> {
        let mut enis: Vec<&Eni> = self
            .enis
            .values()
            .filter(|e| {
                e.attachment
                    .as_ref()
                    .is_some_and(|a| a.instance_id == instance_id)
            })
            .collect();
        enis.sort_by_key(|e| {
            e.attachment
                .as_ref()
                .map(|a| (a.network_card, a.device_index))
        });
        enis
    }

    /// Every private address on every ENI (primaries, secondaries, prefix members): used by
    /// tests to prove that no address is ever on two ENIs.
    pub fn all_assigned_addresses(&self) -> Vec<Ipv4Addr> {
        let mut all = Vec::new();
        for eni in self.enis.values() {
            all.extend(eni.private_ips());
            for prefix in &eni.prefixes {
                all.extend((0..16).map(|i| Ipv4Addr::from(u32::from(prefix.network()) + i)));
            }
        }
        all
    }
}

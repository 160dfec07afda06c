//! ENI lifecycle and address operations with EC2's limits and errors.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::errors::{Ec2Error, ErrorCode};
use super::resources::{Attachment, ConnTrack, Tags};
use super::world::World;

/// Parameters of `CreateNetworkInterface`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateEni {
    pub subnet_id: String,
    pub groups: Vec<String>,
    pub description: String,
    pub secondary_ip_count: u32,
    pub prefix_count: u32,
    /// `Ipv6AddressCount`; `None`: the subnet's `AssignIpv6AddressOnCreation` decides.
    pub ipv6_address_count: Option<u32>,
    pub tags: Tags,
    pub conntrack: ConnTrack,
    /// `InterfaceType` (`trunk`, `branch`, `efa`, `efa-only`); `None`: `interface`.
    pub interface_type: Option<String>,
}

/// What `AssignPrivateIpAddresses` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignRequest {
    /// `SecondaryPrivateIpAddressCount`
    Count(u32),
    /// `PrivateIpAddress.N`
    Ips(Vec<Ipv4Addr>),
    /// `Ipv4PrefixCount`
    PrefixCount(u32),
}

/// What `AssignPrivateIpAddresses` granted (only the new addresses, as real EC2 answers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assigned {
    pub ips: Vec<Ipv4Addr>,
    pub prefixes: Vec<Ipv4Net>,
}

fn insufficient_addresses(subnet_id: &str) -> Ec2Error {
    Ec2Error::new(
        ErrorCode::InsufficientFreeAddressesInSubnet,
        format!(
            "There are not enough free addresses in subnet '{subnet_id}' to satisfy the requested number of addresses."
        ),
    )
}

fn insufficient_cidr_blocks(subnet_id: &str) -> Ec2Error {
    Ec2Error::new(
        ErrorCode::InsufficientCidrBlocks,
        format!(
            "The specified subnet '{subnet_id}' does not have enough free cidr blocks to satisfy the request."
        ),
    )
}

fn address_limit() -> Ec2Error {
    Ec2Error::new(
        ErrorCode::PrivateIpAddressLimitExceeded,
        "Number of private addresses will exceed limit.",
    )
}

impl World {
    /// `CreateNetworkInterface`: an unattached ENI with a primary address and optionally
    /// secondary IPs or prefixes (not both). All or nothing.
    pub fn create_network_interface(&mut self, req: &CreateEni) -> Result<String, Ec2Error> {
        if req.secondary_ip_count > 0 && req.prefix_count > 0 {
            return Err(Ec2Error::new(
                ErrorCode::InvalidParameterCombination,
                "SecondaryPrivateIpAddressCount and Ipv4PrefixCount cannot be specified together",
            ));
        }
        if let Some(why) = req.conntrack.out_of_range() {
            return Err(Ec2Error::new(ErrorCode::InvalidParameterValue, why));
        }
        if let Some(t) = req.interface_type.as_deref()
            && !super::trunk::CREATION_TYPES.contains(&t)
        {
            return Err(Ec2Error::invalid(format!(
                "Value ({t}) for parameter interfaceType is invalid. Valid values: efa, efa-only, branch, trunk"
            )));
        }
        let id = self.create_eni_in(&req.subnet_id, &req.groups, &req.description)?;
        let grant = if req.prefix_count > 0 {
            self.grant(&id, &AssignRequest::PrefixCount(req.prefix_count))
        } else if req.secondary_ip_count > 0 {
            self.grant(&id, &AssignRequest::Count(req.secondary_ip_count))
        } else {
            Ok(Assigned::default())
        }
        .and_then(|got| {
            self.ipv6_on_creation(&id, req.ipv6_address_count)?;
            Ok(got)
        });
        if let Err(err) = grant {
            // Undo the ENI itself: nothing of a failed create stays behind.
            let _ = self.delete_network_interface(&id);
            return Err(err);
        }
        let eni = self.eni_mut(&id)?;
        eni.tags.extend(req.tags.clone());
        eni.conntrack = req.conntrack;
        if let Some(t) = &req.interface_type {
            eni.interface_type = t.clone();
        }
        Ok(id)
    }

    /// `AttachNetworkInterface`: enforces the instance type's per-card ENI limit, free
    /// device index, same VPC/AZ, and the per-ENI address limit.
    pub fn attach_network_interface(
        &mut self,
        eni_id: &str,
        instance_id: &str,
        device_index: u32,
        network_card: u32,
    ) -> Result<String, Ec2Error> {
        let instance = self.instance(instance_id)?.clone();
        let eni = self.eni(eni_id)?;
        if eni.attachment.is_some() {
            return Err(Ec2Error::new(
                ErrorCode::InvalidNetworkInterfaceInUse,
                format!("Interface: [{eni_id}] in use."),
            ));
        }
        if eni.availability_zone != instance.availability_zone || eni.vpc_id != instance.vpc_id {
            return Err(Ec2Error::invalid(format!(
                "The network interface '{eni_id}' and instance '{instance_id}' are not in the same availability zone and VPC"
            )));
        }
        let ty = &instance.instance_type;
        if !ty.cards.contains_key(&network_card) {
            return Err(Ec2Error::invalid(format!(
                "Network card index {network_card} is not supported by instance type {}",
                ty.name
            )));
        }
        if eni.address_slots() > ty.ipv4_per_eni {
            return Err(address_limit());
        }
        if eni.ipv6_slots() > ty.ipv6_per_eni() {
            return Err(super::ipv6_ops::ipv6_limit(eni.ipv6_slots(), &ty.name));
        }
        if !eni.prefixes.is_empty() && !ty.supports_prefixes() {
            return Err(Ec2Error::invalid(format!(
                "Prefix delegation is not supported for instance type {}",
                ty.name
            )));
        }
        let on_card: Vec<u32> = self
            .attached_enis(instance_id)
            .iter()
            .filter_map(|e| e.attachment.as_ref())
            .filter(|a| a.network_card == network_card)
            .map(|a| a.device_index)
            .collect();
        if on_card.len() as u32 >= ty.max_enis_on(network_card) {
            return Err(Ec2Error::new(
                ErrorCode::AttachmentLimitExceeded,
                format!(
                    "Interface count {} exceeds the limit for {}",
                    on_card.len() + 1,
                    ty.name
                ),
            ));
        }
        if on_card.contains(&device_index) {
            return Err(Ec2Error::invalid(format!(
                "Instance '{instance_id}' already has an interface attached at device index '{device_index}'."
            )));
        }
        let attachment = Attachment {
            id: self.fresh_id("eni-attach"),
            instance_id: instance_id.to_string(),
            device_index,
            network_card,
            delete_on_termination: false,
            attach_time: self.now,
        };
        let id = attachment.id.clone();
        self.eni_mut(eni_id)?.attachment = Some(attachment);
        Ok(id)
    }

    /// `DetachNetworkInterface`: the primary ENI (device 0) cannot be detached.
    pub fn detach_network_interface(&mut self, attachment_id: &str) -> Result<(), Ec2Error> {
        let eni = self
            .enis
            .values_mut()
            .find(|e| e.attachment.as_ref().is_some_and(|a| a.id == attachment_id))
            .ok_or_else(|| {
                Ec2Error::new(
                    ErrorCode::InvalidAttachmentIdNotFound,
                    format!("The attachment ID '{attachment_id}' does not exist"),
                )
            })?;
        if eni.attachment.as_ref().is_some_and(|a| a.device_index == 0) {
            return Err(Ec2Error::new(
                ErrorCode::OperationNotPermitted,
                "The network interface at device index 0 cannot be detached.",
            ));
        }
        eni.attachment = None;
        Ok(())
    }

    /// `DeleteNetworkInterface`: only an available ENI; its addresses return to the subnet.
    pub fn delete_network_interface(&mut self, eni_id: &str) -> Result<(), Ec2Error> {
        if self.eni(eni_id)?.attachment.is_some() {
            return Err(Ec2Error::new(
                ErrorCode::InvalidNetworkInterfaceInUse,
                format!("The network interface '{eni_id}' is currently in use."),
            ));
        }
        let eni = self
            .enis
            .remove(eni_id)
            .ok_or_else(|| Ec2Error::eni_not_found(eni_id))?;
        // A deleted branch ENI leaves its trunk (EC2 disassociates it).
        self.trunk_associations.retain(|_, a| a.branch != eni_id);
        if let Some(subnet) = self.subnets.get_mut(&eni.subnet_id) {
            subnet.pool.release_ip(eni.primary_ip);
            for ip in &eni.secondary_ips {
                subnet.pool.release_ip(*ip);
            }
            for prefix in &eni.prefixes {
                subnet.pool.release_prefix(*prefix);
            }
            if let Some(v6) = subnet.ipv6.as_mut() {
                for ip in &eni.ipv6_addresses {
                    v6.release_address(*ip);
                }
                for prefix in &eni.ipv6_prefixes {
                    v6.release_prefix(*prefix);
                }
            }
        }
        Ok(())
    }

    /// `AssignPrivateIpAddresses`: all or nothing, limited by the attached instance type.
    pub fn assign_private_ip_addresses(
        &mut self,
        eni_id: &str,
        req: &AssignRequest,
    ) -> Result<Assigned, Ec2Error> {
        let eni = self.eni(eni_id)?;
        let wanted = match req {
            AssignRequest::Count(n) | AssignRequest::PrefixCount(n) => *n,
            AssignRequest::Ips(ips) => ips.len() as u32,
        };
        if wanted == 0 {
            return Err(Ec2Error::invalid(
                "The number of addresses must be at least 1",
            ));
        }
        if let Some(att) = &eni.attachment {
            let ty = &self.instance(&att.instance_id)?.instance_type;
            if eni.address_slots() + wanted > ty.ipv4_per_eni {
                return Err(address_limit());
            }
            if matches!(req, AssignRequest::PrefixCount(_)) && !ty.supports_prefixes() {
                return Err(Ec2Error::invalid(format!(
                    "Prefix delegation is not supported for instance type {}",
                    ty.name
                )));
            }
        }
        self.grant(eni_id, req)
    }

    /// Takes addresses from the subnet for an ENI, releasing them all if any is missing.
    fn grant(&mut self, eni_id: &str, req: &AssignRequest) -> Result<Assigned, Ec2Error> {
        let subnet_id = self.eni(eni_id)?.subnet_id.clone();
        let subnet = self
            .subnets
            .get_mut(&subnet_id)
            .ok_or_else(|| Ec2Error::subnet_not_found(&subnet_id))?;
        let mut got = Assigned::default();
        let outcome = match req {
            AssignRequest::Count(n) => (0..*n).try_for_each(|_| {
                let ip = subnet
                    .pool
                    .allocate_ip()
                    .ok_or_else(|| insufficient_addresses(&subnet_id))?;
                got.ips.push(ip);
                Ok(())
            }),
            AssignRequest::PrefixCount(n) => (0..*n).try_for_each(|_| {
                let prefix = subnet
                    .pool
                    .allocate_prefix()
                    .ok_or_else(|| insufficient_cidr_blocks(&subnet_id))?;
                got.prefixes.push(prefix);
                Ok(())
            }),
            AssignRequest::Ips(ips) => ips.iter().try_for_each(|ip| {
                subnet.pool.claim_ip(*ip).map_err(|e| {
                    Ec2Error::new(
                        ErrorCode::InvalidIpAddressInUse,
                        format!("Address {ip} cannot be assigned in subnet '{subnet_id}': {e}"),
                    )
                })?;
                got.ips.push(*ip);
                Ok(())
            }),
        };
        if let Err(err) = outcome {
            for ip in &got.ips {
                subnet.pool.release_ip(*ip);
            }
            for prefix in &got.prefixes {
                subnet.pool.release_prefix(*prefix);
            }
            return Err(err);
        }
        let eni = self.eni_mut(eni_id)?;
        eni.secondary_ips.extend(got.ips.iter().copied());
        eni.prefixes.extend(got.prefixes.iter().copied());
        Ok(got)
    }

    /// `UnassignPrivateIpAddresses`: every address must be a secondary IP (or prefix) of
    /// the ENI; nothing is released unless all are.
    pub fn unassign_private_ip_addresses(
        &mut self,
        eni_id: &str,
        ips: &[Ipv4Addr],
        prefixes: &[Ipv4Net],
    ) -> Result<(), Ec2Error> {
        let eni = self.eni(eni_id)?;
        if ips.is_empty() && prefixes.is_empty() {
            return Err(Ec2Error::new(
                ErrorCode::MissingParameter,
                "Either PrivateIpAddress or Ipv4Prefix must be specified",
            ));
        }
        if ips.contains(&eni.primary_ip) {
            return Err(Ec2Error::invalid(format!(
                "The primary private IP address {} cannot be unassigned",
                eni.primary_ip
            )));
        }
        if ips.iter().any(|ip| !eni.secondary_ips.contains(ip))
            || prefixes.iter().any(|p| !eni.prefixes.contains(p))
        {
            return Err(Ec2Error::invalid(format!(
                "Some of the specified addresses are not assigned to interface {eni_id}"
            )));
        }
        let subnet_id = eni.subnet_id.clone();
        let eni = self.eni_mut(eni_id)?;
        for ip in ips {
            eni.secondary_ips.remove(ip);
        }
        for prefix in prefixes {
            eni.prefixes.remove(prefix);
        }
        if let Some(subnet) = self.subnets.get_mut(&subnet_id) {
            for ip in ips {
                subnet.pool.release_ip(*ip);
            }
            for prefix in prefixes {
                subnet.pool.release_prefix(*prefix);
            }
        }
        Ok(())
    }

    /// `ModifyNetworkInterfaceAttribute` with `Attachment.DeleteOnTermination`.
    pub fn set_delete_on_termination(
        &mut self,
        eni_id: &str,
        attachment_id: &str,
        value: bool,
    ) -> Result<(), Ec2Error> {
        let eni = self.eni_mut(eni_id)?;
        match eni.attachment.as_mut() {
            Some(att) if att.id == attachment_id => {
                att.delete_on_termination = value;
                Ok(())
            }
            _ => Err(Ec2Error::new(
                ErrorCode::InvalidAttachmentIdNotFound,
                format!("The attachment ID '{attachment_id}' does not exist"),
            )),
        }
    }

    /// `ModifyNetworkInterfaceAttribute` with `SecurityGroupId.N`.
    pub fn set_groups(&mut self, eni_id: &str, groups: &[String]) -> Result<(), Ec2Error> {
        if let Some(missing) = groups.iter().find(|g| !self.groups.contains_key(*g)) {
            return Err(Ec2Error::new(
                ErrorCode::InvalidGroupNotFound,
                format!("The security group '{missing}' does not exist"),
            ));
        }
        self.eni_mut(eni_id)?.groups = groups.iter().cloned().collect();
        Ok(())
    }

    /// `CreateTags` on ENIs, instances, subnets (all resources must exist).
    pub fn create_tags(&mut self, resources: &[String], tags: &Tags) -> Result<(), Ec2Error> {
        for id in resources {
            let known = self.enis.contains_key(id)
                || self.instances.contains_key(id)
                || self.subnets.contains_key(id);
            if !known {
                return Err(if id.starts_with("eni-") {
                    Ec2Error::eni_not_found(id)
                } else if id.starts_with("i-") {
                    Ec2Error::instance_not_found(id)
                } else {
                    Ec2Error::invalid(format!("The ID '{id}' is not valid"))
                });
            }
        }
        for id in resources {
            if let Some(target) = self.tags_mut(id) {
                target.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        Ok(())
    }

    /// `DeleteTags`: removes the given keys from every resource.
    pub fn delete_tags(&mut self, resources: &[String], keys: &[String]) -> Result<(), Ec2Error> {
        for id in resources {
            let tags = self
                .tags_mut(id)
                .ok_or_else(|| Ec2Error::invalid(format!("The ID '{id}' is not valid")))?;
            for key in keys {
                tags.remove(key);
            }
        }
        Ok(())
    }

    /// `TerminateInstances`: ENIs with DeleteOnTermination go, the others become available.
    pub fn terminate_instance(&mut self, instance_id: &str) -> Result<(), Ec2Error> {
        self.instance(instance_id)?;
        let attached: Vec<(String, bool)> = self
            .attached_enis(instance_id)
            .iter()
            .filter_map(|e| {
                e.attachment
                    .as_ref()
                    .map(|a| (e.id.clone(), a.delete_on_termination))
            })
            .collect();
        for (eni_id, delete) in attached {
            self.eni_mut(&eni_id)?.attachment = None;
            if delete {
                self.delete_network_interface(&eni_id)?;
            }
        }
        self.instances.remove(instance_id);
        Ok(())
    }
}

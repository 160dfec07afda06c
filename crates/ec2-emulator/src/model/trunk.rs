//! Trunk and branch ENIs (security groups for pods): EC2's `AssociateTrunkInterface` and
//! `DescribeTrunkInterfaceAssociations`, and what the VPC Resource Controller does for one
//! pod ([`World::branch_eni_for_pod`]): a trunk ENI on the instance if it has none, a branch
//! ENI with the pod's security groups, associated with the trunk under the next VLAN id.
//! docs/ec2-emulator.md "Trunk and branch ENIs".

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::eni_ops::CreateEni;
use super::errors::{Ec2Error, ErrorCode};
use super::world::World;

/// `InterfaceType` of a trunk ENI.
pub const TRUNK: &str = "trunk";
/// `InterfaceType` of a branch ENI.
pub const BRANCH: &str = "branch";
/// The interface types `CreateNetworkInterface` accepts here (EC2's
/// `NetworkInterfaceCreationType`: `efa`, `efa-only`, `branch`, `trunk`).
pub const CREATION_TYPES: [&str; 4] = ["efa", "efa-only", BRANCH, TRUNK];

/// VLAN ids a trunk can carry (802.1Q, 0 and 4095 reserved).
pub const VLAN_IDS: std::ops::RangeInclusive<u32> = 1..=4094;

/// One branch ENI on one trunk (`TrunkInterfaceAssociation`, protocol `VLAN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkAssociation {
    pub id: String,
    pub branch: String,
    pub trunk: String,
    pub vlan_id: u32,
}

/// What the VPC Resource Controller learns about a pod's branch ENI (the facts of the
/// `vpc.amazonaws.com/pod-eni` annotation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchEni {
    pub eni_id: String,
    pub mac: String,
    pub private_ip: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    pub vlan_id: u32,
    pub subnet_cidr: Ipv4Net,
    pub subnet_v6_cidr: Option<Ipv6Net>,
    pub trunk_id: String,
    /// The trunk was created (and attached) by this call.
    pub trunk_created: bool,
}

impl World {
    /// `AssociateTrunkInterface`: `branch` (interface type `branch`, not yet associated)
    /// onto `trunk` (type `trunk`, attached) under `vlan_id`, unique on that trunk.
    pub fn associate_trunk_interface(
        &mut self,
        branch: &str,
        trunk: &str,
        vlan_id: u32,
    ) -> Result<String, Ec2Error> {
        let (b, t) = (self.eni(branch)?, self.eni(trunk)?);
        if t.interface_type != TRUNK {
            return Err(Ec2Error::invalid(format!(
                "Network interface '{trunk}' is not a trunk interface"
            )));
        }
        if b.interface_type != BRANCH {
            return Err(Ec2Error::invalid(format!(
                "Network interface '{branch}' is not a branch interface"
            )));
        }
        if t.attachment.is_none() {
            return Err(Ec2Error::new(
                ErrorCode::IncorrectState,
                format!("Trunk interface '{trunk}' is not attached to an instance"),
            ));
        }
        if b.vpc_id != t.vpc_id {
            return Err(Ec2Error::invalid(format!(
                "Network interfaces '{branch}' and '{trunk}' are not in the same VPC"
            )));
        }
        if !VLAN_IDS.contains(&vlan_id) {
            return Err(Ec2Error::invalid(format!(
                "VlanId {vlan_id} is out of range [1, 4094]"
            )));
        }
        if self.trunk_associations.values().any(|a| a.branch == branch) {
            return Err(Ec2Error::new(
                ErrorCode::InvalidNetworkInterfaceInUse,
                format!("Interface: [{branch}] in use."),
            ));
        }
        if self
            .trunk_associations
            .values()
            .any(|a| a.trunk == trunk && a.vlan_id == vlan_id)
        {
            return Err(Ec2Error::invalid(format!(
                "VlanId {vlan_id} is already in use on trunk interface '{trunk}'"
            )));
        }
        let id = self.fresh_id("trunk-assoc");
        let assoc = TrunkAssociation {
            id: id.clone(),
            branch: branch.to_string(),
            trunk: trunk.to_string(),
            vlan_id,
        };
        self.trunk_associations.insert(id.clone(), assoc);
        Ok(id)
    }

    /// `DisassociateTrunkInterface`.
    pub fn disassociate_trunk_interface(&mut self, association_id: &str) -> Result<(), Ec2Error> {
        self.trunk_associations
            .remove(association_id)
            .map(|_| ())
            .ok_or_else(|| {
                Ec2Error::invalid(format!(
                    "The association ID '{association_id}' does not exist"
                ))
            })
    }

    /// The trunk ENI attached to `instance_id`, if any.
    pub fn trunk_of(&self, instance_id: &str) -> Option<String> {
        self.attached_enis(instance_id)
            .iter()
            .find(|e| e.interface_type == TRUNK)
            .map(|e| e.id.clone())
    }

    /// The lowest VLAN id not in use on `trunk`.
    pub fn next_vlan_id(&self, trunk: &str) -> Option<u32> {
        VLAN_IDS.clone().find(|v| {
            !self
                .trunk_associations
                .values()
                .any(|a| a.trunk == trunk && a.vlan_id == *v)
        })
    }

    /// The VPC Resource Controller's work for one pod: a trunk ENI on `instance_id` if it
    /// has none (in the instance's subnet with the primary ENI's security groups, attached
    /// at the lowest free device index of card 0), a branch ENI in `subnet_id` with
    /// `groups`, associated with the trunk under the next VLAN id. All or nothing.
    pub fn branch_eni_for_pod(
        &mut self,
        instance_id: &str,
        subnet_id: &str,
        groups: &[String],
    ) -> Result<BranchEni, Ec2Error> {
        let (trunk, trunk_created) = match self.trunk_of(instance_id) {
            Some(t) => (t, false),
            None => (self.create_trunk(instance_id)?, true),
        };
        let branch = self.create_network_interface(&CreateEni {
            subnet_id: subnet_id.to_string(),
            groups: groups.to_vec(),
            description: format!("aws-k8s-branch-eni on {trunk}"),
            interface_type: Some(BRANCH.to_string()),
            ..CreateEni::default()
        })?;
        let associated = self
            .next_vlan_id(&trunk)
            .ok_or_else(|| {
                Ec2Error::invalid(format!("trunk interface '{trunk}' has no free VLAN id"))
            })
            .and_then(|vlan| {
                self.associate_trunk_interface(&branch, &trunk, vlan)
                    .map(|_| vlan)
            });
        let vlan_id = match associated {
            Ok(v) => v,
            Err(e) => {
                let _ = self.delete_network_interface(&branch);
                return Err(e);
            }
        };
        let eni = self.eni(&branch)?;
        let subnet = self
            .subnets
            .get(&eni.subnet_id)
            .ok_or_else(|| Ec2Error::subnet_not_found(&eni.subnet_id))?;
        Ok(BranchEni {
            eni_id: branch.clone(),
            mac: eni.mac.clone(),
            private_ip: eni.primary_ip,
            ipv6: eni.ipv6_addresses.first().copied(),
            vlan_id,
            subnet_cidr: subnet.cidr(),
            subnet_v6_cidr: subnet.ipv6_cidr(),
            trunk_id: trunk,
            trunk_created,
        })
    }

    /// A trunk ENI for `instance_id`, attached at the lowest free device index of card 0.
    fn create_trunk(&mut self, instance_id: &str) -> Result<String, Ec2Error> {
        let instance = self.instance(instance_id)?.clone();
        let groups: Vec<String> = self
            .eni(&instance.primary_eni)?
            .groups
            .iter()
            .cloned()
            .collect();
        let used: Vec<u32> = self
            .attached_enis(instance_id)
            .iter()
            .filter_map(|e| e.attachment.as_ref())
            .filter(|a| a.network_card == 0)
            .map(|a| a.device_index)
            .collect();
        let device = (0..100).find(|d| !used.contains(d)).unwrap_or(100);
        let trunk = self.create_network_interface(&CreateEni {
            subnet_id: instance.subnet_id.clone(),
            groups,
            description: "trunk ENI (VPC resource controller)".to_string(),
            interface_type: Some(TRUNK.to_string()),
            ipv6_address_count: Some(0),
            ..CreateEni::default()
        })?;
        if let Err(e) = self.attach_network_interface(&trunk, instance_id, device, 0) {
            let _ = self.delete_network_interface(&trunk);
            return Err(e);
        }
        Ok(trunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::InstanceTypeInfo;

    fn world() -> (World, String, String) {
        let mut w = World::new();
        let vpc = w.create_vpc("10.0.0.0/16".parse().unwrap());
        let node_subnet = w
            .create_subnet(&vpc, "10.0.0.0/24".parse().unwrap(), "us-west-2a")
            .unwrap();
        let sg = w.create_security_group(&vpc, "node");
        let inst = w
            .run_instance(
                InstanceTypeInfo::single_card("m5.large", 3, 10),
                &node_subnet,
                &[sg],
            )
            .unwrap();
        let pod_subnet = w
            .create_subnet(&vpc, "10.0.32.0/19".parse().unwrap(), "us-west-2a")
            .unwrap();
        (w, inst, pod_subnet)
    }

    #[test]
    fn first_pod_creates_and_attaches_the_trunk_then_vlans_count_up() {
        let (mut w, inst, pod_subnet) = world();
        let vpc = w.instance(&inst).unwrap().vpc_id.clone();
        let groups = vec![w.create_security_group(&vpc, "db")];
        let a = w.branch_eni_for_pod(&inst, &pod_subnet, &groups).unwrap();
        let b = w.branch_eni_for_pod(&inst, &pod_subnet, &groups).unwrap();
        assert!(a.trunk_created && !b.trunk_created);
        assert_eq!(a.trunk_id, b.trunk_id);
        assert_eq!((a.vlan_id, b.vlan_id), (1, 2));
        assert_eq!(a.subnet_cidr.to_string(), "10.0.32.0/19");
        assert!(a.subnet_cidr.contains(&a.private_ip));
        let trunk = w.eni(&a.trunk_id).unwrap();
        assert_eq!(trunk.interface_type, TRUNK);
        assert_eq!(trunk.attachment.as_ref().map(|x| x.device_index), Some(1));
        let branch = w.eni(&a.eni_id).unwrap();
        assert_eq!(branch.interface_type, BRANCH);
        assert!(
            branch.attachment.is_none(),
            "branches are not attached to the instance"
        );
        assert_eq!(branch.groups.iter().collect::<Vec<_>>(), [&groups[0]]);
    }

    #[test]
    fn a_vlan_id_and_a_branch_are_used_once() {
        let (mut w, inst, pod_subnet) = world();
        let a = w.branch_eni_for_pod(&inst, &pod_subnet, &[]).unwrap();
        let other = w
            .create_network_interface(&CreateEni {
                subnet_id: pod_subnet.clone(),
                interface_type: Some(BRANCH.into()),
                ..CreateEni::default()
            })
            .unwrap();
        assert!(w.associate_trunk_interface(&other, &a.trunk_id, 1).is_err());
        assert!(
            w.associate_trunk_interface(&a.eni_id, &a.trunk_id, 7)
                .is_err()
        );
        assert!(w.associate_trunk_interface(&other, &a.trunk_id, 0).is_err());
        assert!(
            w.associate_trunk_interface(&other, &a.trunk_id, 4095)
                .is_err()
        );
        assert!(
            w.associate_trunk_interface(&other, &other, 3).is_err(),
            "not a trunk"
        );
        assert!(w.associate_trunk_interface(&other, &a.trunk_id, 3).is_ok());
        assert_eq!(w.next_vlan_id(&a.trunk_id), Some(2));
    }

    #[test]
    fn a_full_instance_gets_no_trunk_and_nothing_is_left_behind() {
        let (mut w, inst, pod_subnet) = world();
        let node_subnet = w.instance(&inst).unwrap().subnet_id.clone();
        for d in 1..3 {
            let e = w
                .create_network_interface(&CreateEni {
                    subnet_id: node_subnet.clone(),
                    ..CreateEni::default()
                })
                .unwrap();
            w.attach_network_interface(&e, &inst, d, 0).unwrap();
        }
        let before = w.enis.len();
        let err = w.branch_eni_for_pod(&inst, &pod_subnet, &[]).unwrap_err();
        assert_eq!(err.code, ErrorCode::AttachmentLimitExceeded);
        assert_eq!(w.enis.len(), before);
    }
}

//! `AssociateTrunkInterface`, `DisassociateTrunkInterface` and
//! `DescribeTrunkInterfaceAssociations` (docs/ec2-emulator.md "Trunk and branch ENIs").

use crate::model::{Ec2Error, TrunkAssociation, World};

use super::actions::return_true;
use super::params::Params;
use super::xml::Xml;

fn association_fields(x: &mut Xml, a: &TrunkAssociation) {
    x.leaf("associationId", &a.id)
        .leaf("branchInterfaceId", &a.branch)
        .leaf("trunkInterfaceId", &a.trunk)
        .leaf("interfaceProtocol", "VLAN")
        .leaf("vlanId", a.vlan_id);
}

/// `AssociateTrunkInterface`: `BranchInterfaceId`, `TrunkInterfaceId`, `VlanId`.
pub fn associate(world: &mut World, params: &Params, request_id: &str) -> Result<String, Ec2Error> {
    let branch = params.required("BranchInterfaceId")?.to_string();
    let trunk = params.required("TrunkInterfaceId")?.to_string();
    let vlan = params.u32("VlanId")?.ok_or_else(|| {
        Ec2Error::new(
            crate::model::ErrorCode::MissingParameter,
            "The request must contain the parameter VlanId",
        )
    })?;
    let id = world.associate_trunk_interface(&branch, &trunk, vlan)?;
    let world = &*world;
    let assoc = world
        .trunk_associations
        .get(&id)
        .ok_or_else(|| Ec2Error::invalid(format!("association {id} vanished")))?;
    Ok(Xml::response("AssociateTrunkInterface", request_id, |x| {
        x.node("interfaceAssociation", |x| association_fields(x, assoc));
    }))
}

/// `DisassociateTrunkInterface`: `AssociationId`.
pub fn disassociate(
    world: &mut World,
    params: &Params,
    request_id: &str,
) -> Result<String, Ec2Error> {
    world.disassociate_trunk_interface(params.required("AssociationId")?)?;
    Ok(Xml::response(
        "DisassociateTrunkInterface",
        request_id,
        return_true,
    ))
}

/// `DescribeTrunkInterfaceAssociations`: `AssociationId.N` and the filters
/// `trunk-interface-association.branch-interface-id` / `.trunk-interface-id`.
pub fn describe(world: &World, params: &Params, request_id: &str) -> Result<String, Ec2Error> {
    let ids = params.list("AssociationId");
    let filters = params.filters();
    let mut out = Vec::new();
    for a in world.trunk_associations.values() {
        if !ids.is_empty() && !ids.contains(&a.id) {
            continue;
        }
        let mut keep = true;
        for f in &filters {
            let value = match f.name.as_str() {
                "trunk-interface-association.branch-interface-id" => &a.branch,
                "trunk-interface-association.trunk-interface-id" => &a.trunk,
                "trunk-interface-association.id" => &a.id,
                other => {
                    return Err(Ec2Error::invalid(format!(
                        "The filter '{other}' is invalid"
                    )));
                }
            };
            keep &= f.values.contains(value);
        }
        if keep {
            out.push(a);
        }
    }
    Ok(Xml::response(
        "DescribeTrunkInterfaceAssociations",
        request_id,
        |x| {
            x.items("interfaceAssociationSet", out, association_fields);
        },
    ))
}

//! The instance-type catalogue: the same limits table the agent uses.

use crate::model::InstanceTypeInfo;

/// Limits of `name` from the generated table, in the model's shape.
pub fn instance_type(name: &str) -> Option<InstanceTypeInfo> {
    let l = limits::lookup(name)?;
    Some(InstanceTypeInfo {
        name: l.instance_type.clone(),
        cards: l
            .cards_or_default()
            .iter()
            .map(|c| (c.index, c.max_enis))
            .collect(),
        default_card: l.default_card_index,
        ipv4_per_eni: l.ipv4_per_eni,
        hypervisor: l.hypervisor.as_str().to_string(),
        bare_metal: l.bare_metal,
        vcpus: l.vcpus,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn real_types_carry_their_limits() {
        let m5 = super::instance_type("m5.large").unwrap();
        assert_eq!(m5.max_enis_on(0), 3);
        assert_eq!(m5.ipv4_per_eni, 10);
        assert!(m5.supports_prefixes());
        let p4d = super::instance_type("p4d.24xlarge").unwrap();
        assert_eq!(p4d.cards.len(), 4);
        assert!(super::instance_type("x9.nonexistent").is_none());
    }
}

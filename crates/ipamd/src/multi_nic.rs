//! Multi-NIC decisions, pure (docs/ipamd.md, "Multi-NIC"): which network cards ipamd
//! manages (upstream's `markUnmanagedNetworkCards`) and how AddNetwork walks the cards'
//! datastores (`pkg/ipamd/rpc_handler.go`, `AddNetwork`).

use aws::EniDescription;

/// The network card an ENI is attached to (unattached: card 0).
pub fn card_of(eni: &EniDescription) -> u32 {
    eni.attachment.as_ref().map_or(0, |a| a.network_card)
}

/// The cards ipamd manages, sorted, card 0 first. `ENABLE_MULTI_NIC=false` (or IPv6, where
/// this build manages card 0 only): card 0. Otherwise every card of the instance type but
/// those holding an `efa-only` ENI and no managed one; a card without ENIs is managed
/// (ipamd attaches ENIs to it). `managed` says whether ipamd manages an ENI by its tags.
pub fn managed_cards(
    multi_nic: bool,
    instance_cards: &[(u32, u32)],
    enis: &[EniDescription],
    managed: impl Fn(&EniDescription) -> bool,
) -> Vec<u32> {
    if !multi_nic {
        return vec![0];
    }
    let mut cards: Vec<u32> = instance_cards
        .iter()
        .map(|c| c.0)
        .filter(|&card| {
            let on_card = || enis.iter().filter(move |e| card_of(e) == card);
            let efa_only = on_card().any(|e| e.interface_type == "efa-only");
            card == 0 || !efa_only || on_card().any(&managed)
        })
        .collect();
    if !cards.contains(&0) {
        cards.push(0);
    }
    cards.sort_unstable();
    cards
}

/// What AddNetwork does after one card's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddStep {
    /// Go on with the next card (or stop with success when enough were taken).
    Next,
    /// Stop: the pod's request fails (what was taken is given back).
    Fail,
}

/// Upstream's rule: a card with no free address sends a single-address pod on to the next
/// card (card 0 exhausted → card 1), unless it is the last; a multi-NIC pod, or any other
/// error, stops.
pub fn after_card_failure(no_address: bool, required: usize, is_last: bool) -> AddStep {
    if no_address && required == 1 && !is_last {
        AddStep::Next
    } else {
        AddStep::Fail
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws::EniAttachment;

    fn eni(card: u32, device: u32, kind: &str) -> EniDescription {
        EniDescription {
            id: format!("eni-{card}-{device}"),
            mac: String::new(),
            subnet_id: "subnet-1".into(),
            vpc_id: "vpc-1".into(),
            availability_zone: "a".into(),
            description: String::new(),
            status: "in-use".into(),
            interface_type: kind.into(),
            primary_ip: None,
            secondary_ips: vec![],
            prefixes: vec![],
            ipv6_addresses: vec![],
            ipv6_prefixes: vec![],
            security_groups: vec![],
            tags: Default::default(),
            conntrack: None,
            attachment: Some(EniAttachment {
                attachment_id: "a".into(),
                instance_id: "i-1".into(),
                device_index: device,
                network_card: card,
                delete_on_termination: true,
            }),
        }
    }

    const CARDS: [(u32, u32); 3] = [(0, 4), (1, 4), (2, 4)];

    #[test]
    fn switch_off_manages_card_0_only() {
        let enis = [eni(0, 0, "interface"), eni(1, 0, "interface")];
        assert_eq!(managed_cards(false, &CARDS, &enis, |_| true), [0]);
    }

    #[test]
    fn empty_cards_are_managed_efa_only_cards_are_not() {
        let enis = [eni(0, 0, "interface"), eni(2, 0, "efa-only")];
        let managed = |e: &EniDescription| e.interface_type != "efa-only";
        assert_eq!(managed_cards(true, &CARDS, &enis, managed), [0, 1]);
    }

    #[test]
    fn an_efa_only_card_with_a_managed_eni_stays_managed() {
        let enis = [eni(1, 0, "efa-only"), eni(1, 1, "interface")];
        let managed = |e: &EniDescription| e.interface_type != "efa-only";
        assert_eq!(managed_cards(true, &CARDS, &enis, managed), [0, 1, 2]);
        assert_eq!(managed_cards(true, &CARDS, &enis, |_| false), [0, 2]);
    }

    #[test]
    fn single_address_pods_fall_through_multi_nic_pods_do_not() {
        assert_eq!(after_card_failure(true, 1, false), AddStep::Next);
        assert_eq!(after_card_failure(true, 1, true), AddStep::Fail);
        assert_eq!(after_card_failure(true, 2, false), AddStep::Fail);
        assert_eq!(after_card_failure(false, 1, false), AddStep::Fail);
    }
}

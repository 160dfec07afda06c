//! Policy-routing rules of both families (the family of a [`Rule`] is that of its
//! addresses). Adding an existing rule and deleting a missing one both succeed, as upstream
//! treats EEXIST / ENOENT.

use futures_util::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, IpProtocol};
use rtnetlink::IpVersion;

use super::{Family, NetlinkError, NetlinkHandle, Rule, ok_if_exists, ok_if_missing, req_err};

/// The netlink address family of `family`.
pub(super) fn address_family(family: Family) -> AddressFamily {
    match family {
        Family::V4 => AddressFamily::Inet,
        Family::V6 => AddressFamily::Inet6,
    }
}

/// Converts a kernel rule message (IPv4 or IPv6) into a [`Rule`].
fn parse_rule(msg: &RuleMessage) -> Option<Rule> {
    let family = match msg.header.family {
        AddressFamily::Inet => Family::V4,
        AddressFamily::Inet6 => Family::V6,
        _ => return None,
    };
    let mut rule = Rule {
        table: u32::from(msg.header.table),
        family,
        ..Rule::default()
    };
    for attr in &msg.attributes {
        match attr {
            RuleAttribute::Priority(p) => rule.priority = Some(*p),
            RuleAttribute::Table(t) => rule.table = *t,
            RuleAttribute::FwMark(m) => rule.fwmark = Some(*m),
            RuleAttribute::FwMask(m) => rule.fwmask = Some(*m),
            RuleAttribute::Iifname(n) => rule.iif = Some(n.clone()),
            RuleAttribute::IpProtocol(p) => rule.ipproto = Some(u8::from(*p)),
            RuleAttribute::Source(a) => rule.src = IpNet::new(*a, msg.header.src_len).ok(),
            RuleAttribute::Destination(a) => rule.dst = IpNet::new(*a, msg.header.dst_len).ok(),
            _ => {}
        }
    }
    Some(rule)
}

/// The kernel message for `rule` (action "lookup table"), of the rule's family.
fn build_rule(rule: &Rule) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = address_family(rule.family());
    msg.header.action = RuleAction::ToTable;
    match u8::try_from(rule.table) {
        Ok(t) => msg.header.table = t,
        Err(_) => msg.header.table = 252, // RT_TABLE_COMPAT: the real id is in FRA_TABLE
    }
    msg.attributes.push(RuleAttribute::Table(rule.table));
    if let Some(p) = rule.priority {
        msg.attributes.push(RuleAttribute::Priority(p));
    }
    if let Some(src) = rule.src {
        msg.header.src_len = src.prefix_len();
        msg.attributes.push(RuleAttribute::Source(src.network()));
    }
    if let Some(dst) = rule.dst {
        msg.header.dst_len = dst.prefix_len();
        msg.attributes
            .push(RuleAttribute::Destination(dst.network()));
    }
    if let Some(m) = rule.fwmark {
        msg.attributes.push(RuleAttribute::FwMark(m));
    }
    if let Some(m) = rule.fwmask {
        msg.attributes.push(RuleAttribute::FwMask(m));
    }
    if let Some(iif) = &rule.iif {
        msg.attributes.push(RuleAttribute::Iifname(iif.clone()));
    }
    if let Some(proto) = rule.ipproto {
        msg.attributes
            .push(RuleAttribute::IpProtocol(IpProtocol::from(proto)));
    }
    msg
}

impl NetlinkHandle {
    /// All rules of `family`, in kernel order (by priority).
    pub async fn rules(&self, family: Family) -> Result<Vec<Rule>, NetlinkError> {
        let version = match family {
            Family::V4 => IpVersion::V4,
            Family::V6 => IpVersion::V6,
        };
        let msgs: Vec<RuleMessage> = self
            .handle
            .rule()
            .get(version)
            .execute()
            .try_collect()
            .await
            .map_err(req_err("list rules"))?;
        Ok(msgs.iter().filter_map(parse_rule).collect())
    }

    /// Adds `rule`; an identical existing rule is success (EEXIST ignored).
    pub async fn add_rule(&self, rule: &Rule) -> Result<(), NetlinkError> {
        let mut req = self.handle.rule().add();
        *req.message_mut() = build_rule(rule);
        let res = req
            .execute()
            .await
            .map_err(req_err(format!("add rule {rule}")));
        ok_if_exists(res)
    }

    /// Adds `rule` even when an identical one exists (`NLM_F_REPLACE` without `NLM_F_EXCL`,
    /// which the kernel takes as "append"): how older plugin versions left duplicate pod
    /// rules behind. Only the real kernel's tests need it, so it is not on the seam.
    pub async fn append_rule(&self, rule: &Rule) -> Result<(), NetlinkError> {
        let mut req = self.handle.rule().add().replace();
        *req.message_mut() = build_rule(rule);
        req.execute()
            .await
            .map_err(req_err(format!("append rule {rule}")))
    }

    /// Deletes one rule matching `rule`; `Ok(false)` when there is none (ENOENT).
    pub async fn delete_rule(&self, rule: &Rule) -> Result<bool, NetlinkError> {
        let res = self
            .handle
            .rule()
            .del(build_rule(rule))
            .execute()
            .await
            .map_err(req_err(format!("delete rule {rule}")));
        ok_if_missing(res)
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn rules_of_both_families_round_trip_through_their_kernel_message() {
        let v6: IpAddr = "2001:db8:0:1::5".parse().unwrap();
        let v4: IpAddr = "10.0.1.5".parse().unwrap();
        let fwmark6 = Rule {
            priority: Some(1024),
            fwmark: Some(0x80),
            fwmask: Some(0x80),
            table: 254,
            family: Family::V6,
            ..Rule::default()
        };
        for rule in [
            Rule::to_ip(v6, 254, 512),
            Rule::from_ip(v6, 10_003, 1536),
            Rule::from_ip(v4, 3, 1536),
            fwmark6.clone(),
        ] {
            assert_eq!(parse_rule(&build_rule(&rule)), Some(rule));
        }
        assert_eq!(build_rule(&fwmark6).header.family, AddressFamily::Inet6);
        assert_eq!(
            build_rule(&Rule::to_ip(v4, 254, 512)).header.family,
            AddressFamily::Inet
        );
    }
}

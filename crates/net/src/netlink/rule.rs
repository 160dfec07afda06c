//! IPv4 policy-routing rules. Adding an existing rule and deleting a missing one both
//! succeed, as upstream treats EEXIST / ENOENT.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::IpVersion;

use super::{NetlinkError, NetlinkHandle, Rule, ok_if_exists, ok_if_missing, req_err};

/// Converts a kernel rule message (IPv4 only) into a [`Rule`].
fn parse_rule(msg: &RuleMessage) -> Option<Rule> {
    if msg.header.family != AddressFamily::Inet {
        return None;
    }
    let mut rule = Rule {
        table: u32::from(msg.header.table),
        ..Rule::default()
    };
    for attr in &msg.attributes {
        match attr {
            RuleAttribute::Priority(p) => rule.priority = Some(*p),
            RuleAttribute::Table(t) => rule.table = *t,
            RuleAttribute::FwMark(m) => rule.fwmark = Some(*m),
            RuleAttribute::FwMask(m) => rule.fwmask = Some(*m),
            RuleAttribute::Iifname(n) => rule.iif = Some(n.clone()),
            RuleAttribute::Source(IpAddr::V4(a)) => {
                rule.src = Ipv4Net::new(*a, msg.header.src_len).ok();
            }
            RuleAttribute::Destination(IpAddr::V4(a)) => {
                rule.dst = Ipv4Net::new(*a, msg.header.dst_len).ok();
            }
            _ => {}
        }
    }
    Some(rule)
}

/// The kernel message for `rule` (action "lookup table").
fn build_rule(rule: &Rule) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = AddressFamily::Inet;
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
        msg.attributes
            .push(RuleAttribute::Source(IpAddr::V4(src.network())));
    }
    if let Some(dst) = rule.dst {
        msg.header.dst_len = dst.prefix_len();
        msg.attributes
            .push(RuleAttribute::Destination(IpAddr::V4(dst.network())));
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
    msg
}

impl NetlinkHandle {
    /// All IPv4 rules, in kernel order (by priority).
    pub async fn rules(&self) -> Result<Vec<Rule>, NetlinkError> {
        let msgs: Vec<RuleMessage> = self
            .handle
            .rule()
            .get(IpVersion::V4)
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

    /// The IPv6 twin of an address-free `rule` (fwmark, mask, iif, priority, table; `src`
    /// and `dst` must be `None`): added when `present` (EEXIST ok), else one deleted
    /// (`Ok(false)` when there is none). ipamd's main-ENI fwmark rule in IPv6 mode (upstream
    /// `SetupHostNetwork` with `Family = AF_INET6`).
    pub async fn set_addressless_rule_v6(
        &self,
        rule: &Rule,
        present: bool,
    ) -> Result<bool, NetlinkError> {
        let mut msg = build_rule(&Rule {
            src: None,
            dst: None,
            ..rule.clone()
        });
        msg.header.family = AddressFamily::Inet6;
        if present {
            let mut req = self.handle.rule().add();
            *req.message_mut() = msg;
            let res = req
                .execute()
                .await
                .map_err(req_err(format!("add IPv6 rule {rule}")));
            return ok_if_exists(res).map(|()| true);
        }
        let res = self
            .handle
            .rule()
            .del(msg)
            .execute()
            .await
            .map_err(req_err(format!("delete IPv6 rule {rule}")));
        ok_if_missing(res)
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

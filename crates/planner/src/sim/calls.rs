//! The EC2 calls upstream v1.23.1 makes to carry out one planner action (spec section 10.2,
//! `AllocENI`, `FreeENI`; section 3.2 `setupENI`; section 3.11 `DeallocCidrs`), for the
//! benchmark's "upstream" footprint (docs/benchmarks.md).

use std::collections::BTreeMap;

use crate::plan::Action;

/// Whether EC2 counts an action against the mutating or the describe ("non-mutating")
/// token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallKind {
    /// `Describe*`.
    Describe,
    /// Everything else upstream calls (Create/Attach/Modify/Assign/Unassign/Detach/Delete).
    Mutating,
}

impl CallKind {
    /// The bucket of an EC2 action name.
    pub fn of(action: &str) -> Self {
        if action.starts_with("Describe") {
            CallKind::Describe
        } else {
            CallKind::Mutating
        }
    }
}

/// The calls of one action, in the order upstream makes them.
///
/// * `AssignIps`/`AssignPrefixes`: `tryAssignIPs`/`tryAssignPrefixes`, one
///   `AssignPrivateIpAddresses` on the first candidate ENI (spec 3.6).
/// * `AllocateEni`: `createENI` with subnet discovery (the default) lists the zone's subnets
///   (`DescribeSubnets`, spec 3.7), `AllocENI` finds a free device index
///   (`DescribeInstances`), creates, attaches and sets delete-on-termination
///   (`ModifyNetworkInterfaceAttribute`); `setupENI` checks the new ENI's subnet for exclusion
///   (`IsSubnetExcluded`: another `DescribeSubnets`, spec 3.2 step 5).
/// * `ReleaseCidrs`: one `UnassignPrivateIpAddresses` per ENI (`DeallocCidrs`, spec 3.11).
/// * `FreeEni`: `FreeENI` looks up the attachment (`DescribeNetworkInterfaces`), detaches and
///   deletes (spec 10.2).
pub fn upstream_calls(action: &Action) -> &'static [&'static str] {
    match action {
        Action::AssignIps { .. } | Action::AssignPrefixes { .. } => &["AssignPrivateIpAddresses"],
        Action::AllocateEni { .. } => &[
            "DescribeSubnets",
            "CreateNetworkInterface",
            "DescribeInstances",
            "AttachNetworkInterface",
            "ModifyNetworkInterfaceAttribute",
            "DescribeSubnets",
        ],
        Action::ReleaseCidrs { cidrs, .. } if cidrs.is_empty() => &[],
        Action::ReleaseCidrs { .. } => &["UnassignPrivateIpAddresses"],
        Action::FreeEni { .. } => &[
            "DescribeNetworkInterfaces",
            "DetachNetworkInterface",
            "DeleteNetworkInterface",
        ],
    }
}

/// EC2 calls counted per action name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallCount {
    /// Calls per action name.
    pub by_action: BTreeMap<String, u64>,
}

impl CallCount {
    /// Counts one call.
    pub fn add(&mut self, action: &str) {
        *self.by_action.entry(action.to_string()).or_default() += 1;
    }

    /// Counts every call of a planner action.
    pub fn add_action(&mut self, action: &Action) {
        for call in upstream_calls(action) {
            self.add(call);
        }
    }

    /// Calls of one kind.
    pub fn of_kind(&self, kind: CallKind) -> u64 {
        self.by_action
            .iter()
            .filter(|(a, _)| CallKind::of(a) == kind)
            .map(|(_, n)| n)
            .sum()
    }

    /// Mutating calls.
    pub fn mutating(&self) -> u64 {
        self.of_kind(CallKind::Mutating)
    }

    /// Describe calls.
    pub fn describe(&self) -> u64 {
        self.of_kind(CallKind::Describe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::CidrKind;

    #[test]
    fn an_eni_costs_three_mutating_and_three_describe_calls() {
        let mut c = CallCount::default();
        c.add_action(&Action::AllocateEni {
            kind: CidrKind::Ip,
            count: 9,
        });
        assert_eq!((c.mutating(), c.describe()), (3, 3));
    }

    #[test]
    fn an_empty_release_costs_nothing() {
        let mut c = CallCount::default();
        c.add_action(&Action::ReleaseCidrs {
            eni: "eni-1".into(),
            cidrs: vec![],
        });
        assert_eq!(c.mutating() + c.describe(), 0);
    }
}

//! Shared builders for the planner's integration tests.
#![allow(dead_code)]

use planner::sim::SimNode;
use planner::{NodeCapacity, PoolPolicy};

/// Generous tick budget for one settle.
pub const MAX_TICKS: usize = 2_000;

/// t3.small: ENILimit 3, IPv4Limit 4.
pub fn t3_small() -> NodeCapacity {
    NodeCapacity {
        max_enis: 3,
        ipv4_per_eni: 4,
        unmanaged_enis: 0,
        reserve_trunk_slot: false,
    }
}

/// p3dn.24xlarge: 15 ENIs, IPv4Limit 50.
pub fn p3dn() -> NodeCapacity {
    NodeCapacity {
        max_enis: 15,
        ipv4_per_eni: 50,
        unmanaged_enis: 0,
        reserve_trunk_slot: false,
    }
}

/// Secondary-IP policy (targets 0 = unset).
pub fn secondary(warm_eni: u32, warm_ip: u32, min_ip: u32, max_pods: u32) -> PoolPolicy {
    PoolPolicy {
        warm_eni_target: warm_eni,
        warm_ip_target: warm_ip,
        minimum_ip_target: min_ip,
        warm_prefix_target: 0,
        prefix_delegation: false,
        custom_networking: false,
        max_pods,
    }
}

/// Prefix-delegation policy (targets 0 = unset).
pub fn prefix(warm_prefix: u32, warm_ip: u32, min_ip: u32, max_pods: u32) -> PoolPolicy {
    PoolPolicy {
        warm_eni_target: 1,
        warm_ip_target: warm_ip,
        minimum_ip_target: min_ip,
        warm_prefix_target: warm_prefix,
        prefix_delegation: true,
        custom_networking: false,
        max_pods,
    }
}

/// A node grown from 0 pods to `pods`, one pod at a time, settled after each.
pub fn grown(policy: PoolPolicy, cap: NodeCapacity, pods: usize) -> SimNode {
    let mut node = SimNode::new(policy, cap);
    if let Err(e) = node.grow_to(pods, MAX_TICKS) {
        panic!("growing to {pods} pods failed: {e}");
    }
    node
}

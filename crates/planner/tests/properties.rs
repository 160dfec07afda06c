//! Property tests of the planner and of the simulator driving it.

mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use planner::sim::SimNode;
use planner::targets::eni_budget;
use planner::{
    Action, EniView, NodeCapacity, Note, PoolPolicy, PoolSnapshot, TickTimers, allocatable_enis,
    eni_limits, evaluate, has_room_for_eni, plan_tick,
};
use proptest::prelude::*;

fn cap_strategy() -> impl Strategy<Value = NodeCapacity> {
    (1u32..=6, 2u32..=16, 0u32..=1, any::<bool>()).prop_map(|(max_enis, ipv4, unmanaged, trunk)| {
        NodeCapacity {
            max_enis,
            ipv4_per_eni: ipv4,
            unmanaged_enis: unmanaged,
            reserve_trunk_slot: trunk,
        }
    })
}

fn policy_strategy() -> impl Strategy<Value = PoolPolicy> {
    (
        0u32..=3,
        prop_oneof![Just(0u32), 1u32..=20],
        prop_oneof![Just(0u32), 1u32..=40],
        0u32..=3,
        any::<bool>(),
        prop::bool::weighted(0.2),
        1u32..=200,
    )
        .prop_map(
            |(warm_eni, warm_ip, min_ip, warm_prefix, pd, custom, max_pods)| PoolPolicy {
                warm_eni_target: warm_eni,
                warm_ip_target: warm_ip,
                minimum_ip_target: min_ip,
                warm_prefix_target: warm_prefix,
                prefix_delegation: pd,
                custom_networking: custom,
                max_pods,
            },
        )
}

/// Invariants at a fixed point of the simulator.
fn check_fixed_point(node: &SimNode) -> Result<(), TestCaseError> {
    let snap = node.snapshot();
    let eval = evaluate(&node.policy, &node.cap, &snap);
    let plan = plan_tick(&node.policy, &node.cap, &snap, &node.timers());
    prop_assert!(plan.is_empty(), "fixed point must plan nothing: {plan:?}");
    // With the 30 s decrease gate open, only the anti-flap guard may hold a shrink back.
    let mut open = node.timers();
    open.since_last_decrease = None;
    let plan = plan_tick(&node.policy, &node.cap, &snap, &open);
    prop_assert!(
        plan.is_empty(),
        "fixed point must plan nothing with the gate open: {plan:?}"
    );
    let managed = node.enis.iter().filter(|e| !e.excluded).count() as u32;
    prop_assert!(managed <= eni_budget(&node.cap, &snap).max(1));
    if eval.too_low {
        let no_candidates = allocatable_enis(&node.policy, &node.cap, &snap)
            .next()
            .is_none();
        prop_assert!(
            no_candidates && !has_room_for_eni(&node.cap, &snap),
            "too low at a fixed point with room left: {eval:?}"
        );
    }
    if eval.too_high {
        prop_assert!(
            plan.notes.contains(&Note::ShrinkHeldAtLowWatermark),
            "too high at a fixed point without the anti-flap guard: {eval:?} {:?}",
            plan.notes
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn simulator_reaches_fixed_point(
        policy in policy_strategy(),
        cap in cap_strategy(),
        card in 0u32..=1,
        initial_cidrs in 0u32..=4,
        initial_pods in 0usize..=4,
        pods in 0usize..=40,
        removed in 0usize..=40,
    ) {
        let mut node = SimNode::new(policy, cap);
        node.network_card = card;
        let max = eni_limits(&policy, &cap).max_cidrs_per_eni();
        node.add_cidrs_to("eni-000", initial_cidrs.min(max)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for _ in 0..initial_pods {
            if node.add_pod().is_err() { break; }
        }
        node.settle(common::MAX_TICKS).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_fixed_point(&node)?;
        while node.pods().len() < pods {
            if node.add_pod().is_err() { break; }
            node.settle(common::MAX_TICKS).map_err(|e| TestCaseError::fail(e.to_string()))?;
            check_fixed_point(&node)?;
        }
        for pod in node.pods().into_iter().take(removed) {
            node.remove_pod(pod).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        node.settle(common::MAX_TICKS).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_fixed_point(&node)?;
    }
}

/// A coherent ENI view: `cidrs` current-mode CIDRs, pods filling them first-fit.
#[allow(clippy::too_many_arguments)]
fn view(
    index: u32,
    pd: bool,
    cidrs: u32,
    pod_frac: u32,
    cooling_frac: u32,
    age_s: u64,
    flags: u8,
) -> EniView {
    let size = if pd { 16 } else { 1 };
    let total = cidrs * size;
    let assigned = total * pod_frac / 8;
    let cooldown = (total - assigned) * cooling_frac / 8;
    let used_cidrs = assigned.div_ceil(size);
    let base = u32::from(Ipv4Addr::new(10, index as u8, 0, 0));
    let freeable: Vec<Ipv4Net> = (used_cidrs..cidrs)
        .filter_map(|c| Ipv4Net::new(Ipv4Addr::from(base + c * 16), if pd { 28 } else { 32 }).ok())
        .collect();
    EniView {
        id: format!("eni-{index}"),
        device_number: index,
        is_primary: index == 0,
        is_trunk: index != 0 && flags == 1,
        is_efa: index != 0 && flags == 2,
        excluded: index != 0 && flags == 3,
        age: Duration::from_secs(age_s),
        cidr_count: cidrs,
        total_ips: total,
        assigned_ips: assigned,
        cooldown_ips: cooldown,
        prefixes: if pd { cidrs } else { 0 },
        free_prefixes: if pd { cidrs - used_cidrs } else { 0 },
        freeable_cidrs: freeable,
    }
}

fn snapshot_strategy(pd: bool, max_cidrs: u32) -> impl Strategy<Value = PoolSnapshot> {
    (
        0u32..=1,
        prop::collection::vec(
            (0..=max_cidrs, 0u32..=8, 0u32..=8, 0u64..=200, 0u8..=8),
            1..=5,
        ),
    )
        .prop_map(move |(card, enis)| PoolSnapshot {
            network_card: card,
            waiting_pods: 0,
            enis: enis
                .into_iter()
                .enumerate()
                .map(|(i, (c, p, cool, age, flags))| view(i as u32, pd, c, p, cool, age, flags))
                .collect(),
        })
}

fn case_strategy() -> impl Strategy<Value = (PoolPolicy, NodeCapacity, PoolSnapshot, TickTimers)> {
    (policy_strategy(), cap_strategy()).prop_flat_map(|(policy, cap)| {
        let max = eni_limits(&policy, &cap).max_cidrs_per_eni();
        (
            Just(policy),
            Just(cap),
            snapshot_strategy(policy.prefix_delegation, max),
            (
                prop::option::of(0u64..=60),
                any::<bool>(),
                prop::bool::weighted(0.8),
            )
                .prop_map(|(since, backoff, allowed)| TickTimers {
                    since_last_decrease: since.map(Duration::from_secs),
                    in_insufficient_backoff: backoff,
                    provisioning_allowed: allowed,
                }),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn plans_are_safe((policy, cap, pool, timers) in case_strategy()) {
        let plan = plan_tick(&policy, &cap, &pool, &timers);
        // Never grows and shrinks in the same tick.
        prop_assert!(!(plan.grows() && plan.shrinks()));
        let max_cidrs = eni_limits(&policy, &cap).max_cidrs_per_eni();
        let mut freed = 0;
        for action in &plan.actions {
            match action {
                Action::AllocateEni { count, .. } => {
                    // Never more ENIs than capacity allows.
                    prop_assert!(has_room_for_eni(&cap, &pool));
                    prop_assert!(*count >= 1 && *count <= max_cidrs);
                }
                Action::AssignIps { eni, count } | Action::AssignPrefixes { eni, count } => {
                    let e = pool.enis.iter().find(|e| &e.id == eni);
                    prop_assert!(e.is_some_and(|e| !e.is_trunk && !e.excluded && e.cidr_count + count <= max_cidrs));
                    prop_assert!(*count >= 1);
                }
                Action::ReleaseCidrs { eni, cidrs } => {
                    // Only CIDRs without an assigned address, each at most once.
                    let e = pool.enis.iter().find(|e| &e.id == eni);
                    prop_assert!(e.is_some());
                    let freeable: HashSet<_> = e.map(|e| e.freeable_cidrs.iter().copied().collect()).unwrap_or_default();
                    let unique: HashSet<_> = cidrs.iter().copied().collect();
                    prop_assert_eq!(unique.len(), cidrs.len());
                    prop_assert!(cidrs.iter().all(|c| freeable.contains(c)));
                    prop_assert!(timers.decrease_allowed());
                }
                Action::FreeEni { eni } => {
                    freed += 1;
                    let e = pool.enis.iter().find(|e| &e.id == eni);
                    prop_assert!(e.is_some_and(|e| !e.is_primary && !e.is_trunk && !e.is_efa
                        && e.assigned_ips == 0 && e.age >= planner::MIN_ENI_LIFETIME));
                    prop_assert!(timers.provisioning_allowed);
                }
            }
        }
        prop_assert!(freed <= 1);
        if plan.grows() {
            prop_assert!(timers.provisioning_allowed && !timers.in_insufficient_backoff);
            prop_assert!(plan.evaluation.too_low);
        }
    }

    /// Pods waiting for an address (docs/pool-planner.md, deviation 12) can only make the
    /// pool want more and release less; with IP targets, enough of them always make it low.
    #[test]
    fn waiting_pods_only_add_demand(
        (policy, cap, pool, _timers) in case_strategy(),
        waiting in 1u32..300,
    ) {
        let before = evaluate(&policy, &cap, &pool);
        let with = evaluate(&policy, &cap, &PoolSnapshot { waiting_pods: waiting, ..pool.clone() });
        prop_assert!(with.short >= before.short);
        prop_assert!(with.over <= before.over);
        prop_assert!(with.too_low || !before.too_low);
        prop_assert!(with.too_high <= before.too_high);
        let below_ceiling = before.stats.total_ips < policy.max_pods;
        if before.ip_targets_defined && below_ceiling && waiting > before.stats.available() {
            prop_assert!(with.too_low, "{waiting} waiting, {:?}", before.stats);
        }
    }
}

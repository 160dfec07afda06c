//! Upstream unit tests (`pkg/ipamd/ipamd_test.go`, `pkg/ipamd/datastore/data_store_test.go`)
//! and the additional worked examples of upstream's `docs/eni-and-ip-target.md` and
//! `docs/prefix-and-ip-target.md`, re-expressed against the planner.

mod common;

use std::time::Duration;

use common::{MAX_TICKS, p3dn, prefix, secondary, t3_small};
use planner::sim::{SimEni, SimNode};
use planner::{
    Action, CidrKind, DeletionTargets, EniView, NodeCapacity, PoolSnapshot, PoolStats, TickTimers,
    deletable_eni, is_pool_too_low, plan_tick, target_state,
};

fn stats(total: u32, assigned: u32) -> PoolStats {
    PoolStats {
        total_ips: total,
        assigned_ips: assigned,
        ..PoolStats::default()
    }
}

fn pd_stats(prefixes: u32, assigned: u32) -> PoolStats {
    // Pods fill prefixes one after the other.
    let used = assigned.div_ceil(16);
    PoolStats {
        total_ips: prefixes * 16,
        assigned_ips: assigned,
        cooldown_ips: 0,
        total_prefixes: prefixes,
        free_prefixes: prefixes.saturating_sub(used),
        waiting_pods: 0,
    }
}

/// maxIPsPerENI = 3, maxENI = 4.
fn cap3() -> NodeCapacity {
    NodeCapacity {
        max_enis: 4,
        ipv4_per_eni: 4,
        unmanaged_enis: 0,
        reserve_trunk_slot: false,
    }
}

#[test]
fn node_ip_pool_too_low() {
    let c = cap3();
    // (WARM_ENI, WARM_IP, stats, maxPods) -> low?
    let cases: &[(u32, u32, PoolStats, u32, bool)] = &[
        (1, 0, stats(0, 0), 110, true),  // new store, defaults
        (0, 0, stats(0, 0), 110, true),  // new store, WARM_ENI=0: available 0
        (1, 3, stats(0, 0), 110, true),  // new store, WARM_IP=3
        (1, 1, stats(3, 0), 110, false), // 3 free IPs, WARM_IP=1
        (1, 0, stats(3, 1), 110, true),  // 1 used of 3, WARM_ENI=1
        (0, 0, stats(3, 1), 110, false), // 1 used, WARM_ENI=0
        (1, 0, stats(3, 3), 110, true),  // 3 used, WARM_ENI=1
        (0, 0, stats(3, 3), 110, true),  // 3 used, WARM_ENI=0: available 0
        (1, 0, stats(3, 3), 3, false),   // maxPods=3 with 3 IPs
    ];
    for (i, (warm_eni, warm_ip, s, max_pods, low)) in cases.iter().enumerate() {
        let p = secondary(*warm_eni, *warm_ip, 0, *max_pods);
        assert_eq!(is_pool_too_low(&p, &c, 0, s), *low, "case {i}");
    }
}

#[test]
fn node_prefix_pool_too_low() {
    let c = cap3();
    // (WARM_PREFIX, stats, maxPods) -> low?
    let cases: &[(u32, PoolStats, u32, bool)] = &[
        (1, pd_stats(1, 0), 110, false), // 1 free /28
        (1, pd_stats(1, 1), 110, true),  // 1 used, available 15 < 16
        (0, pd_stats(1, 1), 110, false),
        (1, pd_stats(1, 3), 110, true),
        (0, pd_stats(1, 3), 110, false),
        (1, pd_stats(1, 3), 4, false),  // maxPods=4 <= 16 addresses
        (1, pd_stats(0, 0), 110, true), // empty store
    ];
    for (i, (warm_prefix, s, max_pods, low)) in cases.iter().enumerate() {
        let p = prefix(*warm_prefix, 0, 0, *max_pods);
        assert_eq!(is_pool_too_low(&p, &c, 0, s), *low, "case {i}");
    }
}

#[test]
fn warm_ip_target_state() {
    let p = secondary(1, 5, 0, 110);
    let empty = target_state(&p, 0, &stats(0, 0));
    assert_eq!((empty.short, empty.over, empty.defined), (5, 0, true));
    let two = target_state(&p, 0, &stats(2, 0));
    assert_eq!((two.short, two.over), (3, 0));
    let five = target_state(&p, 0, &stats(5, 0));
    assert_eq!((five.short, five.over), (0, 0));
    // No IP targets: nothing defined.
    let none = target_state(&secondary(1, 0, 0, 110), 0, &stats(0, 0));
    assert!(!none.defined);
}

#[test]
fn warm_ip_target_state_with_pd() {
    let p = prefix(0, 5, 0, 110);
    let empty = target_state(&p, 0, &pd_stats(0, 0));
    assert_eq!((empty.short, empty.over), (1, 0));
    let two_free = target_state(&p, 0, &pd_stats(2, 0));
    assert_eq!((two_free.short, two_free.over), (0, 1));
    let one_free = target_state(&p, 0, &pd_stats(1, 0));
    assert_eq!((one_free.short, one_free.over), (0, 0));
}

#[test]
fn pd_over_computation_releases_one_prefix() {
    // 3 prefixes, 1 pod, WARM_IP_TARGET=16: needWarm = 2, free = 2 -> over = 1.
    let mut node = SimNode::new(prefix(0, 16, 0, 110), p3dn());
    node.add_cidrs_to("eni-000", 3).expect("room");
    node.add_pod().expect("address");
    let plan = plan_tick(
        &node.policy,
        &node.cap,
        &node.snapshot(),
        &TickTimers::idle(),
    );
    assert_eq!(plan.evaluation.over, 1);
    let released: usize = plan
        .actions
        .iter()
        .map(|a| match a {
            Action::ReleaseCidrs { cidrs, .. } => cidrs.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(released, 1);
    assert!(plan.decrease_ran);
}

#[test]
fn decrease_ip_pool() {
    // WARM_IP_TARGET=1, 4 IPs, 2 assigned -> over 1; after the decrease over 0.
    let mut node = SimNode::new(secondary(1, 1, 0, 110), p3dn());
    node.add_cidrs_to("eni-000", 4).expect("room");
    node.add_pod().expect("address");
    node.add_pod().expect("address");
    let first = node.tick().expect("tick");
    assert_eq!(first.plan.evaluation.over, 1);
    assert!(first.changed);
    assert_eq!(node.total_ips(), 3);
    let second = node.tick().expect("tick");
    assert_eq!(second.plan.evaluation.over, 0);
    assert!(second.plan.is_empty());
    assert_eq!(node.total_ips(), 3);
}

#[test]
fn decrease_is_gated_for_30_seconds() {
    let mut node = SimNode::new(secondary(1, 1, 0, 110), p3dn());
    node.add_cidrs_to("eni-000", 6).expect("room");
    let mut timers = TickTimers::idle();
    timers.since_last_decrease = Some(Duration::from_secs(30));
    let gated = plan_tick(&node.policy, &node.cap, &node.snapshot(), &timers);
    assert!(gated.evaluation.too_high);
    assert!(gated.is_empty());
    assert!(!gated.decrease_ran);
    timers.since_last_decrease = Some(Duration::from_secs(31));
    let open = plan_tick(&node.policy, &node.cap, &node.snapshot(), &timers);
    assert!(open.shrinks());
    assert!(open.decrease_ran);
}

#[test]
fn try_add_ip_to_eni_allocates_eni_with_warm_ip_target() {
    // WARM_IP_TARGET=3, the only ENI is full (14 IPs, all used) -> new ENI with 3 IPs.
    let cap = NodeCapacity {
        max_enis: 4,
        ipv4_per_eni: 15,
        unmanaged_enis: 0,
        reserve_trunk_slot: false,
    };
    let mut node = SimNode::new(secondary(1, 3, 0, 110), cap);
    node.add_cidrs_to("eni-000", 14).expect("room");
    for _ in 0..14 {
        node.add_pod().expect("address");
    }
    let plan = plan_tick(
        &node.policy,
        &node.cap,
        &node.snapshot(),
        &TickTimers::idle(),
    );
    assert_eq!(
        plan.actions,
        vec![Action::AllocateEni {
            kind: CidrKind::Ip,
            count: 3
        }]
    );
}

#[test]
fn default_mode_allocates_full_eni_when_existing_are_full() {
    let cap = NodeCapacity {
        max_enis: 4,
        ipv4_per_eni: 15,
        unmanaged_enis: 0,
        reserve_trunk_slot: false,
    };
    let mut node = SimNode::new(secondary(1, 0, 0, 110), cap);
    node.add_cidrs_to("eni-000", 14).expect("room");
    node.add_pod().expect("address");
    let plan = plan_tick(
        &node.policy,
        &node.cap,
        &node.snapshot(),
        &TickTimers::idle(),
    );
    assert_eq!(
        plan.actions,
        vec![Action::AllocateEni {
            kind: CidrKind::Ip,
            count: 14
        }]
    );
}

/// TestWarmENIInteractions: eni-1 (primary, 2 IPs both used), eni-2 (2 free), eni-3 (1 free).
fn warm_eni_pool() -> PoolSnapshot {
    let old = Duration::from_secs(3600);
    let view = |id: &str, dev: u32, primary: bool, total: u32, assigned: u32| EniView {
        id: id.to_string(),
        device_number: dev,
        is_primary: primary,
        is_trunk: false,
        is_efa: false,
        excluded: false,
        age: old,
        cidr_count: total,
        total_ips: total,
        assigned_ips: assigned,
        cooldown_ips: 0,
        prefixes: 0,
        free_prefixes: 0,
        freeable_cidrs: Vec::new(),
    };
    PoolSnapshot {
        network_card: 0,
        waiting_pods: 0,
        enis: vec![
            view("eni-1", 1, true, 2, 2),
            view("eni-2", 2, false, 2, 0),
            view("eni-3", 3, false, 1, 0),
        ],
    }
}

fn deletable(pool: &PoolSnapshot, warm: u32, min: u32) -> Option<String> {
    let t = DeletionTargets {
        warm_ip: warm,
        minimum_ip: min,
        warm_prefix: 0,
        prefix_delegation: false,
    };
    deletable_eni(pool, &t).map(|e| e.id.clone())
}

#[test]
fn warm_eni_interactions() {
    let mut pool = warm_eni_pool();
    assert_eq!(deletable(&pool, 3, 1), None);
    assert_eq!(deletable(&pool, 1, 5), None);
    assert_eq!(deletable(&pool, 2, 4).as_deref(), Some("eni-3"));
    pool.enis.retain(|e| e.id != "eni-3");
    assert_eq!(deletable(&pool, 0, 3), None);
    assert_eq!(deletable(&pool, 0, 2).as_deref(), Some("eni-2"));

    // Trunk and EFA ENIs are never removed; an empty plain ENI is.
    let mut special = warm_eni_pool();
    special.enis[1].is_trunk = true;
    special.enis[2].is_efa = true;
    assert_eq!(deletable(&special, 0, 0), None);
    special.enis[2].is_efa = false;
    assert_eq!(deletable(&special, 0, 0).as_deref(), Some("eni-3"));
}

#[test]
fn young_or_cooling_enis_are_kept() {
    let mut pool = warm_eni_pool();
    pool.enis[2].age = Duration::from_secs(59);
    pool.enis[1].cooldown_ips = 1;
    assert_eq!(deletable(&pool, 0, 0), None);
    pool.enis[2].age = Duration::from_secs(60);
    assert_eq!(deletable(&pool, 0, 0).as_deref(), Some("eni-3"));
}

#[test]
fn scale_down_with_targets_on_p3dn() {
    // WARM_IP=5, MIN_IP=10, 45 pods on 50 IPs (49 + 1), then pods drop to 30.
    let mut node = common::grown(secondary(1, 5, 10, 737), p3dn(), 45);
    assert_eq!(node.ips_per_eni(), vec![49, 1]);
    let pods = node.pods();
    for pod in pods.iter().skip(30) {
        node.remove_pod(*pod).expect("known pod");
    }
    let snap = node.snapshot();
    assert_eq!(snap.stats().cooldown_ips, 15);
    let first = node.tick().expect("tick");
    assert_eq!(first.plan.evaluation.over, 15);
    let released: usize = first
        .plan
        .actions
        .iter()
        .map(|a| match a {
            Action::ReleaseCidrs { cidrs, .. } => cidrs.len(),
            _ => 0,
        })
        .sum();
    // Cooling addresses are released too (upstream `tryUnassignCidrsFromAll`; see
    // docs/pool-planner.md).
    assert_eq!(released, 15);
    assert_eq!(node.total_ips(), 35);
    node.settle(MAX_TICKS).expect("fixed point");
    // ENI2, empty and old enough, is freed: the primary still has >= 5 free and >= 10 total.
    assert_eq!(node.enis.len(), 1);
    assert_eq!(node.total_ips(), 35);
    assert_eq!(node.unused_ips(), 5);
}

#[test]
fn warm_eni_mode_never_releases_single_ips() {
    let mut node = common::grown(secondary(1, 0, 0, 737), p3dn(), 60);
    let before = node.total_ips();
    for pod in node.pods().into_iter().skip(40) {
        node.remove_pod(pod).expect("known pod");
    }
    node.settle(MAX_TICKS).expect("fixed point");
    // 40 pods on 3 ENIs of 49: available 107 >= (1+1)*49 -> the empty third ENI goes, but
    // no single address is ever released.
    assert!(node.ips_per_eni().iter().all(|n| *n == 49));
    assert!(node.total_ips() < before);
    assert_eq!(node.total_ips() % 49, 0);
}

#[test]
fn max_eni_reached_is_noted() {
    let node = common::grown(secondary(1, 0, 0, 110), t3_small(), 9);
    let plan = plan_tick(
        &node.policy,
        &node.cap,
        &node.snapshot(),
        &TickTimers::idle(),
    );
    assert!(plan.evaluation.too_low);
    assert!(plan.is_empty());
    assert!(matches!(
        plan.notes.as_slice(),
        [planner::Note::MaxEniReached { enis: 3, budget: 3 }]
    ));
}

#[test]
fn custom_networking_skips_primary() {
    let mut p = secondary(1, 0, 0, 110);
    p.custom_networking = true;
    let node = SimNode::new(p, t3_small());
    let plan = plan_tick(
        &node.policy,
        &node.cap,
        &node.snapshot(),
        &TickTimers::idle(),
    );
    assert_eq!(
        plan.actions,
        vec![Action::AllocateEni {
            kind: CidrKind::Ip,
            count: 3
        }]
    );
}

#[test]
fn provisioning_blocked_and_backoff_plan_nothing() {
    let node = SimNode::new(secondary(1, 0, 0, 110), t3_small());
    let mut timers = TickTimers::idle();
    timers.provisioning_allowed = false;
    let blocked = plan_tick(&node.policy, &node.cap, &node.snapshot(), &timers);
    assert!(blocked.is_empty());
    assert_eq!(blocked.notes, vec![planner::Note::ProvisioningBlocked]);
    let mut timers = TickTimers::idle();
    timers.in_insufficient_backoff = true;
    let backoff = plan_tick(&node.policy, &node.cap, &node.snapshot(), &timers);
    assert!(backoff.is_empty());
    assert_eq!(
        backoff.notes,
        vec![planner::Note::InsufficientAddressBackoff]
    );
}

#[test]
fn secondary_cards_use_targets_one_one() {
    // Card 1 ignores WARM_ENI_TARGET=1 and keeps exactly 1 warm address.
    let mut node = SimNode::new(secondary(1, 0, 0, 110), p3dn());
    node.network_card = 1;
    node.grow_to(3, MAX_TICKS).expect("grows");
    assert_eq!(node.total_ips(), 4);
    assert_eq!(node.unused_ips(), 1);
}

#[test]
fn trunk_slot_is_reserved_on_card_0() {
    let mut cap = t3_small();
    cap.reserve_trunk_slot = true;
    let node = common::grown(secondary(1, 0, 0, 110), cap, 6);
    // One of the 3 ENI slots is kept for the trunk ENI.
    assert_eq!(node.enis.len(), 2);
    let mut with_trunk = SimNode::new(secondary(1, 0, 0, 110), cap);
    let mut trunk = SimEni::new("eni-trunk", 2, Duration::ZERO);
    trunk.is_trunk = true;
    with_trunk.push_eni(trunk);
    with_trunk.grow_to(6, MAX_TICKS).expect("grows");
    // The trunk exists: no slot reserved any more, but the trunk itself takes one.
    assert_eq!(with_trunk.enis.len(), 3);
    assert!(
        with_trunk
            .eni("eni-trunk")
            .is_some_and(|e| e.cidrs.is_empty())
    );
}

#[test]
fn subnet_exhaustion_starts_backoff() {
    let mut node = SimNode::new(secondary(1, 0, 0, 110), p3dn());
    node.subnet_free = Some(10);
    let out = node.tick().expect("tick");
    // Full request (49) refused, the single-address retry granted.
    assert!(out.changed);
    assert_eq!(node.total_ips(), 1);
    node.subnet_free = Some(0);
    let failed = node.tick().expect("tick");
    assert!(!failed.changed);
    assert!(node.timers().in_insufficient_backoff);
    let next = node.tick().expect("tick");
    assert_eq!(
        next.plan.notes,
        vec![planner::Note::InsufficientAddressBackoff]
    );
}

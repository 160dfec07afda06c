//! Upstream's intermediate predicates (`datastoreTargetState`, `isDatastorePoolTooLow`, …,
//! `hasRoomForEni` in `pkg/ipamd/ipamd.go`) on their own, and our two deviations
//! (anti-flap guard, prefix conversion on cards > 0).

mod common;

use std::time::Duration;

use common::{MAX_TICKS, p3dn, prefix, secondary, t3_small};
use planner::sim::{SimEni, SimNode};
use planner::{
    Action, NodeCapacity, Note, PoolSnapshot, PoolStats, TickTimers, eni_resources_to_allocate,
    has_room_for_eni, plan_tick, prefixes_needed, should_remove_extra_enis, target_state,
};

fn pool_with(enis: usize, excluded: usize) -> PoolSnapshot {
    let mut node = SimNode::new(secondary(1, 0, 0, 110), t3_small());
    for i in 1..enis as u32 {
        let mut e = SimEni::new(format!("eni-x{i}"), i, Duration::ZERO);
        e.excluded = (i as usize) <= excluded;
        node.push_eni(e);
    }
    node.snapshot()
}

#[test]
fn has_room_for_eni_counts_unmanaged_and_trunk_slot() {
    let mut cap = NodeCapacity {
        max_enis: 3,
        ipv4_per_eni: 4,
        unmanaged_enis: 0,
        reserve_trunk_slot: false,
    };
    assert!(has_room_for_eni(&cap, &pool_with(2, 0)));
    assert!(!has_room_for_eni(&cap, &pool_with(3, 0)));
    cap.unmanaged_enis = 1;
    assert!(!has_room_for_eni(&cap, &pool_with(2, 0)));
    cap.unmanaged_enis = 0;
    cap.reserve_trunk_slot = true;
    assert!(!has_room_for_eni(&cap, &pool_with(2, 0)));
    // Cards > 0 never reserve the trunk slot.
    let mut card1 = pool_with(2, 0);
    card1.network_card = 1;
    assert!(has_room_for_eni(&cap, &card1));
    // Excluded ENIs are subtracted on both sides: they still occupy a slot.
    cap.reserve_trunk_slot = false;
    assert!(!has_room_for_eni(&cap, &pool_with(3, 1)));
}

#[test]
fn should_remove_extra_enis_thresholds() {
    let cap = t3_small();
    let pool = pool_with(1, 0);
    let s = |total, assigned| PoolStats {
        total_ips: total,
        assigned_ips: assigned,
        ..PoolStats::default()
    };
    // WARM_ENI_TARGET=1: available >= (1+1) * 3.
    assert!(!should_remove_extra_enis(
        &secondary(1, 0, 0, 110),
        &cap,
        &pool,
        &s(9, 4)
    ));
    assert!(should_remove_extra_enis(
        &secondary(1, 0, 0, 110),
        &cap,
        &pool,
        &s(9, 3)
    ));
    // IP targets defined: always look.
    assert!(should_remove_extra_enis(
        &secondary(1, 1, 0, 110),
        &cap,
        &pool,
        &s(9, 9)
    ));
}

#[test]
fn prefixes_needed_and_resources_to_allocate() {
    let cap = t3_small();
    let empty = PoolStats::default();
    // WARM_PREFIX_TARGET=2, no free prefix: 2; never more than maxPrefixesPerENI (3).
    assert_eq!(prefixes_needed(&prefix(2, 0, 0, 110), 0, &empty), 2);
    assert_eq!(
        eni_resources_to_allocate(&prefix(5, 0, 0, 110), &cap, 0, &empty),
        3
    );
    // WARM_PREFIX_TARGET=0 still asks for 1.
    assert_eq!(prefixes_needed(&prefix(0, 0, 0, 110), 0, &empty), 1);
    // IP targets: the prefix shortfall (MIN 40 -> 3 prefixes).
    assert_eq!(prefixes_needed(&prefix(1, 1, 40, 110), 0, &empty), 3);
    // Secondary: full ENI without targets, min(short, max) with targets.
    assert_eq!(
        eni_resources_to_allocate(&secondary(1, 0, 0, 110), &p3dn(), 0, &empty),
        49
    );
    assert_eq!(
        eni_resources_to_allocate(&secondary(1, 7, 0, 110), &p3dn(), 0, &empty),
        7
    );
    assert_eq!(
        eni_resources_to_allocate(&secondary(1, 0, 80, 110), &p3dn(), 0, &empty),
        49
    );
}

#[test]
fn card_1_in_pd_counts_in_prefixes() {
    // Upstream would report over = 15 *addresses* here and release the only prefix.
    let s = PoolStats {
        total_ips: 16,
        assigned_ips: 0,
        cooldown_ips: 0,
        total_prefixes: 1,
        free_prefixes: 1,
        waiting_pods: 0,
    };
    let ts = target_state(&prefix(0, 0, 0, 110), 1, &s);
    assert_eq!((ts.short, ts.over, ts.defined), (0, 0, true));
    let three = PoolStats {
        total_ips: 48,
        total_prefixes: 3,
        free_prefixes: 3,
        ..s
    };
    assert_eq!(target_state(&prefix(0, 0, 0, 110), 1, &three).over, 2);
}

#[test]
fn warm_prefix_zero_does_not_flap() {
    // PD, WARM_PREFIX_TARGET=0: one full prefix and one free one. Upstream releases the
    // free prefix (free 1 > 0) and re-adds one on the next tick (available 0): a flap.
    let mut node = SimNode::new(prefix(0, 0, 0, 110), p3dn());
    node.add_cidrs_to("eni-000", 2).expect("room");
    for _ in 0..16 {
        node.add_pod().expect("address");
    }
    let plan = plan_tick(
        &node.policy,
        &node.cap,
        &node.snapshot(),
        &TickTimers::idle(),
    );
    assert!(plan.evaluation.too_high);
    assert!(plan.is_empty());
    assert!(plan.notes.contains(&Note::ShrinkHeldAtLowWatermark));
    node.settle(MAX_TICKS).expect("fixed point");
    assert_eq!(node.cidrs_per_eni(), vec![2]);
}

#[test]
fn release_prefers_last_eni_and_frees_it() {
    // WARM_IP_TARGET=2 on t3.small: 3 ENIs full of addresses, pods only on the primary.
    let mut node = SimNode::new(secondary(1, 2, 0, 110), t3_small());
    node.add_cidrs_to("eni-000", 3).expect("room");
    for (i, dev) in [(1u32, 1u32), (2, 2)] {
        node.push_eni(SimEni::new(format!("eni-s{i}"), dev, Duration::ZERO));
        node.add_cidrs_to(&format!("eni-s{i}"), 3).expect("room");
    }
    node.now = Duration::from_secs(120);
    for _ in 0..3 {
        node.add_pod().expect("address");
    }
    let first = node.tick().expect("tick");
    // over = 6 - 2 = 4: the last ENI's 3 first, then 1 from the one before.
    let released: Vec<(&str, usize)> = first
        .plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::ReleaseCidrs { eni, cidrs } => Some((eni.as_str(), cidrs.len())),
            _ => None,
        })
        .collect();
    assert_eq!(released, vec![("eni-s2", 3), ("eni-s1", 1)]);
    // The now empty ENI is freed in the same tick (the other ENIs keep 2 free addresses).
    assert!(first.plan.actions.contains(&Action::FreeEni {
        eni: "eni-s2".into()
    }));
    node.settle(MAX_TICKS).expect("fixed point");
    assert_eq!(node.ips_per_eni(), vec![3, 2]);
}

#[test]
fn waiting_pods_are_served_and_the_warm_target_kept_in_one_growth() {
    // WARM_IP_TARGET=2, MINIMUM_IP_TARGET=5: 5 addresses, all taken, 7 pods refused since
    // the last tick. Upstream (no waiting count) asks for 2; ours for 7 + 2.
    let p = secondary(1, 2, 5, 110);
    let full = PoolStats {
        total_ips: 5,
        assigned_ips: 5,
        ..PoolStats::default()
    };
    assert_eq!(target_state(&p, 0, &full).short, 2);
    let waiting = PoolStats {
        waiting_pods: 7,
        ..full
    };
    let ts = target_state(&p, 0, &waiting);
    assert_eq!((ts.short, ts.over), (9, 0));
    // Free addresses that are not enough for the waiting pods are not "over".
    let some_free = PoolStats {
        total_ips: 12,
        assigned_ips: 5,
        waiting_pods: 7,
        ..PoolStats::default()
    };
    assert_eq!(target_state(&p, 0, &some_free).over, 0);
    assert_eq!(target_state(&p, 0, &some_free).short, 2);
}

#[test]
fn waiting_pods_count_in_prefixes_with_prefix_delegation() {
    // One /28 full, 20 pods waiting, WARM_IP_TARGET=4: (16 + 20 + 4) / 16 -> 3 prefixes in
    // all, so 2 more, and none over.
    let p = prefix(0, 4, 0, 110);
    let s = PoolStats {
        total_ips: 16,
        assigned_ips: 16,
        total_prefixes: 1,
        free_prefixes: 0,
        waiting_pods: 20,
        ..PoolStats::default()
    };
    let ts = target_state(&p, 0, &s);
    assert_eq!((ts.short, ts.over), (2, 0));
}

#[test]
fn minimum_ip_alone_grows_for_waiting_pods() {
    // Upstream stalls here (short = max(0 - 0, 1 - 1) = 0); a waiting pod makes it 1.
    let p = secondary(1, 0, 1, 110);
    let s = PoolStats {
        total_ips: 1,
        assigned_ips: 1,
        waiting_pods: 1,
        ..PoolStats::default()
    };
    assert_eq!(target_state(&p, 0, &s).short, 1);
    assert_eq!(
        target_state(
            &p,
            0,
            &PoolStats {
                waiting_pods: 0,
                ..s
            }
        )
        .short,
        0
    );
}

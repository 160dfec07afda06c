//! Subnet exclusion: which ENIs are excluded (`exclusion_changes`, upstream's
//! `IsSubnetExcluded`) and how excluded ENIs are drained (`plan_excluded`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use planner::exclusion::{CLUSTER_TAG_PREFIX, ROLE_CNI_TAG};
use planner::{
    Action, EniSubnet, EniView, MIN_ENI_LIFETIME, PoolPolicy, PoolSnapshot, SubnetTags, TickTimers,
    excluded_eni_freeable, exclusion_changes, plan_excluded, subnet_excluded,
};
use proptest::prelude::*;

fn tags(pairs: &[(&str, &str)]) -> SubnetTags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn upstream_is_subnet_excluded_cases() {
    // TestExcludedENIBasedOnSubnetTags_IPv4 and the IsSubnetExcluded rules.
    assert!(subnet_excluded(&tags(&[(ROLE_CNI_TAG, "0")]), ""));
    assert!(subnet_excluded(&tags(&[(ROLE_CNI_TAG, "0")]), "blue"));
    assert!(!subnet_excluded(&tags(&[]), "blue"), "no tag: not excluded");
    assert!(!subnet_excluded(&tags(&[(ROLE_CNI_TAG, "")]), "blue"));
    assert!(!subnet_excluded(&tags(&[(ROLE_CNI_TAG, "1")]), "blue"));
    let green = format!("{CLUSTER_TAG_PREFIX}green");
    let blue = format!("{CLUSTER_TAG_PREFIX}blue");
    // Tagged for another cluster: excluded; for ours (any value) or none: not.
    assert!(subnet_excluded(
        &tags(&[(ROLE_CNI_TAG, "1"), (&green, "")]),
        "blue"
    ));
    assert!(!subnet_excluded(
        &tags(&[(ROLE_CNI_TAG, "1"), (&green, ""), (&blue, "x")]),
        "blue"
    ));
    // Without CLUSTER_NAME the cluster tags are not looked at.
    assert!(!subnet_excluded(
        &tags(&[(ROLE_CNI_TAG, "1"), (&green, "")]),
        ""
    ));
    // The cluster tags only count on a subnet carrying the role tag.
    assert!(!subnet_excluded(&tags(&[(&green, "")]), "blue"));
    // Old kubernetes.io/cluster tags are ignored.
    assert!(!subnet_excluded(
        &tags(&[
            (ROLE_CNI_TAG, "1"),
            ("kubernetes.io/cluster/green", "shared")
        ]),
        "blue"
    ));
}

fn eni(id: &str, subnet: &str, excluded: bool, pinned: bool) -> EniSubnet {
    EniSubnet {
        id: id.into(),
        subnet_id: subnet.into(),
        excluded,
        pinned,
    }
}

#[test]
fn a_retagged_subnet_excludes_its_enis_and_untagging_clears_them() {
    let mut subnets = BTreeMap::from([
        ("subnet-node".to_string(), tags(&[])),
        ("subnet-b".to_string(), tags(&[(ROLE_CNI_TAG, "0")])),
    ]);
    let enis = [
        eni("eni-0", "subnet-node", false, false),
        eni("eni-1", "subnet-b", false, false),
        eni("eni-2", "subnet-b", false, false),
    ];
    assert_eq!(
        exclusion_changes(&enis, &subnets, ""),
        [("eni-1".to_string(), true), ("eni-2".to_string(), true)]
    );
    subnets.insert("subnet-b".into(), tags(&[(ROLE_CNI_TAG, "1")]));
    let marked = [
        eni("eni-0", "subnet-node", false, false),
        eni("eni-1", "subnet-b", true, false),
    ];
    assert_eq!(
        exclusion_changes(&marked, &subnets, ""),
        [("eni-1".to_string(), false)]
    );
    // A subnet DescribeSubnets does not list (another account's): not excluded.
    let elsewhere = [eni("eni-3", "subnet-other-account", true, false)];
    assert_eq!(
        exclusion_changes(&elsewhere, &subnets, ""),
        [("eni-3".to_string(), false)]
    );
    // The custom-networking primary stays excluded whatever the tags.
    let pinned = [eni("eni-0", "subnet-node", true, true)];
    assert!(exclusion_changes(&pinned, &subnets, "").is_empty());
}

fn tag_strategy() -> impl Strategy<Value = SubnetTags> {
    (
        prop::option::of(prop_oneof![Just("0"), Just("1"), Just(""), Just("yes")]),
        prop::collection::vec(prop_oneof![Just("blue"), Just("green")], 0..=2),
    )
        .prop_map(|(role, clusters)| {
            let mut t = SubnetTags::new();
            if let Some(v) = role {
                t.insert(ROLE_CNI_TAG.into(), v.into());
            }
            for c in clusters {
                t.insert(format!("{CLUSTER_TAG_PREFIX}{c}"), String::new());
            }
            t
        })
}

fn exclusion_case() -> impl Strategy<Value = (Vec<EniSubnet>, BTreeMap<String, SubnetTags>, String)>
{
    (
        prop::collection::vec(prop::option::of(tag_strategy()), 4),
        prop::collection::vec((0usize..5, any::<bool>(), prop::bool::weighted(0.2)), 0..8),
        prop_oneof![Just(""), Just("blue")],
    )
        .prop_map(|(subnets, enis, cluster)| {
            // Subnet i is listed when Some; subnet 4 never is.
            let listed = subnets
                .into_iter()
                .enumerate()
                .filter_map(|(i, t)| t.map(|t| (format!("subnet-{i}"), t)))
                .collect();
            let enis = enis
                .into_iter()
                .enumerate()
                .map(|(i, (s, ex, pin))| eni(&format!("eni-{i}"), &format!("subnet-{s}"), ex, pin))
                .collect();
            (enis, listed, cluster.to_string())
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// After the changes, each flag is exactly "pinned, or in a listed excluded subnet";
    /// only changing flags are reported; applying again changes nothing.
    #[test]
    fn exclusion_flags_follow_the_tags((enis, subnets, cluster) in exclusion_case()) {
        let changes = exclusion_changes(&enis, &subnets, &cluster);
        let mut after = enis.clone();
        for (id, flag) in &changes {
            let e = after.iter_mut().find(|e| &e.id == id).unwrap();
            prop_assert_ne!(e.excluded, *flag, "reported a non-change");
            e.excluded = *flag;
        }
        for e in &after {
            let tagged = subnets.get(&e.subnet_id).is_some_and(|t| subnet_excluded(t, &cluster));
            prop_assert_eq!(e.excluded, e.pinned || tagged, "{:?}", e);
            if e.pinned {
                prop_assert!(e.excluded, "a pinned ENI is never cleared");
            }
            if !subnets.contains_key(&e.subnet_id) && !e.pinned {
                prop_assert!(!e.excluded, "unlisted subnet: not excluded");
            }
            if let Some(t) = subnets.get(&e.subnet_id) {
                if t.get(ROLE_CNI_TAG).map(String::as_str) == Some("0") {
                    prop_assert!(e.excluded);
                }
                if !t.contains_key(ROLE_CNI_TAG) && !e.pinned {
                    prop_assert!(!e.excluded);
                }
            }
        }
        prop_assert!(exclusion_changes(&after, &subnets, &cluster).is_empty());
    }
}

fn policy(custom_networking: bool, pd: bool) -> PoolPolicy {
    PoolPolicy {
        warm_eni_target: 1,
        warm_ip_target: 0,
        minimum_ip_target: 0,
        warm_prefix_target: 0,
        prefix_delegation: pd,
        custom_networking,
        max_pods: 110,
    }
}

/// An ENI with `cidrs` /32s, `assigned` of them held by pods, `cooling` unassigned ones
/// cooling down.
fn view(index: u32, flags: u8, cidrs: u32, assigned: u32, cooling: u32, age_s: u64) -> EniView {
    let assigned = assigned.min(cidrs);
    let cooling = cooling.min(cidrs - assigned);
    let base = u32::from(Ipv4Addr::new(10, 0, index as u8, 0));
    EniView {
        id: format!("eni-{index}"),
        device_number: index,
        is_primary: index == 0,
        is_trunk: index != 0 && flags == 1,
        is_efa: index != 0 && flags == 2,
        excluded: flags >= 3,
        age: Duration::from_secs(age_s),
        cidr_count: cidrs,
        total_ips: cidrs,
        assigned_ips: assigned,
        cooldown_ips: cooling,
        prefixes: 0,
        free_prefixes: 0,
        freeable_cidrs: (assigned..cidrs)
            .map(|c| Ipv4Net::new(Ipv4Addr::from(base + c), 32).unwrap())
            .collect(),
    }
}

fn idle() -> TickTimers {
    TickTimers::idle()
}

#[test]
fn an_excluded_eni_with_pods_gives_back_its_free_addresses_and_is_freed_once_empty() {
    let p = policy(false, false);
    // Primary with pods; eni-1 excluded with 2 pods of 9 addresses.
    let mut pool = PoolSnapshot {
        network_card: 0,
        waiting_pods: 0,
        enis: vec![view(0, 0, 9, 5, 0, 600), view(1, 3, 9, 2, 0, 600)],
    };
    let actions = plan_excluded(&p, &pool, &idle());
    assert_eq!(
        actions,
        [Action::ReleaseCidrs {
            eni: "eni-1".into(),
            cidrs: pool.enis[1].freeable_cidrs.clone(),
        }]
    );
    // Pods gone, one address still cooling: nothing yet.
    pool.enis[1] = view(1, 3, 2, 0, 1, 600);
    assert!(plan_excluded(&p, &pool, &idle()).is_empty());
    // Cooled down: freed.
    pool.enis[1] = view(1, 3, 2, 0, 0, 600);
    assert_eq!(
        plan_excluded(&p, &pool, &idle()),
        [Action::FreeEni {
            eni: "eni-1".into()
        }]
    );
    // Not while the node is cordoned or terminating.
    let mut blocked = idle();
    blocked.provisioning_allowed = false;
    assert!(plan_excluded(&p, &pool, &blocked).is_empty());
}

#[test]
fn an_excluded_primary_keeps_its_pods_and_gives_back_the_rest() {
    // TestNodeInitPrimarySubnetExclusionWithExistingPodIPs / TestPrimaryENICleanup.
    let p = policy(false, false);
    let pool = PoolSnapshot {
        network_card: 0,
        waiting_pods: 0,
        enis: vec![view(0, 3, 9, 3, 0, 600)],
    };
    assert_eq!(
        plan_excluded(&p, &pool, &idle()),
        [Action::ReleaseCidrs {
            eni: "eni-0".into(),
            cidrs: pool.enis[0].freeable_cidrs.clone(),
        }]
    );
    // Under custom networking the primary is excluded as a mode, not drained.
    assert!(plan_excluded(&policy(true, false), &pool, &idle()).is_empty());
}

fn drain_case() -> impl Strategy<Value = (PoolPolicy, PoolSnapshot, TickTimers)> {
    (
        any::<bool>(),
        prop::collection::vec((0u8..=5, 0u32..=6, 0u32..=6, 0u32..=6, 0u64..=120), 1..=5),
        prop::bool::weighted(0.85),
    )
        .prop_map(|(custom, enis, allowed)| {
            let pool = PoolSnapshot {
                network_card: 0,
                waiting_pods: 0,
                enis: enis
                    .into_iter()
                    .enumerate()
                    .map(|(i, (f, c, a, cool, age))| view(i as u32, f, c, a, cool, age))
                    .collect(),
            };
            let mut timers = idle();
            timers.provisioning_allowed = allowed;
            (policy(custom, false), pool, timers)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    /// Draining never touches a pod's address, a non-excluded ENI, the primary, the trunk
    /// or an EFA ENI; frees at most one ENI per tick; and an empty, old, cooled-down
    /// excluded ENI is always freed (when provisioning is allowed).
    #[test]
    fn draining_is_safe_and_makes_progress((p, pool, timers) in drain_case()) {
        let actions = plan_excluded(&p, &pool, &timers);
        if !timers.provisioning_allowed {
            prop_assert!(actions.is_empty());
        }
        let mut frees = 0;
        for a in &actions {
            match a {
                Action::FreeEni { eni } => {
                    frees += 1;
                    let e = pool.enis.iter().find(|e| &e.id == eni).unwrap();
                    prop_assert!(e.excluded && !e.is_primary && !e.is_trunk && !e.is_efa);
                    prop_assert_eq!(e.assigned_ips, 0, "never an ENI with pods");
                    prop_assert_eq!(e.cooldown_ips, 0);
                    prop_assert!(e.age >= MIN_ENI_LIFETIME);
                }
                Action::ReleaseCidrs { eni, cidrs } => {
                    let e = pool.enis.iter().find(|e| &e.id == eni).unwrap();
                    prop_assert!(e.excluded && !e.is_trunk && !e.is_efa);
                    prop_assert!(!(p.custom_networking && e.is_primary));
                    prop_assert_eq!(e.cooldown_ips, 0, "no address released while cooling");
                    for c in cidrs {
                        prop_assert!(e.freeable_cidrs.contains(c), "only unassigned CIDRs");
                    }
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        prop_assert!(frees <= 1);
        let ripe = pool.enis.iter().any(|e| excluded_eni_freeable(&p, e));
        prop_assert_eq!(frees == 1, ripe && timers.provisioning_allowed);
    }
}

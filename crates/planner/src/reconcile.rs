//! The reconcile decision (upstream's `nodeIPPoolReconcile`, made safe): the datastore's
//! view, EC2's `DescribeNetworkInterfaces` truth, what the pool gave back lately and the
//! clock in; what to adopt, add and remove out. Pure, so its safety rules are properties:
//!
//! * nothing is removed the first round EC2 does not list it: it becomes a suspect, and is
//!   removed only if the next round still does not list it (EC2's own read-after-write lag);
//! * an address or prefix given back within [`RELEASE_COOLDOWN`] is never re-added from a
//!   view that still shows it;
//! * nothing EC2 lists for an ENI is ever removed from it, and the primary ENI is never
//!   removed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

/// How long an address given back to EC2 is not re-added from a stale view.
pub const RELEASE_COOLDOWN: Duration = Duration::from_secs(60);

/// One ENI as the datastore holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldEni {
    /// The node's primary ENI (never removed).
    pub primary: bool,
    /// Secondary /32s and prefixes.
    pub cidrs: BTreeSet<Ipv4Net>,
}

/// One ENI attached to the instance, as EC2 lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedEni {
    /// ENI id.
    pub id: String,
    /// Ours to manage (tags, `MANAGE_UNTAGGED_ENI`, not EFA-only).
    pub managed: bool,
    /// Secondary /32s and prefixes.
    pub cidrs: BTreeSet<Ipv4Net>,
}

/// Something EC2 did not list once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Suspect {
    /// A whole ENI.
    Eni(String),
    /// One CIDR of an ENI.
    Cidr(String, Ipv4Net),
}

/// The inputs of one round.
#[derive(Debug, Clone, Copy)]
pub struct ReconcileInput<'a> {
    /// The datastore: ENI id → what it holds.
    pub held: &'a BTreeMap<String, HeldEni>,
    /// EC2's truth for the instance.
    pub listed: &'a [ListedEni],
    /// CIDRs the pool gave back, and when.
    pub released: &'a HashMap<Ipv4Net, Instant>,
    /// The suspects of the previous round.
    pub suspects: &'a HashSet<Suspect>,
    /// Now.
    pub now: Instant,
}

/// What one round changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcilePlan {
    /// Managed ENIs the datastore does not know, with the CIDRs to take (cooling ones out).
    pub adopt: Vec<(String, BTreeSet<Ipv4Net>)>,
    /// CIDRs EC2 lists on a known ENI that the datastore lacks.
    pub add: Vec<(String, Ipv4Net)>,
    /// CIDRs EC2 did not list two rounds running.
    pub remove_cidrs: Vec<(String, Ipv4Net)>,
    /// ENIs EC2 did not list two rounds running.
    pub remove_enis: Vec<String>,
    /// This round's suspects (the next round's input).
    pub suspects: HashSet<Suspect>,
    /// Attached ENIs that are not ours to manage.
    pub unmanaged: BTreeSet<String>,
}

impl ReconcilePlan {
    /// Suspects that wait for a second round.
    pub fn suspected(&self) -> usize {
        self.suspects.len()
    }
}

/// The decision of one round.
pub fn plan_reconcile(input: &ReconcileInput<'_>) -> ReconcilePlan {
    let cooling = |c: &Ipv4Net| {
        input
            .released
            .get(c)
            .is_some_and(|t| input.now.saturating_duration_since(*t) < RELEASE_COOLDOWN)
    };
    let mut plan = ReconcilePlan::default();
    let mut attached = HashSet::new();
    for eni in input.listed {
        if !eni.managed {
            plan.unmanaged.insert(eni.id.clone());
            continue;
        }
        attached.insert(eni.id.as_str());
        let Some(held) = input.held.get(&eni.id) else {
            let keep = eni.cidrs.iter().filter(|c| !cooling(c)).copied().collect();
            plan.adopt.push((eni.id.clone(), keep));
            continue;
        };
        for c in eni.cidrs.difference(&held.cidrs).filter(|c| !cooling(c)) {
            plan.add.push((eni.id.clone(), *c));
        }
        for c in held.cidrs.difference(&eni.cidrs) {
            let suspect = Suspect::Cidr(eni.id.clone(), *c);
            if input.suspects.contains(&suspect) {
                plan.remove_cidrs.push((eni.id.clone(), *c));
            } else {
                plan.suspects.insert(suspect);
            }
        }
    }
    for (id, held) in input.held {
        if attached.contains(id.as_str()) || held.primary {
            continue;
        }
        let suspect = Suspect::Eni(id.clone());
        if input.suspects.contains(&suspect) {
            plan.remove_enis.push(id.clone());
        } else {
            plan.suspects.insert(suspect);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn cidr(n: u8) -> Ipv4Net {
        Ipv4Net::new(Ipv4Addr::new(10, 0, 0, n), 32).unwrap_or_default()
    }

    fn cidrs() -> impl Strategy<Value = BTreeSet<Ipv4Net>> {
        prop::collection::btree_set((1u8..24).prop_map(cidr), 0..8)
    }

    /// Up to four ENIs held and listed, overlapping ids, random suspects and releases.
    /// Held ENIs, listed ENIs, released CIDRs (seconds ago), suspects.
    type World = (
        BTreeMap<String, HeldEni>,
        Vec<ListedEni>,
        HashMap<Ipv4Net, u64>,
        HashSet<Suspect>,
    );

    /// Up to four ENIs held and listed, overlapping ids, random suspects and releases.
    fn world() -> impl Strategy<Value = World> {
        let held = prop::collection::btree_map(
            (0u8..4).prop_map(|i| format!("eni-{i}")),
            (any::<bool>(), cidrs()).prop_map(|(primary, cidrs)| HeldEni { primary, cidrs }),
            0..4,
        );
        let listed = prop::collection::vec(
            ((0u8..4), any::<bool>(), cidrs()).prop_map(|(i, managed, cidrs)| ListedEni {
                id: format!("eni-{i}"),
                managed,
                cidrs,
            }),
            0..4,
        )
        .prop_map(|mut v| {
            v.sort_by(|a, b| a.id.cmp(&b.id));
            v.dedup_by(|a, b| a.id == b.id);
            v
        });
        let released = prop::collection::hash_map((1u8..24).prop_map(cidr), 0u64..120, 0..6);
        let suspects = prop::collection::hash_set(
            prop_oneof![
                (0u8..4).prop_map(|i| Suspect::Eni(format!("eni-{i}"))),
                ((0u8..4), 1u8..24).prop_map(|(i, n)| Suspect::Cidr(format!("eni-{i}"), cidr(n))),
            ],
            0..6,
        );
        (held, listed, released, suspects)
    }

    fn run(
        held: &BTreeMap<String, HeldEni>,
        listed: &[ListedEni],
        released_ago: &HashMap<Ipv4Net, u64>,
        suspects: &HashSet<Suspect>,
    ) -> ReconcilePlan {
        let now = Instant::now() + Duration::from_secs(3600);
        let released = released_ago
            .iter()
            .map(|(c, ago)| (*c, now - Duration::from_secs(*ago)))
            .collect();
        plan_reconcile(&ReconcileInput {
            held,
            listed,
            released: &released,
            suspects,
            now,
        })
    }

    proptest! {
        #[test]
        fn nothing_is_removed_on_a_single_round((held, listed, released, _s) in world()) {
            let plan = run(&held, &listed, &released, &HashSet::new());
            prop_assert!(plan.remove_cidrs.is_empty() && plan.remove_enis.is_empty());
        }

        #[test]
        fn recently_released_addresses_are_never_re_added((held, listed, released, s) in world()) {
            let plan = run(&held, &listed, &released, &s);
            let cooling = |c: &Ipv4Net| released.get(c).is_some_and(|ago| *ago < 60);
            prop_assert!(plan.add.iter().all(|(_, c)| !cooling(c)));
            prop_assert!(plan.adopt.iter().all(|(_, keep)| keep.iter().all(|c| !cooling(c))));
        }

        #[test]
        fn nothing_ec2_lists_is_removed((held, listed, released, s) in world()) {
            let plan = run(&held, &listed, &released, &s);
            for (eni, c) in &plan.remove_cidrs {
                let listed_here = listed.iter().any(|l| &l.id == eni && l.cidrs.contains(c));
                prop_assert!(!listed_here, "{eni} {c} is listed by EC2");
            }
            for eni in &plan.remove_enis {
                prop_assert!(!listed.iter().any(|l| &l.id == eni && l.managed));
                prop_assert!(!held[eni].primary, "the primary ENI is never removed");
            }
        }

        #[test]
        fn a_second_round_removes_exactly_the_confirmed_suspects((held, listed, released, _s) in world()) {
            let first = run(&held, &listed, &released, &HashSet::new());
            let second = run(&held, &listed, &released, &first.suspects);
            prop_assert_eq!(second.remove_cidrs.len() + second.remove_enis.len(), first.suspected());
        }
    }

    #[test]
    fn unmanaged_enis_are_neither_adopted_nor_kept() {
        let listed = [ListedEni {
            id: "eni-x".into(),
            managed: false,
            cidrs: BTreeSet::from([cidr(5)]),
        }];
        let plan = run(&BTreeMap::new(), &listed, &HashMap::new(), &HashSet::new());
        assert!(plan.adopt.is_empty());
        assert_eq!(plan.unmanaged, BTreeSet::from(["eni-x".to_string()]));
    }
}

//! Sanity checks over every row of the embedded table.

use limits::{Hypervisor, Source, all, lookup, table, try_lookup};

#[test]
fn table_is_large_sorted_and_unique() {
    let t = table().expect("embedded table parses");
    // moto 5.2.1 knows 1263 types; the stored upstream snapshot adds 30 more (1293).
    assert!(t.len() >= 1290, "only {} types", t.len());
    let names: Vec<&str> = all().map(|r| r.instance_type.as_str()).collect();
    assert_eq!(names.len(), t.len());
    assert!(names.windows(2).all(|w| w[0] < w[1]), "not sorted/unique");
}

#[test]
fn every_row_is_sane() {
    for r in all() {
        assert!(r.eni_limit >= 1, "{}", r.instance_type);
        assert!(r.ipv4_per_eni >= 1, "{}", r.instance_type);
        if !r.network_cards.is_empty() {
            let card = r
                .network_cards
                .iter()
                .find(|c| c.index == r.default_card_index);
            assert_eq!(
                card.map(|c| c.max_enis),
                Some(r.eni_limit),
                "{}",
                r.instance_type
            );
        }
        if r.source == Source::Moto {
            assert!(
                r.vcpus.is_some_and(|v| v >= 1),
                "{} lacks vCPUs",
                r.instance_type
            );
        }
    }
    // moto (1,263 types) gives its vCPUs to every row it knows, upstream's included.
    let with_vcpus = all().filter(|r| r.vcpus.is_some_and(|v| v >= 1)).count();
    assert!(with_vcpus >= 1263, "only {with_vcpus} rows have vCPUs");
}

#[test]
fn known_rows() {
    let m5 = lookup("m5.large").expect("m5.large");
    assert_eq!((m5.eni_limit, m5.ipv4_per_eni, m5.vcpus), (3, 10, Some(2)));
    assert_eq!(m5.hypervisor, Hypervisor::Nitro);
    assert!(m5.supports_prefix_delegation());

    let p5 = lookup("p5.48xlarge").expect("p5.48xlarge");
    assert_eq!((p5.eni_limit, p5.ipv4_per_eni), (2, 50));
    assert_eq!(p5.network_cards.len(), 32);

    let m4 = lookup("m4.large").expect("m4.large");
    assert_eq!(m4.hypervisor, Hypervisor::Xen);
    assert!(!m4.supports_prefix_delegation());

    let metal = lookup("m5.metal").expect("m5.metal");
    assert!(metal.bare_metal && metal.supports_prefix_delegation());

    let old = lookup("p3.16xlarge").expect("p3.16xlarge comes from the upstream snapshot");
    assert_eq!((old.source, old.vcpus), (Source::Upstream, None));

    assert_eq!(lookup("m5.nonexistent"), None);
    assert_eq!(try_lookup("m5.nonexistent"), Ok(None));
}

#[test]
fn branch_eni_facts_from_the_resource_controller() {
    // Values as pkg/aws/vpc/limits.go (amazon-vpc-resource-controller-k8s @ b0e11151) has them.
    let m5 = lookup("m5.large").expect("m5.large");
    assert_eq!(
        (m5.trunking_compatible, m5.branch_enis),
        (Some(true), Some(9))
    );
    assert!(m5.is_trunking_compatible());

    let c5 = lookup("c5.18xlarge").expect("c5.18xlarge");
    assert_eq!(
        (c5.trunking_compatible, c5.branch_enis),
        (Some(true), Some(107))
    );

    let t3 = lookup("t3.nano").expect("t3.nano");
    assert_eq!(
        (t3.trunking_compatible, t3.branch_enis),
        (Some(false), Some(0))
    );
    assert!(!t3.is_trunking_compatible());

    // A Nitro type that is not trunking-compatible, and a bare-metal one that is.
    let i4i = lookup("i4i.large").expect("i4i.large");
    assert_eq!(i4i.trunking_compatible, Some(false));
    let i3m = lookup("i3.metal").expect("i3.metal");
    assert_eq!(
        (i3m.trunking_compatible, i3m.branch_enis),
        (Some(true), Some(120))
    );

    // Newer than the controller's snapshot: unknown, so treated as compatible.
    let p5 = lookup("p5.48xlarge").expect("p5.48xlarge");
    assert_eq!((p5.trunking_compatible, p5.branch_enis), (None, None));
    assert!(p5.is_trunking_compatible());
}

#[test]
fn branch_eni_columns_are_consistent() {
    let mut known = 0;
    for r in all() {
        match (r.trunking_compatible, r.branch_enis) {
            (Some(true), Some(n)) => {
                known += 1;
                assert!(n >= 1, "{} compatible but 0 branch ENIs", r.instance_type);
            }
            (Some(false), Some(n)) => {
                known += 1;
                assert_eq!(n, 0, "{}", r.instance_type);
            }
            (None, None) => assert!(r.is_trunking_compatible(), "{}", r.instance_type),
            other => panic!("{}: inconsistent {other:?}", r.instance_type),
        }
    }
    // The controller's table lists 623 types, all of which are in ours.
    assert_eq!(known, 623);
}

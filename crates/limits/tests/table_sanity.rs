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

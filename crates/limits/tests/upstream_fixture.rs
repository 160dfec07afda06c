//! Our table against upstream's `misc/eni-max-pods.txt` (fixture copied from
//! aws/amazon-vpc-cni-k8s @ 2aea0fd2453975bea25d13016293dbb9209e13a0).

use limits::{MaxPodsOptions, lookup, max_pods};

const FIXTURE: &str = include_str!("fixtures/upstream-eni-max-pods.txt");

fn fixture() -> Vec<(&'static str, u32)> {
    FIXTURE
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, n) = l.split_once(' ').expect("fixture line is `<type> <n>`");
            (name, n.parse().expect("fixture value is a number"))
        })
        .collect()
}

#[test]
fn fixture_covers_the_required_sample() {
    let rows = fixture();
    assert!(rows.len() >= 50, "only {} fixture rows", rows.len());
    for name in [
        "t3.nano",
        "t3.medium",
        "m5.large",
        "m5.24xlarge",
        "p4d.24xlarge",
        "c6in.32xlarge",
    ] {
        assert!(
            rows.iter().any(|(n, _)| *n == name),
            "{name} missing from fixture"
        );
    }
}

#[test]
fn every_upstream_value_matches_our_table() {
    let mut mismatches = Vec::new();
    for (name, want) in fixture() {
        match lookup(name) {
            None => mismatches.push(format!("{name}: unknown to our table")),
            Some(l) => {
                let got = l.eni_max_pods();
                let calc = max_pods(l, &MaxPodsOptions::default()).max_allowed;
                if got != want || calc != want {
                    mismatches.push(format!(
                        "{name}: upstream {want}, table {got}, calculator {calc}"
                    ));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn well_known_values() {
    let get = |t: &str| lookup(t).map(|l| l.eni_max_pods());
    assert_eq!(get("t3.nano"), Some(4));
    assert_eq!(get("t3.medium"), Some(17));
    assert_eq!(get("m5.large"), Some(29));
    assert_eq!(get("m5.24xlarge"), Some(737));
    assert_eq!(get("p4d.24xlarge"), Some(737));
    assert_eq!(get("c6in.32xlarge"), Some(394));
    assert_eq!(get("m4.4xlarge"), Some(234));
}

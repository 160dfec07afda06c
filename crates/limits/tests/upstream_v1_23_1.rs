//! Our table against every type of upstream v1.23.1's instance limits table
//! (`pkg/vpc/vpc_ip_resource_limit.go`; facts in data/sources/upstream-v1.23.1-vpc-ip-limits.tsv):
//! the same ENIs, addresses per ENI, default card and cards, and so the same max pods.

use limits::{MaxPodsOptions, lookup, max_pods};

const UPSTREAM: &str = include_str!("../data/sources/upstream-v1.23.1-vpc-ip-limits.tsv");

#[test]
fn every_upstream_type_has_upstreams_limits_and_max_pods() {
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for line in UPSTREAM
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        let (name, enis, ips): (&str, u32, u32) =
            (f[0], f[1].parse().unwrap(), f[2].parse().unwrap());
        let Some(ours) = lookup(name) else {
            mismatches.push(format!("{name}: missing"));
            continue;
        };
        let cards: Vec<String> = ours
            .network_cards
            .iter()
            .map(|c| format!("{}:{}", c.index, c.max_enis))
            .collect();
        let got = (
            ours.eni_limit,
            ours.ipv4_per_eni,
            ours.default_card_index.to_string(),
            cards.join(","),
        );
        let want = (enis, ips, f[3].to_string(), f[4].to_string());
        if got != want {
            mismatches.push(format!("{name}: ours {got:?}, upstream {want:?}"));
        }
        // Upstream's calculator without prefix delegation: ENIs × (IPs − 1) + 2.
        let max = max_pods(ours, &MaxPodsOptions::default()).max_allowed;
        if max != enis * (ips - 1) + 2 {
            mismatches.push(format!("{name}: max pods {max}"));
        }
        checked += 1;
    }
    assert_eq!(checked, 1391, "upstream v1.23.1 lists 1,391 types");
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

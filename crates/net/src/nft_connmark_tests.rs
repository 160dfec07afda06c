//! Unit and property tests of [`super`]: rendering, reading `nft -j` output, convergence.

use proptest::prelude::*;

use super::*;

fn cidr(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn upstream_example() -> NftConnmark {
    NftConnmark::new("eni", 0x80, [cidr("10.0.0.0/8"), cidr("172.16.0.0/12")]).unwrap()
}

/// `nft -j list table ip aws-cni` (nft 1.0.6) of our table with 10.0.0.0/16, 10.1.2.3/32
/// and 0.0.0.0/0 as the exempt CIDRs.
const LISTED: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "aws-cni", "handle": 2}}, {"chain": {"family": "ip", "table": "aws-cni", "name": "nat-prerouting", "handle": 1, "type": "nat", "hook": "prerouting", "prio": -90, "policy": "accept"}}, {"chain": {"family": "ip", "table": "aws-cni", "name": "snat-mark", "handle": 2}}, {"rule": {"family": "ip", "table": "aws-cni", "chain": "nat-prerouting", "handle": 3, "expr": [{"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}, {"return": null}]}}, {"rule": {"family": "ip", "table": "aws-cni", "chain": "nat-prerouting", "handle": 4, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eni*"}}, {"counter": {"packets": 0, "bytes": 0}}, {"jump": {"target": "snat-mark"}}]}}, {"rule": {"family": "ip", "table": "aws-cni", "chain": "nat-prerouting", "handle": 5, "expr": [{"match": {"op": "==", "left": {"&": [{"ct": {"key": "mark"}}, 128]}, "right": 0}}, {"counter": {"packets": 0, "bytes": 0}}, {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"&": [{"meta": {"key": "mark"}}, 4294967167]}}}]}}, {"rule": {"family": "ip", "table": "aws-cni", "chain": "nat-prerouting", "handle": 6, "expr": [{"match": {"op": "==", "left": {"&": [{"ct": {"key": "mark"}}, 128]}, "right": 128}}, {"counter": {"packets": 0, "bytes": 0}}, {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"meta": {"key": "mark"}}, 128]}}}]}}, {"rule": {"family": "ip", "table": "aws-cni", "chain": "snat-mark", "handle": 7, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "10.0.0.0", "len": 16}}}}, {"return": null}]}}, {"rule": {"family": "ip", "table": "aws-cni", "chain": "snat-mark", "handle": 8, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.1.2.3"}}, {"return": null}]}}, {"rule": {"family": "ip", "table": "aws-cni", "chain": "snat-mark", "handle": 9, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "0.0.0.0", "len": 0}}}}, {"return": null}]}}, {"rule": {"family": "ip", "table": "aws-cni", "chain": "snat-mark", "handle": 10, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"mangle": {"key": {"ct": {"key": "mark"}}, "value": {"|": [{"ct": {"key": "mark"}}, 128]}}}]}}]}"#;

/// The same for upstream v1.23's table (its restore rule overwrites the packet mark).
const LISTED_UPSTREAM: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "aws-cni", "handle": 3}}, {"chain": {"family": "ip", "table": "aws-cni", "name": "nat-prerouting", "handle": 1, "type": "nat", "hook": "prerouting", "prio": -90, "policy": "accept"}}, {"chain": {"family": "ip", "table": "aws-cni", "name": "snat-mark", "handle": 2}}, {"rule": {"family": "ip", "table": "aws-cni", "chain": "nat-prerouting", "handle": 3, "expr": [{"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}, {"return": null}]}}, {"rule": {"family": "ip", "table": "aws-cni", "chain": "nat-prerouting", "handle": 4, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eni*"}}, {"counter": {"packets": 0, "bytes": 0}}, {"jump": {"target": "snat-mark"}}]}}, {"rule": {"family": "ip", "table": "aws-cni", "chain": "nat-prerouting", "handle": 5, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"&": [{"ct": {"key": "mark"}}, 128]}}}]}}, {"rule": {"family": "ip", "table": "aws-cni", "chain": "snat-mark", "handle": 6, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "10.0.0.0", "len": 16}}}}, {"return": null}]}}, {"rule": {"family": "ip", "table": "aws-cni", "chain": "snat-mark", "handle": 7, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.1.2.3"}}, {"return": null}]}}, {"rule": {"family": "ip", "table": "aws-cni", "chain": "snat-mark", "handle": 8, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "0.0.0.0", "len": 0}}}}, {"return": null}]}}, {"rule": {"family": "ip", "table": "aws-cni", "chain": "snat-mark", "handle": 9, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"mangle": {"key": {"ct": {"key": "mark"}}, "value": {"|": [{"ct": {"key": "mark"}}, 128]}}}]}}]}"#;

fn listed_want() -> NftConnmark {
    NftConnmark::new(
        "eni",
        0x80,
        [cidr("0.0.0.0/0"), cidr("10.1.2.3/32"), cidr("10.0.0.0/16")],
    )
    .unwrap()
}

#[test]
fn renders_upstreams_table_in_one_transaction() {
    assert_eq!(
        upstream_example().render(),
        "add table ip aws-cni\n\
         delete table ip aws-cni\n\
         add table ip aws-cni\n\
         add chain ip aws-cni nat-prerouting { type nat hook prerouting priority -90; policy accept; }\n\
         add chain ip aws-cni snat-mark\n\
         add rule ip aws-cni nat-prerouting fib daddr type local return\n\
         add rule ip aws-cni nat-prerouting iifname \"eni*\" counter jump snat-mark\n\
         add rule ip aws-cni nat-prerouting ct mark & 0x80 == 0x0 counter meta mark set meta mark & 0xffffff7f\n\
         add rule ip aws-cni nat-prerouting ct mark & 0x80 == 0x80 counter meta mark set meta mark | 0x80\n\
         add rule ip aws-cni snat-mark counter ip daddr 10.0.0.0/8 return\n\
         add rule ip aws-cni snat-mark counter ip daddr 172.16.0.0/12 return\n\
         add rule ip aws-cni snat-mark counter ct mark set ct mark | 0x80\n"
    );
    assert_eq!(delete_batch(), "delete table ip aws-cni\n");
}

#[test]
fn refuses_what_upstream_refuses() {
    assert_eq!(
        NftConnmark::new("eni", 0x80, []),
        Err(NftError::NoExemptCidrs),
        "upstream Setup: exemptCIDRs cannot be empty"
    );
    for prefix in ["", "en\"i", "eni*", "e ni"] {
        assert_eq!(
            NftConnmark::new(prefix, 0x80, [cidr("10.0.0.0/16")]),
            Err(NftError::BadPrefix(prefix.into()))
        );
    }
}

#[test]
fn reads_what_nft_lists_and_sees_convergence() {
    let state = parse_table(LISTED).unwrap();
    assert_eq!(state.rules[BASE_CHAIN], listed_want().base_rules());
    assert_eq!(
        state.rules[MARK_CHAIN][..3],
        [
            NftRule::ExemptReturn(cidr("10.0.0.0/16")),
            NftRule::ExemptReturn(cidr("10.1.2.3/32")),
            NftRule::ExemptReturn(cidr("0.0.0.0/0")),
        ]
    );
    assert!(
        listed_want().is_converged(&state),
        "CIDR order does not matter"
    );
    assert_eq!(setup_batch(Some(&state), &listed_want()), None);
    // A CIDR more, a CIDR less, another mark or prefix: the whole table is rewritten.
    let others = [
        NftConnmark::new("eni", 0x80, [cidr("0.0.0.0/0"), cidr("10.0.0.0/16")]).unwrap(),
        NftConnmark {
            exempt: vec![cidr("100.64.0.0/10")],
            ..listed_want()
        },
        NftConnmark {
            mark: 0x100,
            ..listed_want()
        },
        NftConnmark {
            veth_prefix: "vlan".into(),
            ..listed_want()
        },
    ];
    for want in others {
        assert_eq!(setup_batch(Some(&state), &want), Some(want.render()));
    }
    assert_eq!(
        setup_batch(None, &listed_want()),
        Some(listed_want().render())
    );
}

#[test]
fn upstreams_table_is_recognised_and_rewritten_with_the_masked_restore() {
    let state = parse_table(LISTED_UPSTREAM).unwrap();
    assert_eq!(state.rules[BASE_CHAIN][2], NftRule::ClobberingRestore(0x80));
    assert_eq!(
        state.rules[MARK_CHAIN],
        parse_table(LISTED).unwrap().rules[MARK_CHAIN]
    );
    assert!(!listed_want().is_converged(&state));
    assert_eq!(
        setup_batch(Some(&state), &listed_want()),
        Some(listed_want().render())
    );
    // A mark of several bits: two rules per bit, lowest first.
    let want = NftConnmark::new("eni", 0x8001_0000, [cidr("10.0.0.0/16")]).unwrap();
    assert_eq!(
        want.base_rules()[2..],
        [
            NftRule::RestoreBit {
                bit: 0x1_0000,
                set: false
            },
            NftRule::RestoreBit {
                bit: 0x1_0000,
                set: true
            },
            NftRule::RestoreBit {
                bit: 0x8000_0000,
                set: false
            },
            NftRule::RestoreBit {
                bit: 0x8000_0000,
                set: true
            },
        ]
    );
}

#[test]
fn drift_in_the_kernel_is_not_convergence() {
    let want = listed_want();
    let good = parse_table(LISTED).unwrap();
    let mut drifted = Vec::new();
    let mut s = good.clone();
    s.chains.insert(
        BASE_CHAIN.into(),
        Some(BaseChain {
            prio: -100,
            ..BaseChain::wanted()
        }),
    );
    drifted.push(("priority", s));
    let mut s = good.clone();
    s.rules.get_mut(BASE_CHAIN).unwrap().swap(1, 2);
    drifted.push(("base rule order", s));
    let mut s = good.clone();
    s.rules
        .get_mut(BASE_CHAIN)
        .unwrap()
        .push(NftRule::Other("[]".into()));
    drifted.push(("a stray base rule", s));
    let mut s = good.clone();
    s.rules.get_mut(MARK_CHAIN).unwrap().rotate_right(1);
    drifted.push(("set-mark not last", s));
    let mut s = good.clone();
    s.rules
        .get_mut(MARK_CHAIN)
        .unwrap()
        .insert(0, NftRule::ExemptReturn(cidr("10.0.0.0/16")));
    drifted.push(("a duplicate CIDR rule", s));
    let mut s = good.clone();
    s.chains.insert("extra".into(), None);
    drifted.push(("an extra chain", s));
    let mut s = good;
    s.other_objects = 1;
    drifted.push(("a set", s));
    for (what, state) in drifted {
        assert!(!want.is_converged(&state), "{what}");
    }
}

#[test]
fn classifies_each_upstream_rule_shape() {
    let v = |s: &str| -> Vec<Value> { serde_json::from_str(s).unwrap() };
    // Without a counter the CIDR, jump and mark rules are not upstream's (its checks
    // require one); the fib rule has none.
    assert!(matches!(
        classify(&v(
            r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.1.2.3"}}, {"return": null}]"#
        )),
        NftRule::Other(_)
    ));
    assert!(matches!(
        classify(&v(
            r#"[{"match": {"op": "!=", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}, {"return": null}]"#
        )),
        NftRule::Other(_)
    ));
    assert_eq!(
        classify(&v(
            r#"[{"counter": null}, {"mangle": {"key": {"ct": {"key": "mark"}}, "value": {"|": [{"ct": {"key": "mark"}}, 2147483648]}}}]"#
        )),
        NftRule::SetMark(0x8000_0000)
    );
    assert!(matches!(
        classify(&v(
            r#"[{"counter": null}, {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"ct": {"key": "mark"}}, 128]}}}]"#
        )),
        NftRule::Other(_)
    ));
    // A restore-bit rule whose bit, value or mask disagree is not ours.
    for (right, op, n) in [
        ("0", "&", "128"),
        ("128", "&", "4294967167"),
        ("0", "|", "128"),
    ] {
        let rule = format!(
            r#"[{{"match": {{"op": "==", "left": {{"&": [{{"ct": {{"key": "mark"}}}}, 128]}}, "right": {right}}}}}, {{"counter": null}}, {{"mangle": {{"key": {{"meta": {{"key": "mark"}}}}, "value": {{"{op}": [{{"meta": {{"key": "mark"}}}}, {n}]}}}}}}]"#
        );
        assert!(matches!(classify(&v(&rule)), NftRule::Other(_)), "{rule}");
    }
    assert_eq!(
        lists_table(
            r#"{"nftables": [{"metainfo": {}}, {"table": {"family": "ip", "name": "aws-cni", "handle": 3}}]}"#,
            "ip",
            TABLE
        ),
        Ok(true)
    );
    assert_eq!(
        lists_table(
            r#"{"nftables": [{"table": {"family": "inet", "name": "aws-cni"}}]}"#,
            "ip",
            TABLE
        ),
        Ok(false)
    );
    assert_eq!(lists_table("", "ip", TABLE), Ok(false));
    assert!(parse_table("Error: nope").is_err());
}

/// A model of `nft -f` for our own batch language: what `nft -j list` would then show.
fn apply(mut state: Option<TableState>, batch: &str) -> Option<TableState> {
    let prefix = format!("ip {TABLE}");
    for line in batch.lines() {
        if line == format!("add table {prefix}") {
            state.get_or_insert_with(TableState::default);
        } else if line == format!("delete table {prefix}") {
            assert!(state.is_some(), "delete of a missing table fails the batch");
            state = None;
        } else if let Some(rest) = line.strip_prefix(&format!("add chain {prefix} ")) {
            let s = state.as_mut().expect("chain in a missing table");
            let (name, base) = match rest.split_once(' ') {
                Some((name, spec)) => {
                    assert_eq!(
                        spec,
                        "{ type nat hook prerouting priority -90; policy accept; }"
                    );
                    (name, Some(BaseChain::wanted()))
                }
                None => (rest, None),
            };
            s.chains.insert(name.into(), base);
        } else if let Some(rest) = line.strip_prefix(&format!("add rule {prefix} ")) {
            let s = state.as_mut().expect("rule in a missing table");
            let (chain, text) = rest.split_once(' ').unwrap();
            assert!(s.chains.contains_key(chain), "rule in a missing chain");
            s.rules
                .entry(chain.into())
                .or_default()
                .push(parse_rule(text));
        } else {
            panic!("unexpected batch line {line:?}");
        }
    }
    state
}

/// The inverse of [`NftRule::render`].
fn parse_rule(text: &str) -> NftRule {
    if text == "fib daddr type local return" {
        return NftRule::FibLocalReturn;
    }
    let hex = |s: &str| u32::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    if let Some(m) = text.strip_prefix("counter meta mark set ct mark & ") {
        return NftRule::ClobberingRestore(hex(m));
    }
    if let Some(rest) = text.strip_prefix("ct mark & ") {
        let (bit, rest) = rest.split_once(" == ").unwrap();
        let set = !rest.starts_with("0x0 ");
        return NftRule::RestoreBit { bit: hex(bit), set };
    }
    if let Some(m) = text.strip_prefix("counter ct mark set ct mark | ") {
        return NftRule::SetMark(hex(m));
    }
    if let Some(c) = text
        .strip_prefix("counter ip daddr ")
        .and_then(|r| r.strip_suffix(" return"))
    {
        return NftRule::ExemptReturn(cidr(c));
    }
    let rest = text.strip_prefix("iifname \"").unwrap();
    let (name, rest) = rest.split_once('"').unwrap();
    NftRule::Jump {
        iifname: name.into(),
        target: rest.strip_prefix(" counter jump ").unwrap().into(),
    }
}

fn arb_cidr() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Ipv4Net::new(a.into(), l).unwrap())
}

fn arb_state() -> impl Strategy<Value = Option<TableState>> {
    let chain = prop_oneof![
        Just(BASE_CHAIN.to_owned()),
        Just(MARK_CHAIN.to_owned()),
        "[a-z]{1,8}"
    ];
    let rule = prop_oneof![
        Just(NftRule::FibLocalReturn),
        arb_cidr().prop_map(NftRule::ExemptReturn),
        any::<u32>().prop_map(NftRule::SetMark),
        any::<u32>().prop_map(NftRule::ClobberingRestore),
        (0u32..32, any::<bool>()).prop_map(|(i, set)| NftRule::RestoreBit { bit: 1 << i, set }),
        "[a-z]{0,5}".prop_map(NftRule::Other),
    ];
    proptest::option::of(
        (
            proptest::collection::btree_map(chain, proptest::collection::vec(rule, 0..5), 0..4),
            0usize..2,
        )
            .prop_map(|(rules, other_objects)| TableState {
                chains: rules.keys().map(|c| (c.clone(), None)).collect(),
                rules,
                other_objects,
            }),
    )
}

proptest! {
    /// Whatever the kernel held, one batch yields exactly the desired table (the delete
    /// comes before anything is created), and applying the result again changes nothing.
    #[test]
    fn one_batch_converges_from_anything(
        before in arb_state(),
        exempt in proptest::collection::vec(arb_cidr(), 1..8),
        mark in 1u32..,
    ) {
        let want = NftConnmark::new("eni", mark, exempt.clone()).unwrap();
        let batch = setup_batch(before.as_ref(), &want);
        let after = match batch {
            Some(b) => apply(before.clone(), &b),
            None => before.clone(),
        };
        let after = after.expect("the table exists");
        prop_assert!(want.is_converged(&after));
        prop_assert_eq!(setup_batch(Some(&after), &want), None, "idempotent re-apply");
        // The exempt rules are the inputs' networks, each once, in input order.
        let mut wanted: Vec<Ipv4Net> = Vec::new();
        for c in exempt.iter().map(Ipv4Net::trunc) {
            if !wanted.contains(&c) {
                wanted.push(c);
            }
        }
        let got: Vec<Ipv4Net> = after.rules[MARK_CHAIN]
            .iter()
            .filter_map(|r| match r {
                NftRule::ExemptReturn(c) => Some(*c),
                _ => None,
            })
            .collect();
        prop_assert_eq!(got, wanted);
        // The same desired state from a fresh kernel gives the same table.
        prop_assert_eq!(apply(None, &want.render()), Some(after));
    }
}

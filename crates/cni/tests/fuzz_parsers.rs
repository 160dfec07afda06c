//! Property fuzzing of everything the plugin parses from the runtime: the network
//! configuration on stdin (bytes and JSON-shaped documents), `prevResult`, `CNI_ARGS` and the
//! `CNI_*` environment. Each either parses or yields a CNI error with a specification code;
//! nothing panics. Bounded so it runs in seconds.

use std::collections::BTreeMap;

use cni::check::{expected, expected_all};
use cni::conf::{CniEnv, NetConf};
use cni::multi_nic::interfaces_in_prev_result;
use cni::plugin::from_prev_result;
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("1.0.0"),
            Just("0.4.0"),
            Just("1.1.0"),
            Just("0.3.1"),
            Just("eni"),
            Just("9001"),
            Just("10.0.0.5/32"),
            Just("eth0"),
            Just("/var/run/netns/x"),
            Just("3")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("cniVersion"),
        Just("name"),
        Just("type"),
        Just("vethPrefix"),
        Just("mtu"),
        Just("podSGEnforcingMode"),
        Just("pluginLogFile"),
        Just("pluginLogLevel"),
        Just("prevResult"),
        Just("cni.dev/valid-attachments"),
        Just("containerID"),
        Just("ifname"),
        Just("interfaces"),
        Just("ips"),
        Just("address"),
        Just("mac"),
        Just("sandbox"),
        Just("interface"),
        Just("realMacsInResult"),
        Just("x")
    ]
    .prop_map(str::to_string)
}

const CODES: [u32; 3] = [1, 6, 7];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_bytes_parse_or_fail_with_a_cni_code(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Err(e) = NetConf::parse(&bytes) {
            prop_assert!(CODES.contains(&e.code), "{e:?}");
            prop_assert!(!e.msg.is_empty());
            let out: Value = serde_json::from_str(&e.to_json("1.0.0")).unwrap();
            prop_assert_eq!(out["code"].as_u64(), Some(u64::from(e.code)));
        }
    }

    #[test]
    fn json_documents_parse_or_fail_with_a_cni_code(doc in json_value(), version in prop_oneof![Just("1.0.0"), Just("0.4.0"), Just("2.0.0"), Just("")]) {
        let mut doc = doc;
        if let Some(o) = doc.as_object_mut() {
            o.entry("cniVersion").or_insert(Value::String(version.to_string()));
        }
        match NetConf::parse(doc.to_string().as_bytes()) {
            Ok(conf) => {
                prop_assert!(cni::conf::SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()));
                prop_assert!((1..=4).contains(&conf.veth_prefix.len()));
                prop_assert!((576..=9001).contains(&conf.mtu()));
                if let Some(prev) = &conf.prev_result {
                    let _ = from_prev_result(prev);
                    let _ = expected(prev, "eth0", conf.mtu());
                }
            }
            Err(e) => prop_assert!(CODES.contains(&e.code), "{e:?}"),
        }
    }

    #[test]
    fn prev_results_never_panic(prev in json_value(), ifname in "[a-z0-9]{0,6}") {
        let _ = from_prev_result(&prev);
        if let Ok(e) = expected(&prev, &ifname, 9001) {
            prop_assert_eq!(e.pod_ifname, ifname.clone());
        }
        if let Ok(all) = expected_all(&prev, &ifname, 9001) {
            prop_assert!(all.iter().zip(0u32..).all(|(e, i)| e.index == i));
        }
        let env = CniEnv::from_lookup(|k| (k == "CNI_IFNAME").then(|| ifname.clone()));
        let _ = interfaces_in_prev_result(&prev, &env);
    }

    #[test]
    fn cni_args_and_environment_never_panic(
        args in ".{0,120}",
        pairs in prop::collection::btree_map("[A-Z_]{1,12}", "[a-z0-9.-]{0,12}", 0..5),
        env in prop::collection::btree_map(
            prop_oneof![Just("CNI_COMMAND"), Just("CNI_CONTAINERID"), Just("CNI_NETNS"), Just("CNI_IFNAME"), Just("CNI_PATH")],
            ".{0,40}", 0..5),
    ) {
        let env_map: BTreeMap<&str, String> = env.into_iter().collect();
        let e = CniEnv::from_lookup(|k| if k == "CNI_ARGS" { Some(args.clone()) } else { env_map.get(k).cloned() });
        for v in [&e.container_id, &e.netns, &e.ifname] {
            if let Err(err) = e.require("X", v) {
                prop_assert_eq!(err.code, 4);
                prop_assert!(v.is_empty());
            }
        }
        let _ = e.arg("K8S_POD_NAME");
        // Well-formed K=V;K=V lists round-trip.
        let joined: String = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";");
        let e = CniEnv::from_lookup(|k| (k == "CNI_ARGS").then(|| joined.clone()));
        for (k, v) in &pairs {
            prop_assert_eq!(e.arg(k), v.as_str());
        }
    }
}

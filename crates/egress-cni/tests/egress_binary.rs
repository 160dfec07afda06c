//! The real `egress-cni` binary as a runtime chains it after aws-cni with the conflist's
//! default IPv4-cluster entry (`"enabled": "false"`): ADD passes prevResult through
//! unchanged, DEL and CHECK succeed, VERSION answers, bad input gets a CNI error. The enabled
//! paths on a real kernel are in `egress_v6_kernel.rs` and `egress_v4_kernel.rs`.

mod support;

use std::process::Command;

use serde_json::Value;
use support::run_plugin;

fn plugin(command: &str, stdin: &str) -> (i32, String) {
    let run = run_plugin(
        Command::new(env!("CARGO_BIN_EXE_egress-cni"))
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", "0123456789abcdef")
            .env("CNI_NETNS", "/var/run/netns/does-not-matter")
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/opt/cni/bin"),
        stdin,
    );
    (run.code, run.stdout)
}

/// What aws-cni returns for a pod (with odd spacing and key order on purpose).
const PREV: &str = r#"{"cniVersion":"1.0.0", "interfaces":[{"name":"eni3c8f0f9e4a1","mac":"aa:bb:cc:dd:ee:01"},{"name":"eth0","sandbox":"/var/run/netns/cni-1"}],"ips":[{"address":"10.0.0.23/32","interface":1}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#;

/// The conflist's egress-cni entry as the entrypoint renders it in an IPv4 cluster, with the
/// runtime's additions (name, cniVersion, prevResult).
fn disabled_conf(prev: &str) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"aws-cni","type":"egress-cni","mtu":"9001","enabled":"false",
        "randomizeSNAT":"prng","nodeIP":"",
        "ipam":{{"type":"host-local","ranges":[[{{"subnet":"fd00::ac:00/118"}}]],"routes":[{{"dst":"::/0"}}],"dataDir":"/run/cni/v4pd/egress-v6-ipam"}},
        "pluginLogFile":"stderr","pluginLogLevel":"Debug",
        "prevResult":{prev}}}"#
    )
}

#[test]
fn disabled_add_passes_prev_result_through_byte_for_byte() {
    let (rc, out) = plugin("ADD", &disabled_conf(PREV));
    assert_eq!(rc, 0, "{out}");
    assert_eq!(out.trim_end(), PREV, "the exact bytes of prevResult");
    let parsed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(parsed, serde_json::from_str::<Value>(PREV).unwrap());
}

#[test]
fn disabled_del_check_gc_status_succeed_silently() {
    for cmd in ["DEL", "CHECK", "GC", "STATUS"] {
        let (rc, out) = plugin(cmd, &disabled_conf(PREV));
        assert_eq!((rc, out.as_str()), (0, ""), "{cmd}");
    }
    // DEL without prevResult (the runtime lost its cache) is fine too.
    let no_prev = disabled_conf("null");
    let (rc, out) = plugin("DEL", &no_prev);
    assert_eq!((rc, out.as_str()), (0, ""));
}

#[test]
fn version_lists_upstream_versions() {
    let (rc, out) = plugin("VERSION", "");
    assert_eq!(rc, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    let versions: Vec<&str> = v["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in ["0.3.1", "0.4.0", "1.0.0"] {
        assert!(versions.contains(&want), "{out}");
    }
}

fn error_code(out: &str) -> u64 {
    serde_json::from_str::<Value>(out).unwrap()["code"]
        .as_u64()
        .unwrap()
}

#[test]
fn bad_input_gets_cni_errors() {
    let (rc, out) = plugin("ADD", "{nope");
    assert_eq!((rc, error_code(&out)), (1, 6), "{out}");
    let (rc, out) = plugin("ADD", &disabled_conf("null"));
    assert_eq!(
        (rc, error_code(&out)),
        (1, 7),
        "ADD needs prevResult: {out}"
    );
    assert!(out.contains("chained plugin"), "{out}");
    let (rc, out) = plugin(
        "ADD",
        &disabled_conf(PREV).replace(
            r#""cniVersion":"1.0.0","name""#,
            r#""cniVersion":"9.0.0","name""#,
        ),
    );
    assert_eq!((rc, error_code(&out)), (1, 1), "{out}");
    // IPv4 egress (an IPv4 nodeIP, IPv6 clusters): an IPv6 range is a configuration error,
    // and a pod namespace that does not exist an environment one.
    let enabled_v4_bad_range = disabled_conf(PREV)
        .replace(r#""enabled":"false""#, r#""enabled":"true""#)
        .replace(r#""nodeIP":"""#, r#""nodeIP":"192.168.1.123""#);
    let (rc, out) = plugin("ADD", &enabled_v4_bad_range);
    assert_eq!((rc, error_code(&out)), (1, 7), "{out}");
    assert!(out.contains("IPv4 prefix"), "{out}");
    let enabled_v4 = enabled_v4_bad_range.replace("fd00::ac:00/118", "169.254.172.0/22");
    let (rc, out) = plugin("ADD", &enabled_v4);
    assert_eq!((rc, error_code(&out)), (1, 4), "{out}");
    assert!(out.contains("CNI_NETNS"), "{out}");
    // IPv6 egress with a pod namespace that does not exist.
    let enabled_v6 = enabled_v4_bad_range.replace("192.168.1.123", "2600:1f14::10");
    let (rc, out) = plugin("ADD", &enabled_v6);
    assert_eq!((rc, error_code(&out)), (1, 4), "{out}");
    assert!(out.contains("CNI_NETNS"), "{out}");
}

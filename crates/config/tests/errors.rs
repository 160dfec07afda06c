//! Invalid values are errors that name the variable and the value; all are reported at once.

mod common;

use common::{err, ok, only_error_on};

#[test]
fn non_numeric_target_is_an_error() {
    for var in [
        "WARM_IP_TARGET",
        "WARM_ENI_TARGET",
        "MINIMUM_IP_TARGET",
        "WARM_PREFIX_TARGET",
        "MAX_ENI",
        "IP_COOLDOWN_PERIOD",
        "HTTP_TIMEOUT",
    ] {
        let e = err(&[(var, "abc")]);
        let f = only_error_on(&e, var, "abc");
        assert!(f.reason.contains("not a non-negative integer"), "{f}");
    }
    let e = err(&[("WARM_IP_TARGET", "abc")]);
    assert_eq!(
        e.errors[0].to_string(),
        r#"WARM_IP_TARGET="abc": not a non-negative integer"#
    );
}

#[test]
fn negative_target_is_an_error() {
    for var in [
        "WARM_IP_TARGET",
        "WARM_ENI_TARGET",
        "MINIMUM_IP_TARGET",
        "WARM_PREFIX_TARGET",
        "IP_COOLDOWN_PERIOD",
    ] {
        let e = err(&[(var, "-3")]);
        let f = only_error_on(&e, var, "-3");
        assert!(f.reason.contains("negative"), "{f}");
    }
    let e = err(&[("MAX_ENI", "-2")]);
    only_error_on(&e, "MAX_ENI", "-2");
}

#[test]
fn too_large_target_is_an_error() {
    let e = err(&[("WARM_IP_TARGET", "4294967296")]);
    let f = only_error_on(&e, "WARM_IP_TARGET", "4294967296");
    assert!(f.reason.contains("too large"), "{f}");
}

#[test]
fn invalid_boolean_is_an_error() {
    for v in ["yes", "on", "tRUE", " true", "2"] {
        let e = err(&[("ENABLE_POD_ENI", v)]);
        let f = only_error_on(&e, "ENABLE_POD_ENI", v);
        assert!(f.reason.contains("not a boolean"), "{f}");
    }
}

#[test]
fn unknown_enum_value_is_an_error() {
    for (var, bad) in [
        ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "random"),
        ("AWS_VPC_K8S_CNI_LOGLEVEL", "verbose"),
        ("AWS_VPC_K8S_PLUGIN_LOG_LEVEL", "trace"),
        ("NETWORK_POLICY_ENFORCING_MODE", "permissive"),
        ("POD_SECURITY_GROUP_ENFORCING_MODE", "loose"),
    ] {
        let e = err(&[(var, bad)]);
        let f = only_error_on(&e, var, bad);
        assert!(f.reason.starts_with("expected one of"), "{f}");
    }
    let e = err(&[("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "random")]);
    assert!(e.to_string().contains("prng, hashrandom, none"), "{e}");
}

#[test]
fn bad_cidr_list_entry_is_an_error() {
    for var in [
        "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS",
        "AWS_EXTERNAL_SERVICE_CIDRS",
    ] {
        let value = "10.0.0.0/8,10.1.0.0/33,foo";
        let e = err(&[(var, value)]);
        let f = only_error_on(&e, var, value);
        assert!(f.reason.contains("\"10.1.0.0/33\""), "{f}");
        assert!(f.reason.contains("\"foo\""), "{f}");
        let e = err(&[(var, "10.0.0.1")]);
        only_error_on(&e, var, "10.0.0.1");
    }
}

#[test]
fn ipv6_cidr_in_an_ipv4_list_is_an_error() {
    let value = "10.0.0.0/8,fd00::/8";
    let e = err(&[("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", value)]);
    let f = only_error_on(&e, "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", value);
    assert!(f.reason.contains("IPv6"), "{f}");
    assert!(f.reason.contains("fd00::/8"), "{f}");
}

#[test]
fn bad_json_tags_are_an_error() {
    for bad in [r#"{"a":"b""#, r#"["a"]"#, r#"{"a":1}"#, "team=net"] {
        let e = err(&[("ADDITIONAL_ENI_TAGS", bad)]);
        let f = only_error_on(&e, "ADDITIONAL_ENI_TAGS", bad);
        assert!(f.reason.contains("JSON"), "{f}");
    }
}

#[test]
fn mtu_out_of_range_is_an_error() {
    for (var, v) in [
        ("AWS_VPC_ENI_MTU", "575"),
        ("AWS_VPC_ENI_MTU", "9002"),
        ("POD_MTU", "100"),
        ("POD_MTU", "65536"),
    ] {
        let e = err(&[(var, v)]);
        let f = only_error_on(&e, var, v);
        assert!(f.reason.contains("576–9001"), "{f}");
    }
    // 576 is fine for IPv4 but below the IPv6 minimum.
    let v6 = [
        ("ENABLE_IPv6", "true"),
        ("ENABLE_PREFIX_DELEGATION", "true"),
    ];
    let mut vars = v6.to_vec();
    vars.push(("AWS_VPC_ENI_MTU", "1279"));
    let e = err(&vars);
    let f = only_error_on(&e, "AWS_VPC_ENI_MTU", "1279");
    assert!(f.reason.contains("1280–9001"), "{f}");
    let e = err(&[("AWS_VPC_ENI_MTU", "jumbo")]);
    only_error_on(&e, "AWS_VPC_ENI_MTU", "jumbo");
}

#[test]
fn bad_connmark_is_an_error() {
    for v in [
        "0",
        "-1",
        "0x100000000",
        "0x",
        "0xZZ",
        "08",
        "0b2",
        "1__0",
        "_1",
        "1_",
        "mark",
        "99999999999999999999999",
    ] {
        let e = err(&[("AWS_VPC_K8S_CNI_CONNMARK", v)]);
        only_error_on(&e, "AWS_VPC_K8S_CNI_CONNMARK", v);
    }
    let e = err(&[("AWS_VPC_K8S_CNI_CONNMARK", "0")]);
    assert!(e.errors[0].reason.contains("out of range"), "{e}");
}

#[test]
fn bad_veth_prefix_is_an_error() {
    for v in ["eth", "lo", "vlan", "toolong", "a+", "a b", "a/b"] {
        let e = err(&[("AWS_VPC_K8S_CNI_VETHPREFIX", v)]);
        only_error_on(&e, "AWS_VPC_K8S_CNI_VETHPREFIX", v);
    }
}

#[test]
fn plugin_log_to_stdout_is_an_error() {
    for var in [
        "AWS_VPC_K8S_PLUGIN_LOG_FILE",
        "AWS_VPC_K8S_EGRESS_V4_PLUGIN_LOG_FILE",
        "AWS_VPC_K8S_EGRESS_V6_PLUGIN_LOG_FILE",
    ] {
        let e = err(&[(var, "stdout")]);
        let f = only_error_on(&e, var, "stdout");
        assert!(f.reason.contains("CNI result"), "{f}");
    }
}

#[test]
fn bad_addresses_and_timeouts_are_errors() {
    for v in [
        "61679",
        "127.0.0.1",
        "host:port",
        "unix:",
        "[::1:80",
        "a b:1",
        "1.2.3.4:70000",
    ] {
        let e = err(&[("INTROSPECTION_BIND_ADDRESS", v)]);
        only_error_on(&e, "INTROSPECTION_BIND_ADDRESS", v);
    }
    for v in ["ec2.amazonaws.com", "ftp://x", "https://", "https:// x"] {
        let e = err(&[("AWS_EC2_ENDPOINT", v)]);
        only_error_on(&e, "AWS_EC2_ENDPOINT", v);
    }
    let e = err(&[("HTTP_TIMEOUT", "9")]);
    let f = only_error_on(&e, "HTTP_TIMEOUT", "9");
    assert!(f.reason.contains("at least 10"), "{f}");
}

#[test]
fn both_ip_families_enabled_is_an_error() {
    let e = err(&[
        ("ENABLE_IPv4", "true"),
        ("ENABLE_IPv6", "true"),
        ("ENABLE_PREFIX_DELEGATION", "true"),
    ]);
    let f = only_error_on(&e, "ENABLE_IPv4", "true");
    assert!(f.reason.contains("ENABLE_IPv6=\"true\""), "{f}");
    assert_eq!(e.errors.len(), 1, "{e}");
}

#[test]
fn neither_ip_family_enabled_is_an_error() {
    for v6 in [None, Some("false")] {
        let mut vars = vec![("ENABLE_IPv4", "false")];
        if let Some(v) = v6 {
            vars.push(("ENABLE_IPv6", v));
        }
        let e = err(&vars);
        let f = only_error_on(&e, "ENABLE_IPv4", "false");
        assert!(f.reason.contains("exactly one"), "{f}");
    }
}

#[test]
fn ipv6_without_prefix_delegation_is_an_error() {
    let e = err(&[("ENABLE_IPv6", "true")]);
    let f = only_error_on(&e, "ENABLE_IPv6", "true");
    assert!(f.reason.contains("ENABLE_PREFIX_DELEGATION"), "{f}");
    assert!(f.reason.contains("unset"), "{f}");
    let e = err(&[
        ("ENABLE_IPv6", "true"),
        ("ENABLE_PREFIX_DELEGATION", "false"),
    ]);
    let f = only_error_on(&e, "ENABLE_IPv6", "true");
    assert!(f.reason.contains("\"false\""), "{f}");
}

#[test]
fn ipv6_with_custom_networking_is_an_error() {
    let e = err(&[
        ("ENABLE_IPv6", "true"),
        ("ENABLE_PREFIX_DELEGATION", "true"),
        ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true"),
    ]);
    let f = only_error_on(&e, "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true");
    assert!(f.reason.contains("IPv6"), "{f}");
}

#[test]
fn ipv4_prefix_delegation_without_any_target_is_an_error() {
    let e = err(&[("ENABLE_PREFIX_DELEGATION", "true")]);
    assert_eq!(e.errors.len(), 1, "{e}");
    assert_eq!(e.errors[0].variable, "WARM_PREFIX_TARGET");
    assert_eq!(e.errors[0].value, None);
    assert!(
        e.to_string().contains("WARM_PREFIX_TARGET (unset): "),
        "{e}"
    );
    let e = err(&[
        ("ENABLE_PREFIX_DELEGATION", "true"),
        ("WARM_PREFIX_TARGET", "0"),
    ]);
    only_error_on(&e, "WARM_PREFIX_TARGET", "0");
    // Any one positive target satisfies it.
    for t in ["WARM_PREFIX_TARGET", "WARM_IP_TARGET", "MINIMUM_IP_TARGET"] {
        ok(&[("ENABLE_PREFIX_DELEGATION", "true"), (t, "1")]);
    }
    // Targets are ignored in IPv6 mode, so no target is needed there.
    ok(&[
        ("ENABLE_IPv6", "true"),
        ("ENABLE_PREFIX_DELEGATION", "true"),
    ]);
}

#[test]
fn every_error_is_reported_in_one_pass() {
    let e = err(&[
        ("WARM_IP_TARGET", "abc"),
        ("WARM_ENI_TARGET", "-1"),
        ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "bogus"),
        ("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", "fd00::/8"),
        ("ADDITIONAL_ENI_TAGS", "{"),
        ("AWS_VPC_ENI_MTU", "100"),
        ("AWS_VPC_K8S_CNI_CONNMARK", "0"),
        ("AWS_VPC_K8S_CNI_VETHPREFIX", "eth"),
        ("ENABLE_IPv4", "maybe"),
        ("PATH", "/bin"),
    ]);
    assert_eq!(e.errors.len(), 9, "{e}");
    for (var, v) in [
        ("WARM_IP_TARGET", "abc"),
        ("WARM_ENI_TARGET", "-1"),
        ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "bogus"),
        ("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", "fd00::/8"),
        ("ADDITIONAL_ENI_TAGS", "{"),
        ("AWS_VPC_ENI_MTU", "100"),
        ("AWS_VPC_K8S_CNI_CONNMARK", "0"),
        ("AWS_VPC_K8S_CNI_VETHPREFIX", "eth"),
        ("ENABLE_IPv4", "maybe"),
    ] {
        only_error_on(&e, var, v);
    }
    assert!(
        e.to_string()
            .starts_with("invalid configuration (9 errors): ")
    );
    assert!(e.mentions("AWS_VPC_ENI_MTU"));
    assert!(!e.mentions("PATH"));
}

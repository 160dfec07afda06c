//! Runs the real `vpc-cni` binary.

use std::process::{Command, Output};

use limits::{MaxPodsOptions, lookup, max_pods};

const FIXTURE: &str = include_str!("../../limits/tests/fixtures/upstream-eni-max-pods.txt");

/// Sample checked through the binary (the library test covers every fixture line).
const SAMPLE: &[&str] = &[
    "t3.nano",
    "t3.micro",
    "t3.small",
    "t3.medium",
    "t3.large",
    "t3.xlarge",
    "t3.2xlarge",
    "t2.micro",
    "t2.medium",
    "t3a.small",
    "t4g.medium",
    "m4.large",
    "m4.4xlarge",
    "m5.large",
    "m5.xlarge",
    "m5.2xlarge",
    "m5.4xlarge",
    "m5.8xlarge",
    "m5.12xlarge",
    "m5.24xlarge",
    "m5.metal",
    "m6i.32xlarge",
    "m6in.32xlarge",
    "m7i.metal-48xl",
    "m7g.medium",
    "c5.large",
    "c5.18xlarge",
    "c6in.32xlarge",
    "c6in.metal",
    "c7gn.16xlarge",
    "r5.large",
    "r6idn.32xlarge",
    "r7iz.metal-32xl",
    "x2iedn.32xlarge",
    "z1d.metal",
    "i3.metal",
    "i4i.24xlarge",
    "d3.8xlarge",
    "d3en.12xlarge",
    "g4dn.16xlarge",
    "g5.48xlarge",
    "g6e.24xlarge",
    "p3.16xlarge",
    "p3dn.24xlarge",
    "p4d.24xlarge",
    "p4de.24xlarge",
    "p5.48xlarge",
    "p5en.48xlarge",
    "hpc6id.32xlarge",
    "hpc7g.4xlarge",
    "inf1.24xlarge",
    "trn1.32xlarge",
    "trn2.48xlarge",
    "u-12tb1.metal",
    "u7in-32tb.224xlarge",
    "mac1.metal",
    "cr1.8xlarge",
    "bmn-sf1.metal",
    "h1.16xlarge",
    "f1.16xlarge",
];

fn vpc_cni(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .args(args)
        .output()
        .expect("run vpc-cni")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn number(args: &[&str]) -> u32 {
    let o = vpc_cni(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.ends_with('\n') && text.lines().count() == 1,
        "{args:?}: {text:?}"
    );
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{args:?}: not a number: {text:?}"))
}

#[test]
fn show_max_allowed_matches_upstream_and_the_library() {
    assert!(SAMPLE.len() >= 50);
    for t in SAMPLE {
        let want: u32 = FIXTURE
            .lines()
            .find_map(|l| l.strip_prefix(t)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{t} missing from the fixture"));
        let got = number(&["max-pods", "--instance-type", t, "--show-max-allowed"]);
        assert_eq!(got, want, "{t}: binary vs upstream");
        let lib = max_pods(lookup(t).expect("in table"), &MaxPodsOptions::default());
        assert_eq!(lib.max_allowed, got, "{t}: library vs binary");
        let recommended = number(&["max-pods", "--instance-type", t]);
        assert_eq!(recommended, lib.recommended, "{t}: recommended");
        assert!(recommended <= got && recommended <= 250, "{t}");
    }
}

#[test]
fn calculator_cases() {
    let mp = |extra: &[&str]| {
        let mut args = vec!["max-pods"];
        args.extend_from_slice(extra);
        number(&args)
    };
    assert_eq!(mp(&["--instance-type", "m5.24xlarge"]), 250);
    assert_eq!(
        mp(&["--instance-type", "m5.24xlarge", "--show-max-allowed"]),
        737
    );
    assert_eq!(
        mp(&[
            "--instance-type",
            "m5.large",
            "--cni-custom-networking-enabled"
        ]),
        20
    );
    // Prefix delegation: Nitro uses /28 prefixes, Xen falls back to secondary IPs.
    let pd = "--cni-prefix-delegation-enabled";
    assert_eq!(
        mp(&["--instance-type", "m5.large", pd, "--show-max-allowed"]),
        434
    );
    assert_eq!(mp(&["--instance-type", "m5.large", pd]), 110);
    assert_eq!(
        mp(&["--instance-type", "m4.large", pd, "--show-max-allowed"]),
        20
    );
    // Old CNI: no prefix delegation.
    let old = [
        "--instance-type",
        "m5.large",
        pd,
        "--cni-version",
        "1.8.0",
        "--show-max-allowed",
    ];
    assert_eq!(mp(&old), 29);
    assert_eq!(
        mp(&[
            "--instance-type",
            "m5.large",
            pd,
            "--cni-version",
            "v1.9.0",
            "--show-max-allowed"
        ]),
        434
    );
    // --cni-max-eni is a ceiling.
    assert_eq!(
        mp(&["--instance-type", "m5.24xlarge", "--cni-max-eni", "2"]),
        100
    );
    assert_eq!(
        mp(&["--instance-type", "m5.large", "--cni-max-eni", "10"]),
        29
    );
}

#[test]
fn unknown_instance_type_is_an_error() {
    let o = vpc_cni(&["max-pods", "--instance-type", "m5.humongous"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty(), "stdout: {}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("unknown instance type") && err.contains("m5.humongous"),
        "{err}"
    );
}

#[test]
fn bad_arguments_are_errors() {
    let o = vpc_cni(&[
        "max-pods",
        "--instance-type",
        "m5.large",
        "--cni-version",
        "one.two",
    ]);
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("invalid CNI version"), "{}", stderr(&o));

    let o = vpc_cni(&["max-pods"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--instance-type"), "{}", stderr(&o));
}

#[test]
fn help_works() {
    let o = vpc_cni(&["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("max-pods"), "{}", stdout(&o));

    let o = vpc_cni(&["max-pods", "--help"]);
    assert!(o.status.success());
    let text = stdout(&o);
    for flag in [
        "--instance-type",
        "--cni-version",
        "--cni-prefix-delegation-enabled",
        "--cni-custom-networking-enabled",
        "--cni-max-eni",
        "--show-max-allowed",
    ] {
        assert!(text.contains(flag), "{flag} missing from help:\n{text}");
    }
}

/// Upstream v1.23.1's instance limits table, all its types.
const UPSTREAM_V1_23_1: &str =
    include_str!("../../limits/data/sources/upstream-v1.23.1-vpc-ip-limits.tsv");

#[test]
fn show_max_allowed_agrees_with_upstreams_calculator_for_every_type() {
    let mut checked = 0;
    for line in UPSTREAM_V1_23_1
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        let (enis, ips): (u32, u32) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        // max-pods-calculator.sh --show-max-allowed, prefix delegation off.
        let want = enis * (ips - 1) + 2;
        let got = number(&["max-pods", "--instance-type", f[0], "--show-max-allowed"]);
        assert_eq!(got, want, "{}", f[0]);
        checked += 1;
    }
    assert_eq!(checked, 1391);
}

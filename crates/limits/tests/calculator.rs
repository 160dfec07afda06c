//! The EKS AMI calculator's behaviour on real table rows.

use limits::{CniVersion, MaxPodsOptions, Vcpus, lookup, max_pods};

fn calc(t: &str, opts: MaxPodsOptions) -> (u32, u32) {
    let l = lookup(t).unwrap_or_else(|| panic!("{t} in table"));
    let r = max_pods(l, &opts);
    (r.recommended, r.max_allowed)
}

fn pd() -> MaxPodsOptions {
    MaxPodsOptions {
        prefix_delegation: true,
        ..MaxPodsOptions::default()
    }
}

#[test]
fn known_answers() {
    assert_eq!(calc("m5.24xlarge", MaxPodsOptions::default()), (250, 737));
    let custom = MaxPodsOptions {
        custom_networking: true,
        ..MaxPodsOptions::default()
    };
    assert_eq!(calc("m5.large", custom), (20, 20));
    assert_eq!(calc("t3.nano", MaxPodsOptions::default()), (4, 4));
}

#[test]
fn prefix_delegation_on_nitro_but_not_on_xen() {
    assert_eq!(calc("m5.large", pd()), (110, 434));
    assert_eq!(calc("m5.24xlarge", pd()), (250, 11762));
    // Xen: no prefix delegation, the secondary-IP formula applies.
    assert_eq!(calc("m4.large", pd()), (20, 20));
    assert_eq!(calc("c4.8xlarge", pd()), (234, 234));
}

#[test]
fn old_cni_versions_have_no_prefix_delegation() {
    let old = MaxPodsOptions {
        cni_version: Some(CniVersion::new(1, 8, 0)),
        ..pd()
    };
    assert_eq!(calc("m5.large", old), (29, 29));
    let new = MaxPodsOptions {
        cni_version: Some(CniVersion::new(1, 9, 0)),
        ..pd()
    };
    assert_eq!(calc("m5.large", new), (110, 434));
}

#[test]
fn max_eni_is_a_ceiling() {
    let two = MaxPodsOptions {
        max_eni: Some(2),
        ..MaxPodsOptions::default()
    };
    assert_eq!(calc("m5.24xlarge", two), (100, 100));
    let above = MaxPodsOptions {
        max_eni: Some(99),
        ..MaxPodsOptions::default()
    };
    assert_eq!(calc("m5.large", above), (29, 29));
}

#[test]
fn vcpus_choose_the_ceiling() {
    let m5_8 = lookup("m5.8xlarge").expect("m5.8xlarge");
    let r = max_pods(m5_8, &MaxPodsOptions::default());
    assert_eq!(
        (r.vcpus, r.ceiling, r.recommended),
        (Vcpus::Known(32), 250, 234)
    );
    let m5_4 = lookup("m5.4xlarge").expect("m5.4xlarge");
    let r = max_pods(m5_4, &MaxPodsOptions::default());
    assert_eq!(
        (r.vcpus, r.ceiling, r.recommended),
        (Vcpus::Known(16), 110, 110)
    );
}

//! Pure logic: ENIConfig selection (table + property), SecurityGroupPolicy matching,
//! CNINode feature merging, the pod-IP annotation decisions.

use std::collections::BTreeMap;

use k8s::crd::{
    Feature, LabelSelector, LabelSelectorRequirement, SecurityGroupPolicy, SecurityGroupPolicySpec,
};
use k8s::features::{features_patch, merge_features, wanted_features};
use k8s::pod_ips::{AnnotationAction, on_add, on_del};
use k8s::selection::{NameSource, SelectionKeys, resolve_eni_config, select_eni_config_name};
use k8s::sgp::{PodIdentity, policies_for_pod, security_groups};
use k8s::{EniConfigError, crd::EniConfigSpec};
use proptest::prelude::*;
use serde_json::json;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const EXT: &str = "vpc.amazonaws.com/externalEniConfig";
const DEF: &str = "k8s.amazonaws.com/eniConfig";
const ZONE: &str = "topology.kubernetes.io/zone";

/// (labels, annotations, keys, expected name, expected source)
type Case<'a> = (
    BTreeMap<String, String>,
    BTreeMap<String, String>,
    &'a SelectionKeys,
    &'a str,
    NameSource,
);

#[test]
fn selection_table() {
    let zone_keys = SelectionKeys {
        annotation: String::new(),
        label: ZONE.to_owned(),
    };
    let default_keys = SelectionKeys::default();
    // (labels, annotations, keys, expected name, expected source)
    let cases: Vec<Case> = vec![
        (
            map(&[]),
            map(&[]),
            &default_keys,
            "default",
            NameSource::Default,
        ),
        (
            map(&[(DEF, "lbl")]),
            map(&[]),
            &default_keys,
            "lbl",
            NameSource::Label(DEF.into()),
        ),
        (
            map(&[(DEF, "lbl")]),
            map(&[(DEF, "ann")]),
            &default_keys,
            "ann",
            NameSource::Annotation(DEF.into()),
        ),
        (
            map(&[(DEF, "lbl"), (EXT, "ext")]),
            map(&[(DEF, "ann")]),
            &default_keys,
            "ext",
            NameSource::ExternalLabel,
        ),
        // ENI_CONFIG_LABEL_DEF=topology.kubernetes.io/zone; empty ENI_CONFIG_ANNOTATION_DEF → default key.
        (
            map(&[(ZONE, "us-west-2a"), (DEF, "x")]),
            map(&[]),
            &zone_keys,
            "us-west-2a",
            NameSource::Label(ZONE.into()),
        ),
        (
            map(&[(ZONE, "us-west-2a")]),
            map(&[(DEF, "ann")]),
            &zone_keys,
            "ann",
            NameSource::Annotation(DEF.into()),
        ),
        (
            map(&[(DEF, "x")]),
            map(&[]),
            &zone_keys,
            "default",
            NameSource::Default,
        ),
        // Present but empty still wins (upstream checks presence).
        (
            map(&[(DEF, "lbl")]),
            map(&[(DEF, "")]),
            &default_keys,
            "",
            NameSource::Annotation(DEF.into()),
        ),
    ];
    for (i, (labels, anns, keys, name, source)) in cases.into_iter().enumerate() {
        let got = select_eni_config_name(&labels, &anns, keys);
        assert_eq!((got.name.as_str(), got.source), (name, source), "case {i}");
    }
    assert_eq!(
        SelectionKeys::from_env_values(Some(""), None),
        SelectionKeys::default()
    );
    assert_eq!(SelectionKeys::from_env_values(None, Some(ZONE)).label, ZONE);
}

#[test]
fn resolution_errors_name_what_to_fix() {
    let spec = EniConfigSpec {
        subnet: "subnet-1".into(),
        security_groups: vec![],
    };
    let lookup = |n: &str| (n == "a").then(|| spec.clone());
    let keys = SelectionKeys::default();
    let ok =
        resolve_eni_config("n1", &map(&[(DEF, "a")]), &map(&[]), &keys, lookup).expect("found");
    assert_eq!(ok.spec.subnet, "subnet-1");
    let e = resolve_eni_config("n1", &map(&[(DEF, "b")]), &map(&[]), &keys, lookup)
        .expect_err("missing");
    assert_eq!(
        e.to_string(),
        "ENIConfig b not found (selected for node n1 by label k8s.amazonaws.com/eniConfig)"
    );
    let e = resolve_eni_config("n1", &map(&[]), &map(&[]), &keys, lookup).expect_err("none");
    assert!(matches!(e, EniConfigError::NoneSelected { .. }));
    assert!(
        e.to_string()
            .starts_with("no ENIConfig selected for node n1")
    );
    let e =
        resolve_eni_config("n1", &map(&[]), &map(&[(DEF, "")]), &keys, lookup).expect_err("empty");
    assert!(matches!(e, EniConfigError::EmptyName { .. }), "{e}");
}

proptest! {
    /// Precedence: external label > annotation > configured label > "default", whatever else
    /// the node carries.
    #[test]
    fn selection_precedence(
        ext in proptest::option::of("[a-z0-9-]{1,8}"),
        ann in proptest::option::of("[a-z0-9-]{1,8}"),
        lbl in proptest::option::of("[a-z0-9-]{1,8}"),
        noise in proptest::collection::btree_map("[a-z]{1,5}/[a-z]{1,5}", "[a-z]{0,5}", 0..4),
    ) {
        let mut labels = noise.clone();
        let mut anns = noise;
        if let Some(v) = &ext { labels.insert(EXT.into(), v.clone()); }
        if let Some(v) = &ann { anns.insert(DEF.into(), v.clone()); }
        if let Some(v) = &lbl { labels.insert(DEF.into(), v.clone()); }
        let got = select_eni_config_name(&labels, &anns, &SelectionKeys::default());
        let want = ext.or(ann).or(lbl).unwrap_or_else(|| "default".into());
        prop_assert_eq!(got.name, want);
    }
}

fn sgp(ns: &str, name: &str, spec: serde_json::Value) -> SecurityGroupPolicy {
    let spec: SecurityGroupPolicySpec = serde_json::from_value(spec).expect("spec");
    let mut p = SecurityGroupPolicy::new(name, spec);
    p.metadata.namespace = Some(ns.into());
    p
}

#[test]
fn security_group_policy_matching() {
    let policies = vec![
        sgp(
            "shop",
            "by-label",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "securityGroups": {"groupIds": ["sg-1", "sg-2"]}}),
        ),
        sgp(
            "shop",
            "by-sa",
            json!({"serviceAccountSelector": {"matchLabels": {"team": "a"}}, "securityGroups": {"groupIds": ["sg-2", "sg-3"]}}),
        ),
        sgp(
            "shop",
            "both",
            json!({"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe"]}]},
                                   "serviceAccountSelector": {"matchNames": ["web-sa"]}, "securityGroups": {"groupIds": ["sg-4"]}}),
        ),
        sgp(
            "shop",
            "empty-selector",
            json!({"podSelector": {}, "securityGroups": {"groupIds": ["sg-all"]}}),
        ),
        sgp(
            "shop",
            "no-selector",
            json!({"securityGroups": {"groupIds": ["sg-x"]}}),
        ),
        sgp("shop", "no-groups", json!({"podSelector": {}})),
        sgp(
            "shop",
            "bad-op",
            json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Like"}]}, "securityGroups": {"groupIds": ["sg-bad"]}}),
        ),
        sgp(
            "shop",
            "not-in",
            json!({"podSelector": {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]},
                                                                          {"key": "debug", "operator": "DoesNotExist"}]},
                                     "securityGroups": {"groupIds": ["sg-np"]}}),
        ),
        sgp(
            "other",
            "by-label",
            json!({"podSelector": {}, "securityGroups": {"groupIds": ["sg-other"]}}),
        ),
    ];
    let pod = PodIdentity {
        namespace: "shop".into(),
        labels: map(&[("app", "web"), ("tier", "fe")]),
        service_account: "web-sa".into(),
        service_account_labels: map(&[("team", "a")]),
    };
    let m = policies_for_pod(&policies, &pod);
    let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["both", "by-label", "by-sa", "empty-selector", "not-in"]
    );
    assert_eq!(
        security_groups(&m),
        ["sg-4", "sg-1", "sg-2", "sg-3", "sg-all", "sg-np"]
    );

    let other = PodIdentity {
        labels: map(&[("env", "prod")]),
        service_account: "x".into(),
        ..pod.clone()
    };
    let names: Vec<String> = policies_for_pod(&policies, &other)
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(
        names,
        ["by-sa", "empty-selector"],
        "service account labels still match"
    );
    let _ = LabelSelector::default();
    let _ = LabelSelectorRequirement::default();
}

#[test]
fn cninode_features_follow_upstream() {
    let sgp_f = Feature::security_groups_for_pods();
    let cn = |v: &str| Feature::custom_networking(v);
    assert_eq!(wanted_features(false, true, Some("a")), vec![]);
    assert_eq!(
        wanted_features(true, true, Some("default")),
        vec![sgp_f.clone()]
    );
    assert_eq!(wanted_features(true, false, Some("a")), vec![cn("a")]);
    assert_eq!(
        wanted_features(true, true, Some("a")),
        vec![cn("a"), sgp_f.clone()]
    );
    assert_eq!(
        merge_features(std::slice::from_ref(&sgp_f), std::slice::from_ref(&sgp_f)),
        None
    );
    assert_eq!(
        merge_features(&[cn("old"), sgp_f.clone()], &[cn("new")]),
        Some(vec![sgp_f.clone(), cn("new")])
    );
    assert_eq!(
        merge_features(&[], &[cn("a"), sgp_f.clone()]),
        Some(vec![cn("a"), sgp_f.clone()])
    );
    assert_eq!(
        features_patch("42", &[cn("a"), sgp_f]),
        json!({"metadata": {"resourceVersion": "42"},
               "spec": {"features": [{"name": "CustomNetworking", "value": "a"}, {"name": "SecurityGroupsForPods"}]}})
    );
}

#[test]
fn pod_ip_annotation_decisions() {
    let patch = |v: &str| {
        AnnotationAction::Patch(
            json!({"metadata": {"annotations": {"vpc.amazonaws.com/pod-ips": v}}}),
        )
    };
    assert_eq!(on_add(None, "10.0.0.1"), patch("10.0.0.1"));
    assert_eq!(on_add(Some("10.0.0.2"), "10.0.0.1"), patch("10.0.0.1"));
    assert_eq!(on_add(Some("10.0.0.1"), "10.0.0.1"), AnnotationAction::Skip);
    assert_eq!(on_del(Some("10.0.0.1"), "10.0.0.1"), Ok(patch("")));
    assert_eq!(on_del(None, "10.0.0.1"), Ok(AnnotationAction::Skip));
    assert!(on_del(Some("10.0.0.2"), "10.0.0.1").is_err());
}

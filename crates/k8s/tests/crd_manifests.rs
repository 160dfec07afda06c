//! The CRD manifests in the repository are exactly what the crate's types generate.
//! `K8S_BLESS_CRDS=1 cargo test -p k8s --test crd_manifests` rewrites them.

use std::path::PathBuf;

use k8s::manifests::crd_manifests;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn crd_manifests_are_up_to_date() {
    let bless = std::env::var("K8S_BLESS_CRDS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for m in crd_manifests() {
        let path = repo_root().join(m.path);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == m.yaml {
            continue;
        }
        if bless {
            std::fs::write(&path, &m.yaml).expect("write CRD manifest");
            println!("rewrote {}", m.path);
        } else {
            stale.push(format!("--- {} differs; generated:\n{}", m.path, m.yaml));
        }
    }
    assert!(
        stale.is_empty(),
        "CRD manifests are stale (rerun with K8S_BLESS_CRDS=1):\n{}",
        stale.join("\n")
    );
}

#[test]
fn eniconfig_crd_is_schema_compatible_with_upstream() {
    let m = crd_manifests();
    let eni = &m[0].yaml;
    // Upstream (charts/aws-vpc-cni/crds/customresourcedefinition.yaml): cluster-scoped
    // crd.k8s.amazonaws.com/v1alpha1 ENIConfig, spec.subnet required string,
    // spec.securityGroups string array, unknown root fields preserved.
    for needle in [
        "name: eniconfigs.crd.k8s.amazonaws.com",
        "group: crd.k8s.amazonaws.com",
        "scope: Cluster",
        "kind: ENIConfig",
        "plural: eniconfigs",
        "name: v1alpha1",
        "x-kubernetes-preserve-unknown-fields: true",
    ] {
        assert!(eni.contains(needle), "missing {needle:?} in\n{eni}");
    }
    let crd: serde_json::Value =
        serde_json::to_value(<k8s::crd::EniConfig as kube::CustomResourceExt>::crd())
            .expect("crd json");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["required"], serde_json::json!(["subnet"]));
    assert_eq!(spec["properties"]["subnet"]["type"], "string");
    assert_eq!(spec["properties"]["securityGroups"]["type"], "array");
    assert_eq!(
        spec["properties"]["securityGroups"]["items"]["type"],
        "string"
    );
}

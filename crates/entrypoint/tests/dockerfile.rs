//! The Dockerfile cannot be built here, so it is checked statically: every COPY source from
//! the build context exists, every binary the build stage builds or the image copies is a
//! binary the workspace really builds, every binary the image copies is built, and the image
//! holds the commands the chart runs (entrypoint, init, probe) where the chart expects them.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Dockerfile instructions, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if cur.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                cur.push_str(part);
                cur.push(' ');
            }
            None => {
                cur.push_str(trimmed);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out
}

/// `[[bin]]` names of every workspace crate, plus `src/main.rs` crates without one.
fn workspace_binaries() -> BTreeSet<String> {
    let mut bins = BTreeSet::new();
    for entry in fs::read_dir(repo().join("crates")).unwrap().flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = fs::read_to_string(&manifest) else {
            continue;
        };
        let mut section = String::new();
        let mut package = None;
        let mut explicit_main = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.to_owned();
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"').to_owned();
            match (section.as_str(), key.trim()) {
                ("[[bin]]", "name") => {
                    bins.insert(value);
                }
                ("[[bin]]", "path") if value == "src/main.rs" => explicit_main = true,
                ("[package]", "name") => package = Some(value),
                _ => {}
            }
        }
        if !explicit_main
            && entry.path().join("src/main.rs").is_file()
            && let Some(p) = package
        {
            bins.insert(p);
        }
    }
    bins
}

#[test]
fn dockerfile_ships_what_the_workspace_builds() {
    let text = fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let steps = instructions(&text);
    let workspace = workspace_binaries();
    for must in [
        "aws-k8s-agent",
        "aws-cni",
        "egress-cni",
        "aws-vpc-cni",
        "aws-vpc-cni-init",
        "grpc-health-probe",
        "vpc-cni",
    ] {
        assert!(
            workspace.contains(must),
            "the workspace builds {must}: {workspace:?}"
        );
    }

    let mut built = BTreeSet::new();
    let mut copied_bins = BTreeSet::new();
    let mut in_image = BTreeSet::new();
    let mut entrypoint = None;
    for step in &steps {
        let words: Vec<&str> = step.split_whitespace().collect();
        match words.first().copied() {
            Some("RUN") if step.contains("cargo build") => {
                for pair in words.windows(2) {
                    if pair[0] == "--bin" {
                        assert!(
                            workspace.contains(pair[1]),
                            "cargo builds --bin {}, not a workspace binary",
                            pair[1]
                        );
                        built.insert(pair[1].to_owned());
                    }
                }
            }
            Some("COPY") => {
                let args: Vec<&str> = words[1..]
                    .iter()
                    .copied()
                    .filter(|w| !w.starts_with("--") || w.starts_with("--from"))
                    .collect();
                let from_stage = args.first().is_some_and(|a| a.starts_with("--from="));
                let args: Vec<&str> = args.into_iter().filter(|a| !a.starts_with("--")).collect();
                let (dest, sources) = args.split_last().unwrap();
                for src in sources {
                    if from_stage {
                        let bin = src
                            .strip_prefix("/src/target/release/")
                            .unwrap_or_else(|| panic!("unexpected build-stage source {src}"));
                        assert!(
                            workspace.contains(bin),
                            "COPY of {bin}, not a workspace binary"
                        );
                        copied_bins.insert(bin.to_owned());
                    } else if *src != "." {
                        assert!(
                            repo().join(src).exists(),
                            "COPY source {src} does not exist in the repository"
                        );
                    }
                }
                in_image.insert(dest.to_string());
            }
            Some("ENTRYPOINT") => entrypoint = Some(step.clone()),
            _ => {}
        }
    }
    assert!(
        !built.is_empty(),
        "the build stage runs cargo build --bin …"
    );
    let unbuilt: Vec<_> = copied_bins.difference(&built).collect();
    assert!(unbuilt.is_empty(), "copied but never built: {unbuilt:?}");
    let unshipped: Vec<_> = built.difference(&copied_bins).collect();
    assert!(unshipped.is_empty(), "built but not shipped: {unshipped:?}");
    for path in [
        "/app/aws-vpc-cni",
        "/app/aws-vpc-cni-init",
        "/app/grpc-health-probe",
        "/app/aws-k8s-agent",
        "/app/aws-cni",
        "/app/egress-cni",
    ] {
        assert!(
            in_image.contains(path),
            "the image has {path}: {in_image:?}"
        );
    }
    assert_eq!(
        entrypoint.as_deref(),
        Some(r#"ENTRYPOINT ["/app/aws-vpc-cni"]"#)
    );
}

#[test]
fn chart_runs_the_shipped_commands() {
    let daemonset =
        fs::read_to_string(repo().join("charts/aws-vpc-cni/templates/daemonset.yaml")).unwrap();
    let values = fs::read_to_string(repo().join("charts/aws-vpc-cni/values.yaml")).unwrap();
    let deploy = fs::read_to_string(repo().join("deploy/aws-k8s-cni.yaml")).unwrap();
    assert!(
        daemonset.contains("- /app/aws-vpc-cni\n"),
        "main container command"
    );
    assert!(
        values.contains("- /app/aws-vpc-cni-init"),
        "init container command"
    );
    for manifest in [&values, &deploy] {
        assert!(manifest.contains("- /app/grpc-health-probe\n"));
        assert!(manifest.contains("- -addr=unix:///var/run/aws-node/ipamd.sock\n"));
    }
    assert!(
        deploy.contains("- /app/aws-vpc-cni-init\n") && deploy.contains("- /app/aws-vpc-cni\n")
    );
}

/// The runtime stage's instructions (after the last FROM).
fn runtime_stage(steps: &[String]) -> &[String] {
    let last_from = steps
        .iter()
        .rposition(|s| s.starts_with("FROM "))
        .expect("a FROM");
    &steps[last_from + 1..]
}

/// `scripts/build-image.sh` builds the image from what `scripts/image-plan.py` reads out of
/// the Dockerfile: that reading must be the Dockerfile's own (binaries, packages, RUN, every
/// COPY, working directory, entrypoint), or the registry-free image would drift from it.
#[test]
fn the_registry_free_build_reads_the_dockerfiles_layout() {
    let text = fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let steps = instructions(&text);
    let out = std::process::Command::new("python3")
        .arg(repo().join("scripts/image-plan.py"))
        .arg(repo().join("Dockerfile"))
        .output()
        .expect("python3 runs scripts/image-plan.py");
    assert!(out.status.success(), "{out:?}");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };

    let bins: Vec<String> = steps
        .iter()
        .filter(|s| s.starts_with("RUN ") && s.contains("cargo build"))
        .flat_map(|s| {
            let words: Vec<&str> = s.split_whitespace().collect();
            words
                .windows(2)
                .filter(|w| w[0] == "--bin")
                .map(|w| w[1].to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(strings(&plan["bins"]), bins, "binaries");

    let runtime = runtime_stage(&steps);
    let runs: Vec<String> = runtime
        .iter()
        .filter_map(|s| s.strip_prefix("RUN "))
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let plan_runs: Vec<String> = strings(&plan["run"])
        .iter()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(plan_runs, runs, "RUN commands");
    let packages: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r.split("&&")
                .map(str::trim)
                .filter_map(|c| c.strip_prefix("apt-get install"))
                .flat_map(|c| c.split_whitespace().filter(|w| !w.starts_with('-')))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(packages.contains(&"iptables".to_owned()), "{packages:?}");
    assert_eq!(strings(&plan["packages"]), packages, "packages");

    let copies: Vec<(String, String)> = runtime
        .iter()
        .filter_map(|s| s.strip_prefix("COPY "))
        .map(|s| {
            let args: Vec<&str> = s
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let src = args[0].strip_prefix("/src/").unwrap_or(args[0]);
            (src.to_owned(), args[1].to_owned())
        })
        .collect();
    let plan_copies: Vec<(String, String)> = plan["copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["src"].as_str().unwrap().to_owned(),
                c["dest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(plan_copies, copies, "COPY sources and destinations");
    assert_eq!(plan["workdir"], "/app");
    assert_eq!(strings(&plan["entrypoint"]), vec!["/app/aws-vpc-cni"]);
    // The Containerfile podman builds: the runtime stage without RUN, COPYs made plain.
    let containerfile = plan["containerfile"].as_str().unwrap();
    assert!(
        containerfile.starts_with("FROM @BASE@\n"),
        "{containerfile}"
    );
    assert!(!containerfile.contains("RUN "), "{containerfile}");
    for (src, dest) in &copies {
        assert!(
            containerfile.contains(&format!("COPY {src} {dest}\n")),
            "{containerfile}"
        );
    }
}

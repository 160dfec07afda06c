//! The workspace's binaries, found without relative paths to a sibling test binary; the core
//! CNI plugins the conflist chains ([`core_plugin`]).
//!
//! `CARGO_BIN_EXE_<name>` exists only for the binaries of the package under test, and the
//! binaries these tests run belong to other packages. [`workspace_bin`] looks for
//! `<target dir>/<profile>/<name>`, the directory cargo puts every binary of a build in,
//! derived from the running test executable (`<target dir>/<profile>/deps/<test>-<hash>`), so
//! it follows `CARGO_TARGET_DIR`, `--target-dir` and `--release`. If the binary is missing
//! (`cargo test -p integration-tests` on a fresh target dir builds only this package) it runs
//! `cargo build -p <package> --bin <name>` into the same target dir and profile first.
//!
//! `cargo test --workspace` (what `scripts/test.sh` runs) builds every binary before the tests
//! run, so they are always current there. Under `cargo test -p integration-tests` a binary
//! already in the target dir is used as it is: set `INTEGRATION_TESTS_BUILD_BINS=1` to
//! rebuild each binary (once per test process) before it is used.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// (binary, package) for every binary the cross-crate tests run.
const BINARIES: &[(&str, &str)] = &[
    ("aws-cni", "cni"),
    ("aws-k8s-agent", "ipamd"),
    ("aws-vpc-cni", "entrypoint"),
    ("aws-vpc-cni-init", "entrypoint"),
    ("egress-cni", "egress-cni"),
    ("grpc-health-probe", "health-probe"),
    ("vpc-cni", "cli"),
];

/// Binaries this process already built (with `INTEGRATION_TESTS_BUILD_BINS=1`); the lock also
/// keeps two tests of one process from building at the same time.
static BUILT: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

/// `name`'s entry in [`BINARIES`]: (binary, package).
fn entry(name: &str) -> (&'static str, &'static str) {
    BINARIES
        .iter()
        .find(|(bin, _)| *bin == name)
        .copied()
        .unwrap_or_else(|| panic!("{name} is not a binary of this workspace: add it to BINARIES"))
}

/// `<target dir>/<profile>`: the directory of the running test executable's `deps/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the test executable's directory");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("the profile directory")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// The workspace root (this package's parent directory).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root")
}

/// `cargo build -p <package> --bin <name>` into `profile_dir`'s target dir and profile.
fn build(package: &str, name: &str, profile_dir: &Path) {
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    let target_dir = profile_dir
        .parent()
        .expect("the profile directory has a parent");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .args(["-p", package, "--bin", name]);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {name}: {e}"));
    assert!(
        status.success(),
        "`cargo build -p {package} --bin {name}` failed ({status})"
    );
}

/// The path of the workspace binary `name`, built first if it is missing (or, with
/// `INTEGRATION_TESTS_BUILD_BINS=1`, the first time this process asks for it).
pub fn workspace_bin(name: &str) -> PathBuf {
    let (key, package) = entry(name);
    let dir = profile_dir();
    let path = dir.join(name);
    let force = std::env::var_os("INTEGRATION_TESTS_BUILD_BINS").is_some_and(|v| v == "1");
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !path.is_file() || (force && !built.contains(key)) {
        build(package, name, &dir);
        built.insert(key);
    }
    assert!(
        path.is_file(),
        "{} is missing after building it",
        path.display()
    );
    path
}

/// Where Debian's containernetworking-plugins put the core plugins (`portmap`, `bandwidth`,
/// `tuning`, `host-local`, ...); scripts/install-deps.sh installs the package.
pub const CORE_PLUGIN_DIR: &str = "/usr/lib/cni";

/// A core plugin binary, failing clearly when the package is missing.
pub fn core_plugin(name: &str) -> PathBuf {
    let path = Path::new(CORE_PLUGIN_DIR).join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/install-deps.sh (Debian package containernetworking-plugins)",
        path.display()
    );
    path
}

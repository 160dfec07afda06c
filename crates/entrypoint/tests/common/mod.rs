//! Shared by the entrypoint's own integration tests (the cross-crate ones live in `tests/`).

use std::path::{Path, PathBuf};

/// The init binary.
pub const INIT: &str = env!("CARGO_BIN_EXE_aws-vpc-cni-init");

/// Debian's containernetworking-plugins (scripts/install-deps.sh installs them).
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

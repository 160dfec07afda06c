//! Shared by the entrypoint's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Our own binary.
pub const ENTRYPOINT: &str = env!("CARGO_BIN_EXE_aws-vpc-cni");
/// The init binary.
pub const INIT: &str = env!("CARGO_BIN_EXE_aws-vpc-cni-init");

/// Debian's containernetworking-plugins (scripts/install-deps.sh installs them).
pub const CORE_PLUGIN_DIR: &str = "/usr/lib/cni";

/// A binary built from another workspace crate, next to ours in the target directory.
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = Path::new(ENTRYPOINT).parent().unwrap().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first (`cargo build -p ipamd -p cni -p egress-cni --bins`; \
         `cargo test --workspace` builds every binary)",
        path.display()
    );
    path
}

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

/// An app directory as the image's `/app`: links to the workspace's binaries.
pub fn app_dir(root: &Path) -> PathBuf {
    let app = root.join("app");
    std::fs::create_dir_all(&app).unwrap();
    for name in ["aws-k8s-agent", "aws-cni", "egress-cni"] {
        std::os::unix::fs::symlink(workspace_bin(name), app.join(name)).unwrap();
    }
    app
}

/// A free loopback TCP address.
pub fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

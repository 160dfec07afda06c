//! Shared by the `egress-cni` binary tests: running the plugin as a runtime does.

// Each test binary compiles this module and reads only some of it.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

/// What one plugin run gave back.
pub struct PluginRun {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (the plugin, its `CNI_*` environment already set) with `stdin` as its
/// standard input, as a container runtime does, and collects its exit code and output.
pub fn run_plugin(cmd: &mut Command, stdin: &str) -> PluginRun {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    PluginRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

//! Test support (feature `testing`): a CNI plugin binary run the way a runtime runs it —
//! optionally inside a network namespace, with only `PATH` and the given `CNI_*` variables in
//! its environment, the network configuration on stdin — and what it printed.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// One plugin run.
pub struct Run {
    pub rc: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The CNI error code printed on stdout.
    pub fn code(&self) -> u64 {
        serde_json::from_str::<Value>(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no code: {}", self.stdout))
    }

    /// stdout as JSON (the whole of stdout must be one document).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", self.stdout))
    }
}

/// Runs the plugin `bin` (inside the named network namespace `netns` when given) with `env`
/// and `stdin`. Panics when it cannot be started: test support.
pub fn run_plugin(bin: &Path, netns: Option<&str>, env: &[(&str, &str)], stdin: &str) -> Run {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = cmd
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    child
        .stdin
        .take()
        .expect("the plugin's stdin")
        .write_all(stdin.as_bytes())
        .expect("write the network configuration");
    let out = child.wait_with_output().expect("the plugin's output");
    Run {
        rc: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

//! The one firewall runner of the workspace: `iptables-save`/`iptables-restore` (and their
//! `ip6tables` twins) of the node's backend, and `nft` for the nftables connmark table, run
//! inside a network namespace (`nsenter --net=`) through `tokio::process`, so a batch waiting
//! for the xtables lock never blocks an async worker. Every restore batch is `--wait=10
//! --noflush` ([`XTABLES_LOCK_WAIT`]). [`crate::kernel::Kernel`]'s firewall methods run
//! through it.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::iptables_backend::{Backend, XTABLES_LOCK_WAIT};
use crate::netlink::KernelError;

/// IP family of a firewall batch, a route or a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Family {
    /// IPv4 (`iptables`).
    #[default]
    V4,
    /// IPv6 (`ip6tables`).
    V6,
}

impl Family {
    /// The `*-save` tool of `backend` for this family.
    pub fn save(self, backend: Backend) -> &'static str {
        match self {
            Family::V4 => backend.save(),
            Family::V6 => backend.save6(),
        }
    }

    /// The `*-restore` tool of `backend` for this family.
    pub fn restore(self, backend: Backend) -> &'static str {
        match self {
            Family::V4 => backend.restore(),
            Family::V6 => backend.restore6(),
        }
    }
}

/// The restore command line: `<tool> --wait=10 --noflush`.
pub fn restore_args(backend: Backend, family: Family) -> [&'static str; 3] {
    [family.restore(backend), XTABLES_LOCK_WAIT, "--noflush"]
}

/// The `nft` command line of one batch read from stdin (one atomic transaction).
pub const NFT_APPLY: [&str; 3] = ["nft", "-f", "-"];

/// Runs `args` (inside `netns` when given) with `stdin`; stdout, or an error naming the
/// command with its stderr (and the batch).
pub async fn run(
    netns: Option<&Path>,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, KernelError> {
    let shown = args.join(" ");
    let fail = |detail: String| KernelError::Command {
        cmd: shown.clone(),
        detail,
    };
    let (prog, rest) = args
        .split_first()
        .ok_or_else(|| fail("empty command".to_owned()))?;
    let mut cmd = match netns {
        Some(path) => {
            let mut c = tokio::process::Command::new("nsenter");
            c.arg(format!("--net={}", path.display()))
                .arg("--")
                .arg(prog);
            c
        }
        None => tokio::process::Command::new(prog),
    };
    let mut child = cmd
        .args(rest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut pipe) = child.stdin.take() {
        if let Some(input) = stdin {
            pipe.write_all(input.as_bytes())
                .await
                .map_err(|e| fail(e.to_string()))?;
        }
        drop(pipe);
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if let Some(text) = stdin {
            detail.push_str(&format!("; input:\n{text}"));
        }
        return Err(fail(detail));
    }
    tracing::debug!(cmd = %shown, "firewall command ok");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

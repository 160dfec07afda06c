//! The one firewall runner of the workspace: `iptables-save`/`iptables-restore` (and their
//! `ip6tables` twins) of the node's backend (legacy or nft, [`crate::iptables_backend`]),
//! run inside a network namespace (`nsenter --net=`) through `tokio::process`, so a batch
//! waiting for the xtables lock never blocks an async worker. Every restore batch is
//! `--wait=10 --noflush` ([`XTABLES_LOCK_WAIT`]). [`crate::kernel::Kernel`] exposes it; the
//! drivers here (backend detection, the SNAT reconcile of upstream's
//! `updateHostIptablesRules`) are written against that trait.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::iptables_backend::{
    Backend, XTABLES_LOCK_WAIT, choose, count_rules, random_fully_supported,
};
use crate::iptables_save::parse_table;
use crate::kernel::Kernel;
use crate::netlink::KernelError;
use crate::snat::{SnatSettings, desired_mangle, desired_nat, restore_batch};

/// IP family of a firewall batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `iptables`.
    V4,
    /// `ip6tables`.
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

/// The node's backend, chosen as kube-proxy's `iptables-wrapper` does
/// ([`crate::iptables_backend::choose`]); a backend whose tools fail counts as missing.
pub async fn detect_backend<K: Kernel>(k: &K) -> Backend {
    let mut counts = [None, None];
    for (slot, b) in counts.iter_mut().zip([Backend::Legacy, Backend::Nft]) {
        if let Ok(v4) = k.firewall_save(b, Family::V4, None).await {
            let v6 = k
                .firewall_save(b, Family::V6, None)
                .await
                .unwrap_or_default();
            *slot = Some(count_rules(&v4) + count_rules(&v6));
        }
    }
    choose(counts[0], counts[1])
}

/// Whether `backend`'s iptables has `--random-fully` (go-iptables' `HasRandomFully`); a
/// failing `--version` counts as no.
pub async fn detect_random_fully<K: Kernel>(k: &K, backend: Backend) -> bool {
    k.firewall_version(backend)
        .await
        .is_ok_and(|out| random_fully_supported(&out))
}

/// Takes the `nat` and `mangle` tables to the desired state of `s` with one restore batch
/// per table that differs (upstream `updateHostIptablesRules`). Returns the batches applied.
pub async fn reconcile_snat<K: Kernel>(
    k: &K,
    backend: Backend,
    s: &SnatSettings,
) -> Result<usize, KernelError> {
    let mut applied = 0;
    for (table, desired) in [("nat", desired_nat(s)), ("mangle", desired_mangle(s))] {
        let saved = k.firewall_save(backend, Family::V4, Some(table)).await?;
        let current = parse_table(&saved, table);
        if let Some(batch) = restore_batch(table, &current, &desired) {
            k.firewall_restore(backend, Family::V4, &batch).await?;
            applied += 1;
        }
    }
    Ok(applied)
}

//! The connmark drivers written against [`Kernel`]: which backend holds the rules
//! ([`crate::connmark`]), and the nftables table `ip aws-cni` ([`crate::nft_connmark`]):
//! set up, removed, and removed as stale when the iptables backend is in use (upstream's
//! `cleanupNFTStaleRules`). The iptables side of both migrations is the `nat` batch of
//! [`crate::snat`], which stops declaring the iptables connmark rules under nftables.

use crate::connmark::ConnmarkBackend;
use crate::iptables_backend::Backend;
use crate::kernel::Kernel;
use crate::netlink::KernelError;
use crate::nft_connmark::{self, NftConnmark, NftError, TABLE, TableState};
use crate::snat::SnatSettings;

fn nft_error(cmd: &str, e: NftError) -> KernelError {
    KernelError::Command {
        cmd: cmd.to_owned(),
        detail: e.to_string(),
    }
}

/// Upstream's `NewConnmark`: the `--version` text of `backend`'s `iptables` (the backend
/// this agent programs) says `legacy` → iptables, else nftables. When `--version` cannot
/// run, what that backend would have said.
pub async fn detect_connmark_backend<K: Kernel>(k: &K, backend: Backend) -> ConnmarkBackend {
    match k.firewall_version(backend).await {
        Ok(text) => ConnmarkBackend::from_iptables_version(&text),
        Err(e) => {
            tracing::warn!("{e}: connmark backend taken from the iptables backend");
            ConnmarkBackend::for_iptables_backend(backend)
        }
    }
}

/// Table `ip aws-cni` as the kernel holds it, `None` when there is none.
pub async fn nft_connmark_table<K: Kernel>(k: &K) -> Result<Option<TableState>, KernelError> {
    let tables = k.nft_list(&["tables", "ip"]).await?;
    let listed = nft_connmark::lists_table(&tables, "ip", TABLE)
        .map_err(|e| nft_error("nft -j list tables ip", e))?;
    if !listed {
        return Ok(None);
    }
    let json = k.nft_list(&["table", "ip", TABLE]).await?;
    nft_connmark::parse_table(&json)
        .map(Some)
        .map_err(|e| nft_error("nft -j list table ip aws-cni", e))
}

/// Takes table `ip aws-cni` to `want` with at most one `nft -f` batch (upstream
/// `nftConnmark.Setup`). Returns the batches applied (0 when converged).
pub async fn setup_nft_connmark<K: Kernel>(
    k: &K,
    want: &NftConnmark,
) -> Result<usize, KernelError> {
    let current = nft_connmark_table(k).await?;
    match nft_connmark::setup_batch(current.as_ref(), want) {
        Some(batch) => {
            k.nft_apply(&batch).await?;
            Ok(1)
        }
        None => Ok(0),
    }
}

/// Deletes table `ip aws-cni` when it exists (upstream `nftConnmark.Cleanup`). Returns the
/// batches applied.
pub async fn remove_nft_connmark<K: Kernel>(k: &K) -> Result<usize, KernelError> {
    if nft_connmark_table(k).await?.is_none() {
        return Ok(0);
    }
    k.nft_apply(&nft_connmark::delete_batch()).await?;
    Ok(1)
}

/// The nftables part of a SNAT reconcile: the table of `s` under the nftables backend
/// (none with external SNAT), and no table under the iptables backend (the
/// nftables→iptables migration; skipped, as upstream does, when `nft` cannot even list).
pub async fn reconcile_nft_connmark<K: Kernel>(
    k: &K,
    s: &SnatSettings,
) -> Result<usize, KernelError> {
    match (s.connmark_backend, s.external_snat) {
        (ConnmarkBackend::Nftables, false) => {
            let want = NftConnmark::new(&s.veth_prefix, s.connmark, s.exempt_cidrs())
                .map_err(|e| KernelError::Invalid(e.to_string()))?;
            setup_nft_connmark(k, &want).await
        }
        (ConnmarkBackend::Nftables, true) => remove_nft_connmark(k).await,
        (ConnmarkBackend::Iptables, _) => match nft_connmark_table(k).await {
            Ok(None) => Ok(0),
            Ok(Some(_)) => {
                tracing::info!(
                    "removing the nftables connmark table ip {TABLE} (iptables backend)"
                );
                k.nft_apply(&nft_connmark::delete_batch()).await?;
                Ok(1)
            }
            Err(e) => {
                tracing::debug!("no stale nftables connmark table to look for: {e}");
                Ok(0)
            }
        },
    }
}

#[cfg(test)]
#[path = "connmark_tests.rs"]
mod tests;

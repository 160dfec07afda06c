//! The firewall: the workspace's one runner ([`runner`]: `iptables-save`/`iptables-restore`
//! of the node's backend, legacy or nft, [`crate::iptables_backend`], with `--wait=10`),
//! which [`crate::kernel::Kernel`] exposes, and the drivers written against that trait
//! (backend detection, the SNAT reconcile of upstream's `updateHostIptablesRules`, the
//! nftables connmark table of upstream's `nftConnmark` in [`connmark`]).

pub mod connmark;
pub mod runner;

pub use connmark::{detect_connmark_backend, reconcile_nft_connmark};
pub use runner::{Family, restore_args, run};

use crate::connmark::ConnmarkBackend;
use crate::iptables_backend::{Backend, choose, count_rules, random_fully_supported};
use crate::iptables_save::parse_table;
use crate::kernel::Kernel;
use crate::netlink::KernelError;
use crate::snat::{SnatSettings, desired_mangle, desired_nat, restore_batch};

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
/// per table that differs (upstream `updateHostIptablesRules`), and the connmark rules to
/// `s.connmark_backend` (upstream's `Connmark.Setup`/`Cleanup`). Returns the batches applied.
///
/// The backend being moved to is programmed before the other is emptied, so a migration
/// either way never leaves a moment without marking: nftables table first, then the `nat`
/// batch that drops the iptables connmark rules; or the `nat` batch with them first, then
/// the table goes.
pub async fn reconcile_snat<K: Kernel>(
    k: &K,
    backend: Backend,
    s: &SnatSettings,
) -> Result<usize, KernelError> {
    let mut applied = 0;
    if s.connmark_backend == ConnmarkBackend::Nftables {
        applied += reconcile_nft_connmark(k, s).await?;
    }
    for (table, desired) in [("nat", desired_nat(s)), ("mangle", desired_mangle(s))] {
        let saved = k.firewall_save(backend, Family::V4, Some(table)).await?;
        let current = parse_table(&saved, table);
        if let Some(batch) = restore_batch(table, &current, &desired) {
            k.firewall_restore(backend, Family::V4, &batch).await?;
            applied += 1;
        }
    }
    if s.connmark_backend == ConnmarkBackend::Iptables {
        applied += reconcile_nft_connmark(k, s).await?;
    }
    Ok(applied)
}

//! Which iptables backend the node uses, chosen as kube-proxy's `iptables-wrapper` does:
//! count the rules each backend holds (IPv4 and IPv6 save output, lines starting with `-`);
//! legacy when it has at least 10 rules or more rules than nft, otherwise nft (the default on
//! current distributions). Writing our rules through the other backend would put them in
//! tables the kernel path of kube-proxy's rules never consults together with ours.
//!
//! Upstream ipamd instead looks at `iptables --version` (spec 7.7); counting is robust on
//! hosts whose `iptables` alternative disagrees with what kube-proxy actually programmed.

use crate::snat::{SnatSettings, desired_mangle, desired_nat, restore_batch};

/// An iptables backend and its command names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `iptables-legacy` (x_tables).
    Legacy,
    /// `iptables-nft` (nf_tables with the xt compatibility layer).
    Nft,
}

impl Backend {
    /// `legacy` or `nft`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Legacy => "legacy",
            Backend::Nft => "nft",
        }
    }

    /// The `iptables` of this backend.
    pub fn iptables(self) -> &'static str {
        match self {
            Backend::Legacy => "iptables-legacy",
            Backend::Nft => "iptables-nft",
        }
    }

    /// The `iptables-save` of this backend.
    pub fn save(self) -> &'static str {
        match self {
            Backend::Legacy => "iptables-legacy-save",
            Backend::Nft => "iptables-nft-save",
        }
    }

    /// The `iptables-restore` of this backend.
    pub fn restore(self) -> &'static str {
        match self {
            Backend::Legacy => "iptables-legacy-restore",
            Backend::Nft => "iptables-nft-restore",
        }
    }

    /// The `ip6tables-save` of this backend.
    pub fn save6(self) -> &'static str {
        match self {
            Backend::Legacy => "ip6tables-legacy-save",
            Backend::Nft => "ip6tables-nft-save",
        }
    }

    /// The `ip6tables-restore` of this backend.
    pub fn restore6(self) -> &'static str {
        match self {
            Backend::Legacy => "ip6tables-legacy-restore",
            Backend::Nft => "ip6tables-nft-restore",
        }
    }
}

/// How long a `<backend>-restore` batch waits for the xtables lock (`/run/xtables.lock`,
/// shared with kube-proxy and every other iptables user of the host) before failing.
/// iptables-legacy before 1.8.8 fails at once without `--wait`; nft ignores it.
pub const XTABLES_LOCK_WAIT: &str = "--wait=10";

/// `--random-fully` (SNAT) exists from iptables 1.6.2 on: what go-iptables' `HasRandomFully`,
/// which upstream's `updateHostIptablesRules` asks, decides from `iptables --version`
/// (`iptables v1.8.9 (nf_tables)`). An unreadable version is taken as unsupported.
pub fn random_fully_supported(version_output: &str) -> bool {
    let Some(version) = version_output
        .split_whitespace()
        .find_map(|w| w.strip_prefix('v'))
    else {
        return false;
    };
    let mut parts = version.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
    });
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor)), patch) => {
            let patch = patch.and_then(Result::ok).unwrap_or(0);
            (major, minor, patch) >= (1, 6, 2)
        }
        _ => false,
    }
}

/// Whether the backend's `iptables` supports `--random-fully`; `run` executes a command (in
/// the node's namespace) and returns its stdout. A failing `--version` counts as no.
pub fn detect_random_fully<E>(
    backend: Backend,
    mut run: impl FnMut(&[&str]) -> Result<String, E>,
) -> bool {
    run(&[backend.iptables(), "--version"]).is_ok_and(|out| random_fully_supported(&out))
}

/// Rules in an `iptables-save` dump (lines starting with `-`).
pub fn count_rules(save: &str) -> usize {
    save.lines().filter(|l| l.starts_with('-')).count()
}

/// The decision (pure): `None` = that backend's tools are missing.
pub fn choose(legacy: Option<usize>, nft: Option<usize>) -> Backend {
    match (legacy, nft) {
        (Some(_), None) => Backend::Legacy,
        (Some(l), _) if l >= 10 => Backend::Legacy,
        (Some(l), Some(n)) if l > n => Backend::Legacy,
        _ => Backend::Nft,
    }
}

/// Detects the backend; `run` executes a save command (in the right namespace) and returns
/// its stdout, or an error when the tool is missing or fails.
pub fn detect<E>(mut run: impl FnMut(&[&str]) -> Result<String, E>) -> Backend {
    let mut count = |b: Backend| -> Option<usize> {
        let v4 = run(&[b.save()]).ok()?;
        let v6 = run(&[b.save6()]).unwrap_or_default();
        Some(count_rules(&v4) + count_rules(&v6))
    };
    let legacy = count(Backend::Legacy);
    let nft = count(Backend::Nft);
    choose(legacy, nft)
}

/// Takes the `nat` and `mangle` tables to the desired state of `s` with one
/// `<backend>-restore --wait --noflush` batch per table that differs. `exec(args, stdin)` runs a
/// command (in the node's namespace) and returns its stdout. Returns the batches applied.
pub fn reconcile<E>(
    backend: Backend,
    s: &SnatSettings,
    mut exec: impl FnMut(&[&str], Option<&str>) -> Result<String, E>,
) -> Result<usize, E> {
    let mut applied = 0;
    for (table, desired) in [("nat", desired_nat(s)), ("mangle", desired_mangle(s))] {
        let saved = exec(&[backend.save(), "-t", table], None)?;
        let current = crate::iptables_save::parse_table(&saved, table);
        if let Some(batch) = restore_batch(table, &current, &desired) {
            exec(
                &[backend.restore(), XTABLES_LOCK_WAIT, "--noflush"],
                Some(&batch),
            )?;
            applied += 1;
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_proxy_wrapper_decision() {
        assert_eq!(choose(Some(0), Some(0)), Backend::Nft, "default nft");
        assert_eq!(choose(Some(12), Some(40)), Backend::Legacy, ">= 10 legacy");
        assert_eq!(choose(Some(3), Some(1)), Backend::Legacy);
        assert_eq!(choose(Some(3), Some(3)), Backend::Nft);
        assert_eq!(choose(None, Some(0)), Backend::Nft);
        assert_eq!(choose(Some(0), None), Backend::Legacy, "only legacy tools");
        assert_eq!(
            count_rules("*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j X\nCOMMIT\n"),
            1
        );
    }
}

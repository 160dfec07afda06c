//! Which iptables backend the node uses, chosen as kube-proxy's `iptables-wrapper` does:
//! count the rules each backend holds (IPv4 and IPv6 save output, lines starting with `-`);
//! legacy when it has at least 10 rules or more rules than nft, otherwise nft (the default on
//! current distributions). Writing our rules through the other backend would put them in
//! tables the kernel path of kube-proxy's rules never consults together with ours.
//!
//! The commands run through the one runner, [`crate::firewall`].
//!
//! Upstream ipamd instead looks at `iptables --version` (`networkutils` in upstream ipamd); counting is robust on
//! hosts whose `iptables` alternative disagrees with what kube-proxy actually programmed.

/// An iptables backend and its command names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

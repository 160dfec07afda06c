//! Which backend holds the connmark rules that steer pods' off-VPC connections to the
//! primary ENI (docs/metrics.md, `awscni_connmark_backend`; upstream's `NewConnmark` in
//! `pkg/networkutils/nftables_connmark.go`): the iptables `nat` chain
//! `AWS-CONNMARK-CHAIN-0` ([`crate::snat`]) or the nftables table `ip aws-cni`
//! ([`crate::nft_connmark`]).
//!
//! Upstream runs `iptables --version` and picks iptables when the text says `legacy`,
//! nftables otherwise (`parseIptablesMode` in `pkg/iptableswrapper/iptables.go`). In
//! upstream's image `iptables` is kube's `iptables-wrapper`, which answers for the mode it
//! chose by counting rules: the choice [`crate::iptables_backend::choose`] makes here. So the
//! probe asks the `iptables` of the backend this agent programs ([`crate::firewall`]).

use crate::iptables_backend::Backend;

/// Where the connmark rules live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnmarkBackend {
    /// `nat/AWS-CONNMARK-CHAIN-0` and two `nat/PREROUTING` rules (upstream `iptablesConnmark`).
    Iptables,
    /// Table `ip aws-cni` (upstream `nftConnmark`).
    Nftables,
}

impl ConnmarkBackend {
    /// The `backend` label of `awscni_connmark_backend`: `iptables` or `nftables`.
    pub fn name(self) -> &'static str {
        match self {
            ConnmarkBackend::Iptables => "iptables",
            ConnmarkBackend::Nftables => "nftables",
        }
    }

    /// Upstream's rule on the text of `iptables --version` (`iptables v1.8.7 (legacy)`,
    /// `iptables v1.8.10 (nf_tables)`): `legacy` anywhere means iptables, anything else
    /// nftables.
    pub fn from_iptables_version(text: &str) -> Self {
        if text.contains("legacy") {
            ConnmarkBackend::Iptables
        } else {
            ConnmarkBackend::Nftables
        }
    }

    /// When `--version` cannot be run: what that backend's tool would have said.
    pub fn for_iptables_backend(backend: Backend) -> Self {
        match backend {
            Backend::Legacy => ConnmarkBackend::Iptables,
            Backend::Nft => ConnmarkBackend::Nftables,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_version_rule() {
        // Upstream's parseIptablesMode test cases.
        for (text, want) in [
            ("iptables v1.8.7 (legacy)\n", ConnmarkBackend::Iptables),
            ("iptables v1.8.10 (nf_tables)\n", ConnmarkBackend::Nftables),
            (
                "iptables v1.8.4 (legacy): unknown",
                ConnmarkBackend::Iptables,
            ),
            ("", ConnmarkBackend::Nftables),
            ("iptables v1.4.21", ConnmarkBackend::Nftables),
        ] {
            assert_eq!(
                ConnmarkBackend::from_iptables_version(text),
                want,
                "{text:?}"
            );
        }
        assert_eq!(ConnmarkBackend::Iptables.name(), "iptables");
        assert_eq!(ConnmarkBackend::Nftables.name(), "nftables");
        assert_eq!(
            ConnmarkBackend::for_iptables_backend(Backend::Legacy),
            ConnmarkBackend::Iptables
        );
        assert_eq!(
            ConnmarkBackend::for_iptables_backend(Backend::Nft),
            ConnmarkBackend::Nftables
        );
    }
}

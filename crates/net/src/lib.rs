//! `net`: host and pod networking behind one kernel seam (docs/architecture.md, "Kernel
//! seam"). Pure parts: link names, route-table numbers, rule priorities, and the
//! SNAT/NodePort/connmark firewall state rendered as one `iptables-restore` batch per table,
//! or the connmark rules as one `nft -f` batch ([`nft_connmark`], backend chosen by
//! [`connmark`]).
//! Kernel side effects: the [`kernel::Kernel`] trait, implemented on rtnetlink by
//! [`netlink::NetlinkHandle`] with the one firewall runner ([`firewall`]) and, for tests
//! without root, by `testing::Recording` (feature `testing`). Written against the trait:
//! secondary-ENI host setup ([`host`]), pod wiring of both families ([`pod`], with the
//! IPv6-only steps in [`pod6`]; branch-ENI pods: [`branch`]) and the read-only kernel state
//! snapshot ([`state`]). Network namespaces: [`netns`].

pub mod branch;
#[cfg(test)]
mod branch_tests;
pub mod connmark;
pub mod firewall;
pub mod host;
pub mod iptables_backend;
pub mod iptables_save;
pub mod kernel;
pub mod names;
pub mod netlink;
pub mod netns;
pub mod nft_connmark;
pub mod pod;
pub mod pod6;
pub mod route_table;
#[cfg(test)]
mod seam_tests;
pub mod snat;
pub mod state;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

//! `egress-cni`: the second plugin of `10-aws.conflist` (spec section 8). It gives
//! single-stack pods an egress-only interface of the other IP family, SNATed to the node:
//! IPv6 egress (`v6if0`, ULA from `fd00::ac:00/118`) in IPv4 clusters with
//! `ENABLE_V6_EGRESS=true`, IPv4 egress (`v4if0`, `169.254.172.0/22`) in IPv6 clusters.
//!
//! What this build does:
//! * `enabled` other than the exact string `"true"` (the default IPv4 cluster renders
//!   `"false"`): ADD prints `prevResult` exactly as received (the same bytes), DEL and CHECK
//!   succeed, nothing on the node is touched. `prevResult` is still mandatory on ADD, as
//!   upstream ("must be called as a chained plugin").
//! * `enabled: "true"` with an IPv6 `nodeIP` (IPv4 cluster, `ENABLE_V6_EGRESS=true`):
//!   [`egress`] — IPAM through the conflist's delegate ([`ipam`], host-local), the `v6if0`
//!   veth ([`wire`]) and the ip6tables SNAT chain ([`snat`], named by [`snat_chain_name`]);
//!   DEL undoes it and releases the address.
//! * `enabled: "true"` with an IPv4 `nodeIP` (IPv6 cluster, `ENABLE_V4_EGRESS=true`):
//!   [`egress`] — host-local's link-local address from `169.254.172.0/22` on `v4if0`
//!   ([`wire_v4`]) and the iptables SNAT chain `CNI-E4-…` to the node's IPv4; DEL undoes it
//!   and releases the address.
//! * VERSION: the versions of upstream's `version.All`.

pub mod conf;
pub mod egress;
pub mod ipam;
pub mod plugin;
pub mod snat;
pub mod wire;
pub mod wire_v4;

pub use conf::EgressConf;
pub use plugin::{SUPPORTED_VERSIONS, run};
pub use snat::snat_chain_name;

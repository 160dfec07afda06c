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
//! * VERSION: the versions of upstream's `version.All`.
//! * `enabled: "true"`: ADD fails with a clear CNI error (code 100, not implemented yet) rather
//!   than half-wiring a pod; DEL succeeds (nothing was created by this plugin). The
//!   veth/host-local/SNAT wiring of upstream's `cmdAddEgressV4`/`cmdAddEgressV6` is not
//!   implemented; see `docs/migration.md`.
//! * The chain name upstream uses for the pod's SNAT rules is computed by [`snat_chain_name`]
//!   (for the wiring still to come and for cleaning up after upstream).

pub mod conf;
pub mod plugin;

pub use conf::EgressConf;
pub use plugin::{SUPPORTED_VERSIONS, run, snat_chain_name};

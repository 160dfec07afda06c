//! `net`: host and pod networking. Today the pure parts: link names, route-table numbers,
//! rule priorities, and the SNAT/NodePort/connmark firewall state rendered as one
//! `iptables-restore` batch per table. Kernel operations: network namespaces ([`netns`]),
//! netlink ([`netlink`]), secondary-ENI host setup ([`host`]), pod wiring ([`pod`]) and a
//! read-only kernel state snapshot ([`state`]).

pub mod host;
pub mod iptables_backend;
pub mod iptables_save;
pub mod names;
pub mod netlink;
pub mod netns;
pub mod pod;
pub mod route_table;
pub mod snat;
pub mod state;

//! `net`: host and pod networking. Today the pure parts: link names, route-table numbers,
//! rule priorities, and the SNAT/NodePort/connmark firewall state rendered as one
//! `iptables-restore` batch per table. Kernel operations (netlink) arrive with the CNI
//! plugin.

pub mod iptables_save;
pub mod names;
pub mod route_table;
pub mod snat;

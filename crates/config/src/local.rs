//! Our own variables, not upstream's: knobs the tests and the demo node
//! (`scripts/demo-node.sh`) use to run an agent next to others on one machine. A real
//! `aws-node` DaemonSet sets none of them; their defaults are upstream's fixed values.
//! `docs/configuration.md` lists them under "Our own variables (tests and the demo node)".

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::env::Reader;
use crate::names as n;

/// Default metrics listener (upstream's fixed `:61678` on every interface).
pub const DEFAULT_METRICS_BIND_ADDRESS: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    61678,
));

/// Longest Unix socket path the kernel accepts (`sun_path` is 108 bytes with the NUL).
pub const MAX_UNIX_SOCKET_PATH: usize = 107;

/// Overrides of upstream's fixed locations, for tests and the demo node only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalOverrides {
    /// `IPAMD_GRPC_SOCKET`: ipamd's gRPC socket. `None` = upstream's
    /// `/var/run/aws-node/ipamd.sock` (`rpc::DEFAULT_IPAMD_SOCKET`).
    pub grpc_socket: Option<PathBuf>,
    /// `METRICS_BIND_ADDRESS`: the metrics listener, `ip:port` (default `0.0.0.0:61678`).
    pub metrics_bind_address: SocketAddr,
    /// `IPAMD_NODE_NETNS`: an absolute path to the network namespace host networking is
    /// set up in (the demo node's); `None` = the agent's own namespace.
    pub node_netns: Option<PathBuf>,
    /// `IPAMD_SKIP_HOST_NETWORKING`: leave the kernel alone (no rules, routes or SNAT;
    /// default false). A Go-style boolean like every other switch.
    pub skip_host_networking: bool,
}

impl Default for LocalOverrides {
    fn default() -> Self {
        Self {
            grpc_socket: None,
            metrics_bind_address: DEFAULT_METRICS_BIND_ADDRESS,
            node_netns: None,
            skip_host_networking: false,
        }
    }
}

/// A Unix socket path the kernel can bind.
fn parse_socket_path(raw: &str) -> Result<PathBuf, String> {
    if raw.len() > MAX_UNIX_SOCKET_PATH {
        return Err(format!(
            "longer than {MAX_UNIX_SOCKET_PATH} bytes (the Unix socket path limit)"
        ));
    }
    if raw.ends_with('/') {
        return Err("names a directory (expected the socket's file path)".to_owned());
    }
    Ok(PathBuf::from(raw))
}

/// An absolute path (`/proc/<pid>/ns/net`, `/run/netns/<name>`).
fn parse_netns(raw: &str) -> Result<PathBuf, String> {
    if Path::new(raw).is_absolute() {
        Ok(PathBuf::from(raw))
    } else {
        Err("not an absolute path (expected e.g. /run/netns/<name>)".to_owned())
    }
}

/// Reads [`LocalOverrides`]; bad values are recorded on `r` like every other variable.
pub(crate) fn local_overrides(r: &mut Reader) -> LocalOverrides {
    let d = LocalOverrides::default();
    LocalOverrides {
        grpc_socket: r.parse_with(n::IPAMD_GRPC_SOCKET, parse_socket_path),
        metrics_bind_address: r
            .parse_with(n::METRICS_BIND_ADDRESS, |raw| {
                raw.parse::<SocketAddr>().map_err(|_| {
                    "not an ip:port address (e.g. 127.0.0.1:61678 or [::1]:61678)".to_owned()
                })
            })
            .unwrap_or(d.metrics_bind_address),
        node_netns: r.parse_with(n::IPAMD_NODE_NETNS, parse_netns),
        skip_host_networking: r.bool(n::IPAMD_SKIP_HOST_NETWORKING, d.skip_host_networking),
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use crate::names as n;

    #[test]
    fn defaults_are_upstreams_fixed_values() {
        let c = Config::from_vars([("WARM_ENI_TARGET", "1")]).expect("valid");
        assert_eq!(c.local.grpc_socket, None);
        assert_eq!(c.local.metrics_bind_address.to_string(), "0.0.0.0:61678");
        assert_eq!(c.local.node_netns, None);
        assert!(!c.local.skip_host_networking);
    }

    #[test]
    fn set_values_are_read() {
        let c = Config::from_vars([
            (n::IPAMD_GRPC_SOCKET, "/tmp/x/ipamd.sock"),
            (n::METRICS_BIND_ADDRESS, "127.0.0.1:9000"),
            (n::IPAMD_NODE_NETNS, "/run/netns/node"),
            (n::IPAMD_SKIP_HOST_NETWORKING, "true"),
        ])
        .expect("valid");
        assert_eq!(
            c.local.grpc_socket.as_deref(),
            Some(std::path::Path::new("/tmp/x/ipamd.sock"))
        );
        assert_eq!(c.local.metrics_bind_address.to_string(), "127.0.0.1:9000");
        assert_eq!(
            c.local.node_netns.as_deref(),
            Some(std::path::Path::new("/run/netns/node"))
        );
        assert!(c.local.skip_host_networking);
    }

    #[test]
    fn bad_values_are_named_errors_all_at_once() {
        let long = format!("/{}", "s".repeat(120));
        let err = Config::from_vars([
            (n::IPAMD_GRPC_SOCKET, long.as_str()),
            (n::METRICS_BIND_ADDRESS, "localhost"),
            (n::IPAMD_NODE_NETNS, "run/netns/node"),
            (n::IPAMD_SKIP_HOST_NETWORKING, "yes"),
        ])
        .unwrap_err();
        for name in n::OURS {
            assert!(err.mentions(name), "{name} missing from {err}");
        }
        assert!(
            err.to_string()
                .contains("METRICS_BIND_ADDRESS=\"localhost\"")
        );
    }
}

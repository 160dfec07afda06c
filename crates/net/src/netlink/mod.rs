//! Netlink (rtnetlink) operations on links, addresses, routes, policy rules and neighbours,
//! bound to one network namespace per [`NetlinkHandle`]: the real implementation of
//! [`crate::kernel::Kernel`] (docs/architecture.md, "Kernel seam").
//!
//! The handle spawns its connection task on the current tokio runtime (a current-thread
//! runtime is enough); every operation is an `async fn`.

mod addr;
mod addr6;
pub mod link;
mod neigh;
mod route;
mod rule;
mod types;

use std::time::Duration;

pub use types::{
    Address, Address6, Family, Link, Mac, Neighbour, Route, RouteKind, Rule, Scope, family_of,
};

use crate::netns::{Netns, NetnsError};

/// `errno` values the kernel uses for "does not exist" on delete.
const NOT_FOUND_ERRNOS: [i32; 4] = [
    nix::libc::ENOENT,
    nix::libc::ESRCH,
    nix::libc::ENODEV,
    nix::libc::EADDRNOTAVAIL,
];

/// Errors of kernel network operations.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// Namespace handling failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The netlink socket could not be opened.
    #[error("failed to open netlink socket: {0}")]
    Socket(std::io::Error),
    /// The kernel (or rtnetlink) rejected a request.
    #[error("{op}: {source}")]
    Request {
        /// What was attempted, e.g. `add rule from 10.0.0.1/32 lookup 2 priority 1536`.
        op: String,
        /// Underlying error (carries the errno for kernel NACKs).
        source: rtnetlink::Error,
    },
    /// A request refused with an errno by a kernel model (`net::testing::Recording`).
    #[error("{op}: errno {errno}")]
    Errno {
        /// What was attempted.
        op: String,
        /// The positive errno.
        errno: i32,
    },
    /// No link with the given MAC appeared in time.
    #[error("no link with MAC {mac} found after {attempts} attempts")]
    LinkByMacNotFound {
        /// MAC that was searched.
        mac: Mac,
        /// Number of attempts made.
        attempts: u32,
    },
    /// An interface name is already taken in a namespace.
    #[error("interface {name} already exists in network namespace {netns}")]
    NameInUse {
        /// The interface name.
        name: String,
        /// Path of the namespace.
        netns: String,
    },
    /// A link that is not ours (not a veth) already has the name we need.
    #[error(
        "interface {name} (kind {kind}) already exists in network namespace {netns} and is not a veth of ours; not deleting it"
    )]
    ForeignLink {
        /// The interface name.
        name: String,
        /// Its link kind.
        kind: String,
        /// Path of the namespace.
        netns: String,
    },
    /// No link with the given name.
    #[error("link {0} not found")]
    LinkNotFound(String),
    /// A `/proc/sys` write failed.
    #[error("failed to write sysctl {path}: {source}")]
    Sysctl {
        /// The sysctl file.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Called outside a tokio runtime (the connection task needs one).
    #[error("netlink handle created outside a tokio runtime")]
    NoRuntime,
    /// Invalid input (e.g. the primary ENI's table for a secondary ENI).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A firewall tool (`iptables-restore`, `ip6tables-save`, ...) failed.
    #[error("{cmd}: {detail}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its stderr (and the batch it was given), or why it could not run.
        detail: String,
    },
    /// Polled kernel state never reached what was waited for (e.g. IPv6 DAD).
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        after: Duration,
    },
}

/// The error type of every [`crate::kernel::Kernel`] operation.
pub type KernelError = NetlinkError;

impl NetlinkError {
    /// The kernel's errno for a rejected request (positive), if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Request {
                source: rtnetlink::Error::NetlinkError(msg),
                ..
            } => Some(msg.raw_code().abs()),
            Self::Errno { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// "Does not exist" (ENOENT, ESRCH, ENODEV, EADDRNOTAVAIL): fine when deleting.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::LinkNotFound(_))
            || self.errno().is_some_and(|e| NOT_FOUND_ERRNOS.contains(&e))
    }

    /// "Already exists" (EEXIST): fine when adding rules.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(nix::libc::EEXIST)
    }
}

/// Wraps an rtnetlink error with a description of the operation.
pub(crate) fn req_err(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let op = op.into();
    move |source| NetlinkError::Request { op, source }
}

/// Turns a "not found" error into `Ok(false)`, success into `Ok(true)`.
pub(crate) fn ok_if_missing(res: Result<(), NetlinkError>) -> Result<bool, NetlinkError> {
    match res {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Turns an "already exists" error into success.
pub(crate) fn ok_if_exists(res: Result<(), NetlinkError>) -> Result<(), NetlinkError> {
    match res {
        Err(e) if e.is_exists() => Ok(()),
        other => other,
    }
}

/// A netlink connection bound to one network namespace, plus that namespace (for sysctls
/// and the firewall runner).
#[derive(Debug)]
pub struct NetlinkHandle {
    handle: rtnetlink::Handle,
    task: tokio::task::JoinHandle<()>,
    /// The namespace; `None` for the process's own (no namespace switch needed).
    netns: Option<Netns>,
}

impl NetlinkHandle {
    /// A connection in the calling thread's current namespace. Must run inside a tokio
    /// runtime (the connection task is spawned on it); otherwise [`NetlinkError::NoRuntime`].
    pub fn current() -> Result<Self, NetlinkError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| NetlinkError::NoRuntime)?;
        let (conn, handle, _messages) =
            rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
        let task = rt.spawn(conn);
        Ok(Self {
            handle,
            task,
            netns: None,
        })
    }

    /// A connection inside `ns`: the socket is created while this thread is temporarily in
    /// `ns` and keeps that namespace afterwards.
    pub fn in_netns(ns: &Netns) -> Result<Self, NetlinkError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| NetlinkError::NoRuntime)?;
        let guard = ns.enter()?;
        let res = rtnetlink::new_connection();
        drop(guard);
        let (conn, handle, _messages) = res.map_err(NetlinkError::Socket)?;
        let netns = Some(ns.try_clone()?);
        let task = rt.spawn(conn);
        Ok(Self {
            handle,
            task,
            netns,
        })
    }

    /// The namespace this handle is bound to (`None`: the process's own).
    pub fn netns(&self) -> Option<&Netns> {
        self.netns.as_ref()
    }
}

impl Drop for NetlinkHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The workspace's one backoff (validated, jittered; [`exp_backoff`]).
pub use exp_backoff::Backoff;

/// Upstream's route retries (`SetupENINetwork`): 5 attempts, 500 ms doubling to 5 s.
pub const ROUTE_RETRIES: Backoff = Backoff {
    base: Duration::from_millis(500),
    max: Duration::from_secs(5),
    factor: 2.0,
    jitter: 0.0,
    max_attempts: 5,
};

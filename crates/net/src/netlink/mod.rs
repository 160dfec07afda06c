//! Netlink (rtnetlink) operations on links, addresses, routes, policy rules and neighbours,
//! bound to one network namespace per [`NetlinkHandle`].
//!
//! The handle spawns its connection task on the current tokio runtime (a current-thread
//! runtime is enough); every operation is an `async fn`.

mod addr;
pub mod link;
mod neigh;
mod route;
mod rule;
mod types;

use std::time::Duration;

pub use types::{Address, Link, Mac, Neighbour, Route, RouteKind, Rule, Scope};

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
}

impl NetlinkError {
    /// The kernel's errno for a rejected request (positive), if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Request {
                source: rtnetlink::Error::NetlinkError(msg),
                ..
            } => Some(msg.raw_code().abs()),
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

/// A netlink connection bound to one network namespace.
#[derive(Debug)]
pub struct NetlinkHandle {
    handle: rtnetlink::Handle,
    task: tokio::task::JoinHandle<()>,
}

impl NetlinkHandle {
    /// A connection in the calling thread's current namespace. Must run inside a tokio
    /// runtime (the connection task is spawned on it); otherwise [`NetlinkError::NoRuntime`].
    pub fn current() -> Result<Self, NetlinkError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| NetlinkError::NoRuntime)?;
        let (conn, handle, _messages) =
            rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
        let task = rt.spawn(conn);
        Ok(Self { handle, task })
    }

    /// A connection inside `ns`: the socket is created while this thread is temporarily in
    /// `ns` and keeps that namespace afterwards.
    pub fn in_netns(ns: &Netns) -> Result<Self, NetlinkError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| NetlinkError::NoRuntime)?;
        let guard = ns.enter()?;
        let res = rtnetlink::new_connection();
        drop(guard);
        let (conn, handle, _messages) = res.map_err(NetlinkError::Socket)?;
        let task = rt.spawn(conn);
        Ok(Self { handle, task })
    }

    /// The underlying rtnetlink handle, for operations not wrapped here.
    pub fn raw(&self) -> &rtnetlink::Handle {
        &self.handle
    }
}

impl Drop for NetlinkHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Retry schedule for a kernel operation: `attempts` tries, sleeping `initial` after the
/// first failure and doubling up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Total number of attempts (at least one is made).
    pub attempts: u32,
    /// First sleep.
    pub initial: Duration,
    /// Longest sleep.
    pub max: Duration,
}

impl Backoff {
    /// Upstream's route retries: 5 attempts, 500 ms doubling to 5 s.
    pub const ROUTE: Backoff = Backoff {
        attempts: 5,
        initial: Duration::from_millis(500),
        max: Duration::from_secs(5),
    };
    /// No retries.
    pub const ONCE: Backoff = Backoff {
        attempts: 1,
        initial: Duration::ZERO,
        max: Duration::ZERO,
    };
}

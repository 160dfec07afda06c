//! Network-namespace handles: open a namespace by path (`/var/run/netns/NAME`,
//! `/proc/PID/ns/net`) and temporarily move the calling thread into it with `setns(2)`.
//!
//! Netlink sockets keep the namespace they were created in, so the pattern is: enter the
//! namespace, create the socket (or open a `/proc/sys` file), leave again. Entering only
//! affects the calling thread and never spans an `.await`.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

/// Errors of namespace handling.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace file could not be opened (missing pod netns, bad path).
    #[error("failed to open network namespace {path}: {source}")]
    Open {
        /// Path that was opened.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// `setns` into the namespace failed (for example: the file is not a network namespace).
    #[error("failed to enter network namespace {path}: {source}")]
    Enter {
        /// Path of the namespace.
        path: PathBuf,
        /// Underlying error.
        source: nix::Error,
    },
}

/// An open network namespace. Holding the handle keeps the namespace alive.
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    /// Opens the namespace at `path` (`/var/run/netns/NAME` or `/proc/PID/ns/net`).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, NetnsError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| NetnsError::Open {
            path: path.clone(),
            source,
        })?;
        Ok(Self { file, path })
    }

    /// Opens the named namespace `/var/run/netns/<name>` (as created by `ip netns add`).
    pub fn open_named(name: &str) -> Result<Self, NetnsError> {
        Self::open(Path::new("/var/run/netns").join(name))
    }

    /// The namespace the calling thread is in now.
    pub fn current() -> Result<Self, NetnsError> {
        Self::open("/proc/thread-self/ns/net")
    }

    /// A second handle on the same namespace (the file descriptor is duplicated).
    pub fn try_clone(&self) -> Result<Self, NetnsError> {
        let file = self.file.try_clone().map_err(|source| NetnsError::Open {
            path: self.path.clone(),
            source,
        })?;
        Ok(Self {
            file,
            path: self.path.clone(),
        })
    }

    /// Path this handle was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open namespace file (usable as `IFLA_NET_NS_FD`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Moves the calling thread into this namespace until the returned guard is dropped.
    pub fn enter(&self) -> Result<NetnsGuard, NetnsError> {
        let previous = Self::current()?;
        setns(&self.file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
            path: self.path.clone(),
            source,
        })?;
        Ok(NetnsGuard { previous })
    }

    /// Runs `f` with the calling thread inside this namespace (synchronous work only).
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, NetnsError> {
        let guard = self.enter()?;
        let out = f();
        drop(guard);
        Ok(out)
    }
}

/// Returns the calling thread to its previous namespace when dropped.
#[derive(Debug)]
pub struct NetnsGuard {
    previous: Netns,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(err) = setns(&self.previous.file, CloneFlags::CLONE_NEWNET) {
            // A thread stuck in the wrong namespace would silently change another
            // namespace's networking from here on: stop instead.
            eprintln!(
                "fatal: cannot return to network namespace {}: {err}",
                self.previous.path.display()
            );
            std::process::abort();
        }
    }
}

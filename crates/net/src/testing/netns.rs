//! [`TestNetns`]: the one network-namespace helper of the workspace's kernel tests. A named
//! namespace (`/var/run/netns/<name>`) made with `ip netns add` (needs root) and deleted
//! on drop.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::netns::{Netns, NetnsError};

/// Namespaces made by this process so far: part of every name, so two namespaces with the
/// same tag never collide.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace created for a test and deleted on drop. The field is its name.
pub struct TestNetns(pub String);

impl TestNetns {
    /// Creates `<tag>-<pid>-<n>`, `n` counting the namespaces of this process. Panics when
    /// `ip netns add` fails (it needs root).
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{tag}-{}-{n}", std::process::id());
        let status = Command::new("ip").args(["netns", "add", &name]).status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "ip netns add {name} failed (needs root): {status:?}"
        );
        TestNetns(name)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// `/var/run/netns/<name>`.
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }

    /// [`Self::path`] as a path.
    pub fn path_buf(&self) -> PathBuf {
        PathBuf::from(self.path())
    }

    /// Opens a handle on the namespace.
    pub fn try_netns(&self) -> Result<Netns, NetnsError> {
        Netns::open_named(&self.0)
    }

    /// Opens a handle on the namespace; panics if that fails.
    pub fn netns(&self) -> Netns {
        self.try_netns()
            .unwrap_or_else(|e| panic!("open test netns {}: {e}", self.0))
    }

    /// The namespace's kernel state now (links, addresses, routes, rules, neighbours).
    pub async fn state(&self) -> crate::state::NetnsState {
        crate::state::NetnsState::capture_in(&self.netns())
            .await
            .unwrap_or_else(|e| panic!("capture the state of {}: {e}", self.0))
    }

    /// `ip -n <name> ARGS…`, asserting success; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.0)
            .args(args)
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// What a runtime does when a sandbox goes: removes the namespace. A fresh, empty one of
    /// the same name takes its place, for the test's next pod.
    pub fn recreate(&self) {
        for args in [
            ["netns", "del", self.0.as_str()],
            ["netns", "add", self.0.as_str()],
        ] {
            let ok = Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "ip {args:?}");
        }
    }

    /// Whether a link named `name` is in this namespace.
    pub fn has_link(&self, name: &str) -> bool {
        self.ip(&["-o", "link"]).lines().any(|l| {
            l.split(": ")
                .nth(1)
                .is_some_and(|n| n.split('@').next() == Some(name))
        })
    }

    /// Waits (up to 5 s) until the link `name` has left this namespace: a veth pair goes
    /// asynchronously once the namespace of its other end is removed.
    pub async fn wait_link_gone(&self, name: &str) {
        for _ in 0..250 {
            if !self.has_link(name) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("{name} is still in {} after 5 s", self.0);
    }

    /// `ip netns exec <name> ARGS…`; returns stdout whether or not the command succeeded
    /// (see [`Self::exec_ok`] and [`Self::try_exec`] for checked variants).
    pub fn exec(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .expect("run ip netns exec");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// `ip netns exec <name> ARGS…`, panicking with its stderr on failure; returns stdout.
    pub fn exec_ok(&self, args: &[&str]) -> String {
        self.try_exec(args, None).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `ip netns exec <name> ARGS…` with `stdin` (if any) written to its standard input.
    /// Stdout on success, otherwise the error text (arguments, namespace and stderr).
    pub fn try_exec(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("ip netns exec {} {args:?}: {e}", self.0))?;
        let pipe = child.stdin.take();
        // Write from a thread so a child that prints before reading cannot deadlock us.
        let writer = match (stdin, pipe) {
            (Some(input), Some(mut pipe)) => {
                let input = input.to_owned();
                Some(std::thread::spawn(move || pipe.write_all(input.as_bytes())))
            }
            // No input: the pipe is dropped here, so the child sees end of file.
            _ => None,
        };
        let out = child
            .wait_with_output()
            .map_err(|e| format!("ip netns exec {} {args:?}: {e}", self.0))?;
        let written = match writer {
            Some(writer) => writer
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("stdin writer panicked"))),
            None => Ok(()),
        };
        if !out.status.success() {
            return Err(format!(
                "ip netns exec {} {args:?} failed ({}): {}",
                self.0,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        written.map_err(|e| format!("ip netns exec {} {args:?}: writing stdin: {e}", self.0))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Gives the namespace the node's primary interface: `eth0` with `mac` and `ip/24`, up
    /// (a veth whose peer `eth0-hv` stays inside), and loopback up.
    pub fn add_primary_interface(&self, mac: &str, ip: Ipv4Addr) {
        self.ip(&["link", "set", "lo", "up"]);
        self.ip(&[
            "link", "add", "eth0", "address", mac, "type", "veth", "peer", "name", "eth0-hv",
        ]);
        self.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        self.ip(&["link", "set", "eth0", "up"]);
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

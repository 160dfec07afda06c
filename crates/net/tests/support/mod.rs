//! Test harness: named network namespaces that are removed on drop, and a stand-in node
//! (primary NIC and secondary ENI as veths to an "outside" namespace). Everything happens
//! inside namespaces created here; the root namespace is never touched.

#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use net::netns::Netns;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A named namespace (`/var/run/netns/<name>`), deleted on drop.
pub struct TestNs {
    pub name: String,
    pub ns: Netns,
}

impl TestNs {
    /// Creates `vcni<pid>-<tag><n>`.
    pub fn new(tag: &str) -> TestNs {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("vcni{}-{tag}{n}", std::process::id());
        run(&["ip", "netns", "add", &name]);
        let ns = Netns::open_named(&name).expect("open test netns");
        TestNs { name, ns }
    }

    /// Path of the namespace file.
    pub fn path(&self) -> std::path::PathBuf {
        self.ns.path().to_path_buf()
    }

    /// `ip -n <ns> <args>`; panics on failure; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    /// `ip netns exec <ns> <args>`.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs a command, panicking with its stderr on failure.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn command");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub const NODE_IP: &str = "10.0.0.10";
pub const ENI_MAC: &str = "02:00:00:00:01:01";

/// A node namespace with `eth0` (10.0.0.10/24, default via 10.0.0.1) and an unconfigured
/// secondary ENI `eth1` (MAC [`ENI_MAC`]), both veths into an "outside" namespace.
/// Field order: `node` is dropped before `outside`.
pub struct Node {
    pub node: TestNs,
    pub outside: TestNs,
}

impl Node {
    pub fn new(tag: &str) -> Node {
        let node = TestNs::new(&format!("{tag}n"));
        let outside = TestNs::new(&format!("{tag}o"));
        node.ip(&["link", "set", "lo", "up"]);
        outside.ip(&["link", "set", "lo", "up"]);
        node.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "out0",
            "netns",
            &outside.name,
        ]);
        node.ip(&[
            "link",
            "add",
            "eth1",
            "address",
            ENI_MAC,
            "type",
            "veth",
            "peer",
            "name",
            "out1",
            "netns",
            &outside.name,
        ]);
        node.ip(&["addr", "add", "10.0.0.10/24", "dev", "eth0"]);
        node.ip(&["link", "set", "eth0", "up"]);
        node.ip(&["route", "add", "default", "via", "10.0.0.1", "dev", "eth0"]);
        outside.ip(&["addr", "add", "10.0.0.1/24", "dev", "out0"]);
        outside.ip(&["link", "set", "out0", "up"]);
        outside.ip(&["link", "set", "out1", "up"]);
        node.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        Node { node, outside }
    }
}

/// A real TCP exchange: listen on `dst_ip` in `dst`, connect from inside `src`, send a byte
/// each way. Returns an error string instead of panicking so callers can assert.
pub fn tcp_exchange(src: &Netns, dst: &Netns, dst_ip: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    let listener = dst
        .run(|| TcpListener::bind((dst_ip, 0)))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("bind {dst_ip}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = std::thread::spawn(move || -> Result<(), String> {
        let (mut s, _) = listener.accept().map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).map_err(|e| e.to_string())?;
        s.write_all(&[b[0] + 1]).map_err(|e| e.to_string())
    });
    let mut stream = src
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(3)))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    stream.write_all(&[41]).map_err(|e| e.to_string())?;
    let mut b = [0u8; 1];
    stream.read_exact(&mut b).map_err(|e| e.to_string())?;
    server.join().map_err(|_| "server panicked".to_string())??;
    if b[0] == 42 {
        Ok(())
    } else {
        Err(format!("unexpected reply {}", b[0]))
    }
}

//! Test harness: a stand-in node (primary NIC and secondary ENI as veths to an "outside"
//! namespace) built on `net::testing::TestNetns`, and a real TCP exchange between
//! namespaces. Everything happens inside namespaces created here; the root namespace is
//! never touched.

#![allow(dead_code)]

use net::netns::Netns;
use net::testing::TestNetns;

pub const NODE_IP: &str = "10.0.0.10";
pub const ENI_MAC: &str = "02:00:00:00:01:01";

/// A node namespace with `eth0` (10.0.0.10/24, default via 10.0.0.1) and an unconfigured
/// secondary ENI `eth1` (MAC [`ENI_MAC`]), both veths into an "outside" namespace.
/// Field order: `node` is dropped before `outside`.
pub struct Node {
    pub node: TestNetns,
    pub outside: TestNetns,
}

impl Node {
    pub fn new(tag: &str) -> Node {
        let node = TestNetns::new(&format!("{tag}n"));
        let outside = TestNetns::new(&format!("{tag}o"));
        node.ip(&["link", "set", "lo", "up"]);
        outside.ip(&["link", "set", "lo", "up"]);
        node.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "out0", "netns", &outside.0,
        ]);
        node.ip(&[
            "link", "add", "eth1", "address", ENI_MAC, "type", "veth", "peer", "name", "out1",
            "netns", &outside.0,
        ]);
        node.ip(&["addr", "add", "10.0.0.10/24", "dev", "eth0"]);
        node.ip(&["link", "set", "eth0", "up"]);
        node.ip(&["route", "add", "default", "via", "10.0.0.1", "dev", "eth0"]);
        outside.ip(&["addr", "add", "10.0.0.1/24", "dev", "out0"]);
        outside.ip(&["link", "set", "out0", "up"]);
        outside.ip(&["link", "set", "out1", "up"]);
        node.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
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
    // The server gives up when the client does (`stop`), so no thread outlives this call
    // holding a socket, and with it the namespace, open.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_server = stop.clone();
    let server = std::thread::spawn(move || -> Result<(), String> {
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if stop_server.load(std::sync::atomic::Ordering::SeqCst) {
                        return Err("the client gave up".into());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        s.set_nonblocking(false).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).map_err(|e| e.to_string())?;
        s.write_all(&[b[0] + 1]).map_err(|e| e.to_string())
    });
    let exchange = || -> Result<u8, String> {
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
        Ok(b[0])
    };
    let reply = exchange();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let served = server.join().map_err(|_| "server panicked".to_string())?;
    let b = [reply?];
    served?;
    if b[0] == 42 {
        Ok(())
    } else {
        Err(format!("unexpected reply {}", b[0]))
    }
}

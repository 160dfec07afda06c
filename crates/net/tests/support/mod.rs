//! Test harness: a stand-in node (primary NIC and secondary ENI as veths to an "outside"
//! namespace) built on `net::testing::TestNetns`, and a real TCP exchange between
//! namespaces. Everything happens inside namespaces created here; the root namespace is
//! never touched.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::Duration;

use net::host::{EniSetup, setup_eni};
use net::netlink::{NetlinkHandle, Rule};
use net::netns::Netns;
use net::pod::{PodNetwork, setup_pod};
use net::route_table::{MAIN_TABLE, priority};
use net::testing::TestNetns;

pub const NODE_IP: &str = "10.0.0.10";
pub const ENI_MAC: &str = "02:00:00:00:01:01";
/// The secondary ENI's address once [`RoutedNode::new`] has set it up (route table 2).
pub const ENI_IP: &str = "10.0.2.20";
/// The secondary ENI's route table.
pub const ENI_TABLE: u32 = 2;
/// An Internet host, on the outside namespace.
pub const INTERNET: &str = "203.0.113.5";
/// A host in an excluded CIDR (192.168.0.0/16), on the outside namespace.
pub const EXCLUDED: &str = "192.168.7.5";
/// A VPC host behind the outside namespace's router.
pub const VPC_PEER: &str = "10.0.5.5";

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
        let mut stream = connect_from(src, addr)?;
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

/// A [`Node`] set up as ipamd leaves it, with the outside playing the VPC router and the
/// Internet: IPv6 off (a fresh link's router solicitations and MLD reports would make
/// per-ENI packet counts racy), secondary ENI `eth1` at [`ENI_IP`] with table
/// [`ENI_TABLE`], loose reverse-path filtering, and the fwmark 0x80 → main rule. The outside
/// routes 10.0.0.0/24 and 10.0.2.0/24, holds [`INTERNET`] and [`EXCLUDED`], and routes to
/// the `peer` namespace ([`VPC_PEER`]). Field order: `node` is dropped before `outside`,
/// as in [`Node`], and `peer` last.
pub struct RoutedNode {
    pub node: TestNetns,
    pub outside: TestNetns,
    pub peer: TestNetns,
}

impl RoutedNode {
    pub async fn new(tag: &str) -> RoutedNode {
        let Node { node, outside } = Node::new(tag);
        let (n, o) = (&node, &outside);
        for key in ["all", "default"] {
            let sysctl = format!("net.ipv6.conf.{key}.disable_ipv6=1");
            n.exec_ok(&["sysctl", "-qw", &sysctl]);
        }
        let nl = NetlinkHandle::in_netns(&n.netns()).unwrap();
        let mut eni = EniSetup::new(
            ENI_MAC.parse().unwrap(),
            ENI_IP.parse::<Ipv4Addr>().unwrap(),
            "10.0.2.0/24".parse().unwrap(),
            ENI_TABLE,
            9001,
        );
        eni.find_interval = Duration::from_millis(10);
        setup_eni(&nl, &eni).await.unwrap();
        // Loose reverse-path filtering, as aws-node's init container sets it (`cmd/aws-vpc-cni-init`).
        n.exec_ok(&["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2"]);
        // ipamd's main-ENI rule (upstream's `SetupHostNetwork`): fwmark 0x80 → main.
        let fwmark = Rule {
            priority: Some(priority::MAIN_ENI_FWMARK),
            fwmark: Some(0x80),
            fwmask: Some(0x80),
            table: MAIN_TABLE,
            ..Rule::default()
        };
        nl.add_rule(&fwmark).await.unwrap();

        o.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        o.exec_ok(&["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"]);
        o.ip(&["addr", "add", "10.0.2.1/24", "dev", "out1"]);
        // (On loopback: this kernel has no dummy links.)
        o.ip(&["addr", "add", &format!("{INTERNET}/32"), "dev", "lo"]);
        o.ip(&["addr", "add", &format!("{EXCLUDED}/32"), "dev", "lo"]);
        let peer = TestNetns::new(&format!("{tag}v"));
        peer.ip(&["link", "set", "lo", "up"]);
        o.ip(&[
            "link", "add", "out2", "type", "veth", "peer", "name", "eth0", "netns", &peer.0,
        ]);
        o.ip(&["addr", "add", "10.0.5.1/24", "dev", "out2"]);
        o.ip(&["link", "set", "out2", "up"]);
        peer.ip(&["addr", "add", &format!("{VPC_PEER}/24"), "dev", "eth0"]);
        peer.ip(&["link", "set", "eth0", "up"]);
        peer.ip(&["route", "add", "default", "via", "10.0.5.1"]);
        RoutedNode {
            node,
            outside,
            peer,
        }
    }

    /// A pod namespace named `{tag}` with IP `pod_ip` behind host veth `host_veth`, its
    /// address on the secondary ENI (table [`ENI_TABLE`]) or else on the primary (main
    /// table); the VPC fabric (the outside) delivers that IP to the ENI that owns it.
    pub async fn add_pod(
        &self,
        tag: &str,
        host_veth: &str,
        pod_ip: &str,
        on_secondary_eni: bool,
    ) -> TestNetns {
        let (via, dev, table) = if on_secondary_eni {
            (ENI_IP, "out1", ENI_TABLE)
        } else {
            (NODE_IP, "out0", MAIN_TABLE)
        };
        let route = format!("{pod_ip}/32");
        self.outside
            .ip(&["route", "add", &route, "via", via, "dev", dev]);
        let pod = TestNetns::new(tag);
        let p = PodNetwork {
            host_veth: host_veth.into(),
            pod_ifname: "eth0".into(),
            index: 0,
            pod_ip: pod_ip.parse().unwrap(),
            table,
            mtu: 9001,
        };
        setup_pod(&self.node.netns(), &pod.path_buf(), &p)
            .await
            .unwrap();
        pod
    }
}

/// Packets sent by `dev` in `ns` so far.
pub fn tx_packets(ns: &TestNetns, dev: &str) -> u64 {
    let path = format!("/sys/class/net/{dev}/statistics/tx_packets");
    ns.exec_ok(&["cat", &path]).trim().parse().unwrap()
}

/// Connects from `src` to `dst_ip` (a listener on 0.0.0.0 in `dst`); the source address the
/// listener saw.
pub fn seen_source(src: &Netns, dst: &Netns, dst_ip: &str) -> Result<String, String> {
    let listener = dst
        .run(|| TcpListener::bind("0.0.0.0:0"))
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let server = std::thread::spawn(move || -> Result<(), String> {
        let (mut s, peer) = listener.accept().map_err(|e| e.to_string())?;
        s.write_all(peer.ip().to_string().as_bytes())
            .map_err(|e| e.to_string())
    });
    let addr = format!("{dst_ip}:{port}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut stream = connect_from(src, addr)?;
    let mut seen = String::new();
    stream
        .read_to_string(&mut seen)
        .map_err(|e| e.to_string())?;
    server.join().map_err(|_| "server panicked".to_string())??;
    Ok(seen)
}

/// A TCP connection from inside `src` to `addr` (3 s to connect, reads time out after 3 s).
fn connect_from(src: &Netns, addr: std::net::SocketAddr) -> Result<TcpStream, String> {
    let stream = src
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(3)))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

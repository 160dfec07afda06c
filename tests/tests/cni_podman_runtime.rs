//! A real CNI runtime drives the plugin: podman 4 with its CNI backend (libcni) runs a
//! busybox container on a network whose conflist chains `aws-cni` with Debian's `portmap`;
//! the address comes from the real agent; the container serves HTTP to the node; `podman rm`
//! runs DEL, which gives the address back.
//!
//! Confinement: podman runs under `nsenter --net=<node netns>` (not `ip netns exec`, whose
//! private /sys hides the cgroup mounts runc needs), so the plugin's "host" namespace, where
//! the host veth, routes and rules go, is the test's node namespace; podman's own pod netns
//! is a fresh namespace. Its storage and run dirs, containers.conf, conflist and plugin dir
//! are the test's own. Nothing touches the root namespace's networking.
//!
//! podman's own process passes its environment to CNI plugins (libcni appends the CNI_*
//! variables to it), but the DEL that conmon's exit command (`podman container cleanup`)
//! runs does not carry `IPAMD_GRPC_SOCKET`: without a wrapper that DEL finds no ipamd, tears
//! down from prevResult and the address stays assigned. So the plugin `type` is a two-line
//! wrapper script that sets the socket and execs `aws-cni`. podman sends only
//! `K8S_POD_NAME` (the container name) in CNI_ARGS; the plugin tolerates the missing
//! namespace (empty, as upstream passes it to ipamd).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use integration_tests::TestNetns;
use integration_tests::agent::NodeAgent;
use integration_tests::plugin::aws_cni;

fn need(tool: &str) -> PathBuf {
    let p = ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/lib/cni"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists());
    p.unwrap_or_else(|| {
        panic!("{tool} is missing: run scripts/install-deps.sh (podman, runc, busybox-static, containernetworking-plugins)")
    })
}

struct Podman {
    dir: PathBuf,
    node: String,
}

impl Podman {
    fn cmd(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.node))
            .arg("--")
            .arg("podman")
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd(&["rm", "-f", "-t", "0", "web"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn http_get(node: &TestNetns, addr: &str) -> Result<String, String> {
    let ns = net::netns::Netns::open(node.path()).map_err(|e| e.to_string())?;
    let sa = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = ns
        .run(|| std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(3)))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| e.to_string())?;
    Ok(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_runs_a_container_with_aws_cni_and_portmap() {
    for tool in ["podman", "runc", "busybox", "nsenter", "portmap"] {
        need(tool);
    }
    let node = TestNetns::new("cni-podman");
    let agent = NodeAgent::start(&node, "podman", 9, |_| {}).await;
    let dir = std::env::temp_dir().join(format!("cni-podman-{}", std::process::id()));
    let pm = Podman {
        dir: dir.clone(),
        node: node.0.clone(),
    };
    for d in [
        "bin",
        "net",
        "storage",
        "run",
        "rootfs/bin",
        "rootfs/proc",
        "rootfs/sys",
        "rootfs/dev",
        "rootfs/etc",
        "rootfs/tmp",
        "rootfs/www",
    ] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(need("busybox"), dir.join("rootfs/bin/busybox")).unwrap();
    for a in ["sh", "httpd"] {
        std::os::unix::fs::symlink("busybox", dir.join("rootfs/bin").join(a)).unwrap();
    }
    std::fs::write(dir.join("rootfs/www/index.html"), "hello from aws-cni\n").unwrap();
    // A wrapper as the plugin: podman's own process passes its environment to plugins, but
    // the DEL run by conmon's exit command (`podman container cleanup`) gets a reduced one.
    let wrapper = dir.join("bin/aws-cni");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nIPAMD_GRPC_SOCKET='{}' exec '{}' \"$@\"\n",
            agent.socket,
            tokio::task::block_in_place(aws_cni).display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(
        dir.join("containers.conf"),
        format!(
            r#"[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[network]
network_backend = "cni"
cni_plugin_dirs = ["{bin}", "/usr/lib/cni"]
network_config_dir = "{net}"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
"#,
            bin = dir.join("bin").display(),
            net = dir.join("net").display()
        ),
    )
    .unwrap();
    let log = dir.join("plugin.log");
    std::fs::write(
        dir.join("net/10-aws.conflist"),
        format!(
            r#"{{"cniVersion":"1.0.0","name":"aws-cni","disableCheck":true,"plugins":[
  {{"name":"aws-cni","type":"aws-cni","vethPrefix":"eni","mtu":"9001","realMacsInResult":true,"pluginLogFile":"{}","pluginLogLevel":"Debug"}},
  {{"type":"portmap","capabilities":{{"portMappings":true}},"snat":true}}]}}"#,
            log.display()
        ),
    )
    .unwrap();

    let rootfs = dir.join("rootfs").display().to_string();
    let (ok, out) = pm.cmd(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "aws-cni",
        "-p",
        "18080:80",
        "--rootfs",
        &rootfs,
        "/bin/httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    assert!(
        ok,
        "podman run: {out}\nplugin log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let cid = out
        .lines()
        .rev()
        .find(|l| l.len() == 64)
        .unwrap_or_default()
        .to_string();
    assert!(
        agent.checkpoint_containers().contains(&cid),
        "ipamd holds an address for {cid}: {:?}",
        agent.checkpoint_containers()
    );
    let (ok, ip) = pm.cmd(&[
        "inspect",
        "web",
        "--format",
        "{{(index .NetworkSettings.Networks \"aws-cni\").IPAddress}}",
    ]);
    assert!(ok, "{ip}");
    let ip = ip.trim().to_string();
    assert!(
        ip.starts_with("10.0.0."),
        "address from the emulated subnet: {ip}"
    );
    // The host veth (eni + hash of ".web": no namespace from podman) is in the node netns.
    let veth = net::names::host_veth_name("eni", "", "web", 0);
    assert!(
        node.ip(&["-o", "link"]).contains(&veth),
        "{}",
        node.ip(&["-o", "link"])
    );
    assert!(node.ip(&["rule"]).contains(&format!("to {ip} lookup main")));

    // HTTP from the node to the container: directly, and through portmap's DNAT on the
    // node's primary IP.
    let mut body = Err(String::new());
    for _ in 0..20 {
        body = tokio::task::block_in_place(|| http_get(&node, &format!("{ip}:80")));
        if body.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(body.unwrap().contains("hello from aws-cni"));
    let node_ip = agent.emulated.primary_ip;
    let via_portmap = tokio::task::block_in_place(|| http_get(&node, &format!("{node_ip}:18080")));
    assert!(
        via_portmap
            .as_deref()
            .is_ok_and(|b| b.contains("hello from aws-cni")),
        "portmap: {via_portmap:?}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(&format!(r#""container":"{cid}""#)),
        "{logged}"
    );

    // podman rm runs DEL: the address goes back, the host side is gone.
    let (ok, out) = pm.cmd(&["rm", "-f", "-t", "0", "web"]);
    assert!(ok, "{out}");
    // The release is in ipamd's checkpoint once DEL returned; allow podman's cleanup a moment.
    for _ in 0..50 {
        if !agent.checkpoint_containers().contains(&cid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !agent.checkpoint_containers().contains(&cid),
        "address released; plugin log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(!node.ip(&["-o", "link"]).contains(&veth));
    assert!(!node.ip(&["rule"]).contains(&format!("to {ip} lookup main")));
}

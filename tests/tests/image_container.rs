//! The aws-node image (`scripts/build-image.sh`) as the DaemonSet runs it, on an emulated node.
//!
//! - It holds what the Dockerfile puts there: the binaries (byte for byte this workspace's
//!   release build), the packages, `/init`'s plugins, the working directory and entrypoint.
//! - The chart's pod, container by container: the init container (`/app/aws-vpc-cni-init`,
//!   privileged, the host's CNI bin dir mounted) installs the plugins and sets its sysctls;
//!   the main container (`/app/aws-vpc-cni`, the chart's environment, mounts and
//!   capabilities) runs ipamd with host networking, here the test's node namespace, against
//!   the EC2 + IMDS emulator listening in that namespace. The chart's readiness and liveness
//!   probe commands succeed inside it; `10-aws.conflist` and the plugins appear on the
//!   "host"; pods wired by the installed plugin chain, as a runtime runs it, get addresses
//!   and carry traffic; SIGTERM (`podman stop`) stops the container with exit code 0 and
//!   the checkpoint written.
//!
//! The node's hostPaths live under a temporary "host" root; the plugin log paths of the
//! installed conflist are mapped there too. The only thing outside the test's namespaces
//! and directories is the image in podman's store. Run with `--nocapture` to see the steps
//! (scripts/test.sh does).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ec2_emulator::server;
use integration_tests::image::{
    Podman, chart_daemonset, ensure_image, image_plan, on_host, podman_unusable,
};
use integration_tests::{EmulatedNode, TestNetns};
use k8s::testing::FakeApiServer;
use serde_json::{Value, json};

fn skip_reason() -> Option<String> {
    podman_unusable().map(|r| format!("SKIPPED: podman cannot run containers here: {r}"))
}

fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// `<target dir>/release`, beside this test's profile directory.
fn release_dir() -> PathBuf {
    let profile = integration_tests::bins::profile_dir();
    profile.parent().expect("the target dir").join("release")
}

#[test]
fn the_image_holds_what_the_dockerfile_puts_there() {
    if let Some(reason) = skip_reason() {
        println!("{reason}");
        return;
    }
    let podman = Podman::new();
    let image = ensure_image(&podman);
    let plan = image_plan();
    let config: Value = serde_json::from_str(&podman.ok(&["image", "inspect", &image]))
        .expect("podman image inspect prints JSON");
    let config = &config[0]["Config"];
    assert_eq!(config["Entrypoint"], plan["entrypoint"], "entrypoint");
    assert_eq!(config["WorkingDir"], plan["workdir"], "working directory");

    // One shell in the image lists checksums, packages and /init.
    let copies = plan["copies"].as_array().expect("copies");
    let dests: Vec<&str> = copies.iter().map(|c| c["dest"].as_str().unwrap()).collect();
    let packages: Vec<&str> = plan["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(!packages.is_empty() && dests.len() >= 7, "{plan}");
    let script = format!(
        "set -e; for f in {}; do test -x \"$f\" || test -f \"$f\"; sha256sum \"$f\"; done; \
         dpkg-query -W -f '${{Package}} ${{db:Status-Status}}\\n' {}; ls /init",
        dests.join(" "),
        packages.join(" ")
    );
    let listing = podman.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/sh",
        &image,
        "-c",
        &script,
    ]);
    println!("inside {image}:\n{listing}");
    for copy in copies {
        let dest = copy["dest"].as_str().unwrap();
        let src = copy["src"].as_str().unwrap();
        let want = if copy["from_build"] == true {
            sha256(&release_dir().join(src.trim_start_matches("target/release/")))
        } else {
            sha256(&integration_tests::bins::workspace_root().join(src))
        };
        assert!(
            listing.contains(&format!("{want}  {dest}")),
            "{dest} in the image is not this workspace's {src}: the image is stale \
             (run scripts/build-image.sh)\n{listing}"
        );
    }
    for p in &packages {
        assert!(
            listing.contains(&format!("{p} installed")),
            "package {p} installed: {listing}"
        );
    }
    for plugin in ["loopback", "portmap", "bandwidth", "tuning", "host-local"] {
        assert!(
            listing.lines().any(|l| l == plugin),
            "/init has {plugin}: {listing}"
        );
    }
}

/// The test's node: a namespace with the primary interface, the emulator listening inside it
/// and hot-plugging the instance's ENIs into it, and a "host" root for the hostPaths.
struct Node {
    ns: TestNetns,
    emulated: EmulatedNode,
    api: FakeApiServer,
    host: tempfile::TempDir,
}

/// The node's name (the DaemonSet's `MY_NODE_NAME`, from `spec.nodeName`).
const NODE_NAME: &str = "ip-10-0-0-10.us-west-2.compute.internal";
/// The aws-node pod's name (`MY_POD_NAME`).
const POD_NAME: &str = "aws-node-test";

impl Node {
    async fn start() -> Node {
        let ns = TestNetns::new("image-node");
        let emulated = EmulatedNode::start_in("m5.large", "10.0.0.0/24", Some(&ns.path())).await;
        ns.add_primary_interface(&emulated.primary_mac, emulated.primary_ip);
        ns.ip(&["route", "add", "default", "via", "10.0.0.1", "dev", "eth0"]);
        server::lock(&emulated.emu).set_hotplug(&emulated.instance_id, &ns.0);
        // The Kubernetes API (no real one can run here: the HTTP-level stand-in), reached as
        // CLUSTER_ENDPOINT from the node namespace, holding the Node and the aws-node pod.
        let listener = ns
            .netns()
            .run(|| TcpListener::bind("127.0.0.1:0"))
            .expect("enter the node")
            .expect("a loopback port in the node");
        let api = FakeApiServer::start_on(listener).expect("the API stand-in");
        api.apply(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE_NAME, "labels": {"topology.kubernetes.io/zone": "us-west-2a"}},
            "status": {"capacity": {"pods": "29"}}}));
        api.apply(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": POD_NAME, "namespace": "kube-system"},
            "spec": {"nodeName": NODE_NAME}}));
        Node {
            ns,
            emulated,
            api,
            host: tempfile::tempdir().expect("a host root"),
        }
    }

    fn host(&self, path: &str) -> PathBuf {
        on_host(self.host.path(), path)
    }

    /// Container IDs in ipamd's checkpoint (the run-dir hostPath).
    fn checkpoint(&self) -> Vec<String> {
        let text =
            std::fs::read_to_string(self.host("/var/run/aws-node/ipam.json")).unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        v["allocations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["containerID"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The main container, removed on drop.
struct Running<'a> {
    podman: &'a Podman,
    name: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let _ = self.podman.run(&[
            "rm".into(),
            "-f".into(),
            "-t".into(),
            "0".into(),
            self.name.clone(),
        ]);
    }
}

impl Running<'_> {
    fn exec(&self, command: &[String]) -> std::process::Output {
        let mut args = vec!["exec".to_owned(), self.name.clone()];
        args.extend(command.iter().cloned());
        self.podman.run(&args)
    }

    fn logs(&self) -> String {
        let out = self.podman.run(&["logs".into(), self.name.clone()]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn state(&self) -> String {
        self.podman
            .ok(&[
                "inspect",
                &self.name,
                "--format",
                "{{.State.Status}} {{.State.ExitCode}}",
            ])
            .trim()
            .to_owned()
    }
}

/// The installed conflist's chain run as a runtime runs it, from the host's plugin dir.
struct Chain {
    conflist: Value,
    bin_dir: PathBuf,
    socket: PathBuf,
    node: String,
}

impl Chain {
    fn env<'a>(
        &'a self,
        command: &'a str,
        cid: &'a str,
        pod: &'a TestNetns,
    ) -> Vec<(String, String)> {
        vec![
            ("CNI_COMMAND".into(), command.into()),
            ("CNI_CONTAINERID".into(), cid.into()),
            ("CNI_IFNAME".into(), "eth0".into()),
            ("CNI_NETNS".into(), pod.path()),
            ("CNI_PATH".into(), self.bin_dir.display().to_string()),
            (
                "CNI_ARGS".into(),
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={cid};K8S_POD_INFRA_CONTAINER_ID={cid}"
                ),
            ),
            (
                "IPAMD_GRPC_SOCKET".into(),
                self.socket.display().to_string(),
            ),
        ]
    }

    fn run(
        &self,
        plugin: &Value,
        env: &[(String, String)],
        prev: Option<&Value>,
    ) -> Result<Value, String> {
        let mut conf = plugin.clone();
        conf["name"] = self.conflist["name"].clone();
        conf["cniVersion"] = self.conflist["cniVersion"].clone();
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        let kind = conf["type"].as_str().unwrap_or_default().to_owned();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let run = cni::testing::run_plugin(
            &self.bin_dir.join(&kind),
            Some(&self.node),
            &env,
            &conf.to_string(),
        );
        if run.rc != 0 {
            return Err(format!(
                "{kind}: rc {} {} {}",
                run.rc, run.stdout, run.stderr
            ));
        }
        Ok(if run.stdout.is_empty() {
            Value::Null
        } else {
            run.json()
        })
    }

    fn plugins(&self) -> Vec<Value> {
        self.conflist["plugins"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// ADD through every plugin; the chain's result.
    fn add(&self, cid: &str, pod: &TestNetns) -> Result<Value, String> {
        let env = self.env("ADD", cid, pod);
        let mut prev: Option<Value> = None;
        for plugin in self.plugins() {
            prev = Some(self.run(&plugin, &env, prev.as_ref())?);
        }
        prev.ok_or_else(|| "an empty chain".to_owned())
    }

    /// DEL through every plugin, in reverse, with the ADD's result.
    fn del(&self, cid: &str, pod: &TestNetns, result: &Value) -> Result<(), String> {
        let env = self.env("DEL", cid, pod);
        for plugin in self.plugins().iter().rev() {
            self.run(plugin, &env, Some(result))?;
        }
        Ok(())
    }
}

fn pod_ip(result: &Value) -> Ipv4Addr {
    result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("an IPv4 address in the result: {result}"))
}

/// A TCP exchange from the pod to the node's primary address: the node answers with the
/// address it saw.
fn pod_to_node(node: &TestNetns, pod: &TestNetns, node_ip: Ipv4Addr) -> String {
    let listener = node
        .netns()
        .run(|| TcpListener::bind((node_ip, 0)))
        .expect("enter the node")
        .expect("listen on the node's address");
    let addr: SocketAddr = listener.local_addr().expect("the listener's address");
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().expect("accept");
        let _ = s.write_all(format!("hello {} from the node", peer.ip()).as_bytes());
    });
    let reply = pod
        .netns()
        .run(|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        })
        .expect("enter the pod")
        .expect("pod to node over TCP");
    server.join().expect("the node's side");
    reply
}

/// Rewrites the conflist's plugin log paths (node paths) to the test's host root.
fn map_log_paths(v: &mut Value, node: &Node) {
    match v {
        Value::String(s) if s.starts_with("/var/log/aws-routed-eni/") => {
            *s = node.host(s).display().to_string();
        }
        Value::Array(a) => a.iter_mut().for_each(|x| map_log_paths(x, node)),
        Value::Object(o) => o.values_mut().for_each(|x| map_log_paths(x, node)),
        _ => {}
    }
}

fn wait_until(what: &str, main: &Running, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !cond() {
        let state = main.state();
        assert!(
            state.starts_with("running"),
            "the aws-node container stopped ({state}) before {what}:\n{}",
            main.logs()
        );
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            main.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_a_node_as_the_daemonset_does() {
    if let Some(reason) = skip_reason() {
        println!("{reason}");
        return;
    }
    let podman = Podman::new();
    let image = tokio::task::block_in_place(|| ensure_image(&podman));
    let ds = tokio::task::block_in_place(chart_daemonset);
    assert!(ds.host_network, "the chart's pod uses host networking");
    let node = Node::start().await;
    let field_refs = [("spec.nodeName", NODE_NAME), ("metadata.name", POD_NAME)];
    // The node's EC2 and IMDS are the emulator's, in the node namespace; static credentials
    // stand in for the instance role.
    let emulator_env = vec![
        ("AWS_EC2_ENDPOINT", node.emulated.ec2_endpoint.clone()),
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            node.emulated.imds_endpoint.clone(),
        ),
        ("AWS_ACCESS_KEY_ID", "AKIDTEST".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "secret".to_owned()),
        ("CLUSTER_ENDPOINT", node.api.url()),
    ];

    // The init container.
    let mut args = vec!["run".to_owned(), "--rm".to_owned()];
    args.extend(ds.init.run_args(
        &node.ns.path(),
        node.host.path(),
        &field_refs,
        &emulator_env,
    ));
    args.push(image.clone());
    args.extend(ds.init.command.iter().skip(1).cloned());
    let init = tokio::task::block_in_place(|| podman.run(&args));
    let init_log = format!(
        "{}{}",
        String::from_utf8_lossy(&init.stdout),
        String::from_utf8_lossy(&init.stderr)
    );
    println!("== init container ({}):\n{init_log}", init.status);
    assert!(
        init.status.success(),
        "the init container failed: {init_log}"
    );
    let bin_dir = node.host("/opt/cni/bin");
    for plugin in ["loopback", "portmap", "bandwidth", "tuning", "host-local"] {
        assert!(bin_dir.join(plugin).is_file(), "init installed {plugin}");
    }

    // The main container.
    let name = format!("aws-node-test-{}", std::process::id());
    let mut args = vec![
        "run".to_owned(),
        "-d".to_owned(),
        "--name".to_owned(),
        name.clone(),
    ];
    args.extend(ds.main.run_args(
        &node.ns.path(),
        node.host.path(),
        &field_refs,
        &emulator_env,
    ));
    args.push(image.clone());
    args.extend(ds.main.command.iter().skip(1).cloned());
    let started = tokio::task::block_in_place(|| podman.run(&args));
    assert!(
        started.status.success(),
        "podman run: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    let main = Running {
        podman: &podman,
        name,
    };
    let begun = Instant::now();
    let conflist_path = node.host("/etc/cni/net.d/10-aws.conflist");
    tokio::task::block_in_place(|| {
        wait_until("the readiness probe succeeds", &main, || {
            main.exec(&ds.readiness).status.success()
        });
        wait_until("10-aws.conflist is installed", &main, || {
            conflist_path.is_file()
        });
    });
    println!(
        "== aws-node ready after {:.1} s (readiness probe {:?})",
        begun.elapsed().as_secs_f64(),
        ds.readiness
    );
    let live = tokio::task::block_in_place(|| main.exec(&ds.liveness));
    assert!(live.status.success(), "liveness probe: {live:?}");
    for plugin in ["aws-cni", "egress-cni"] {
        assert!(
            bin_dir.join(plugin).is_file(),
            "the entrypoint installed {plugin}"
        );
    }
    // ipamd set up the node's SNAT with the image's iptables, and reached the API server.
    let nat = tokio::task::block_in_place(|| {
        main.exec(&["iptables".into(), "-t".into(), "nat".into(), "-S".into()])
    });
    let nat = String::from_utf8_lossy(&nat.stdout).into_owned();
    assert!(
        nat.contains("-A AWS-SNAT-CHAIN-0"),
        "SNAT rules in the node: {nat}"
    );
    let api_paths: Vec<String> = node.api.requests().into_iter().map(|r| r.path).collect();
    assert!(
        api_paths.iter().any(|p| p.starts_with("/api/v1/nodes")),
        "ipamd watches its Node: {api_paths:?}"
    );
    println!(
        "== node SNAT (iptables in the image): {} rules; {} requests to the API server",
        nat.lines().filter(|l| l.contains("AWS-SNAT-CHAIN")).count(),
        api_paths.len()
    );
    let mut conflist: Value =
        serde_json::from_str(&std::fs::read_to_string(&conflist_path).expect("read the conflist"))
            .expect("the conflist is JSON");
    println!("== {}:\n{conflist}", conflist_path.display());
    map_log_paths(&mut conflist, &node);
    let chain = Chain {
        conflist,
        bin_dir: bin_dir.clone(),
        socket: node.host("/var/run/aws-node/ipamd.sock"),
        node: node.ns.0.clone(),
    };

    // Pods through the installed chain; the warm pool may still be filling (kubelet retries).
    let mut pods = Vec::new();
    for i in 0..2 {
        let pod = TestNetns::new("image-pod");
        pod.ip(&["link", "set", "lo", "up"]);
        let cid = format!("image-pod-{i}-{}", std::process::id());
        let mut result = Err(String::new());
        for _ in 0..120 {
            result = tokio::task::block_in_place(|| chain.add(&cid, &pod));
            if result.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let result = result.unwrap_or_else(|e| panic!("ADD of {cid}: {e}\n{}", main.logs()));
        let ip = pod_ip(&result);
        assert!(
            ip.octets()[..3] == [10, 0, 0],
            "an address of the node's subnet: {ip}"
        );
        let reply =
            tokio::task::block_in_place(|| pod_to_node(&node.ns, &pod, node.emulated.primary_ip));
        println!(
            "== pod {cid}: {ip}; pod -> node {}: {reply:?}",
            node.emulated.primary_ip
        );
        assert_eq!(reply, format!("hello {ip} from the node"));
        assert!(node.checkpoint().contains(&cid), "{cid} checkpointed");
        pods.push((cid, pod, result));
    }

    // DEL of the first pod gives its address back.
    let (cid, pod, result) = pods.remove(0);
    tokio::task::block_in_place(|| chain.del(&cid, &pod, &result)).expect("DEL");
    assert!(!node.checkpoint().contains(&cid), "{cid} released");
    println!("== pod {cid} deleted");

    // SIGTERM: the container stops cleanly; the remaining pod's address is in the checkpoint.
    let stopped = tokio::task::block_in_place(|| {
        podman.run(&["stop".into(), "-t".into(), "30".into(), main.name.clone()])
    });
    assert!(stopped.status.success(), "podman stop: {stopped:?}");
    let state = tokio::task::block_in_place(|| main.state());
    let logs = tokio::task::block_in_place(|| main.logs());
    println!("== after SIGTERM: {state}\n{logs}");
    assert_eq!(state, "exited 0", "a clean stop");
    let (cid, _pod, _) = &pods[0];
    assert!(
        node.checkpoint().contains(cid),
        "the checkpoint keeps {cid}: {:?}",
        node.checkpoint()
    );
    let log = node.host("/var/log/aws-routed-eni/ipamd.log");
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log.is_empty(), "ipamd logged to the log-dir hostPath");
    let tail: Vec<&str> = log.lines().rev().take(5).collect();
    println!(
        "== ipamd.log (last lines, newest first):\n{}",
        tail.join("\n")
    );
}

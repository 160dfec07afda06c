//! The agent end to end over its real interfaces: EC2 and IMDS from the emulator over HTTP,
//! gRPC on a Unix socket, the checkpoint file, metrics and introspection over HTTP.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::Config;
use ec2_emulator::server::{self, Shared};
use ec2_emulator::testing::EmulatedNode;
use ipamd::agent::{self, AgentOptions};
use rpc::{AddNetworkRequest, CniBackendClient, DelNetworkRequest};

struct Env {
    emu: Shared,
    ec2: String,
    imds: String,
    instance: String,
    dir: PathBuf,
}

async fn env(instance_type: &str, tag: &str) -> Env {
    let node = EmulatedNode::start(instance_type, "10.0.0.0/22").await;
    let (emu, ec2, imds, instance) = (
        node.emu.clone(),
        node.ec2_endpoint.clone(),
        node.imds_endpoint.clone(),
        node.instance_id.clone(),
    );
    let dir = std::env::temp_dir().join(format!("ipamd-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Env {
        emu,
        ec2,
        imds,
        instance,
        dir,
    }
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn config(env: &Env, extra: &[(&str, &str)]) -> Config {
    let store = env.dir.join("ipam.json");
    let mut vars = vec![
        ("AWS_EC2_ENDPOINT".to_string(), env.ec2.clone()),
        (
            "AWS_VPC_K8S_CNI_BACKING_STORE".to_string(),
            store.display().to_string(),
        ),
        ("CLUSTER_NAME".to_string(), "demo".to_string()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_vars(vars).unwrap()
}

fn options(
    env: &Env,
    metrics: Option<SocketAddr>,
    introspection: Option<SocketAddr>,
) -> AgentOptions {
    AgentOptions {
        grpc_socket: env.dir.join("ipamd.sock"),
        metrics_addr: metrics,
        introspection_addr: introspection,
        imds_endpoint: Some(env.imds.clone()),
        static_credentials: Some(("testing".into(), "testing".into())),
        timers: ipamd::node_loop::AgentTimers {
            pool: Duration::from_millis(100),
            ..Default::default()
        },
        host_network: None,
    }
}

async fn client(socket: &Path) -> CniBackendClient<tonic::transport::Channel> {
    for _ in 0..200 {
        if let Ok(ch) = rpc::client::connect(
            &format!("unix://{}", socket.display()),
            Some(Duration::from_millis(200)),
        )
        .await
        {
            return CniBackendClient::new(ch);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ipamd did not come up on {}", socket.display());
}

fn add(i: usize) -> AddNetworkRequest {
    AddNetworkRequest {
        container_id: format!("container-{i}"),
        if_name: "eth0".into(),
        network_name: "aws-cni".into(),
        k8s_pod_name: format!("pod-{i}"),
        k8s_pod_namespace: "default".into(),
        ..Default::default()
    }
}

fn del(i: usize) -> DelNetworkRequest {
    DelNetworkRequest {
        container_id: format!("container-{i}"),
        if_name: "eth0".into(),
        network_name: "aws-cni".into(),
        reason: "PodDeleted".into(),
        ..Default::default()
    }
}

async fn wait_for_pool(env: &Env, at_least: usize) {
    for _ in 0..300 {
        let ips: usize = {
            let emu = server::lock(&env.emu);
            emu.world
                .attached_enis(&env.instance)
                .iter()
                .map(|e| e.secondary_ips.len())
                .sum()
        };
        if ips >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the pool never reached {at_least} addresses");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_and_dels_never_share_an_ip_and_errors_are_clear() {
    let env = env("m5.xlarge", "conc").await;
    let (metrics, introspection) = (free_port(), free_port());
    let cfg = config(&env, &[]);
    let opts = options(&env, Some(metrics), Some(introspection));
    let socket = opts.grpc_socket.clone();
    let agent = tokio::spawn(agent::run(cfg, opts, std::future::pending()));
    let c = client(&socket).await;
    // m5.xlarge: 4 ENIs × 14 usable IPs = 56 at most; 200 requests exceed it on purpose.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            if i % 4 == 3 {
                // A DelNetwork for a key that may or may not have an address yet.
                let r = c.del_network(del(i - 1)).await;
                (i, None, r.err().map(|s| s.message().to_string()))
            } else {
                match c.add_network(add(i)).await {
                    Ok(r) => (i, Some(r.into_inner()), None),
                    Err(s) => (i, None, Some(s.message().to_string())),
                }
            }
        }));
    }
    let mut ips = BTreeSet::new();
    let mut errors = 0;
    for t in tasks {
        let (_, reply, err) = t.await.unwrap();
        if let Some(r) = reply {
            assert!(r.success);
            let ip = r.ip_allocation_metadata[0].i_pv4_addr.clone();
            assert!(ips.insert(ip.clone()), "{ip} handed out twice");
            assert!(r.vp_cv4_cid_rs.contains(&"10.0.0.0/16".to_string()));
        }
        if let Some(e) = err {
            errors += 1;
            assert!(
                e.contains("no free IP address on this node")
                    || e.contains("datastore: unknown pod"),
                "unclear error: {e}"
            );
        }
    }
    assert!(
        ips.len() >= 9,
        "the warm pool served at least one ENI's worth: {}",
        ips.len()
    );
    assert!(errors > 0, "200 requests must exceed an m5.xlarge");

    // Free some addresses; a new pod is then served (retrying as kubelet would while the
    // pool catches up), and a repeated ADD for the same key returns the same address.
    let mut c2 = c.clone();
    for i in 0..200 {
        let _ = c2.del_network(del(i)).await;
    }
    let mut first = None;
    for _ in 0..100 {
        match c2.add_network(add(1000)).await {
            Ok(r) => {
                first = Some(r.into_inner());
                break;
            }
            Err(s) => {
                assert!(
                    s.message().contains("no free IP address"),
                    "{}",
                    s.message()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let first = first.expect("an ADD is served once addresses are free");
    let again = c2.add_network(add(1000)).await.unwrap().into_inner();
    assert_eq!(first.ip_allocation_metadata, again.ip_allocation_metadata);

    // Metrics parse and count; introspection shows scrubbed ENIs.
    let text = http_get(metrics, "/metrics").await;
    assert!(text.contains("awscni_add_ip_req_count"), "{text}");
    assert!(text.contains("awscni_assigned_ip_addresses"), "{text}");
    let enis = http_get(introspection, "/v1/enis").await;
    assert!(
        enis.contains("\"0\"") && !enis.contains("container-1000"),
        "{enis}"
    );
    agent.abort();
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_restarts_with_every_pod_keeping_its_ip() {
    // m5.2xlarge: 4 ENIs x 14 secondary addresses, room for 50 pods and 5 warm.
    let env = env("m5.2xlarge", "restart").await;
    let cfg = config(
        &env,
        &[("WARM_IP_TARGET", "5"), ("MINIMUM_IP_TARGET", "20")],
    );
    let opts = options(&env, None, None);
    let socket = opts.grpc_socket.clone();
    let agent = tokio::spawn(agent::run(
        cfg.clone(),
        opts.clone(),
        std::future::pending(),
    ));
    let mut c = client(&socket).await;
    wait_for_pool(&env, 20).await;
    let mut before = Vec::new();
    for i in 0..50 {
        // The pool grows while pods arrive: retry an ADD that finds it empty.
        let mut got = None;
        for _ in 0..200 {
            if let Ok(r) = c.add_network(add(i)).await {
                got = Some(r.into_inner().ip_allocation_metadata[0].i_pv4_addr.clone());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        before.push(got.unwrap_or_else(|| panic!("pod {i} got no address")));
    }
    // kill -9: the task is dropped mid-flight, no graceful checkpoint write.
    agent.abort();
    let _ = agent.await;

    let agent = tokio::spawn(agent::run(cfg, opts, std::future::pending()));
    let mut c = client(&socket).await;
    for (i, ip) in before.iter().enumerate() {
        let r = c.add_network(add(i)).await.unwrap().into_inner();
        assert_eq!(
            &r.ip_allocation_metadata[0].i_pv4_addr, ip,
            "pod {i} kept its IP"
        );
    }
    // No assigned address was given back to EC2: every one is still on an ENI.
    let on_enis: BTreeSet<String> = {
        let emu = server::lock(&env.emu);
        emu.world
            .attached_enis(&env.instance)
            .iter()
            .flat_map(|e| e.secondary_ips.iter().map(ToString::to_string))
            .collect()
    };
    assert!(
        before.iter().all(|ip| on_enis.contains(ip)),
        "{before:?} vs {on_enis:?}"
    );
    // The pool converges again: 50 assigned + WARM_IP_TARGET=5 on EC2, and stays there.
    let secondaries = || -> usize {
        let emu = server::lock(&env.emu);
        emu.world
            .attached_enis(&env.instance)
            .iter()
            .map(|e| e.secondary_ips.len())
            .sum()
    };
    for _ in 0..100 {
        if secondaries() == 55 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(secondaries(), 55, "50 pods + 5 warm after the restart");
    // A new pod gets a fresh address, not one of the restored ones.
    let r = c.add_network(add(99)).await.unwrap().into_inner();
    assert!(!before.contains(&r.ip_allocation_metadata[0].i_pv4_addr));
    agent.abort();
    let _ = std::fs::remove_dir_all(&env.dir);
}

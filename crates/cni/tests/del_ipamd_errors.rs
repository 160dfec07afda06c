//! DEL when ipamd fails (as upstream's `cmdDel` handles it), with the real `aws-cni` binary
//! against a stand-in ipamd (a tonic `CNIBackend` on a Unix socket) in network namespaces made
//! by the test: any gRPC error other than `datastore: unknown pod` tears the pod's host side
//! down from `prevResult`, logs one countable warning and succeeds, so that pods never stick in
//! Terminating; `Success=false` stays an error; unknown pod is success. ADD at cniVersion 0.4.0
//! puts `"version": "4"` on the IP entry.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use ec2_emulator::testing::TestNetns;
use net::netns::Netns;
use net::state::NetnsState;
use rpc::{
    AddNetworkReply, AddNetworkRequest, CniBackend, CniBackendServer, DelNetworkReply,
    DelNetworkRequest, IpAllocationMetadata,
};
use serde_json::Value;
use tonic::{Code, Request, Response, Status};

/// The address, device number and route table the stand-in hands out.
const POD_IP: &str = "10.0.0.20";
const DEVICE: i32 = 2;
const TABLE: i32 = 3;
const ARGS: &str = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=stuck";
/// The stable log message of the teardown (operators grep and count it).
const TORN_DOWN: &str = "DEL: ipamd error, torn down from prevResult";

/// One plugin run.
struct Run {
    rc: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The CNI error code printed on stdout.
    fn code(&self) -> u64 {
        serde_json::from_str::<Value>(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no code: {}", self.stdout))
    }

    /// stdout as JSON (the whole of stdout must be one document).
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", self.stdout))
    }
}

/// Runs this package's `aws-cni` binary inside the network namespace `netns` with `env` and
/// `stdin`, as a runtime would.
fn plugin(netns: &str, env: &[(&str, &str)], stdin: &str) -> Run {
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, env!("CARGO_BIN_EXE_aws-cni")])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        rc: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// Kernel state of a test namespace.
async fn snapshot(ns: &TestNetns) -> NetnsState {
    NetnsState::capture_in(&Netns::open(ns.path()).unwrap())
        .await
        .unwrap()
}

/// How the stand-in answers `DelNetwork`.
#[derive(Clone)]
enum DelAnswer {
    Error(Code, &'static str),
    /// `Success=false`.
    Refused,
    Released,
}

#[derive(Clone)]
struct StandIn(Arc<Mutex<DelAnswer>>);

fn allocation() -> Vec<IpAllocationMetadata> {
    vec![IpAllocationMetadata {
        i_pv4_addr: POD_IP.into(),
        device_number: DEVICE,
        route_table_id: TABLE,
        ..Default::default()
    }]
}

#[tonic::async_trait]
impl CniBackend for StandIn {
    async fn add_network(
        &self,
        _: Request<AddNetworkRequest>,
    ) -> Result<Response<AddNetworkReply>, Status> {
        Ok(Response::new(AddNetworkReply {
            success: true,
            ip_allocation_metadata: allocation(),
            ..Default::default()
        }))
    }

    async fn del_network(
        &self,
        _: Request<DelNetworkRequest>,
    ) -> Result<Response<DelNetworkReply>, Status> {
        let answer = self.0.lock().unwrap().clone();
        match answer {
            DelAnswer::Error(code, msg) => Err(Status::new(code, msg)),
            DelAnswer::Refused => Ok(Response::new(DelNetworkReply::default())),
            DelAnswer::Released => Ok(Response::new(DelNetworkReply {
                success: true,
                ip_allocation_metadata: allocation(),
                ..Default::default()
            })),
        }
    }
}

/// The namespaces, the stand-in and the plugin's configuration of one test.
struct Bench {
    node: TestNetns,
    pod: TestNetns,
    dir: PathBuf,
    socket: String,
    log: PathBuf,
    conf: String,
    answer: Arc<Mutex<DelAnswer>>,
}

impl Bench {
    fn start(tag: &str) -> Bench {
        let dir = std::env::temp_dir().join(format!("cni-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("ipamd.sock");
        let log = dir.join("plugin.log");
        let answer = Arc::new(Mutex::new(DelAnswer::Released));
        let listener = rpc::server::bind_unix(&socket).unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(CniBackendServer::new(StandIn(answer.clone())))
                .serve_with_incoming(listener),
        );
        let conf = format!(
            r#"{{"cniVersion":"0.4.0","name":"aws-cni","type":"aws-cni","vethPrefix":"eni","mtu":"9001","pluginLogFile":"{}","pluginLogLevel":"Debug"}}"#,
            log.display()
        );
        Bench {
            node: TestNetns::new(&format!("cni-{tag}")),
            pod: TestNetns::new(&format!("cni-{tag}-p")),
            socket: socket.display().to_string(),
            dir,
            log,
            conf,
            answer,
        }
    }

    fn run(&self, command: &str, socket: &str, stdin: &str) -> Run {
        let path = self.pod.path();
        let env = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "cdel"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", path.as_str()),
            ("CNI_ARGS", ARGS),
            ("IPAMD_GRPC_SOCKET", socket),
        ];
        tokio::task::block_in_place(|| plugin(&self.node.0, &env, stdin))
    }

    /// ADD through the stand-in; returns the result (the 0.4.0 format).
    fn add(&self) -> Value {
        let r = self.run("ADD", &self.socket, &self.conf);
        assert_eq!(r.rc, 0, "{} {}", r.stdout, r.stderr);
        let result = r.json();
        assert_eq!(result["cniVersion"], "0.4.0");
        assert_eq!(result["ips"][0]["address"], format!("{POD_IP}/32"));
        assert_eq!(result["ips"][0]["version"], "4", "0.4.0 IP entry: {result}");
        assert!(self.wired(), "ADD wired the pod");
        result
    }

    /// DEL with `answer` from the stand-in (`socket` may point nowhere) and `prev` as
    /// prevResult.
    fn del(&self, answer: DelAnswer, socket: &str, prev: Option<&Value>) -> Run {
        *self.answer.lock().unwrap() = answer;
        let mut conf: Value = serde_json::from_str(&self.conf).unwrap();
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        self.run("DEL", socket, &conf.to_string())
    }

    /// Whether the pod's host veth is on the node.
    fn wired(&self) -> bool {
        let veth = net::names::host_veth_name("eni", "default", "stuck", 0);
        self.node.ip(&["-o", "link"]).contains(&veth)
    }

    /// Lines of the plugin log with `text`.
    fn logged(&self, text: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(text))
            .count()
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_with_an_ipamd_error_tears_down_from_prev_result_and_succeeds() {
    let b = Bench::start("delerr");
    let before = (snapshot(&b.node).await, snapshot(&b.pod).await);

    // DelNetwork fails with an error other than unknown pod: torn down, success, logged.
    let result = b.add();
    let r = b.del(
        DelAnswer::Error(Code::Internal, "boom"),
        &b.socket,
        Some(&result),
    );
    assert_eq!(
        (r.rc, r.stdout.as_str()),
        (0, ""),
        "{} {}",
        r.stdout,
        r.stderr
    );
    assert_eq!(snapshot(&b.node).await, before.0, "node torn down");
    assert_eq!(snapshot(&b.pod).await, before.1, "pod torn down");
    assert_eq!(b.logged(TORN_DOWN), 1);
    let log = std::fs::read_to_string(&b.log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains(TORN_DOWN) && l.contains("WARN") && l.contains("boom")),
        "{log}"
    );

    // ipamd unreachable: the same teardown and message.
    let result = b.add();
    let r = b.del(
        DelAnswer::Released,
        "/nonexistent/ipamd.sock",
        Some(&result),
    );
    assert_eq!((r.rc, r.stdout.as_str()), (0, ""), "{}", r.stdout);
    assert_eq!(snapshot(&b.node).await, before.0, "node torn down");
    assert_eq!(b.logged(TORN_DOWN), 2);

    // An error without (usable) prevResult: nothing to tear down, still success.
    let r = b.del(DelAnswer::Error(Code::Unavailable, "gone"), &b.socket, None);
    assert_eq!((r.rc, r.stdout.as_str()), (0, ""), "{}", r.stdout);
    assert_eq!(b.logged("DEL: ipamd error, no usable prevResult"), 1);
    assert_eq!(b.logged(TORN_DOWN), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_success_false_fails_and_unknown_pod_succeeds() {
    let b = Bench::start("delref");
    let before = (snapshot(&b.node).await, snapshot(&b.pod).await);
    let result = b.add();

    // Success=false is a DEL error (ipamd still holds the address); nothing torn down.
    let r = b.del(DelAnswer::Refused, &b.socket, Some(&result));
    assert_eq!((r.rc, r.code()), (1, 100), "{}", r.stdout);
    assert!(r.stdout.contains("delete request"), "{}", r.stdout);
    assert!(b.wired(), "Success=false tears nothing down");

    // Unknown pod (a repeated DEL): success, and nothing is torn down even with a
    // prevResult, as upstream: the address and its rules may be another pod's by now.
    let r = b.del(
        DelAnswer::Error(
            Code::NotFound,
            "1 error occurred:\n\t* datastore: unknown pod\n\n",
        ),
        &b.socket,
        Some(&result),
    );
    assert_eq!((r.rc, r.stdout.as_str()), (0, ""), "{}", r.stdout);
    assert_eq!(b.logged("DEL: ipamd error"), 0);
    assert!(b.wired(), "unknown pod tears nothing down");

    // Released: torn down with what ipamd returned.
    let r = b.del(DelAnswer::Released, &b.socket, None);
    assert_eq!((r.rc, r.stdout.as_str()), (0, ""), "{}", r.stdout);
    assert_eq!(snapshot(&b.node).await, before.0);
    assert_eq!(snapshot(&b.pod).await, before.1);
}

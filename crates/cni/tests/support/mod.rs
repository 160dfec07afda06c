//! A stand-in ipamd (a tonic `CNIBackend` on a Unix socket) and the real `aws-cni` binary run
//! in network namespaces made by the test: the bench of the plugin's own tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ec2_emulator::testing::TestNetns;
use net::state::NetnsState;
use rpc::{
    AddNetworkReply, AddNetworkRequest, CniBackend, CniBackendServer, DelNetworkReply,
    DelNetworkRequest, DeleteNpReply, DeleteNpRequest, EnforceNpReply, EnforceNpRequest,
    IpAllocationMetadata, NpBackend, NpBackendServer,
};
use serde_json::Value;
use tonic::{Code, Request, Response, Status};

/// The address, device number and route table the stand-in hands out.
pub const POD_IP: &str = "10.0.0.20";
pub const DEVICE: i32 = 2;
pub const TABLE: i32 = 3;
pub const ARGS: &str = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=stuck";
/// The stable log message of the teardown (operators grep and count it).
pub const TORN_DOWN: &str = "DEL: ipamd error, torn down from prevResult";

pub use cni::testing::Run;

/// Runs this package's `aws-cni` binary inside the network namespace `netns` with `env` and
/// `stdin`, as a runtime would.
pub fn plugin(netns: &str, env: &[(&str, &str)], stdin: &str) -> Run {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_aws-cni"));
    cni::testing::run_plugin(bin, Some(netns), env, stdin)
}

/// Kernel state of a test namespace.
pub async fn snapshot(ns: &TestNetns) -> NetnsState {
    ns.state().await
}

/// How the stand-in answers `DelNetwork`.
#[derive(Clone)]
pub enum DelAnswer {
    Error(Code, &'static str),
    /// `Success=false`.
    Refused,
    Released,
}

/// The stand-in ipamd: its `DelNetwork` answer and the `NetworkPolicyMode` of its replies.
#[derive(Clone)]
struct StandIn(Arc<Mutex<DelAnswer>>, Arc<Mutex<String>>);

/// How the stand-in network policy agent answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpAnswer {
    Enforced,
    /// `Success=false`.
    Refused,
    /// A gRPC error.
    Failed,
}

/// The stand-in network policy agent (`rpc.NPBackend`): records each call as
/// `"<method> <namespace>/<name> <mode> <interfaces>"` and answers as told.
#[derive(Clone)]
pub struct NpStandIn {
    pub calls: Arc<Mutex<Vec<String>>>,
    pub answer: Arc<Mutex<NpAnswer>>,
}

impl NpStandIn {
    fn reply(&self, call: String) -> Result<bool, Status> {
        self.calls.lock().unwrap().push(call);
        match *self.answer.lock().unwrap() {
            NpAnswer::Enforced => Ok(true),
            NpAnswer::Refused => Ok(false),
            NpAnswer::Failed => Err(Status::internal("policy map full")),
        }
    }
}

#[tonic::async_trait]
impl NpBackend for NpStandIn {
    async fn enforce_np_to_pod(
        &self,
        r: Request<EnforceNpRequest>,
    ) -> Result<Response<EnforceNpReply>, Status> {
        let r = r.into_inner();
        let call = format!(
            "EnforceNpToPod {}/{} {} {}",
            r.k8s_pod_namespace, r.k8s_pod_name, r.network_policy_mode, r.interface_count
        );
        let success = self.reply(call)?;
        Ok(Response::new(EnforceNpReply { success }))
    }

    async fn delete_pod_np(
        &self,
        r: Request<DeleteNpRequest>,
    ) -> Result<Response<DeleteNpReply>, Status> {
        let r = r.into_inner();
        let success = self.reply(format!(
            "DeletePodNp {}/{}",
            r.k8s_pod_namespace, r.k8s_pod_name
        ))?;
        Ok(Response::new(DeleteNpReply { success }))
    }
}

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
            network_policy_mode: self.1.lock().unwrap().clone(),
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
                network_policy_mode: self.1.lock().unwrap().clone(),
                ..Default::default()
            })),
        }
    }
}

/// The namespaces, the stand-in and the plugin's configuration of one test.
pub struct Bench {
    pub node: TestNetns,
    pub pod: TestNetns,
    pub dir: PathBuf,
    pub socket: String,
    pub log: PathBuf,
    pub conf: String,
    pub answer: Arc<Mutex<DelAnswer>>,
    /// `NetworkPolicyMode` in the stand-in ipamd's replies (empty: no policy agent calls).
    pub np_mode: Arc<Mutex<String>>,
    /// The stand-in network policy agent, serving on `npa_socket`.
    pub npa: NpStandIn,
    pub npa_socket: String,
}

impl Bench {
    pub fn start(tag: &str) -> Bench {
        let dir = std::env::temp_dir().join(format!("cni-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("ipamd.sock");
        let log = dir.join("plugin.log");
        let answer = Arc::new(Mutex::new(DelAnswer::Released));
        let np_mode = Arc::new(Mutex::new(String::new()));
        let listener = rpc::server::bind_unix(&socket).unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(CniBackendServer::new(StandIn(
                    answer.clone(),
                    np_mode.clone(),
                )))
                .serve_with_incoming(listener),
        );
        let npa_socket = dir.join("npa.sock");
        let npa = NpStandIn {
            calls: Arc::default(),
            answer: Arc::new(Mutex::new(NpAnswer::Enforced)),
        };
        let listener = rpc::server::bind_unix(&npa_socket).unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(NpBackendServer::new(npa.clone()))
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
            np_mode,
            npa,
            npa_socket: npa_socket.display().to_string(),
        }
    }

    pub fn run(&self, command: &str, socket: &str, stdin: &str) -> Run {
        let path = self.pod.path();
        let env = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "cdel"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", path.as_str()),
            ("CNI_ARGS", ARGS),
            ("IPAMD_GRPC_SOCKET", socket),
            ("NPA_GRPC_SOCKET", self.npa_socket.as_str()),
        ];
        tokio::task::block_in_place(|| plugin(&self.node.0, &env, stdin))
    }

    /// ADD through the stand-in; returns the result (the 0.4.0 format).
    pub fn add(&self) -> Value {
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
    pub fn del(&self, answer: DelAnswer, socket: &str, prev: Option<&Value>) -> Run {
        *self.answer.lock().unwrap() = answer;
        let mut conf: Value = serde_json::from_str(&self.conf).unwrap();
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        self.run("DEL", socket, &conf.to_string())
    }

    /// Whether the node routes the pod's address (to its veth): the pod is wired.
    pub fn wired(&self) -> bool {
        self.node
            .ip(&["route", "show", "table", "main"])
            .lines()
            .any(|l| l.starts_with(&format!("{POD_IP} ")))
    }

    /// Whether the pod's host veth is on the node (DEL leaves it to go with the namespace).
    pub fn has_veth(&self) -> bool {
        self.node.has_link(&Self::veth())
    }

    fn veth() -> String {
        net::names::host_veth_name("eni", "default", "stuck", 0)
    }

    /// What the runtime does after a successful DEL: removes the pod's network namespace
    /// (a fresh one of the same name takes its place); waits until the veth pair went with it.
    pub async fn runtime_removes_pod_netns(&self) {
        self.pod.recreate();
        self.node.wait_link_gone(&Self::veth()).await;
    }

    /// Lines of the plugin log with `text`.
    pub fn logged(&self, text: &str) -> usize {
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

//! Hostile input: gRPC requests with huge, empty and non-UTF-8 fields (encoded by hand, so
//! that the bytes on the wire are exactly the hostile ones), malformed CNI stdin, `CNI_ARGS`
//! and `prevResult`, damaged checkpoint files, environment values out of range. Each must get
//! a clear error (or, for a merely unusual request, a normal answer), never a panic, and
//! nothing may be lost: the invariant runs after them.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use tonic::codegen::http::uri::PathAndQuery;

use super::Rng;
use super::pods::{Kubelet, conf, run_plugin};
use crate::bins::workspace_bin;

/// The string fields of a pod's `AddNetworkRequest` / `DelNetworkRequest`, as raw bytes so that
/// invalid UTF-8 reaches the server; [`RawPodRequest::wire`] lays them out for either call.
#[derive(Debug, Clone, PartialEq)]
pub struct RawPodRequest {
    pub pod_name: Vec<u8>,
    pub pod_namespace: Vec<u8>,
    pub infra_container_id: Vec<u8>,
    pub if_name: Vec<u8>,
    pub network_name: Vec<u8>,
    pub container_id: Vec<u8>,
}

/// The two calls a hostile request is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodCall {
    AddNetwork,
    DelNetwork,
}

impl RawPodRequest {
    /// The request as `call`'s message: the field numbers of proto/rpc.proto
    /// (`AddNetworkRequest`, or `DelNetworkRequest` with `Reason` "PodDeleted").
    pub fn wire(&self, call: PodCall) -> WireRequest {
        let common = [
            (1, &self.pod_name),
            (2, &self.pod_namespace),
            (3, &self.infra_container_id),
        ];
        let reason = b"PodDeleted".to_vec();
        let rest = match call {
            PodCall::AddNetwork => vec![
                (5, &self.if_name),
                (6, &self.network_name),
                (7, &self.container_id),
            ],
            PodCall::DelNetwork => vec![
                (5, &reason),
                (6, &self.if_name),
                (7, &self.network_name),
                (8, &self.container_id),
            ],
        };
        let fields = common.into_iter().chain(rest);
        WireRequest(fields.map(|(tag, v)| (tag, v.clone())).collect())
    }
}

/// A message of length-delimited fields `(field number, bytes)`, encoded as given (prost's
/// wire format, so it goes through tonic's codec); the reply side never decodes one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WireRequest(Vec<(u32, Vec<u8>)>);

impl prost::Message for WireRequest {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        use prost::encoding::{WireType, encode_key, encode_varint};
        for (tag, value) in &self.0 {
            encode_key(*tag, WireType::LengthDelimited, buf);
            encode_varint(value.len() as u64, buf);
            buf.put_slice(value);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        use prost::encoding::{encoded_len_varint, key_len};
        self.0
            .iter()
            .map(|(tag, v)| key_len(*tag) + encoded_len_varint(v.len() as u64) + v.len())
            .sum()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// What a hostile gRPC call got back.
#[derive(Debug)]
pub enum GrpcAnswer {
    /// A status error (the clear refusal).
    Refused(String),
    /// `success` of the reply.
    Answered(bool),
}

/// A field of a hostile request: empty, huge, or not UTF-8.
fn hostile_field(rng: &mut Rng) -> Vec<u8> {
    match rng.range(0, 5) {
        0 => Vec::new(),
        1 => vec![b'a'; rng.range(64 * 1024, 1024 * 1024) as usize],
        2 => vec![0xff, 0xfe, b'x', 0xc3],
        3 => (0..rng.range(1, 300))
            .map(|_| rng.next_u64() as u8)
            .collect(),
        _ => b"pod\0with\nnul".to_vec(),
    }
}

/// A request with one to three hostile fields; the rest are a normal pod's.
pub fn hostile_request(rng: &mut Rng, n: u64) -> RawPodRequest {
    let mut r = RawPodRequest {
        pod_name: format!("hostile-{n}").into_bytes(),
        pod_namespace: b"default".to_vec(),
        infra_container_id: format!("hostile-cid-{n}").into_bytes(),
        if_name: b"eth0".to_vec(),
        network_name: b"aws-cni".to_vec(),
        container_id: format!("hostile-cid-{n}").into_bytes(),
    };
    for _ in 0..rng.range(1, 4) {
        let f = hostile_field(rng);
        match rng.range(0, 5) {
            0 => r.pod_name = f,
            1 => r.pod_namespace = f,
            2 => r.if_name = f,
            3 => r.network_name = f,
            _ => {
                r.container_id = f.clone();
                r.infra_container_id = f;
            }
        }
    }
    r
}

/// One unary `call` with `req` on the agent's socket.
pub async fn grpc_call(
    socket: &std::path::Path,
    call: PodCall,
    req: &RawPodRequest,
) -> Result<GrpcAnswer, String> {
    let channel = rpc::client::connect(
        &format!("unix://{}", socket.display()),
        Some(Duration::from_secs(2)),
    )
    .await
    .map_err(|e| format!("connect: {e}"))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| format!("not ready: {e}"))?;
    let path =
        PathAndQuery::try_from(format!("/rpc.CNIBackend/{call:?}")).map_err(|e| e.to_string())?;
    // Both replies start with `bool success = 1`.
    let codec: tonic_prost::ProstCodec<WireRequest, rpc::AddNetworkReply> =
        tonic_prost::ProstCodec::default();
    match grpc
        .unary(tonic::Request::new(req.wire(call)), path, codec)
        .await
    {
        Ok(reply) => Ok(GrpcAnswer::Answered(reply.into_inner().success)),
        Err(status) => Ok(GrpcAnswer::Refused(format!(
            "{:?}: {}",
            status.code(),
            status.message()
        ))),
    }
}

/// A malformed network configuration for the plugin's stdin.
pub fn hostile_stdin(rng: &mut Rng, log: &std::path::Path) -> String {
    let good = conf(log, None);
    match rng.range(0, 8) {
        0 => String::new(),
        1 => good[..rng.range(1, good.len() as u64) as usize].to_string(),
        2 => good.replace("\"1.0.0\"", "1"),
        3 => good.replace("\"9001\"", "\"-5\""),
        4 => good.replace(
            "aws-cni\"",
            "aws-cni\",\"prevResult\":{\"ips\":[{\"address\":\"999.1.1.1/33\"}]}",
        ),
        5 => good.replace("aws-cni\"", "aws-cni\",\"prevResult\":\"not an object\""),
        6 => "[".repeat(rng.range(1, 20_000) as usize),
        _ => (0..rng.range(1, 500))
            .map(|_| (rng.range(32, 127) as u8) as char)
            .collect(),
    }
}

/// A malformed `CNI_ARGS` (as bytes: it may be invalid UTF-8).
pub fn hostile_cni_args(rng: &mut Rng) -> Vec<u8> {
    match rng.range(0, 6) {
        0 => b"K8S_POD_NAME".to_vec(),
        1 => b";;==;=".to_vec(),
        2 => format!(
            "K8S_POD_NAMESPACE=default;K8S_POD_NAME={}",
            "x".repeat(rng.range(300, 70_000) as usize)
        )
        .into_bytes(),
        3 => vec![b'K', b'=', 0xff, 0xfe],
        4 => b"IgnoreUnknown=maybe;K8S_POD_NAME=;K8S_POD_NAMESPACE=".to_vec(),
        _ => (0..rng.range(1, 200))
            .map(|_| rng.range(1, 256) as u8)
            .collect(),
    }
}

/// Runs the plugin with a raw `CNI_ARGS`: (exit code, stdout, stderr).
pub fn plugin_with_raw_args(
    k: &Kubelet,
    command: &str,
    cid: &str,
    netns: &str,
    args: Vec<u8>,
    stdin: &str,
) -> (Option<i32>, String, String) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &k.node_ns])
        .arg(workspace_bin("aws-cni"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_NETNS", netns)
        .env("CNI_PATH", "/opt/cni/bin")
        .env("IPAMD_GRPC_SOCKET", &k.socket)
        .env("CNI_ARGS", OsString::from_vec(args))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn aws-cni");
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("plugin output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Judges one plugin run on hostile input: `Err` on a panic, or a failure without a CNI
/// error document.
pub fn judge_plugin(what: &str, rc: Option<i32>, stdout: &str, stderr: &str) -> Result<(), String> {
    if stderr.contains("panicked") {
        return Err(format!("{what}: panic: {stderr}"));
    }
    match rc {
        Some(0) => Ok(()),
        Some(_) => {
            let doc: Option<serde_json::Value> = serde_json::from_str(stdout).ok();
            match doc.as_ref().and_then(|d| d["code"].as_u64()) {
                Some(_)
                    if doc
                        .as_ref()
                        .and_then(|d| d["msg"].as_str())
                        .is_some_and(|m| !m.is_empty()) =>
                {
                    Ok(())
                }
                _ => Err(format!(
                    "{what}: failed without a clear CNI error: {stdout:?}"
                )),
            }
        }
        None => Err(format!("{what}: killed by a signal")),
    }
}

/// Runs the plugin on a malformed stdin (valid environment).
pub fn plugin_with_stdin(
    k: &Kubelet,
    cid: &str,
    netns: &str,
    stdin: &str,
    command: &str,
) -> Result<(), String> {
    let env = super::pods::cni_env(command, cid, netns, "hostile", &k.socket);
    let r = run_plugin(&k.node_ns, &env, stdin, None);
    judge_plugin(
        &format!("{command} with stdin {:.80?}", stdin),
        r.rc,
        &r.stdout,
        &r.stderr,
    )
}

/// Damages a checkpoint document: truncated, corrupted bytes, or a future version.
pub fn damaged_checkpoint(rng: &mut Rng, good: &str) -> (String, &'static str) {
    match rng.range(0, 3) {
        0 => (
            good[..rng.range(0, good.len().max(1) as u64) as usize].to_string(),
            "truncated",
        ),
        1 => {
            let mut b = good.as_bytes().to_vec();
            for _ in 0..rng.range(1, 8) {
                let i = rng.range(0, b.len().max(1) as u64) as usize;
                if let Some(x) = b.get_mut(i) {
                    *x = b"{}[]\",:\xff"[rng.range(0, 8) as usize];
                }
            }
            (String::from_utf8_lossy(&b).into_owned(), "corrupted")
        }
        _ => (
            good.replace("vpc-cni-ipam/1", "vpc-cni-ipam/9"),
            "future version",
        ),
    }
}

/// Environment values out of range, each with the variable the error must name.
pub const BAD_ENV: &[(&str, &str)] = &[
    ("WARM_IP_TARGET", "-1"),
    ("WARM_IP_TARGET", "18446744073709551616"),
    ("MINIMUM_IP_TARGET", "lots"),
    ("WARM_ENI_TARGET", "-3"),
    ("WARM_PREFIX_TARGET", "1e9"),
    ("MAX_ENI", "many"),
    ("IP_COOLDOWN_PERIOD", "-30"),
    ("AWS_VPC_K8S_CNI_VETHPREFIX", "eth"),
    ("AWS_VPC_ENI_MTU", "70000"),
    ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "sometimes"),
    ("ENABLE_PREFIX_DELEGATION", "perhaps"),
    ("AWS_VPC_K8S_CNI_LOGLEVEL", "LOUD"),
];

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn sample() -> RawPodRequest {
        RawPodRequest {
            pod_name: b"p".to_vec(),
            pod_namespace: b"ns".to_vec(),
            infra_container_id: b"infra".to_vec(),
            if_name: b"eth0".to_vec(),
            network_name: b"aws-cni".to_vec(),
            container_id: b"cid".to_vec(),
        }
    }

    #[test]
    fn the_wire_layouts_are_the_protos() {
        let bytes = sample().wire(PodCall::AddNetwork).encode_to_vec();
        let add = rpc::AddNetworkRequest::decode(bytes.as_slice()).expect("an AddNetworkRequest");
        assert_eq!(
            (add.k8s_pod_name.as_str(), add.k8s_pod_namespace.as_str()),
            ("p", "ns")
        );
        assert_eq!(
            (
                add.k8s_pod_infra_container_id.as_str(),
                add.container_id.as_str()
            ),
            ("infra", "cid")
        );
        assert_eq!(
            (add.if_name.as_str(), add.network_name.as_str()),
            ("eth0", "aws-cni")
        );
        let bytes = sample().wire(PodCall::DelNetwork).encode_to_vec();
        let del = rpc::DelNetworkRequest::decode(bytes.as_slice()).expect("a DelNetworkRequest");
        assert_eq!(
            (del.k8s_pod_name.as_str(), del.reason.as_str()),
            ("p", "PodDeleted")
        );
        assert_eq!(
            (
                del.k8s_pod_infra_container_id.as_str(),
                del.container_id.as_str()
            ),
            ("infra", "cid")
        );
        assert_eq!(
            (del.if_name.as_str(), del.network_name.as_str()),
            ("eth0", "aws-cni")
        );
    }

    #[test]
    fn invalid_utf8_reaches_the_wire_as_it_is() {
        let mut r = sample();
        r.pod_name = vec![0xff, 0xfe];
        let bytes = r.wire(PodCall::AddNetwork).encode_to_vec();
        assert_eq!(bytes.len(), r.wire(PodCall::AddNetwork).encoded_len());
        assert_eq!(&bytes[..4], &[0x0a, 2, 0xff, 0xfe]);
        assert!(rpc::AddNetworkRequest::decode(bytes.as_slice()).is_err());
    }
}

//! Round trip over a real Unix socket: a tonic server with `rpc.CNIBackend`,
//! `rpc.ConfigServerBackend` and `grpc.health.v1.Health` bound through `rpc::server::bind_unix`,
//! called through `rpc::client` (tonic Channel over `tokio::net::UnixStream`).

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::Path;
use std::time::Duration;

use rpc::health::{HealthCheckRequest, HealthClient, WireServingStatus};
use rpc::{
    AddNetworkReply, AddNetworkRequest, CniBackend, CniBackendClient, CniBackendServer,
    ConfigServerBackend, ConfigServerBackendClient, ConfigServerBackendServer, DelNetworkReply,
    DelNetworkRequest, IpAllocationMetadata, NetworkPolicyAgentConfigReply,
};
use tonic::{Code, Request, Response, Status};

/// Hands out `10.0.0.<len(pod name)>` and fails DEL of unknown pods like upstream.
struct Echo;

#[tonic::async_trait]
impl CniBackend for Echo {
    async fn add_network(
        &self,
        req: Request<AddNetworkRequest>,
    ) -> Result<Response<AddNetworkReply>, Status> {
        let req = req.into_inner();
        if !req.client_version.is_empty() {
            return Err(Status::failed_precondition("wrong client version"));
        }
        Ok(Response::new(AddNetworkReply {
            success: true,
            ip_allocation_metadata: vec![IpAllocationMetadata {
                i_pv4_addr: format!("10.0.0.{}", req.k8s_pod_name.len()),
                device_number: 0,
                route_table_id: 254,
                ..Default::default()
            }],
            vp_cv4_cid_rs: vec!["10.0.0.0/16".into()],
            network_policy_mode: req.k8s_pod_namespace,
            ..Default::default()
        }))
    }

    async fn del_network(
        &self,
        req: Request<DelNetworkRequest>,
    ) -> Result<Response<DelNetworkReply>, Status> {
        let _ = req;
        Err(Status::unknown(
            "1 error occurred:\n\t* datastore: unknown pod\n\n",
        ))
    }
}

struct Cfg;

#[tonic::async_trait]
impl ConfigServerBackend for Cfg {
    async fn get_network_policy_configs(
        &self,
        _: Request<()>,
    ) -> Result<Response<NetworkPolicyAgentConfigReply>, Status> {
        Ok(Response::new(NetworkPolicyAgentConfigReply {
            network_policy_mode: "standard".into(),
            region: "us-west-2".into(),
            ..Default::default()
        }))
    }
}

async fn start_server(sock: &Path) -> tokio::sync::oneshot::Sender<()> {
    let incoming = rpc::server::bind_unix(sock).expect("bind");
    let (_reporter, health) = rpc::health::serving().await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(CniBackendServer::new(Echo))
            .add_service(ConfigServerBackendServer::new(Cfg))
            .add_service(health)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            })
            .await
            .expect("server");
    });
    tx
}

#[tokio::test]
async fn add_del_config_and_health_over_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    // A nested, not yet existing directory like /var/run/aws-node, with a stale file in the way.
    let sock = dir.path().join("aws-node/ipamd.sock");
    std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
    std::fs::write(&sock, b"stale").unwrap();

    let stop = start_server(&sock).await;

    let meta = std::fs::metadata(&sock).unwrap();
    assert!(
        meta.file_type().is_socket(),
        "stale file replaced by the socket"
    );
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    let target = format!("unix://{}", sock.display());
    let channel = rpc::client::connect(&target, Some(Duration::from_secs(2)))
        .await
        .expect("connect");

    let mut cni = CniBackendClient::new(channel.clone());
    let reply = cni
        .add_network(AddNetworkRequest {
            client_version: String::new(),
            k8s_pod_name: "nginx".into(),
            k8s_pod_namespace: "standard".into(),
            container_id: "c1".into(),
            if_name: "eth0".into(),
            network_name: "aws-cni".into(),
            ..Default::default()
        })
        .await
        .expect("AddNetwork")
        .into_inner();
    assert!(reply.success);
    assert_eq!(reply.ip_allocation_metadata.len(), 1);
    assert_eq!(reply.ip_allocation_metadata[0].i_pv4_addr, "10.0.0.5");
    assert_eq!(reply.ip_allocation_metadata[0].route_table_id, 254);
    assert_eq!(reply.vp_cv4_cid_rs, vec!["10.0.0.0/16"]);
    assert_eq!(reply.network_policy_mode, "standard");

    let err = cni
        .add_network(AddNetworkRequest {
            client_version: "v9".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let err = cni
        .del_network(DelNetworkRequest::default())
        .await
        .unwrap_err();
    assert!(err.message().contains("datastore: unknown pod"), "{err:?}");

    let mut cfg = ConfigServerBackendClient::new(channel.clone());
    let c = cfg
        .get_network_policy_configs(())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.network_policy_mode, "standard");
    assert_eq!(c.region, "us-west-2");

    let mut health = HealthClient::new(channel.clone());
    for service in ["", rpc::HEALTH_SERVICE_NAME] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("Check({service:?}): {e:?}"))
            .into_inner();
        assert_eq!(
            r.status(),
            WireServingStatus::Serving,
            "service {service:?}"
        );
    }
    let err = health
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // ipamd does not serve NPBackend.
    let mut np = rpc::NpBackendClient::new(channel.clone());
    let err = np
        .enforce_np_to_pod(rpc::EnforceNpRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);

    // A lazily connected channel (grpc-go's non-blocking dial) works too.
    let mut lazy = CniBackendClient::new(rpc::client::connect_lazy(sock.to_str().unwrap()));
    assert!(
        lazy.add_network(AddNetworkRequest::default())
            .await
            .unwrap()
            .into_inner()
            .success
    );

    let _ = stop.send(());
}

#[tokio::test]
async fn nobody_listening() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("npa.sock");
    let target = format!("unix://{}", sock.display());

    // Blocking dial fails.
    assert!(
        rpc::client::connect(&target, Some(Duration::from_millis(500)))
            .await
            .is_err()
    );

    // Non-blocking dial fails on the first RPC with Unavailable.
    let mut np = rpc::NpBackendClient::new(rpc::client::connect_lazy(&target));
    let err = np
        .delete_pod_np(rpc::DeleteNpRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}

#[test]
fn socket_path_parsing() {
    use rpc::client::socket_path;
    assert_eq!(
        socket_path(rpc::DEFAULT_IPAMD_ADDR),
        Path::new(rpc::DEFAULT_IPAMD_SOCKET)
    );
    assert_eq!(
        socket_path(rpc::DEFAULT_NPA_ADDR),
        Path::new(rpc::DEFAULT_NPA_SOCKET)
    );
    assert_eq!(socket_path("unix:/run/x.sock"), Path::new("/run/x.sock"));
    assert_eq!(socket_path("/run/x.sock"), Path::new("/run/x.sock"));
    assert_eq!(rpc::DEFAULT_IPAMD_SOCKET, "/var/run/aws-node/ipamd.sock");
    assert_eq!(rpc::DEFAULT_NPA_SOCKET, "/var/run/aws-node/npa.sock");
    assert_eq!(rpc::HEALTH_SERVICE_NAME, "grpc.health.v1.aws-node");
}

/// Python's grpcio (a client upstream's Go server accepts) over the Unix socket, with its
/// default `:authority` and with `localhost`; `None` when grpcio is not installed.
fn grpcio_health_check(sock: &Path, authority: Option<&str>) -> Option<(bool, String)> {
    let script = r#"
import sys, grpc
opts = [("grpc.default_authority", sys.argv[2])] if len(sys.argv) > 2 else []
with grpc.insecure_channel(sys.argv[1], options=opts) as ch:
    try:
        print("OK", ch.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5).hex())
    except grpc.RpcError as e:
        print("ERR", e.code(), e.details())
"#;
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-c", script, &format!("unix://{}", sock.display())]);
    cmd.args(authority);
    let out = cmd.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if String::from_utf8_lossy(&out.stderr).contains("No module named 'grpc'") {
        return None;
    }
    Some((
        text.starts_with("OK 0801"),
        format!("{text} {}", String::from_utf8_lossy(&out.stderr)),
    ))
}

#[tokio::test]
async fn grpcio_clients_are_served_whatever_authority_they_send() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ipamd.sock");
    let _stop = start_server(&sock).await;
    for authority in [None, Some("localhost")] {
        let sock = sock.clone();
        let got = tokio::task::spawn_blocking(move || grpcio_health_check(&sock, authority))
            .await
            .unwrap();
        let Some((serving, text)) = got else {
            panic!("python3 with grpcio is needed (scripts/install-deps.sh installs it)");
        };
        assert!(serving, "authority {authority:?}: {text}");
    }
}

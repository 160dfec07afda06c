//! The gRPC protocol of aws-node, wire-compatible with upstream amazon-vpc-cni-k8s.
//!
//! * [`rpc`](mod@rpc): prost messages and tonic client/server stubs generated (by `build.rs`, with
//!   the pure-Rust `protox` compiler, no system `protoc`) from `proto/rpc.proto`, package `rpc`:
//!   `CNIBackend` (served by ipamd, called by aws-cni), `NPBackend` (served by the network policy
//!   agent, called by aws-cni) and `ConfigServerBackend` (served by ipamd, called by the network
//!   policy agent). The most used items are re-exported at the crate root.
//! * [`health`]: `grpc.health.v1` from the `tonic-health` crate (one source for ipamd and
//!   grpc-health-probe), plus [`HEALTH_SERVICE_NAME`].
//! * [`FILE_DESCRIPTOR_SET`]: the encoded descriptor set of `rpc.proto` and its imports (for gRPC
//!   server reflection).
//! * Feature `client`: module `client` connects a tonic `Channel` over a Unix socket.
//! * Feature `server`: module `server` binds the Unix listener the way upstream ipamd does;
//!   module `reflection` builds gRPC server reflection (`grpc.reflection.v1`/`v1alpha`).
//!
//! # Rust names of the upstream field names
//!
//! prost derives snake_case names mechanically from upstream's mixed-case field names; the
//! non-obvious ones are:
//!
//! | proto field | Rust field |
//! |---|---|
//! | `IPv4Addr`, `IPv6Addr` | `i_pv4_addr`, `i_pv6_addr` |
//! | `VPCv4CIDRs`, `VPCv6CIDRs` | `vp_cv4_cid_rs`, `vp_cv6_cid_rs` |
//! | `PodENIMAC`, `PodENISubnetGW` | `pod_enimac`, `pod_eni_subnet_gw` |
//! | `UseExternalSNAT` | `use_external_snat` |
//! | `RequiresMultiNICAttachment` | `requires_multi_nic_attachment` |
//! | `IPAllocationMetadata` (field / message) | `ip_allocation_metadata` / [`IpAllocationMetadata`] |
//! | `NodeIPv4`, `NodeIPv6`, `InstanceID`, `MultiNICEnabled` | `node_i_pv4`, `node_i_pv6`, `instance_id`, `multi_nic_enabled` |
//! | `K8S_POD_NAME`, `ContainerID`, `IfName` | `k8s_pod_name`, `container_id`, `if_name` |

/// Code generated from `proto/rpc.proto` (proto package `rpc`).
#[allow(clippy::all, missing_docs)]
pub mod rpc {
    tonic::include_proto!("rpc");
}

pub use rpc::{
    AddNetworkReply, AddNetworkRequest, DelNetworkReply, DelNetworkRequest, DeleteNpReply,
    DeleteNpRequest, EnforceNpReply, EnforceNpRequest, IpAllocationMetadata,
    NetworkPolicyAgentConfigReply,
    cni_backend_client::CniBackendClient,
    cni_backend_server::{CniBackend, CniBackendServer},
    config_server_backend_client::ConfigServerBackendClient,
    config_server_backend_server::{ConfigServerBackend, ConfigServerBackendServer},
    np_backend_client::NpBackendClient,
    np_backend_server::{NpBackend, NpBackendServer},
};

/// The crate providing `grpc.health.v1`, re-exported so every user links the same version.
pub use tonic_health;

/// Unix socket ipamd serves `rpc.CNIBackend`, `rpc.ConfigServerBackend` and health on.
pub const DEFAULT_IPAMD_SOCKET: &str = "/var/run/aws-node/ipamd.sock";
/// gRPC target of [`DEFAULT_IPAMD_SOCKET`] as upstream clients spell it.
pub const DEFAULT_IPAMD_ADDR: &str = "unix:///var/run/aws-node/ipamd.sock";
/// Unix socket the network policy agent serves `rpc.NPBackend` on.
pub const DEFAULT_NPA_SOCKET: &str = "/var/run/aws-node/npa.sock";
/// gRPC target of [`DEFAULT_NPA_SOCKET`] as upstream clients spell it.
pub const DEFAULT_NPA_ADDR: &str = "unix:///var/run/aws-node/npa.sock";
/// Health-check service name ipamd reports `SERVING` for once node initialisation is done.
pub const HEALTH_SERVICE_NAME: &str = "grpc.health.v1.aws-node";

/// Fully-qualified gRPC method paths (HTTP/2 `:path`), fixed by upstream.
pub mod paths {
    /// `rpc.CNIBackend/AddNetwork`
    pub const ADD_NETWORK: &str = "/rpc.CNIBackend/AddNetwork";
    /// `rpc.CNIBackend/DelNetwork`
    pub const DEL_NETWORK: &str = "/rpc.CNIBackend/DelNetwork";
    /// `rpc.NPBackend/EnforceNpToPod`
    pub const ENFORCE_NP_TO_POD: &str = "/rpc.NPBackend/EnforceNpToPod";
    /// `rpc.NPBackend/DeletePodNp`
    pub const DELETE_POD_NP: &str = "/rpc.NPBackend/DeletePodNp";
    /// `rpc.ConfigServerBackend/GetNetworkPolicyConfigs`
    pub const GET_NETWORK_POLICY_CONFIGS: &str = "/rpc.ConfigServerBackend/GetNetworkPolicyConfigs";
    /// `grpc.health.v1.Health/Check`
    pub const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
}

/// Encoded `google.protobuf.FileDescriptorSet` of `rpc.proto` including its imports
/// (`google/protobuf/empty.proto`) and source info; the reflection service serves it.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/rpc_descriptor.bin"));

/// `grpc.health.v1`, from `tonic-health`.
pub mod health {
    pub use tonic_health::ServingStatus;
    pub use tonic_health::pb::{
        FILE_DESCRIPTOR_SET, HealthCheckRequest, HealthCheckResponse,
        health_check_response::ServingStatus as WireServingStatus,
        health_client::HealthClient,
        health_server::{Health, HealthServer},
    };
    pub use tonic_health::server::{HealthReporter, health_reporter};

    /// A health service as upstream ipamd registers it: `""` and
    /// [`HEALTH_SERVICE_NAME`](crate::HEALTH_SERVICE_NAME) both `SERVING`. Keep the reporter to
    /// flip the status later.
    pub async fn serving() -> (HealthReporter, HealthServer<impl Health>) {
        let (reporter, service) = health_reporter();
        reporter
            .set_service_status("", ServingStatus::Serving)
            .await;
        reporter
            .set_service_status(crate::HEALTH_SERVICE_NAME, ServingStatus::Serving)
            .await;
        (reporter, service)
    }
}

/// Client side over Unix sockets (feature `client`).
#[cfg(feature = "client")]
pub mod client {
    use std::{path::PathBuf, time::Duration};

    use hyper_util::rt::TokioIo;
    use tonic::transport::{Channel, Endpoint, Error, Uri};

    /// Strips an optional `unix://` scheme (`unix:///run/x.sock` and `unix:/run/x.sock` are both
    /// accepted, as gRPC targets), returning the socket path.
    pub fn socket_path(target: &str) -> PathBuf {
        let p = target
            .strip_prefix("unix://")
            .or_else(|| target.strip_prefix("unix:"))
            .unwrap_or(target);
        PathBuf::from(p)
    }

    /// A plaintext HTTP/2 endpoint; the authority is only used for the `:authority` header
    /// (`localhost`, as grpc-go sends for `unix:` targets).
    pub fn endpoint() -> Endpoint {
        Endpoint::from_static("http://localhost")
    }

    fn connector(
        path: PathBuf,
    ) -> impl tower::Service<
        Uri,
        Response = TokioIo<tokio::net::UnixStream>,
        Error = std::io::Error,
        Future = impl Future<Output = std::io::Result<TokioIo<tokio::net::UnixStream>>> + Send,
    > + Send
    + Clone
    + 'static {
        tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                tokio::net::UnixStream::connect(path)
                    .await
                    .map(TokioIo::new)
            }
        })
    }

    /// Connects now (like grpc-go's blocking dial), failing if nothing listens on `target`
    /// (a path or `unix://` target) within `connect_timeout`.
    pub async fn connect(
        target: &str,
        connect_timeout: Option<Duration>,
    ) -> Result<Channel, Error> {
        let mut ep = endpoint();
        if let Some(t) = connect_timeout {
            ep = ep.connect_timeout(t);
        }
        ep.connect_with_connector(connector(socket_path(target)))
            .await
    }

    /// Connects on first use (like grpc-go's non-blocking dial): connection errors surface from
    /// the first RPC as `Unavailable`.
    pub fn connect_lazy(target: &str) -> Channel {
        endpoint().connect_with_connector_lazy(connector(socket_path(target)))
    }
}

pub mod authority;

/// Server side on a Unix socket (feature `server`).
#[cfg(feature = "server")]
pub mod server {
    use std::{
        fs, io, os::unix::fs::DirBuilderExt as _, os::unix::fs::PermissionsExt as _, path::Path,
    };

    pub use tokio_stream::wrappers::UnixListenerStream;

    pub use crate::authority::FixedAuthority;

    /// The connections accepted on a socket from [`bind_unix`].
    pub struct UnixIncoming(UnixListenerStream);

    impl tokio_stream::Stream for UnixIncoming {
        type Item = io::Result<FixedAuthority<tokio::net::UnixStream>>;

        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::pin::Pin::new(&mut self.get_mut().0)
                .poll_next(cx)
                .map(|conn| conn.map(|c| c.map(FixedAuthority::new)))
        }
    }

    /// Binds `path` as upstream ipamd does: create the parent directory (mode 0755), remove a
    /// stale socket file, listen, then `chmod 0660`. Must be called inside a tokio runtime. Serve
    /// with `tonic::transport::Server::builder()...serve_with_incoming(stream)`. Every
    /// connection accepts any `:authority`, as upstream's Go server does
    /// ([`crate::authority`]).
    pub fn bind_unix(path: impl AsRef<Path>) -> io::Result<UnixIncoming> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)?;
        }
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = tokio::net::UnixListener::bind(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o660))?;
        Ok(UnixIncoming(UnixListenerStream::new(listener)))
    }
}

/// gRPC server reflection as upstream ipamd registers it (`reflection.Register` in
/// `pkg/ipamd/rpc_handler.go`): `grpc.reflection.v1` and `v1alpha`, advertising exactly the
/// services ipamd serves (feature `server`).
#[cfg(feature = "server")]
pub mod reflection {
    pub use tonic_reflection;
    pub use tonic_reflection::server::Error;
    use tonic_reflection::server::{Builder, v1, v1alpha};

    /// Fully-qualified names of the reflection services.
    pub const V1_SERVICE_NAME: &str = "grpc.reflection.v1.ServerReflection";
    /// See [`V1_SERVICE_NAME`].
    pub const V1ALPHA_SERVICE_NAME: &str = "grpc.reflection.v1alpha.ServerReflection";

    /// The services ipamd serves, as `ListServices` names them (grpc-go lists the services
    /// registered on the server; `rpc.NPBackend` is in `rpc.proto` but not served by ipamd).
    pub const IPAMD_SERVICES: [&str; 5] = [
        "rpc.CNIBackend",
        "rpc.ConfigServerBackend",
        "grpc.health.v1.Health",
        V1_SERVICE_NAME,
        V1ALPHA_SERVICE_NAME,
    ];

    fn builder() -> Builder<'static> {
        IPAMD_SERVICES.iter().fold(
            Builder::configure()
                .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(crate::health::FILE_DESCRIPTOR_SET),
            |b, name| b.with_service_name(*name),
        )
    }

    /// The `v1` and `v1alpha` reflection services for ipamd's server.
    pub fn ipamd_services() -> Result<
        (
            v1::ServerReflectionServer<impl v1::ServerReflection>,
            v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>,
        ),
        Error,
    > {
        Ok((builder().build_v1()?, builder().build_v1alpha()?))
    }
}

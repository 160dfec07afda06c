//! Contract: the compiled schema has exactly upstream's package, services, methods and, for every
//! message, the exact field name -> (number, type, repeated) map of upstream's `rpc/rpc.proto`
//! (v1.23.1). Checked on the FileDescriptorSet that the code was generated from, decoded with prost-types; and the generated
//! clients are checked to put upstream's method paths on the wire.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prost::Message as _;
use prost_types::{
    FileDescriptorProto, FileDescriptorSet,
    field_descriptor_proto::{Label, Type},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum T {
    Str,
    Bool,
    I32,
    /// Message `.rpc.IPAllocationMetadata`.
    IpMeta,
}
use T::*;

const ONE: bool = false;
const REP: bool = true;

fn expected_messages() -> BTreeMap<&'static str, Vec<(&'static str, i32, T, bool)>> {
    let mut m = BTreeMap::new();
    m.insert(
        "AddNetworkRequest",
        vec![
            ("ClientVersion", 8, Str, ONE),
            ("K8S_POD_NAME", 1, Str, ONE),
            ("K8S_POD_NAMESPACE", 2, Str, ONE),
            ("K8S_POD_INFRA_CONTAINER_ID", 3, Str, ONE),
            ("ContainerID", 7, Str, ONE),
            ("IfName", 5, Str, ONE),
            ("NetworkName", 6, Str, ONE),
            ("Netns", 4, Str, ONE),
            ("RequiresMultiNICAttachment", 9, Bool, ONE),
        ],
    );
    m.insert(
        "IPAllocationMetadata",
        vec![
            ("IPv4Addr", 1, Str, ONE),
            ("IPv6Addr", 2, Str, ONE),
            ("DeviceNumber", 3, I32, ONE),
            ("RouteTableId", 4, I32, ONE),
        ],
    );
    m.insert(
        "AddNetworkReply",
        vec![
            ("Success", 1, Bool, ONE),
            ("IPAllocationMetadata", 2, IpMeta, REP),
            ("UseExternalSNAT", 5, Bool, ONE),
            ("VPCv4CIDRs", 6, Str, REP),
            ("VPCv6CIDRs", 12, Str, REP),
            ("PodVlanId", 7, I32, ONE),
            ("PodENIMAC", 8, Str, ONE),
            ("PodENISubnetGW", 9, Str, ONE),
            ("ParentIfIndex", 10, I32, ONE),
            ("NetworkPolicyMode", 13, Str, ONE),
        ],
    );
    m.insert(
        "DelNetworkRequest",
        vec![
            ("ClientVersion", 9, Str, ONE),
            ("K8S_POD_NAME", 1, Str, ONE),
            ("K8S_POD_NAMESPACE", 2, Str, ONE),
            ("K8S_POD_INFRA_CONTAINER_ID", 3, Str, ONE),
            ("Reason", 5, Str, ONE),
            ("ContainerID", 8, Str, ONE),
            ("IfName", 6, Str, ONE),
            ("NetworkName", 7, Str, ONE),
            ("K8S_POD_UID", 10, Str, ONE),
        ],
    );
    m.insert(
        "DelNetworkReply",
        vec![
            ("Success", 1, Bool, ONE),
            ("IPAllocationMetadata", 2, IpMeta, REP),
            ("PodVlanId", 4, I32, ONE),
            ("NetworkPolicyMode", 6, Str, ONE),
        ],
    );
    m.insert(
        "EnforceNpRequest",
        vec![
            ("K8S_POD_NAME", 1, Str, ONE),
            ("K8S_POD_NAMESPACE", 2, Str, ONE),
            ("NETWORK_POLICY_MODE", 3, Str, ONE),
            ("InterfaceCount", 4, I32, ONE),
        ],
    );
    m.insert("EnforceNpReply", vec![("Success", 1, Bool, ONE)]);
    m.insert(
        "DeleteNpRequest",
        vec![
            ("K8S_POD_NAME", 1, Str, ONE),
            ("K8S_POD_NAMESPACE", 2, Str, ONE),
        ],
    );
    m.insert("DeleteNpReply", vec![("Success", 1, Bool, ONE)]);
    m.insert(
        "NetworkPolicyAgentConfigReply",
        vec![
            ("NetworkPolicyMode", 1, Str, ONE),
            ("MultiNICEnabled", 2, Bool, ONE),
            ("NodeIPv4", 3, Str, ONE),
            ("NodeIPv6", 4, Str, ONE),
            ("InstanceID", 5, Str, ONE),
            ("Region", 6, Str, ONE),
        ],
    );
    m
}

fn rpc_file() -> FileDescriptorProto {
    let fds = FileDescriptorSet::decode(rpc::FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
    let names: Vec<_> = fds.file.iter().map(|f| f.name().to_owned()).collect();
    assert!(
        names.iter().any(|n| n == "google/protobuf/empty.proto"),
        "imports are included for reflection: {names:?}"
    );
    fds.file
        .into_iter()
        .find(|f| f.name() == "rpc.proto")
        .expect("rpc.proto in the descriptor set")
}

#[test]
fn file_header_matches_upstream() {
    let f = rpc_file();
    assert_eq!(f.package(), "rpc");
    assert_eq!(f.syntax(), "proto3");
    assert_eq!(f.dependency, vec!["google/protobuf/empty.proto".to_owned()]);
    assert_eq!(
        f.options.as_ref().map(|o| o.go_package()),
        Some("github.com/aws/amazon-vpc-cni-k8s/rpc;rpc")
    );
    assert!(f.enum_type.is_empty(), "upstream defines no enums");
}

#[test]
fn every_message_has_exact_fields() {
    let f = rpc_file();
    let expected = expected_messages();

    let actual_names: Vec<_> = f.message_type.iter().map(|m| m.name().to_owned()).collect();
    let mut sorted = actual_names.clone();
    sorted.sort();
    let expected_names: Vec<_> = expected.keys().map(|s| s.to_string()).collect();
    assert_eq!(sorted, expected_names, "set of messages");

    for msg in &f.message_type {
        assert!(
            msg.nested_type.is_empty() && msg.oneof_decl.is_empty(),
            "{}",
            msg.name()
        );
        let want: BTreeMap<&str, (i32, T, bool)> = expected[msg.name()]
            .iter()
            .map(|&(n, num, t, rep)| (n, (num, t, rep)))
            .collect();
        let got: BTreeMap<&str, (i32, T, bool)> = msg
            .field
            .iter()
            .map(|fd| {
                assert!(
                    fd.proto3_optional.is_none(),
                    "{}.{} must not be optional",
                    msg.name(),
                    fd.name()
                );
                let t = match fd.r#type() {
                    Type::String => Str,
                    Type::Bool => Bool,
                    Type::Int32 => I32,
                    Type::Message => {
                        assert_eq!(
                            fd.type_name(),
                            ".rpc.IPAllocationMetadata",
                            "{}.{}",
                            msg.name(),
                            fd.name()
                        );
                        IpMeta
                    }
                    other => panic!("{}.{}: unexpected type {other:?}", msg.name(), fd.name()),
                };
                let rep = match fd.label() {
                    Label::Repeated => true,
                    Label::Optional => false,
                    Label::Required => panic!("proto3 has no required"),
                };
                (fd.name(), (fd.number(), t, rep))
            })
            .collect();
        assert_eq!(got, want, "fields of message {}", msg.name());
        // proto3 repeated scalars are packed by default; upstream's only repeated fields are
        // strings and messages, which are never packed, so nothing to check there beyond types.
    }
}

#[test]
fn services_and_method_paths() {
    let f = rpc_file();
    let mut got = Vec::new();
    for svc in &f.service {
        for m in &svc.method {
            assert!(
                !m.client_streaming() && !m.server_streaming(),
                "{}: unary only",
                m.name()
            );
            got.push((
                format!("/{}.{}/{}", f.package(), svc.name(), m.name()),
                m.input_type().to_owned(),
                m.output_type().to_owned(),
            ));
        }
    }
    got.sort();
    let mut want: Vec<(String, String, String)> = [
        (
            rpc::paths::ADD_NETWORK,
            ".rpc.AddNetworkRequest",
            ".rpc.AddNetworkReply",
        ),
        (
            rpc::paths::DEL_NETWORK,
            ".rpc.DelNetworkRequest",
            ".rpc.DelNetworkReply",
        ),
        (
            rpc::paths::ENFORCE_NP_TO_POD,
            ".rpc.EnforceNpRequest",
            ".rpc.EnforceNpReply",
        ),
        (
            rpc::paths::DELETE_POD_NP,
            ".rpc.DeleteNpRequest",
            ".rpc.DeleteNpReply",
        ),
        (
            rpc::paths::GET_NETWORK_POLICY_CONFIGS,
            ".google.protobuf.Empty",
            ".rpc.NetworkPolicyAgentConfigReply",
        ),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(rpc::paths::ADD_NETWORK, "/rpc.CNIBackend/AddNetwork");
    assert_eq!(rpc::paths::DEL_NETWORK, "/rpc.CNIBackend/DelNetwork");
    assert_eq!(
        rpc::paths::ENFORCE_NP_TO_POD,
        "/rpc.NPBackend/EnforceNpToPod"
    );
    assert_eq!(rpc::paths::DELETE_POD_NP, "/rpc.NPBackend/DeletePodNp");
    assert_eq!(
        rpc::paths::GET_NETWORK_POLICY_CONFIGS,
        "/rpc.ConfigServerBackend/GetNetworkPolicyConfigs"
    );
}

#[test]
fn health_descriptor_is_grpc_health_v1() {
    let fds = FileDescriptorSet::decode(rpc::health::FILE_DESCRIPTOR_SET).unwrap();
    let f = fds
        .file
        .iter()
        .find(|f| f.package() == "grpc.health.v1")
        .unwrap();
    let svc = f.service.iter().find(|s| s.name() == "Health").unwrap();
    assert!(svc.method.iter().any(|m| m.name() == "Check"));
}

/// The generated clients put exactly upstream's `:path` on the wire: each client is driven
/// against a bare tower service that records the request path and answers `UNIMPLEMENTED`.
#[tokio::test]
async fn generated_clients_send_upstream_paths() {
    use tonic::codegen::http;

    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let svc = {
        let seen = seen.clone();
        tower::service_fn(move |req: http::Request<tonic::body::Body>| {
            let seen = seen.clone();
            async move {
                assert_eq!(req.method(), http::Method::POST);
                assert_eq!(
                    req.headers()
                        .get("content-type")
                        .map(|v| v.to_str().unwrap()),
                    Some("application/grpc")
                );
                seen.lock().unwrap().push(req.uri().path().to_owned());
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .header("content-type", "application/grpc")
                        .header("grpc-status", "12")
                        .body(tonic::body::Body::empty())
                        .unwrap(),
                )
            }
        })
    };

    let unimplemented = |r: Result<_, tonic::Status>| {
        assert_eq!(r.err().map(|s| s.code()), Some(tonic::Code::Unimplemented));
    };
    let mut cni = rpc::CniBackendClient::new(svc.clone());
    unimplemented(
        cni.add_network(rpc::AddNetworkRequest::default())
            .await
            .map(drop),
    );
    unimplemented(
        cni.del_network(rpc::DelNetworkRequest::default())
            .await
            .map(drop),
    );
    let mut np = rpc::NpBackendClient::new(svc.clone());
    unimplemented(
        np.enforce_np_to_pod(rpc::EnforceNpRequest::default())
            .await
            .map(drop),
    );
    unimplemented(
        np.delete_pod_np(rpc::DeleteNpRequest::default())
            .await
            .map(drop),
    );
    let mut cfg = rpc::ConfigServerBackendClient::new(svc.clone());
    unimplemented(cfg.get_network_policy_configs(()).await.map(drop));
    let mut health = rpc::health::HealthClient::new(svc);
    unimplemented(
        health
            .check(rpc::health::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(drop),
    );

    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            "/rpc.CNIBackend/AddNetwork",
            "/rpc.CNIBackend/DelNetwork",
            "/rpc.NPBackend/EnforceNpToPod",
            "/rpc.NPBackend/DeletePodNp",
            "/rpc.ConfigServerBackend/GetNetworkPolicyConfigs",
            "/grpc.health.v1.Health/Check",
        ]
    );
}

//! gRPC server reflection (`rpc::reflection`) over a real Unix socket, asked the way
//! `grpcurl -unix` does: `ListServices` names exactly the services ipamd serves (upstream's
//! `reflection.Register` lists the registered services, so not `rpc.NPBackend`), on both
//! `grpc.reflection.v1` and `v1alpha`; `FileContainingSymbol` returns `rpc.proto` with
//! `CNIBackend`'s methods, and its import `google/protobuf/empty.proto` resolves by name; an
//! unknown symbol is NotFound.

use std::path::Path;

use prost::Message as _;
use prost_types::FileDescriptorProto;
use rpc::reflection::IPAMD_SERVICES;
use rpc::reflection::tonic_reflection::pb::{v1, v1alpha};
use tonic::codegen::tokio_stream;
use tonic::transport::Channel;
use v1::server_reflection_request::MessageRequest;
use v1::server_reflection_response::MessageResponse;

async fn start_server(sock: &Path) -> tokio::sync::oneshot::Sender<()> {
    let incoming = rpc::server::bind_unix(sock).expect("bind");
    let (_reporter, health) = rpc::health::serving().await;
    let (v1, v1alpha) = rpc::reflection::ipamd_services().expect("reflection services");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(v1)
            .add_service(v1alpha)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
    });
    tx
}

/// One request on the v1 bidirectional stream; its one response.
async fn ask_v1(ch: &Channel, req: MessageRequest) -> MessageResponse {
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(ch.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(req),
    };
    let mut replies = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection call")
        .into_inner();
    replies
        .message()
        .await
        .expect("a reply")
        .expect("one reply")
        .message_response
        .expect("a response")
}

fn files(resp: MessageResponse) -> Vec<FileDescriptorProto> {
    match resp {
        MessageResponse::FileDescriptorResponse(f) => f
            .file_descriptor_proto
            .iter()
            .map(|b| FileDescriptorProto::decode(b.as_slice()).expect("descriptor decodes"))
            .collect(),
        other => panic!("not a file descriptor response: {other:?}"),
    }
}

fn expected_services() -> Vec<String> {
    let mut names: Vec<String> = IPAMD_SERVICES.iter().map(|s| s.to_string()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn reflection_lists_ipamd_services_and_serves_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ipamd.sock");
    let stop = start_server(&sock).await;
    let ch = rpc::client::connect(sock.to_str().unwrap(), None)
        .await
        .expect("connect");

    // v1: ListServices.
    let MessageResponse::ListServicesResponse(list) =
        ask_v1(&ch, MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a list");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, expected_services());
    assert!(names.contains(&"rpc.CNIBackend".to_string()));
    assert!(names.contains(&"grpc.health.v1.Health".to_string()));
    assert!(!names.iter().any(|n| n == "rpc.NPBackend"), "{names:?}");

    // v1alpha (what older grpcurl asks): the same list.
    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(ch.clone());
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let reply = alpha
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .expect("v1alpha call")
        .into_inner()
        .message()
        .await
        .expect("v1alpha reply")
        .expect("one reply");
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        reply.message_response
    else {
        panic!("not a v1alpha list: {reply:?}");
    };
    let mut alpha_names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    alpha_names.sort();
    assert_eq!(alpha_names, expected_services());

    // The file declaring rpc.CNIBackend is rpc.proto with both methods.
    let rpc_files = files(
        ask_v1(
            &ch,
            MessageRequest::FileContainingSymbol("rpc.CNIBackend".into()),
        )
        .await,
    );
    let rpc_file = rpc_files
        .iter()
        .find(|f| f.name() == "rpc.proto")
        .unwrap_or_else(|| panic!("rpc.proto among {rpc_files:?}"));
    assert_eq!(rpc_file.package(), "rpc");
    let backend = rpc_file
        .service
        .iter()
        .find(|s| s.name() == "CNIBackend")
        .expect("CNIBackend");
    let methods: Vec<&str> = backend.method.iter().map(|m| m.name()).collect();
    assert_eq!(methods, ["AddNetwork", "DelNetwork"]);
    assert!(
        rpc_file
            .dependency
            .contains(&"google/protobuf/empty.proto".to_string())
    );

    // Its import resolves by name; health resolves by symbol.
    let empty = files(
        ask_v1(
            &ch,
            MessageRequest::FileByFilename("google/protobuf/empty.proto".into()),
        )
        .await,
    );
    assert!(empty.iter().any(|f| f.package() == "google.protobuf"));
    let health = files(
        ask_v1(
            &ch,
            MessageRequest::FileContainingSymbol("grpc.health.v1.Health".into()),
        )
        .await,
    );
    assert!(health.iter().any(|f| f.package() == "grpc.health.v1"));

    // An unknown symbol: NotFound (tonic-reflection ends the stream with the status where
    // grpc-go sends an ErrorResponse; grpcurl reports either as "not found").
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(ch.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol("rpc.Nope".into())),
    };
    let unknown = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection call")
        .into_inner()
        .message()
        .await;
    match unknown {
        Err(status) => assert_eq!(status.code(), tonic::Code::NotFound),
        Ok(Some(v1::ServerReflectionResponse {
            message_response: Some(MessageResponse::ErrorResponse(e)),
            ..
        })) => assert_eq!(e.error_code, tonic::Code::NotFound as i32),
        other => panic!("unknown symbol answered {other:?}"),
    }
    let _ = stop.send(());
}

//! gRPC server reflection on the agent's socket (upstream ipamd calls `reflection.Register`,
//! so `grpcurl -plaintext -unix /var/run/aws-node/ipamd.sock list` works): `ListServices`
//! names `rpc.CNIBackend`, `rpc.ConfigServerBackend`, `grpc.health.v1.Health` and the
//! reflection services, and `rpc.CNIBackend`'s file descriptor is served.

mod support;

use std::time::Duration;

use rpc::reflection::tonic_reflection::pb::v1;
use support::Harness;
use tonic::codegen::tokio_stream;
use v1::server_reflection_request::MessageRequest;
use v1::server_reflection_response::MessageResponse;

async fn ask(ch: &tonic::transport::Channel, req: MessageRequest) -> MessageResponse {
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(ch.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(req),
    };
    client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection call")
        .into_inner()
        .message()
        .await
        .expect("a reply")
        .expect("one reply")
        .message_response
        .expect("a response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_serves_grpc_reflection() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "reflection").await;
    let agent = h.start(h.config(&[]), h.options(Duration::from_secs(60), None));
    let _ = h.client().await;
    let target = format!("unix://{}", h.socket_path().display());
    let ch = rpc::client::connect(&target, Some(Duration::from_secs(2)))
        .await
        .expect("connect");

    let MessageResponse::ListServicesResponse(list) =
        ask(&ch, MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "rpc.CNIBackend",
        "rpc.ConfigServerBackend",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    assert_eq!(names.len(), 5, "nothing else: {names:?}");

    let MessageResponse::FileDescriptorResponse(files) = ask(
        &ch,
        MessageRequest::FileContainingSymbol("rpc.CNIBackend.AddNetwork".into()),
    )
    .await
    else {
        panic!("no descriptor for rpc.CNIBackend.AddNetwork");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    assert!(!agent.is_finished(), "the agent is running");
    agent.abort();
}

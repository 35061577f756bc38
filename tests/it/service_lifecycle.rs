//! The server around the service: health, reflection, deadlines and graceful shutdown.

use std::time::{Duration, Instant};

use tonic::Code;
use tonic::codegen::tokio_stream;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::support::service::*;
use vod_signer::proto::v1 as pb;

const SERVICE: &str = "vod.signer.v1.UploadSigner";

async fn health_status(
    client: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
) -> Result<ServingStatus, tonic::Status> {
    let response = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?;
    Ok(response.into_inner().status())
}

#[tokio::test]
async fn health_reports_the_server_and_the_service() {
    let server = TestServer::start(standard_config()).await;
    let mut health = HealthClient::new(server.channel().await);
    assert_eq!(
        health_status(&mut health, "").await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        health_status(&mut health, SERVICE).await.unwrap(),
        ServingStatus::Serving
    );
    let unknown = health_status(&mut health, "no.such.Service")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_and_describe_the_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = TestServer::start(standard_config()).await;
    let channel = server.channel().await;
    let mut client = ServerReflectionClient::new(channel.clone());
    let ask = |request: MessageRequest| {
        tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        }])
    };

    let mut answers = client
        .server_reflection_info(ask(MessageRequest::ListServices(String::new())))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected answer {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [SERVICE, "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }

    // The descriptors are the proto this server was built from, so a client can be made from
    // reflection alone (grpcurl does exactly that).
    let mut answers = client
        .server_reflection_info(ask(MessageRequest::FileContainingSymbol(SERVICE.into())))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = answer.message_response else {
        panic!("unexpected answer {answer:?}");
    };
    use prost::Message;
    let file =
        prost_types::FileDescriptorProto::decode(&files.file_descriptor_proto[0][..]).unwrap();
    assert_eq!(file.package(), "vod.signer.v1");
    let service = &file.service[0];
    let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
    assert_eq!(
        methods,
        ["IssueSignature", "VerifySignature", "IssueSignatureBatch"]
    );

    // v1alpha answers too, for older tools.
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let mut alpha = AlphaClient::new(channel);
    let mut answers = alpha
        .server_reflection_info(tokio_stream::iter([
            tonic_reflection::pb::v1alpha::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(AlphaRequest::ListServices(String::new())),
            },
        ]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(AlphaResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected answer {answer:?}");
    };
    assert!(list.service.iter().any(|s| s.name == SERVICE));
}

/// One unary gRPC call over bare HTTP/2: unlike a gRPC client library, this client keeps no
/// deadline timer of its own, so whatever happens at the deadline is the server's doing.
/// Returns `grpc-status` and how long the answer took.
async fn bare_http2_call(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    message: impl prost::Message,
) -> (String, Duration) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let mut request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let started = Instant::now();
    let (response, mut body) = client
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    // gRPC message framing: uncompressed flag, big-endian length, protobuf bytes.
    let encoded = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    frame.extend_from_slice(&encoded);
    body.send_data(bytes::Bytes::from(frame), true).unwrap();

    let (head, mut received) = response.await.unwrap().into_parts();
    // An error comes as a trailers-only response (status in the headers); a success has a
    // message, then the status in the trailers.
    let status = match head.headers.get("grpc-status") {
        Some(status) => status.to_str().unwrap().to_owned(),
        None => {
            while let Some(chunk) = received.data().await {
                let chunk = chunk.unwrap();
                let _ = received.flow_control().release_capacity(chunk.len());
            }
            let trailers = received.trailers().await.unwrap().expect("no trailers");
            trailers["grpc-status"].to_str().unwrap().to_owned()
        }
    };
    (status, started.elapsed())
}

#[tokio::test]
async fn the_server_ends_a_call_at_its_grpc_timeout() {
    const ISSUE: &str = "/vod.signer.v1.UploadSigner/IssueSignature";
    let gate = IssueGate::new();
    let server = TestServer::builder(standard_config())
        .issue_gate(&gate)
        .start()
        .await;
    let authorization = format!("Bearer {FULL}");
    let request = || issue_request("u", Default::default());

    // Control: the bare client gets an answer when nothing holds the call.
    gate.release(1);
    let (status, _) = bare_http2_call(
        server.addr,
        ISSUE,
        &[("authorization", &authorization)],
        request(),
    )
    .await;
    assert_eq!(status, "0", "OK");
    gate.wait_for_arrival().await;

    // Now the call is held at the gate and only `grpc-timeout` can end it.
    let headers = [("authorization", &*authorization), ("grpc-timeout", "300m")];
    let (status, elapsed) = bare_http2_call(server.addr, ISSUE, &headers, request()).await;
    // The server itself answers DEADLINE_EXCEEDED (stock tonic would say CANCELLED).
    assert_eq!(
        status, "4",
        "grpc-status {status}, expected DEADLINE_EXCEEDED"
    );
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    tokio::time::timeout(Duration::from_secs(1), gate.wait_for_arrival())
        .await
        .expect("the call never reached the service");

    // A tonic client sets the same header and gets the same treatment.
    let mut client = server.signer().await;
    let mut held = authed(request(), FULL);
    held.set_timeout(Duration::from_millis(200));
    let status = client.issue_signature(held).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
    tokio::time::timeout(Duration::from_secs(1), gate.wait_for_arrival())
        .await
        .expect("the call never reached the service");

    // A call whose deadline has passed before it could start is answered without running.
    let headers = [("authorization", &*authorization), ("grpc-timeout", "1n")];
    let (status, _) = bare_http2_call(server.addr, ISSUE, &headers, request()).await;
    assert_eq!(
        status, "4",
        "grpc-status {status}, expected DEADLINE_EXCEEDED"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), gate.wait_for_arrival())
            .await
            .is_err(),
        "a call past its deadline reached the service"
    );
}

#[tokio::test]
async fn shutdown_flips_health_refuses_new_connections_and_finishes_calls_in_flight() {
    let gate = IssueGate::new();
    let mut server = TestServer::builder(standard_config())
        .issue_gate(&gate)
        .start()
        .await;
    let channel = server.channel().await;

    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: SERVICE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first: HealthCheckResponse = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    let mut client = pb::upload_signer_client::UploadSignerClient::new(channel);
    let in_flight = tokio::spawn(async move {
        client
            .issue_signature(authed(issue_request("late", Default::default()), FULL))
            .await
    });
    gate.wait_for_arrival().await;

    server.signal_shutdown();
    let next = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("no health update after shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
    // An open watch would hold the drain for the whole grace period; a real client goes away.
    drop(watch);

    // The listening socket closes: new connections are refused while the call is held.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpStream::connect(server.addr).await {
            Err(_) => break,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Ok(_) => panic!("the server still accepts connections after shutdown"),
        }
    }
    assert!(
        !server.is_finished(),
        "serve returned with a call in flight"
    );
    assert!(!in_flight.is_finished());

    gate.release(1);
    let response = in_flight.await.unwrap().expect("the in-flight call failed");
    let issued = response.into_inner();
    standard_ring()
        .verify(
            &issued.signature,
            issued.issued_at,
            vod_signer::signature::VerifyOptions::default(),
        )
        .unwrap();
    server.stopped(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_call_that_never_finishes_cannot_hold_shutdown_past_the_grace_period() {
    let config = config_from(
        &standard_toml("shutdown_grace_seconds = 1"),
        &[("secret-key", SECRET_KEY)],
    );
    let gate = IssueGate::new();
    let mut server = TestServer::builder(config).issue_gate(&gate).start().await;
    let mut client = server.signer().await;
    let stuck = tokio::spawn(async move {
        client
            .issue_signature(authed(issue_request("u", Default::default()), FULL))
            .await
    });
    gate.wait_for_arrival().await;
    let started = Instant::now();
    server.stopped(Duration::from_secs(10)).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    stuck.abort();
}

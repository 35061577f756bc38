//! `/metrics` of a real server after real calls.

use crate::support::ops::*;
use tonic::Code;
use vod_signer::proto::v1 as pb;

#[tokio::test]
async fn metrics_count_calls_codes_issuance_verification_and_latency() {
    let dir = ConfigDir::new();
    dir.write_config(&config_toml(KEY_A, false, "", ""));
    let server = start_metered(dir.load()).await;
    let mut client = server.signer().await;

    let issued = issue(&mut client, "alice").await.unwrap();
    issue(&mut client, "bob").await.unwrap();
    let batch = client
        .issue_signature_batch(authed(
            pb::IssueSignatureBatchRequest {
                request: Some(issue_request("carol")),
                count: 3,
            },
            TOKEN,
        ))
        .await
        .unwrap();
    assert_eq!(batch.into_inner().signatures.len(), 3);
    let unauthenticated = client
        .issue_signature(authed(issue_request("alice"), "wrong-token"))
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
    assert!(verify(&mut client, &issued.signature).await.valid);
    assert!(!verify(&mut client, "bm90LWEtc2lnbmF0dXJl").await.valid);

    let text = server.metrics().await;
    let upload = "grpc_service=\"vod.signer.v1.UploadSigner\"";
    let expect = [
        (
            format!(
                "vod_signer_grpc_requests_total{{{upload},grpc_method=\"IssueSignature\",grpc_code=\"OK\"}}"
            ),
            2.0,
        ),
        (
            format!(
                "vod_signer_grpc_requests_total{{{upload},grpc_method=\"IssueSignature\",grpc_code=\"UNAUTHENTICATED\"}}"
            ),
            1.0,
        ),
        (
            format!(
                "vod_signer_grpc_requests_total{{{upload},grpc_method=\"VerifySignature\",grpc_code=\"OK\"}}"
            ),
            2.0,
        ),
        (
            format!(
                "vod_signer_grpc_requests_total{{{upload},grpc_method=\"IssueSignatureBatch\",grpc_code=\"OK\"}}"
            ),
            1.0,
        ),
        (
            format!(
                "vod_signer_grpc_request_duration_seconds_count{{{upload},grpc_method=\"IssueSignature\"}}"
            ),
            3.0,
        ),
        (
            "vod_signer_signatures_issued_total{caller=\"bff\"}".to_owned(),
            5.0,
        ),
        (
            "vod_signer_verifications_total{outcome=\"VALID\"}".to_owned(),
            1.0,
        ),
        (
            "vod_signer_verifications_total{outcome=\"MALFORMED\"}".to_owned(),
            1.0,
        ),
        (
            "vod_signer_config_reloads_total{result=\"ok\"}".to_owned(),
            0.0,
        ),
    ];
    for (name, value) in expect {
        assert_eq!(series(&text, &name), Some(value), "{name} in\n{text}");
    }
    // A latency histogram has buckets up to +Inf holding every call.
    assert!(text.contains(&format!(
        "vod_signer_grpc_request_duration_seconds_bucket{{le=\"+Inf\",{upload},grpc_method=\"IssueSignature\"}} 3"
    )) || text.contains(&format!(
        "vod_signer_grpc_request_duration_seconds_bucket{{{upload},grpc_method=\"IssueSignature\",le=\"+Inf\"}} 3"
    )), "{text}");
    // Neither secrets nor signatures nor tokens reach the exposition.
    for secret in [KEY_A.1, TOKEN, issued.signature.as_str()] {
        assert!(!text.contains(secret));
    }

    let (status, _) = http_get(server.metrics_addr.unwrap(), "/").await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn health_checks_and_unknown_methods_are_counted_under_fixed_labels() {
    let dir = ConfigDir::new();
    dir.write_config(&config_toml(KEY_A, false, "", ""));
    let server = start_metered(dir.load()).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "vod.signer.v1.UploadSigner".into(),
        })
        .await
        .unwrap();

    // A method this server does not have: answered UNIMPLEMENTED, counted as "unknown".
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let status = grpc
        .unary::<_, (), _>(
            tonic::Request::new(()),
            "/no.such.Service/Method".parse().unwrap(),
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);

    let text = server.metrics().await;
    for (name, value) in [
        (
            "vod_signer_grpc_requests_total{grpc_service=\"grpc.health.v1.Health\",grpc_method=\"Check\",grpc_code=\"OK\"}",
            1.0,
        ),
        (
            "vod_signer_grpc_requests_total{grpc_service=\"unknown\",grpc_method=\"unknown\",grpc_code=\"UNIMPLEMENTED\"}",
            1.0,
        ),
    ] {
        assert_eq!(series(&text, name), Some(value), "{name} in\n{text}");
    }
    assert!(!text.contains("no.such.Service"));
    server.stop().await;
}

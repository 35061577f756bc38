//! What the client puts on the wire and how it treats statuses the real server does not send
//! yet (quotas) or sends only under load (UNAVAILABLE), against a scripted stand-in service.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use vod_signer::proto::v1 as pb;
use vod_signer::proto::v1::upload_signer_server::{UploadSigner, UploadSignerServer};
use vod_signer_client::{
    BearerToken, Error, IssueRequest, RetryPolicy, SignerClient, TaskNotifyMode,
};

/// Answers with the scripted statuses first, then succeeds; remembers what each call carried.
#[derive(Default)]
struct Scripted {
    failures: Mutex<VecDeque<Status>>,
    seen: Mutex<Vec<Seen>>,
}

#[derive(Debug, Clone)]
struct Seen {
    authorization: Option<String>,
    grpc_timeout: Option<String>,
    request: Option<pb::IssueSignatureRequest>,
}

impl Scripted {
    fn record<T>(&self, request: &Request<T>, issue: Option<pb::IssueSignatureRequest>) {
        let header = |name: &str| {
            request
                .metadata()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        self.seen.lock().unwrap().push(Seen {
            authorization: header("authorization"),
            grpc_timeout: header("grpc-timeout"),
            request: issue,
        });
    }

    fn next_failure(&self) -> Option<Status> {
        self.failures.lock().unwrap().pop_front()
    }
}

#[tonic::async_trait]
impl UploadSigner for Scripted {
    async fn issue_signature(
        &self,
        request: Request<pb::IssueSignatureRequest>,
    ) -> Result<Response<pb::IssueSignatureResponse>, Status> {
        self.record(&request, Some(request.get_ref().clone()));
        if let Some(status) = self.next_failure() {
            return Err(status);
        }
        Ok(Response::new(pb::IssueSignatureResponse {
            signature: "c2lnbmF0dXJl".into(),
            secret_id: "AKIDscripted".into(),
            issued_at: 1_700_000_000,
            expires_at: 1_700_000_600,
            random: 1,
            fingerprint: "00ff".into(),
            upload_id: String::new(),
        }))
    }

    async fn verify_signature(
        &self,
        request: Request<pb::VerifySignatureRequest>,
    ) -> Result<Response<pb::VerifySignatureResponse>, Status> {
        self.record(&request, None);
        if let Some(status) = self.next_failure() {
            return Err(status);
        }
        Ok(Response::new(pb::VerifySignatureResponse {
            valid: false,
            failure: pb::VerifyFailure::Expired as i32,
            detail: "expired".into(),
            ..Default::default()
        }))
    }

    async fn issue_signature_batch(
        &self,
        _request: Request<pb::IssueSignatureBatchRequest>,
    ) -> Result<Response<pb::IssueSignatureBatchResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
}

async fn scripted(failures: Vec<Status>) -> (Arc<Scripted>, SignerClient) {
    let service = Arc::new(Scripted {
        failures: Mutex::new(failures.into()),
        seen: Mutex::default(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .add_service(UploadSignerServer::from_arc(Arc::clone(&service)))
        .serve_with_incoming(TcpIncoming::from(listener));
    tokio::spawn(server);
    let client = SignerClient::builder()
        .endpoint(format!("http://{addr}"))
        .bearer_token(BearerToken::new("wire-token").unwrap())
        .retry_policy(RetryPolicy {
            initial_backoff: Duration::from_millis(10),
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();
    (service, client)
}

/// `grpc-timeout` as a duration (value and a one-letter unit, per the gRPC HTTP/2 spec).
fn parse_grpc_timeout(value: &str) -> Duration {
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().unwrap();
    match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        other => panic!("unit {other:?} in {value:?}"),
    }
}

#[tokio::test]
async fn sends_the_bearer_token_and_the_deadline_as_grpc_timeout() {
    let (service, client) = scripted(vec![]).await;
    client
        .issue(IssueRequest::for_user("u-1").deadline(Duration::from_secs(3)))
        .await
        .unwrap();
    client
        .verify_with_deadline("x", Duration::from_millis(1500))
        .await
        .unwrap();
    let seen = service.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (call, limit) in seen.iter().zip([3000, 1500]) {
        assert_eq!(call.authorization.as_deref(), Some("Bearer wire-token"));
        let timeout = parse_grpc_timeout(call.grpc_timeout.as_deref().expect("grpc-timeout sent"));
        assert!(timeout <= Duration::from_millis(limit), "{timeout:?}");
        assert!(timeout > Duration::from_millis(limit - 500), "{timeout:?}");
    }
}

#[tokio::test]
async fn request_fields_reach_the_service_as_the_proto_names_them() {
    let (service, client) = scripted(vec![]).await;
    client
        .issue(
            IssueRequest::for_user("u-9")
                .procedure("review")
                .task_priority(5)
                .task_notify_mode(TaskNotifyMode::None)
                .session_context("s")
                .storage_region("ap-chongqing")
                .sub_app_id(1500)
                .validity(Duration::from_secs(120)),
        )
        .await
        .unwrap();
    let sent = service.seen.lock().unwrap()[0].request.clone().unwrap();
    assert_eq!(sent.user_id, "u-9");
    assert_eq!(sent.validity_seconds, 120);
    let p = sent.params.unwrap();
    assert_eq!(p.procedure.as_deref(), Some("review"));
    assert_eq!(p.task_priority, Some(5));
    assert_eq!(p.task_notify_mode, pb::TaskNotifyMode::None as i32);
    assert_eq!(p.session_context.as_deref(), Some("s"));
    assert_eq!(p.storage_region.as_deref(), Some("ap-chongqing"));
    assert_eq!(p.vod_sub_app_id, Some(1500));
    assert_eq!(p.class_id, None);
    assert!(!p.one_time_valid);
}

#[tokio::test]
async fn service_unavailable_is_retried_until_it_succeeds() {
    let (service, client) = scripted(vec![
        Status::unavailable("draining"),
        Status::unavailable("draining"),
    ])
    .await;
    let issued = client.issue(IssueRequest::for_user("u")).await.unwrap();
    assert_eq!(issued.secret_id, "AKIDscripted");
    assert_eq!(service.seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn quota_exhausted_carries_retry_after_and_is_not_retried() {
    let (service, client) = scripted(vec![Status::with_error_details(
        Code::ResourceExhausted,
        "caller backend: 60 signatures per minute",
        ErrorDetails::with_retry_info(Some(Duration::from_secs(7))),
    )])
    .await;
    let err = client.issue(IssueRequest::for_user("u")).await.unwrap_err();
    assert_eq!(
        err,
        Error::QuotaExhausted {
            message: "caller backend: 60 signatures per minute".into(),
            retry_after: Some(Duration::from_secs(7)),
        }
    );
    assert!(err.to_string().starts_with("quota exhausted: "), "{err}");
    assert_eq!(service.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn other_statuses_are_passed_on_unretried() {
    let (service, client) = scripted(vec![Status::internal("clock before 1970")]).await;
    let err = client.verify("x").await.unwrap_err();
    assert_eq!(
        err,
        Error::Other {
            code: Code::Internal,
            message: "clock before 1970".into()
        }
    );
    assert_eq!(err.to_string(), "internal: clock before 1970");
    assert_eq!(service.seen.lock().unwrap().len(), 1);
}

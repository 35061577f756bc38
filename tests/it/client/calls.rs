//! Every RPC and every error kind the service can send, against a real server on loopback.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::support::client::{TOKEN, VERIFY_ONLY_TOKEN, builder, client, start};
use vod_signer_client::bff::AppReply;
use vod_signer_client::{
    BearerToken, Error, IssueRequest, SignerClient, TaskNotifyMode, TokenError, Verification,
    VerifyFailure,
};

#[tokio::test]
async fn issue_then_verify_round_trip() {
    let server = start("AKIDcalls").await;
    let client = client(&server);
    let before = SystemTime::now() - Duration::from_secs(1);
    let issued = client
        .issue(
            IssueRequest::for_user("u-1")
                .procedure("review")
                .task_notify_mode(TaskNotifyMode::Change)
                .source_context("order-42")
                .class_id(3)
                .validity(Duration::from_secs(600))
                .one_time(),
        )
        .await
        .unwrap();
    assert_eq!(issued.secret_id, "AKIDcalls");
    assert!(issued.issued_at >= before);
    assert_eq!(
        issued.expires_at.duration_since(issued.issued_at).unwrap(),
        Duration::from_secs(600)
    );
    assert_eq!(issued.fingerprint, issued.signature.fingerprint());
    assert!(!format!("{issued:?}").contains(issued.signature.expose_secret()));

    let verdict = client
        .verify(issued.signature.expose_secret())
        .await
        .unwrap();
    let Verification::Valid(contents) = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(contents.secret_id, "AKIDcalls");
    assert_eq!(contents.random, issued.random);
    assert_eq!(contents.issued_at, issued.issued_at);
    assert_eq!(contents.params.procedure.as_deref(), Some("review"));
    assert_eq!(contents.params.source_context.as_deref(), Some("order-42"));
    assert_eq!(contents.params.class_id, Some(3));
    assert_eq!(
        contents.params.task_notify_mode,
        Some(TaskNotifyMode::Change)
    );
    assert!(contents.params.one_time_valid);
}

#[tokio::test]
async fn every_issue_is_a_fresh_signature() {
    let server = start("AKIDfresh").await;
    let client = client(&server);
    let mut seen = HashSet::new();
    for _ in 0..5 {
        let issued = client.issue(IssueRequest::for_user("u-1")).await.unwrap();
        assert!(seen.insert(issued.signature.expose_secret().to_owned()));
    }
}

#[tokio::test]
async fn a_bad_signature_is_an_answer_not_an_error() {
    let server = start("AKIDbad").await;
    let client = client(&server);
    let issued = client.issue(IssueRequest::for_user("u-1")).await.unwrap();
    // Flip one character of the MAC (the first base64 characters encode it).
    let mut tampered = issued.signature.expose_secret().to_owned();
    let first = if tampered.starts_with('A') { "B" } else { "A" };
    tampered.replace_range(0..1, first);
    let verdict = client.verify(&tampered).await.unwrap();
    assert!(
        matches!(
            verdict,
            Verification::Invalid {
                failure: VerifyFailure::BadSignature,
                ..
            }
        ),
        "{verdict:?}"
    );

    let verdict = client.verify("not base64 at all!").await.unwrap();
    let Verification::Invalid {
        failure,
        detail,
        contents,
    } = verdict
    else {
        panic!("{verdict:?}")
    };
    assert_eq!(failure, VerifyFailure::Malformed);
    assert!(!detail.is_empty());
    assert!(contents.is_none());
}

#[tokio::test]
async fn batch_issues_distinct_signatures() {
    let server = start("AKIDbatch").await;
    let client = client(&server);
    let batch = client
        .issue_batch(IssueRequest::for_user("u-1").one_time(), 7)
        .await
        .unwrap();
    assert_eq!(batch.len(), 7);
    let randoms: HashSet<_> = batch.iter().map(|s| s.random).collect();
    assert_eq!(randoms.len(), 7);

    let err = client
        .issue_batch(IssueRequest::for_user("u-1"), 0)
        .await
        .unwrap_err();
    let Error::InvalidArgument {
        field_violations, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(field_violations.iter().any(|v| v.field == "count"), "{err}");
}

#[tokio::test]
async fn wrong_token_is_unauthenticated() {
    let server = start("AKIDauth").await;
    let client = builder(&[server.url()], "not-a-known-token")
        .build()
        .unwrap();
    let err = client
        .issue(IssueRequest::for_user("u-1"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthenticated { .. }), "{err:?}");
    assert!(err.to_string().starts_with("unauthenticated: "), "{err}");
    // The token never comes back in an error.
    assert!(!err.to_string().contains("not-a-known-token"));
    // Not retried: a wrong token stays wrong.
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn policy_refusals_are_permission_denied_with_the_rule() {
    let server = start("AKIDdeny").await;
    let client = client(&server);
    let err = client
        .issue(IssueRequest::for_user("u-1").procedure("transcode-4k"))
        .await
        .unwrap_err();
    let Error::PermissionDenied { message } = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("allowed_procedures"), "{message}");
    assert!(err.to_string().starts_with("permission denied: "), "{err}");

    let auditor = builder(&[server.url()], VERIFY_ONLY_TOKEN).build().unwrap();
    let err = auditor
        .issue(IssueRequest::for_user("u-1"))
        .await
        .unwrap_err();
    let Error::PermissionDenied { message } = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("can_issue"), "{message}");
    // ... while verifying is allowed.
    assert!(auditor.verify("x").await.is_ok());
}

#[tokio::test]
async fn bad_arguments_come_back_as_field_violations() {
    let server = start("AKIDargs").await;
    let client = client(&server);
    let err = client
        .issue(
            IssueRequest::for_user("")
                .task_priority(50)
                .procedure("review"),
        )
        .await
        .unwrap_err();
    let Error::InvalidArgument {
        field_violations, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    let fields: Vec<_> = field_violations.iter().map(|v| v.field.as_str()).collect();
    assert!(fields.contains(&"user_id"), "{err}");
    assert!(fields.contains(&"params.task_priority"), "{err}");
    assert!(err.to_string().starts_with("invalid argument: "), "{err}");

    // The app-facing body carries the same violations.
    let reply = AppReply::from_error(&err);
    assert_eq!(reply.status, 400);
    assert!(reply.to_json().contains("params.task_priority"));
}

#[tokio::test]
async fn rotating_tokens_take_effect_on_the_next_call() {
    let server = start("AKIDrotate").await;
    let current = Arc::new(RwLock::new(BearerToken::new("stale-token").unwrap()));
    let shared = Arc::clone(&current);
    let client = SignerClient::builder()
        .endpoint(server.url())
        .token_provider(move || -> Result<BearerToken, TokenError> {
            Ok(shared.read().unwrap().clone())
        })
        .build()
        .unwrap();
    let err = client.issue(IssueRequest::for_user("u")).await.unwrap_err();
    assert!(matches!(err, Error::Unauthenticated { .. }), "{err:?}");

    *current.write().unwrap() = BearerToken::new(TOKEN).unwrap();
    client.issue(IssueRequest::for_user("u")).await.unwrap();
}

#[tokio::test]
async fn bff_reply_for_a_real_issuance() {
    let server = start("AKIDbff").await;
    let client = client(&server);
    let result = client.issue(IssueRequest::for_user("u-1")).await;
    let reply = AppReply::from_result(&result);
    assert_eq!(reply.status, 200);
    let body: serde_json::Value = serde_json::from_str(&reply.to_json()).unwrap();
    assert_eq!(body["code"], 0);
    assert_eq!(body["message"], "ok");
    assert_eq!(
        body["data"]["signature"],
        result.unwrap().signature.expose_secret()
    );
}

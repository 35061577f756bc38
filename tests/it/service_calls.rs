//! The UploadSigner RPCs over a real gRPC connection: authentication, policy, argument
//! checks, issue→verify, the shared vectors, batches and concurrency.

use std::collections::HashSet;

use tonic::Code;
use tonic_types::StatusExt;

use crate::support::service::*;
use vod_signer::cli::unix_now as now;
use vod_signer::proto::v1 as pb;
use vod_signer::signature::{VerifyFailure, VerifyOptions, fingerprint};

#[tokio::test]
async fn missing_malformed_and_unknown_tokens_are_unauthenticated() {
    let server = TestServer::start(standard_config()).await;
    let mut client = server.signer().await;
    let with_header = |value: Option<&str>| {
        let mut request = tonic::Request::new(issue_request("u", pb::UploadParams::default()));
        if let Some(value) = value {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        request
    };
    let cases = [
        None,
        Some("Basic Zm9vOmJhcg=="),
        Some("Bearer"),
        Some(FULL),
        Some(&*format!("Bearer {FULL} extra")),
        Some("Bearer not-a-configured-token"),
        // A token's hash is not a token.
        Some(&*format!("Bearer {}", sha256_hex(FULL))),
    ];
    for value in cases {
        let status = client
            .issue_signature(with_header(value))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{value:?}: {status:?}"
        );
        assert!(!status.message().contains(FULL), "{status:?}");
    }

    // Every RPC checks, before looking at its arguments.
    let status = client
        .verify_signature(authed(pb::VerifySignatureRequest::default(), "nope"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = client
        .issue_signature_batch(authed(
            pb::IssueSignatureBatchRequest {
                request: None,
                count: 0,
            },
            "nope",
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // The scheme is case-insensitive, as HTTP says.
    let ok = client
        .issue_signature(with_header(Some(&format!("bearer {FULL}"))))
        .await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test]
async fn each_policy_rule_is_permission_denied_naming_the_rule() {
    let server = TestServer::start(standard_config()).await;
    let mut client = server.signer().await;

    let deny = |rule: &'static str, status: tonic::Status| {
        assert_eq!(status.code(), Code::PermissionDenied, "{rule}: {status:?}");
        assert!(
            status.message().contains(rule),
            "{rule}: {}",
            status.message()
        );
        let info = status.get_details_error_info().expect("ErrorInfo detail");
        assert_eq!(info.metadata.get("rule").map(String::as_str), Some(rule));
        assert_eq!(info.domain, vod_signer::service::ERROR_DOMAIN);
    };

    let status = client
        .issue_signature(authed(issue_request("u", Default::default()), VERIFY_ONLY))
        .await
        .unwrap_err();
    deny("can_issue", status);
    let status = client
        .issue_signature_batch(authed(
            pb::IssueSignatureBatchRequest {
                request: Some(issue_request("u", Default::default())),
                count: 2,
            },
            VERIFY_ONLY,
        ))
        .await
        .unwrap_err();
    deny("can_issue", status);

    let status = client
        .verify_signature(authed(
            pb::VerifySignatureRequest {
                signature: "x".into(),
            },
            ISSUE_ONLY,
        ))
        .await
        .unwrap_err();
    deny("can_verify", status);

    let restricted = |params: pb::UploadParams, validity_seconds: u32| {
        let mut request = issue_request("u", params);
        request.validity_seconds = validity_seconds;
        authed(request, RESTRICTED)
    };
    let cases: [(&str, pb::UploadParams, u32); 4] = [
        (
            "allowed_procedures",
            pb::UploadParams {
                procedure: Some("transcode".into()),
                ..Default::default()
            },
            0,
        ),
        (
            "allowed_class_ids",
            pb::UploadParams {
                class_id: Some(3),
                ..Default::default()
            },
            0,
        ),
        (
            "allowed_sub_app_ids",
            pb::UploadParams {
                vod_sub_app_id: Some(5),
                ..Default::default()
            },
            0,
        ),
        ("max_validity_seconds", pb::UploadParams::default(), 601),
    ];
    for (rule, params, validity) in cases {
        let status = client
            .issue_signature(restricted(params, validity))
            .await
            .unwrap_err();
        deny(rule, status);
    }

    // Within every rule, the same caller is served.
    let allowed = pb::UploadParams {
        procedure: Some("review".into()),
        class_id: Some(7),
        vod_sub_app_id: Some(1400),
        ..Default::default()
    };
    client
        .issue_signature(restricted(allowed, 600))
        .await
        .unwrap();
}

#[tokio::test]
async fn caller_defaults_and_forced_one_time_are_applied() {
    let server = TestServer::start(standard_config()).await;
    let mut client = server.signer().await;
    let issued = client
        .issue_signature(authed(issue_request("u", Default::default()), RESTRICTED))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        issued.expires_at - issued.issued_at,
        60,
        "default_validity_seconds"
    );
    let params = standard_ring()
        .verify(&issued.signature, now(), VerifyOptions::default())
        .unwrap();
    assert_eq!(params.upload.one_time_valid, Some(true), "force_one_time");

    // Without a policy default, the service's default (an hour) applies; one-time is not forced.
    let issued = client
        .issue_signature(authed(issue_request("u", Default::default()), FULL))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(issued.expires_at - issued.issued_at, 3600);
    let params = standard_ring()
        .verify(&issued.signature, now(), VerifyOptions::default())
        .unwrap();
    assert_eq!(params.upload.one_time_valid, None);
}

#[tokio::test]
async fn invalid_arguments_name_their_fields() {
    let server = TestServer::start(standard_config()).await;
    let mut client = server.signer().await;
    let with_procedure = |p: pb::UploadParams| pb::UploadParams {
        procedure: Some("review".into()),
        ..p
    };
    let base = || issue_request("user-1", Default::default());
    let params = |p: pb::UploadParams| issue_request("user-1", p);
    let cases: Vec<(&str, pb::IssueSignatureRequest, &str)> = vec![
        (
            "empty user_id",
            issue_request("", Default::default()),
            "user_id",
        ),
        (
            "long user_id",
            issue_request(&"u".repeat(257), Default::default()),
            "user_id",
        ),
        (
            "control char in user_id",
            issue_request("a\nb", Default::default()),
            "user_id",
        ),
        (
            "over 90 days",
            pb::IssueSignatureRequest {
                validity_seconds: 7_776_001,
                ..base()
            },
            "validity_seconds",
        ),
        (
            "251-character source context",
            params(pb::UploadParams {
                source_context: Some("s".repeat(251)),
                ..Default::default()
            }),
            "params.source_context",
        ),
        (
            "1001-character session context",
            params(pb::UploadParams {
                session_context: Some("s".repeat(1001)),
                ..Default::default()
            }),
            "params.session_context",
        ),
        (
            "257-character procedure",
            params(pb::UploadParams {
                procedure: Some("p".repeat(257)),
                ..Default::default()
            }),
            "params.procedure",
        ),
        (
            "priority out of range",
            params(with_procedure(pb::UploadParams {
                task_priority: Some(11),
                ..Default::default()
            })),
            "params.task_priority",
        ),
        (
            "priority without procedure",
            params(pb::UploadParams {
                task_priority: Some(1),
                ..Default::default()
            }),
            "params.task_priority",
        ),
        (
            "unknown notify mode",
            params(with_procedure(pb::UploadParams {
                task_notify_mode: 42,
                ..Default::default()
            })),
            "params.task_notify_mode",
        ),
        (
            "notify mode without procedure",
            params(pb::UploadParams {
                task_notify_mode: pb::TaskNotifyMode::Change as i32,
                ..Default::default()
            }),
            "params.task_notify_mode",
        ),
        (
            "storage region not a slug",
            params(pb::UploadParams {
                storage_region: Some("AP Chongqing".into()),
                ..Default::default()
            }),
            "params.storage_region",
        ),
    ];
    for (what, request, field) in cases {
        let status = client
            .issue_signature(authed(request.clone(), FULL))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), [field], "{what}");
        // The batch call checks the same fields, nested in its `request`.
        let status = client
            .issue_signature_batch(authed(
                pb::IssueSignatureBatchRequest {
                    request: Some(request),
                    count: 1,
                },
                FULL,
            ))
            .await
            .unwrap_err();
        assert_eq!(
            violated_fields(&status),
            [format!("request.{field}")],
            "{what}"
        );
    }

    // Several problems are reported together.
    let status = client
        .issue_signature(authed(
            pb::IssueSignatureRequest {
                user_id: String::new(),
                validity_seconds: 9_000_000,
                params: Some(pb::UploadParams {
                    source_context: Some("s".repeat(251)),
                    ..Default::default()
                }),
            },
            FULL,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["user_id", "validity_seconds", "params.source_context"]
    );

    // Argument checks come before policy: the restricted caller gets INVALID_ARGUMENT too.
    let status = client
        .issue_signature(authed(issue_request("", Default::default()), RESTRICTED))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["user_id"]);
}

#[tokio::test]
async fn issued_signatures_verify_in_the_service_and_the_core() {
    let server = TestServer::start(standard_config()).await;
    let mut client = server.signer().await;
    let params = pb::UploadParams {
        class_id: Some(7),
        procedure: Some("review".into()),
        task_priority: Some(-3),
        task_notify_mode: pb::TaskNotifyMode::Change as i32,
        source_context: Some("{\"album\": \"夏天\", \"q\": \"a&b=c+d%\"}".into()),
        session_context: Some("session 1".into()),
        one_time_valid: true,
        vod_sub_app_id: Some(1400),
        storage_region: Some("ap-chongqing".into()),
    };
    let mut request = issue_request("alice", params.clone());
    request.validity_seconds = 900;
    let before = now();
    let issued = client
        .issue_signature(authed(request, FULL))
        .await
        .unwrap()
        .into_inner();
    let after = now();
    assert!((before..=after).contains(&issued.issued_at));
    assert_eq!(issued.expires_at, issued.issued_at + 900);
    assert_eq!(issued.secret_id, SECRET_ID);
    assert_eq!(
        issued.fingerprint,
        fingerprint(&issued.signature).to_string()
    );
    assert!(!issued.signature.contains(SECRET_KEY));

    let verified = client
        .verify_signature(authed(
            pb::VerifySignatureRequest {
                signature: issued.signature.clone(),
            },
            FULL,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(verified.valid, "{verified:?}");
    assert_eq!(verified.failure(), pb::VerifyFailure::Unspecified);
    assert!(verified.detail.is_empty());
    assert_eq!(verified.secret_id, SECRET_ID);
    assert_eq!(verified.issued_at, issued.issued_at);
    assert_eq!(verified.expires_at, issued.expires_at);
    assert_eq!(verified.random, issued.random);
    assert_eq!(verified.params, Some(params));

    let core = standard_ring()
        .verify(&issued.signature, after, VerifyOptions::default())
        .unwrap();
    assert_eq!(core.random.0, issued.random);
    assert_eq!(core.current_time_stamp, issued.issued_at);
    assert_eq!(
        core.upload.source_context.as_ref().map(|s| s.as_str()),
        Some("{\"album\": \"夏天\", \"q\": \"a&b=c+d%\"}")
    );
}

#[tokio::test]
async fn bad_signatures_are_answers_not_errors() {
    let config = standard_config();
    let start = now();
    let clock = ManualClock::new(start);
    let server = TestServer::builder(config).clock(&clock).start().await;
    let mut client = server.signer().await;
    let issued = client
        .issue_signature(authed(
            pb::IssueSignatureRequest {
                user_id: "u".into(),
                validity_seconds: 60,
                params: None,
            },
            FULL,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut verify = async |signature: String| {
        client
            .verify_signature(authed(pb::VerifySignatureRequest { signature }, FULL))
            .await
            .expect("a bad signature is not an RPC error")
            .into_inner()
    };

    let r = verify("%%% not base64".into()).await;
    assert!(!r.valid);
    assert_eq!(r.failure(), pb::VerifyFailure::Malformed);
    assert!(!r.detail.is_empty());
    assert!(r.params.is_none());

    // Flip one bit of the MAC: the plaintext still names our key.
    let mut raw = base64_decode(&issued.signature);
    raw[0] ^= 1;
    let r = verify(base64_encode(&raw)).await;
    assert_eq!(r.failure(), pb::VerifyFailure::BadSignature);
    assert!(
        r.params.is_none(),
        "nothing is reported from an unauthenticated plaintext"
    );

    let other_key = vod_signer::signature::KeyRing::single(vod_signer::signature::SigningKey::new(
        vod_signer::signature::SecretId::new("AKIDsomeoneElse").unwrap(),
        &vod_signer::signature::SecretKey::from_string("k".into()).unwrap(),
    ));
    let foreign = other_key
        .active()
        .sign(
            &vod_signer::signature::SignRequest::new(
                vod_signer::signature::Validity::from_secs(60).unwrap(),
                Default::default(),
            )
            .unwrap(),
            start,
            vod_signer::signature::Random(1),
        )
        .unwrap();
    let r = verify(foreign.signature.into_string()).await;
    assert_eq!(r.failure(), pb::VerifyFailure::UnknownSecretId);

    clock.set(issued.expires_at);
    let r = verify(issued.signature.clone()).await;
    assert_eq!(r.failure(), pb::VerifyFailure::Expired);
    assert_eq!(r.random, issued.random, "decoded parameters are reported");
    assert_eq!(r.expires_at, issued.expires_at);

    clock.set(issued.issued_at - i64::from(VerifyOptions::default().clock_skew_seconds) - 1);
    let r = verify(issued.signature).await;
    assert_eq!(r.failure(), pb::VerifyFailure::NotYetValid);
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn every_shared_vector_verifies_through_the_service() {
    let vectors = crate::support::vectors::load();
    // One server holds every vector's key; each secretId appears with one SecretKey only.
    let mut keys: Vec<(String, String)> = Vec::new();
    for v in &vectors {
        let id = v.args["secretId"].as_str().unwrap().to_owned();
        match keys.iter().find(|(k, _)| *k == id) {
            Some((_, key)) => assert_eq!(key, &v.secret_key, "{id} has two keys"),
            None => keys.push((id, v.secret_key.clone())),
        }
    }
    let mut toml = String::new();
    let mut files = Vec::new();
    for (i, (id, _)) in keys.iter().enumerate() {
        toml.push_str(&format!(
            "[[keys]]\nsecret_id = \"{id}\"\nsecret_key_file = \"key{i}\"\nactive = {}\n",
            i == 0
        ));
    }
    toml.push_str(&format!(
        "[[callers]]\nname = \"t\"\ntoken_sha256 = \"{}\"\n",
        sha256_hex(FULL)
    ));
    let names: Vec<String> = (0..keys.len()).map(|i| format!("key{i}")).collect();
    for (i, (_, key)) in keys.iter().enumerate() {
        files.push((names[i].as_str(), key.as_str()));
    }
    let clock = ManualClock::new(0);
    let server = TestServer::builder(config_from(&toml, &files))
        .clock(&clock)
        .start()
        .await;
    let mut client = server.signer().await;

    for v in &vectors {
        clock.set(v.valid_at());
        let r = client
            .verify_signature(authed(
                pb::VerifySignatureRequest {
                    signature: v.signature.clone(),
                },
                FULL,
            ))
            .await
            .unwrap()
            .into_inner();
        let label = format!("{} ({})", v.name, v.producer);
        if v.expect == "VALID" {
            assert!(r.valid, "{label}: {r:?}");
        } else {
            assert!(!r.valid, "{label}");
            let expected = VerifyFailure::ALL
                .into_iter()
                .find(|f| f.as_str() == v.expect)
                .unwrap_or_else(|| panic!("{label}: unknown expectation {}", v.expect));
            assert!(
                r.failure().as_str_name().ends_with(expected.as_str()),
                "{label}: {:?}",
                r.failure()
            );
        }
        if r.params.is_some() {
            assert_args_match(v, &r, &label);
        }
    }
}

/// The decoded values the service reports equal the producer's own inputs.
fn assert_args_match(
    v: &crate::support::vectors::Vector,
    r: &pb::VerifySignatureResponse,
    label: &str,
) {
    use serde_json::Value;
    let p = r.params.as_ref().unwrap();
    for (name, expected) in &v.args {
        let actual: Value = match name.as_str() {
            "secretId" => r.secret_id.clone().into(),
            "currentTimeStamp" => r.issued_at.into(),
            "expireTime" => r.expires_at.into(),
            "random" => r.random.into(),
            "classId" => p.class_id.into(),
            "vodSubAppId" => p.vod_sub_app_id.into(),
            "procedure" => p.procedure.clone().into(),
            "sourceContext" => p.source_context.clone().into(),
            "sessionContext" => p.session_context.clone().into(),
            "storageRegion" => p.storage_region.clone().into(),
            "taskPriority" => p.task_priority.into(),
            // proto3 `bool` has no "unset": a signed oneTimeValid=0 reads as false.
            "oneTimeValid" => u8::from(p.one_time_valid).into(),
            "taskNotifyMode" => match p.task_notify_mode() {
                pb::TaskNotifyMode::Unspecified => Value::Null,
                pb::TaskNotifyMode::Finish => "Finish".into(),
                pb::TaskNotifyMode::Change => "Change".into(),
                pb::TaskNotifyMode::None => "None".into(),
            },
            other => panic!("{label}: the test does not know argument {other}"),
        };
        assert_eq!(&actual, expected, "{label}: {name}");
    }
}

#[tokio::test]
async fn a_batch_is_up_to_100_distinct_signatures() {
    let server = TestServer::start(standard_config()).await;
    let mut client = server.signer().await;
    let batch = |count: u32| {
        authed(
            pb::IssueSignatureBatchRequest {
                request: Some(pb::IssueSignatureRequest {
                    user_id: "bulk".into(),
                    validity_seconds: 120,
                    params: Some(pb::UploadParams {
                        one_time_valid: true,
                        ..Default::default()
                    }),
                }),
                count,
            },
            FULL,
        )
    };
    let signatures = client
        .issue_signature_batch(batch(100))
        .await
        .unwrap()
        .into_inner()
        .signatures;
    assert_eq!(signatures.len(), 100);
    let distinct: HashSet<&str> = signatures.iter().map(|s| s.signature.as_str()).collect();
    assert_eq!(distinct.len(), 100);
    let randoms: HashSet<u32> = signatures.iter().map(|s| s.random).collect();
    assert_eq!(randoms.len(), 100);
    let ring = standard_ring();
    for s in &signatures {
        let p = ring
            .verify(&s.signature, now(), VerifyOptions::default())
            .unwrap();
        assert_eq!(p.upload.one_time_valid, Some(true));
        assert_eq!(s.expires_at - s.issued_at, 120);
    }

    for count in [0, 101] {
        let status = client
            .issue_signature_batch(batch(count))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), ["count"], "count {count}");
    }
    // A batch is held to the same policy as a single issuance.
    let mut restricted = batch(3);
    restricted.metadata_mut().insert(
        "authorization",
        format!("Bearer {RESTRICTED}").parse().unwrap(),
    );
    restricted
        .get_mut()
        .request
        .as_mut()
        .unwrap()
        .validity_seconds = 601;
    let status = client.issue_signature_batch(restricted).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("max_validity_seconds"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_one_time_signatures_never_repeat() {
    // Every call must be served, however slowly a debug build on a loaded CI machine works
    // through the burst: overload protection is off (it has tests of its own).
    let toml = standard_toml("[transport]\nmax_queue_delay_ms = 0\nmax_concurrent_requests = 0\n");
    let server = TestServer::start(config_from(&toml, &[("secret-key", SECRET_KEY)])).await;
    // A few connections, as several client instances would open.
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(server.signer().await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..2000 {
        let mut client = clients[i % clients.len()].clone();
        tasks.spawn(async move {
            let request = issue_request(
                "same-user",
                pb::UploadParams {
                    one_time_valid: true,
                    ..Default::default()
                },
            );
            client
                .issue_signature(authed(request, FULL))
                .await
                .unwrap()
                .into_inner()
        });
    }
    let mut signatures = HashSet::new();
    let mut randoms = HashSet::new();
    while let Some(issued) = tasks.join_next().await {
        let issued = issued.unwrap();
        randoms.insert(issued.random);
        signatures.insert(issued.signature);
    }
    assert_eq!(signatures.len(), 2000);
    assert_eq!(randoms.len(), 2000);
}

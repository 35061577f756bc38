//! Issue 12 end to end, in-process: tracked signatures over gRPC, Tencent's published event
//! bodies POSTed to the HTTP receiver, and the uploads read back through `UploadTracker`,
//! on the SQLite store.

use std::time::Duration;

use serde_json::Value;
use tonic::Code;

use crate::support::receiver::*;
use vod_signer::proto::v1 as pb;

const FILE_A: &str = "5285890784273533167";
const FILE_B: &str = "5285890784246869930";

fn procedure(name: &str) -> pb::UploadParams {
    pb::UploadParams {
        procedure: Some(name.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn tracked_signature_carries_its_upload_id_and_keeps_the_callers_contexts() {
    let dir = EventsDir::new();
    let server = start_events(dir.sqlite_config(true)).await;
    let params = pb::UploadParams {
        procedure: Some("LongVideoPreset".into()),
        source_context: Some("order-42".into()),
        session_context: Some("session-7".into()),
        ..Default::default()
    };
    let issued = issue(&server, TRACKED, "alice", params).await.unwrap();
    let id = &issued.upload_id;
    assert!(!id.is_empty() && id.len() <= 64, "{id:?}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "not URL-safe: {id:?}"
    );

    // On the wire: both contexts are the id, the caller's own values are not there.
    let verified = server
        .signer()
        .await
        .verify_signature(authed(
            pb::VerifySignatureRequest {
                signature: issued.signature.clone(),
            },
            TRACKED,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(verified.valid, "{verified:?}");
    let signed_params = verified.params.unwrap();
    assert_eq!(signed_params.source_context.as_deref(), Some(id.as_str()));
    assert_eq!(signed_params.session_context.as_deref(), Some(id.as_str()));
    assert_eq!(signed_params.procedure.as_deref(), Some("LongVideoPreset"));

    // In the record: the caller's own values.
    let upload = get_upload(&server, TRACKED, id).await.unwrap();
    assert_eq!(upload.upload_id, *id);
    assert_eq!(upload.user_id, "alice");
    assert_eq!(state(&upload), pb::UploadState::Issued);
    assert_eq!(upload.source_context, "order-42");
    assert_eq!(upload.session_context, "session-7");
    assert_eq!(upload.procedure, "LongVideoPreset");
    assert_eq!(upload.issued_at, issued.issued_at);
    assert_eq!(upload.expires_at, issued.expires_at);
    assert!(upload.files.is_empty() && upload.failure.is_none());
    server.stop().await;
}

#[tokio::test]
async fn session_context_is_the_id_only_with_a_procedure_and_untracked_callers_are_unchanged() {
    let dir = EventsDir::new();
    let server = start_events(dir.sqlite_config(true)).await;
    let params = pb::UploadParams {
        session_context: Some("mine".into()),
        source_context: Some("src".into()),
        ..Default::default()
    };
    let issued = issue(&server, TRACKED, "bob", params.clone())
        .await
        .unwrap();
    let verify = |signature: String| {
        let server = &server;
        async move {
            server
                .signer()
                .await
                .verify_signature(authed(pb::VerifySignatureRequest { signature }, TRACKED))
                .await
                .unwrap()
                .into_inner()
                .params
                .unwrap()
        }
    };
    let on_wire = verify(issued.signature.clone()).await;
    assert_eq!(
        on_wire.source_context.as_deref(),
        Some(issued.upload_id.as_str())
    );
    assert_eq!(on_wire.session_context, None);
    let upload = get_upload(&server, TRACKED, &issued.upload_id)
        .await
        .unwrap();
    assert_eq!(upload.session_context, "mine");

    let plain = issue(&server, PLAIN, "bob", params).await.unwrap();
    assert_eq!(plain.upload_id, "");
    let on_wire = verify(plain.signature).await;
    assert_eq!(on_wire.source_context.as_deref(), Some("src"));
    assert_eq!(on_wire.session_context.as_deref(), Some("mine"));
    server.stop().await;
}

#[tokio::test]
async fn every_signature_of_a_batch_has_its_own_record() {
    let dir = EventsDir::new();
    let server = start_events(dir.sqlite_config(true)).await;
    let batch = server
        .signer()
        .await
        .issue_signature_batch(authed(
            pb::IssueSignatureBatchRequest {
                request: Some(pb::IssueSignatureRequest {
                    user_id: "carol".into(),
                    validity_seconds: 600,
                    params: Some(procedure("p")),
                }),
                count: 3,
            },
            TRACKED,
        ))
        .await
        .unwrap()
        .into_inner();
    let ids: std::collections::HashSet<_> = batch
        .signatures
        .iter()
        .map(|s| s.upload_id.clone())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    for id in &ids {
        let upload = get_upload(&server, TRACKED, id).await.unwrap();
        assert_eq!(upload.user_id, "carol");
        assert_eq!(state(&upload), pb::UploadState::Issued);
    }
    server.stop().await;
}

/// F1 then F3, Tencent's verbatim bodies adapted to the tracked id: UPLOADED, then READY,
/// seen by GetUpload and by a watcher.
#[tokio::test]
async fn published_events_move_an_upload_to_ready_and_a_watcher_sees_each_change() {
    let dir = EventsDir::new();
    let server = start_events(dir.sqlite_config(true)).await;
    let issued = issue(&server, TRACKED, "alice", procedure("LongVideoPreset"))
        .await
        .unwrap();
    let id = issued.upload_id.clone();

    let mut watch = watch(&server, TRACKED).await;

    let response = post_signed(&server, f1_for(&id, FILE_A, Some(F3_TASK_ID))).await;
    assert_eq!(
        (response.status, response.body.as_str()),
        (200, r#"{"code":0}"#)
    );
    let upload = wait_for_state(&server, &id, pb::UploadState::Uploaded).await;
    let file = &upload.files[0];
    assert_eq!(file.file_id, FILE_A);
    assert_eq!(file.name, "动物世界");
    assert_eq!(file.media_type, "mp4");
    assert_eq!(
        file.media_url,
        "http://125676836723.vod2.myqcloud.com/xxx/xxx/q1BORBPQH1IA.mp4"
    );
    assert_eq!(file.procedure_task_id, F3_TASK_ID);

    let response = post_signed(&server, f3_for(&id, FILE_A)).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let upload = wait_for_state(&server, &id, pb::UploadState::Ready).await;
    assert!(upload.failure.is_none());
    assert_eq!(upload.files.len(), 1);

    let mut seen = Vec::new();
    while seen.last().map(|(_, s)| *s) != Some(pb::UploadState::Ready) {
        let change = next_change(&mut watch).await;
        let upload = change.upload.unwrap();
        assert_eq!(upload.upload_id, id);
        assert!(!change.cursor.is_empty());
        assert!(change.received_at > 0);
        seen.push((change.event_type, state(&upload)));
    }
    assert_eq!(
        seen,
        [
            ("NewFileUpload".to_owned(), pb::UploadState::Uploaded),
            ("ProcedureStateChanged".to_owned(), pb::UploadState::Ready),
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn without_a_procedure_an_upload_is_ready_at_once_and_may_bring_several_files() {
    let dir = EventsDir::new();
    let server = start_events(dir.sqlite_config(true)).await;
    let issued = issue(&server, TRACKED, "dave", pb::UploadParams::default())
        .await
        .unwrap();
    let id = issued.upload_id;
    assert_eq!(
        post_signed(&server, f1_for(&id, FILE_A, None)).await.status,
        200
    );
    wait_for_state(&server, &id, pb::UploadState::Ready).await;
    assert_eq!(
        post_signed(&server, f1_for(&id, FILE_B, None)).await.status,
        200
    );
    let mut files = Vec::new();
    for _ in 0..100 {
        files = get_upload(&server, TRACKED, &id).await.unwrap().files;
        if files.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ids: Vec<_> = files.iter().map(|f| f.file_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, [FILE_B, FILE_A]);
    server.stop().await;
}

#[tokio::test]
async fn order_and_duplicates_do_not_change_the_final_state() {
    let dir = EventsDir::new();
    let server = start_events(dir.sqlite_config(true)).await;
    let issued = issue(&server, TRACKED, "erin", procedure("p"))
        .await
        .unwrap();
    let id = issued.upload_id;

    // The procedure's report first: kept, matched by SessionContext, applied once the
    // upload arrives.
    assert_eq!(post_signed(&server, f3_for(&id, FILE_A)).await.status, 200);
    let upload = get_upload(&server, TRACKED, &id).await.unwrap();
    assert_eq!(state(&upload), pb::UploadState::Issued);
    assert_eq!(
        post_signed(&server, f1_for(&id, FILE_A, Some(F3_TASK_ID)))
            .await
            .status,
        200
    );
    let ready = wait_for_state(&server, &id, pb::UploadState::Ready).await;

    // Replays (a PUSH retry carries a new T and Sign) are acknowledged and change nothing.
    {
        let mut watch = watch(&server, TRACKED).await;
        for body in [
            f1_for(&id, FILE_A, Some(F3_TASK_ID)),
            f3_for(&id, FILE_A),
            f3_for(&id, FILE_A),
        ] {
            let response = server.post_event(&signed(body, now() + 300)).await;
            assert_eq!(response.status, 200, "{}", response.body);
        }
        let extra = tokio::time::timeout(Duration::from_millis(500), watch.message()).await;
        assert!(extra.is_err(), "a replay made a change: {extra:?}");
    }
    let again = get_upload(&server, TRACKED, &id).await.unwrap();
    assert_eq!(again, ready);
    server.stop().await;
}

#[tokio::test]
async fn a_failed_subtask_fails_the_upload_with_its_type_code_and_message() {
    let dir = EventsDir::new();
    let server = start_events(dir.sqlite_config(true)).await;
    let id = issue(&server, TRACKED, "frank", procedure("p"))
        .await
        .unwrap()
        .upload_id;
    assert_eq!(
        post_signed(&server, f1_for(&id, FILE_A, Some(F3_TASK_ID)))
            .await
            .status,
        200
    );
    let mut processing = f3_for(&id, FILE_A);
    processing["ProcedureStateChangeEvent"]["Status"] = Value::from("PROCESSING");
    assert_eq!(post_signed(&server, processing).await.status, 200);
    wait_for_state(&server, &id, pb::UploadState::Processing).await;

    let mut failed = f3_for(&id, FILE_A);
    let task =
        &mut failed["ProcedureStateChangeEvent"]["MediaProcessResultSet"][0]["TranscodeTask"];
    task["Status"] = Value::from("FAIL");
    task["ErrCode"] = Value::from(30010);
    task["ErrCodeExt"] = Value::from("InternalError");
    task["Message"] = Value::from("transcoding failed");
    assert_eq!(post_signed(&server, failed).await.status, 200);
    let upload = wait_for_state(&server, &id, pb::UploadState::Failed).await;
    let failure = upload.failure.unwrap();
    assert_eq!(failure.file_id, FILE_A);
    assert_eq!(failure.subtask_type, "Transcode");
    assert_eq!(failure.err_code_ext, "InternalError");
    assert_eq!(failure.message, "transcoding failed");
    server.stop().await;
}

#[tokio::test]
async fn sign_and_t_are_required_and_checked_and_nothing_unauthenticated_is_stored() {
    let dir = EventsDir::new();
    let server = start_events(dir.sqlite_config(true)).await;
    let id = issue_tracked(&server, "gina").await;
    let body = f1_for(&id, FILE_A, None);
    let t = now() + 600;

    let unsigned = serde_json::to_vec(&body).unwrap();
    let mut bad = body.clone();
    bad["T"] = Value::from(t);
    bad["Sign"] = Value::from(md5_hex(format!("WrongKey{t}").as_bytes()));
    let expired = signed(body.clone(), now() - 120);
    let too_far_ahead = signed(body.clone(), now() + 3600);
    for (what, raw) in [
        ("missing", unsigned.clone()),
        ("bad Sign", serde_json::to_vec(&bad).unwrap()),
        ("expired T", expired),
        ("T too far ahead", too_far_ahead),
    ] {
        let response = server.post_event(&raw).await;
        assert_eq!(response.status, 401, "{what}: {}", response.body);
        assert!(
            !response.body.contains(SIGN_KEY),
            "{what}: {}",
            response.body
        );
    }
    let upload = get_upload(&server, TRACKED, &id).await.unwrap();
    assert_eq!(
        state(&upload),
        pb::UploadState::Issued,
        "stored unauthenticated"
    );

    // Within the 60 s of skew, uppercase hex, and the pair in the query string or headers.
    let late = signed(body.clone(), now() - 30);
    assert_eq!(server.post_event(&late).await.status, 200);
    wait_for_state(&server, &id, pb::UploadState::Ready).await;
    let id2 = issue_tracked(&server, "gina").await;
    let query = format!(
        "{}?Sign={}&T={t}",
        server.events_path(),
        sign(t).to_ascii_uppercase()
    );
    let raw = serde_json::to_vec(&f1_for(&id2, FILE_A, None)).unwrap();
    let response = http_request(server.events_addr.unwrap(), "POST", &query, &[], &raw).await;
    assert_eq!(response.status, 200, "{}", response.body);
    wait_for_state(&server, &id2, pb::UploadState::Ready).await;
    let id3 = issue_tracked(&server, "gina").await;
    let raw = serde_json::to_vec(&f1_for(&id3, FILE_B, None)).unwrap();
    let t_text = t.to_string();
    let signature = sign(t);
    let response = http_request(
        server.events_addr.unwrap(),
        "POST",
        &server.events_path(),
        &[("Sign", &signature), ("T", &t_text)],
        &raw,
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    wait_for_state(&server, &id3, pb::UploadState::Ready).await;
    server.stop().await;
}

#[tokio::test]
async fn wrong_paths_big_bodies_and_non_json_are_refused_with_their_codes() {
    let dir = EventsDir::new();
    let server = start_events(dir.sqlite_config(true)).await;
    let body = signed(fixture("F1-new-file-upload-push.json"), now() + 600);
    let addr = server.events_addr.unwrap();
    for path in [
        "/vod/events/events-test-path-token-0123456788",
        "/vod/events/",
        "/vod/events",
        "/",
        "/metrics",
    ] {
        let response = http_request(addr, "POST", path, &[], &body).await;
        assert_eq!(response.status, 404, "{path}");
        assert!(!response.body.contains(PATH_TOKEN));
    }
    let path = server.events_path();
    assert_eq!(http_request(addr, "GET", &path, &[], b"").await.status, 405);

    let huge = vec![b' '; 1024 * 1024 + 1];
    assert_eq!(
        http_request(addr, "POST", &path, &[], &huge).await.status,
        413
    );
    let just_fits = {
        let mut b = body.clone();
        b.resize(1024 * 1024, b' ');
        b
    };
    assert_eq!(
        http_request(addr, "POST", &path, &[], &just_fits)
            .await
            .status,
        200
    );

    for not_json in [
        &b"EventType=NewFileUpload"[..],
        b"",
        b"[1,2]",
        b"{\"no\":1}",
    ] {
        let response = http_request(addr, "POST", &path, &[], not_json).await;
        assert_eq!(
            response.status,
            400,
            "{:?}",
            String::from_utf8_lossy(not_json)
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_and_legacy_events_are_acknowledged_kept_and_counted() {
    let dir = EventsDir::new();
    let server = TestServer::builder(dir.sqlite_config(true))
        .events()
        .metrics()
        .start()
        .await;
    let pull_complete = fixture("F5-pull-complete-push.json");
    let legacy = fixture("F7-legacy-2.0-new-file-upload.json");
    for body in [pull_complete.clone(), pull_complete, legacy] {
        let response = post_signed(&server, body).await;
        assert_eq!(
            (response.status, response.body.as_str()),
            (200, r#"{"code":0}"#)
        );
    }
    let metrics = http_request(server.metrics_addr.unwrap(), "GET", "/metrics", &[], b"").await;
    let line = |labels: &str| {
        metrics
            .body
            .lines()
            .find(|l| l.starts_with("vod_signer_events_received_total{") && l.contains(labels))
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
    };
    assert_eq!(
        line(r#"event_type="other",outcome="ignored""#).as_deref(),
        Some("1"),
        "{}",
        metrics.body
    );
    assert_eq!(
        line(r#"event_type="other",outcome="duplicate""#).as_deref(),
        Some("1"),
        "{}",
        metrics.body
    );
    assert_eq!(
        line(r#"event_type="legacy",outcome="legacy""#).as_deref(),
        Some("1"),
        "{}",
        metrics.body
    );
    server.stop().await;
}

#[tokio::test]
async fn callers_see_only_their_own_uploads_and_need_can_track() {
    let dir = EventsDir::new();
    let server = start_events(dir.sqlite_config(true)).await;
    let id = issue_tracked(&server, "hana").await;
    let status = get_upload(&server, OTHER, &id).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let unknown = get_upload(&server, TRACKED, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let empty = get_upload(&server, TRACKED, "").await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument, "{empty:?}");

    let denied = get_upload(&server, PLAIN, &id).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("can_track"), "{denied:?}");
    let mut tracker = server.tracker().await;
    let denied = tracker
        .list_uploads(authed(
            pb::ListUploadsRequest {
                user_id: "hana".into(),
                ..Default::default()
            },
            PLAIN,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = tracker
        .watch_uploads(authed(pb::WatchUploadsRequest::default(), PLAIN))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let unauthenticated = tracker
        .get_upload(pb::GetUploadRequest { upload_id: id })
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);

    let others = tracker
        .list_uploads(authed(
            pb::ListUploadsRequest {
                user_id: "hana".into(),
                ..Default::default()
            },
            OTHER,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(others.uploads.is_empty(), "{others:?}");
    server.stop().await;
}

#[tokio::test]
async fn list_pages_newest_first_and_bad_tokens_and_cursors_are_invalid_arguments() {
    let dir = EventsDir::new();
    let server = start_events(dir.sqlite_config(true)).await;
    let mut issued = Vec::new();
    for _ in 0..5 {
        issued.push(issue_tracked(&server, "ivan").await);
    }
    issue(
        &server,
        TRACKED,
        "someone-else",
        pb::UploadParams::default(),
    )
    .await
    .unwrap();
    let mut tracker = server.tracker().await;
    let mut listed = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let page = tracker
            .list_uploads(authed(
                pb::ListUploadsRequest {
                    user_id: "ivan".into(),
                    page_size: 2,
                    page_token: page_token.clone(),
                },
                TRACKED,
            ))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.uploads.len() <= 2);
        listed.extend(page.uploads);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert!(pages >= 3);
    let ids: std::collections::HashSet<_> = listed.iter().map(|u| u.upload_id.clone()).collect();
    assert_eq!(ids, issued.iter().cloned().collect());
    assert!(
        listed.windows(2).all(|w| w[0].issued_at >= w[1].issued_at),
        "not newest first"
    );

    let bad_page = tracker
        .list_uploads(authed(
            pb::ListUploadsRequest {
                user_id: "ivan".into(),
                page_size: 2,
                page_token: "not-a-token".into(),
            },
            TRACKED,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_page.code(), Code::InvalidArgument, "{bad_page:?}");
    let no_user = tracker
        .list_uploads(authed(pb::ListUploadsRequest::default(), TRACKED))
        .await
        .unwrap_err();
    assert_eq!(no_user.code(), Code::InvalidArgument);

    let bad_cursor = match tracker
        .watch_uploads(authed(
            pb::WatchUploadsRequest {
                after_cursor: "not-a-cursor".into(),
                user_id: String::new(),
            },
            TRACKED,
        ))
        .await
    {
        Err(status) => status,
        Ok(response) => response.into_inner().message().await.unwrap_err(),
    };
    assert_eq!(bad_cursor.code(), Code::InvalidArgument, "{bad_cursor:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_restarted_server_keeps_its_uploads_and_resumes_a_watch_from_its_cursor() {
    let dir = EventsDir::new();
    let server = start_events(dir.sqlite_config(true)).await;
    let first = issue_tracked(&server, "jo").await;
    let second = issue_tracked(&server, "jo").await;
    let mut watch = watch(&server, TRACKED).await;
    assert_eq!(
        post_signed(&server, f1_for(&first, FILE_A, None))
            .await
            .status,
        200
    );
    let change = next_change(&mut watch).await;
    assert_eq!(change.upload.as_ref().unwrap().upload_id, first);
    let cursor = change.cursor;
    drop(watch);
    // Changed while nobody watched: the resumed watch must deliver it.
    assert_eq!(
        post_signed(&server, f1_for(&second, FILE_B, None))
            .await
            .status,
        200
    );
    wait_for_state(&server, &second, pb::UploadState::Ready).await;
    server.stop().await;

    let server = start_events(dir.sqlite_config(true)).await;
    let upload = get_upload(&server, TRACKED, &first).await.unwrap();
    assert_eq!(state(&upload), pb::UploadState::Ready);
    assert_eq!(upload.files[0].file_id, FILE_A);
    let mut resumed = resume_watch(&server, TRACKED, cursor).await;
    let next = next_change(&mut resumed).await;
    assert_eq!(next.upload.unwrap().upload_id, second);
    server.stop().await;
}

#[tokio::test]
async fn a_watch_filtered_by_user_sees_only_that_users_uploads() {
    let dir = EventsDir::new();
    let server = start_events(dir.sqlite_config(true)).await;
    let kim = issue_tracked(&server, "kim").await;
    let lee = issue_tracked(&server, "lee").await;
    let mut watch = server
        .tracker()
        .await
        .watch_uploads(authed(
            pb::WatchUploadsRequest {
                after_cursor: String::new(),
                user_id: "lee".into(),
            },
            TRACKED,
        ))
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        post_signed(&server, f1_for(&kim, FILE_A, None))
            .await
            .status,
        200
    );
    assert_eq!(
        post_signed(&server, f1_for(&lee, FILE_B, None))
            .await
            .status,
        200
    );
    let change = next_change(&mut watch).await;
    assert_eq!(change.upload.unwrap().upload_id, lee);
    server.stop().await;
}

#[tokio::test]
async fn an_unused_signature_expires_and_watchers_see_it() {
    let dir = EventsDir::new();
    let server = start_events(dir.sqlite_config(true)).await;
    let mut watch = watch(&server, TRACKED).await;
    let issued = server
        .signer()
        .await
        .issue_signature(authed(
            pb::IssueSignatureRequest {
                user_id: "max".into(),
                validity_seconds: 1,
                params: None,
            },
            TRACKED,
        ))
        .await
        .unwrap()
        .into_inner();
    // The sweeper runs every few seconds.
    let change = loop {
        let change = tokio::time::timeout(Duration::from_secs(20), watch.message())
            .await
            .expect("the expiry within 20 s")
            .unwrap()
            .unwrap();
        if change.upload.as_ref().unwrap().upload_id == issued.upload_id {
            break change;
        }
    };
    assert_eq!(change.event_type, "Expired");
    assert_eq!(
        state(change.upload.as_ref().unwrap()),
        pb::UploadState::Expired
    );
    let upload = get_upload(&server, TRACKED, &issued.upload_id)
        .await
        .unwrap();
    assert_eq!(state(&upload), pb::UploadState::Expired);
    server.stop().await;
}

#[tokio::test]
async fn a_cursor_older_than_retention_is_out_of_range() {
    let dir = EventsDir::new();
    let server = start_events(dir.sqlite_config(true)).await;
    let id = issue_tracked(&server, "nina").await;
    let mut watch = watch(&server, TRACKED).await;
    assert_eq!(
        post_signed(&server, f1_for(&id, FILE_A, None)).await.status,
        200
    );
    let cursor = next_change(&mut watch).await.cursor;
    // A later change, so the pruned part extends past the cursor (a cursor at the very end of
    // the pruned part would still resume exactly: nothing after it was lost).
    issue_and_post(&server, "nina", FILE_B).await;
    next_change(&mut watch).await;

    // Retention runs hourly; run it now as if 31 days had passed, through a second handle on
    // the same store.
    let settings = vod_signer::config::TrackingSettings::new(
        vod_signer::config::StoreLocation::Sqlite(dir.path().join("uploads.db")),
    );
    let tracker = vod_signer::tracking::Tracker::open(&settings)
        .await
        .unwrap();
    tracker.prune(now() + 31 * 86_400).await.unwrap();
    drop(tracker);

    let status = match server
        .tracker()
        .await
        .watch_uploads(authed(
            pb::WatchUploadsRequest {
                after_cursor: cursor,
                user_id: String::new(),
            },
            TRACKED,
        ))
        .await
    {
        Err(status) => status,
        Ok(response) => {
            tokio::time::timeout(Duration::from_secs(5), response.into_inner().message())
                .await
                .expect("an answer, not a wait")
                .unwrap_err()
        }
    };
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_reload_replaces_the_path_token_and_the_sign_key() {
    let dir = EventsDir::new();
    let server = start_events(dir.sqlite_config(true)).await;
    let addr = server.events_addr.unwrap();
    let id = issue_tracked(&server, "alice").await;
    let t = now();
    let old_path = server.events_path();
    let first = signed(f1_for(&id, "file-before", None), t);
    let response = http_request(addr, "POST", &old_path, &[], &first).await;
    assert_eq!(response.status, 200, "{}", response.body);

    let new_token = "rotated-path-token-9876543210abcdef";
    let new_key = "RotatedSignKey2";
    std::fs::write(dir.path().join("path-token"), new_token).unwrap();
    std::fs::write(dir.path().join("sign-key"), new_key).unwrap();
    let outcome = server.reload.reload().await.expect("the reload succeeds");
    assert!(outcome.pending_restart.is_empty(), "{outcome:?}");

    let new_path = format!("/vod/events/{new_token}");
    let mut body = f1_for(&id, "file-after", None);
    body["T"] = Value::from(t);
    body["Sign"] = Value::from(md5_hex(format!("{new_key}{t}").as_bytes()));
    let body = serde_json::to_vec(&body).unwrap();
    let old_token = http_request(addr, "POST", &old_path, &[], &body).await;
    assert_eq!(old_token.status, 404, "the old path token still works");
    let old_key = signed(f1_for(&id, "file-after", None), t);
    let old_signature = http_request(addr, "POST", &new_path, &[], &old_key).await;
    assert_eq!(old_signature.status, 401, "the old SignKey still works");
    let rotated = http_request(addr, "POST", &new_path, &[], &body).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    server.stop().await;
}

//! The real `vod-signer` binary over HTTP: a tracked signature issued over gRPC, Tencent's
//! published F1 and F3 bodies (adapted in the test to carry the tracked id) POSTed to the
//! receiver, the upload followed with GetUpload and WatchUploads, then a restart.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::process::{ServeProcess, free_port};
use crate::support::receiver::*;
use vod_signer::proto::v1 as pb;
use vod_signer::proto::v1::upload_signer_client::UploadSignerClient;
use vod_signer::proto::v1::upload_tracker_client::UploadTrackerClient;

const FILE_ID: &str = "5285890784246869930";

/// `vod-signer serve --config FILE --log-format json` with `env`.
fn spawn_serve(config: &Path, env: &[(&str, &Path)]) -> ServeProcess {
    ServeProcess::spawn(|command| {
        command
            .args(["--log-format", "json", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info");
    })
}

/// The gRPC and receiver addresses from the start-up log line.
fn addresses(serve: &mut ServeProcess) -> (SocketAddr, SocketAddr) {
    serve.wait_for(|line| {
        let event = serde_json::from_str::<Value>(line).ok()?;
        let fields = &event["fields"];
        (fields["message"] == "vod-signer serving").then(|| {
            let addr = |name: &str| fields[name].as_str().unwrap().parse().unwrap();
            (addr("listen"), addr("events"))
        })
    })
}

/// SIGTERM, then the exit code and every stderr line.
fn stop(serve: ServeProcess) -> (i32, Vec<String>) {
    serve.signal("TERM");
    serve.finish()
}

async fn get(tracker: &mut UploadTrackerClient<tonic::transport::Channel>, id: &str) -> pb::Upload {
    tracker
        .get_upload(authed(
            pb::GetUploadRequest {
                upload_id: id.into(),
            },
            TRACKED,
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn post(events: SocketAddr, body: Value) -> HttpResponse {
    let raw = signed(body, now() + 600);
    http_request(
        events,
        "POST",
        &format!("/vod/events/{PATH_TOKEN}"),
        &[],
        &raw,
    )
    .await
}

#[test]
fn the_binary_tracks_an_upload_from_signature_to_ready_and_failed_across_a_restart() {
    let dir = EventsDir::new();
    std::fs::write(dir.config_path(), dir.toml("sqlite:uploads.db", true)).unwrap();
    let mut serve = spawn_serve(&dir.config_path(), &[]);
    let (addr, events) = addresses(&mut serve);
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let (ready_id, failed_id, cursor) = runtime.block_on(async {
        let endpoint = format!("http://{addr}");
        let mut signer = UploadSignerClient::connect(endpoint.clone()).await.unwrap();
        let mut tracker = UploadTrackerClient::connect(endpoint).await.unwrap();
        let request = |user: &str| {
            authed(pb::IssueSignatureRequest {
                    user_id: user.into(),
                    validity_seconds: 600,
                    params: Some(pb::UploadParams {
                        procedure: Some("LongVideoPreset".into()),
                        ..Default::default()
                    }),
                }, TRACKED)
        };
        let ready_id = signer
            .issue_signature(request("alice"))
            .await
            .unwrap()
            .into_inner()
            .upload_id;
        let failed_id = signer
            .issue_signature(request("bob"))
            .await
            .unwrap()
            .into_inner()
            .upload_id;

        let mut watch = tracker
            .watch_uploads(authed(pb::WatchUploadsRequest::default(), TRACKED))
            .await
            .unwrap()
            .into_inner();
        tokio::time::sleep(Duration::from_millis(300)).await;

        // F1 then F3 for one upload; F3 first (out of order) with a failed subtask for the
        // other, plus a duplicate.
        for body in [
            f1_for(&ready_id, FILE_ID, Some(F3_TASK_ID)),
            f3_for(&ready_id, FILE_ID),
        ] {
            let response = post(events, body).await;
            assert_eq!((response.status, response.body.as_str()), (200, r#"{"code":0}"#));
        }
        let mut failing = f3_for(&failed_id, "5285890784273533167");
        let subtask =
            &mut failing["ProcedureStateChangeEvent"]["MediaProcessResultSet"][1]["CoverBySnapshotTask"];
        subtask["Status"] = Value::from("FAIL");
        subtask["ErrCodeExt"] = Value::from("FailedOperation.Snapshot");
        subtask["Message"] = Value::from("no frame");
        for body in [
            failing.clone(),
            f1_for(&failed_id, "5285890784273533167", None),
            failing,
        ] {
            assert_eq!(post(events, body).await.status, 200);
        }
        // Refused ones change nothing.
        let wrong_token = http_request(
            events,
            "POST",
            "/vod/events/not-the-token-at-all-000",
            &[],
            &signed(f1_for(&ready_id, FILE_ID, None), now() + 600),
        )
        .await;
        assert_eq!(wrong_token.status, 404);
        let expired = http_request(
            events,
            "POST",
            &format!("/vod/events/{PATH_TOKEN}"),
            &[],
            &signed(f1_for(&failed_id, "1", None), now() - 3600),
        )
        .await;
        assert_eq!(expired.status, 401);

        let mut last = std::collections::HashMap::new();
        let mut cursor = String::new();
        while last.get(&ready_id) != Some(&pb::UploadState::Ready)
            || last.get(&failed_id) != Some(&pb::UploadState::Failed)
        {
            let change = tokio::time::timeout(Duration::from_secs(10), watch.message())
                .await
                .expect("changes arrive")
                .unwrap()
                .unwrap();
            let upload = change.upload.unwrap();
            last.insert(upload.upload_id.clone(), state(&upload));
            cursor = change.cursor;
        }

        let ready = get(&mut tracker, &ready_id).await;
        assert_eq!(state(&ready), pb::UploadState::Ready);
        assert_eq!(ready.files.len(), 1);
        assert_eq!(ready.files[0].file_id, FILE_ID);
        let failed = get(&mut tracker, &failed_id).await;
        assert_eq!(state(&failed), pb::UploadState::Failed);
        let failure = failed.failure.unwrap();
        assert_eq!(failure.subtask_type, "CoverBySnapshot");
        assert_eq!(failure.err_code_ext, "FailedOperation.Snapshot");
        assert_eq!(failure.message, "no frame");
        (ready_id, failed_id, cursor)
    });

    let (code, lines) = stop(serve);
    assert_eq!(code, 0, "{}", lines.join("\n"));
    let log = lines.join("\n");
    for secret in [PATH_TOKEN, SIGN_KEY, SECRET_KEY] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }

    // The SQLite file survives: same answers from a new process, and the cursor still works.
    let mut serve = spawn_serve(&dir.config_path(), &[]);
    let (addr, events) = addresses(&mut serve);
    runtime.block_on(async {
        let mut tracker = UploadTrackerClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        assert_eq!(
            state(&get(&mut tracker, &ready_id).await),
            pb::UploadState::Ready
        );
        assert_eq!(
            state(&get(&mut tracker, &failed_id).await),
            pb::UploadState::Failed
        );
        let mut resumed = tracker
            .watch_uploads(authed(
                pb::WatchUploadsRequest {
                    after_cursor: cursor,
                    user_id: String::new(),
                },
                TRACKED,
            ))
            .await
            .unwrap()
            .into_inner();
        let mut late = f1_for(&ready_id, "5285890784000000001", Some("other-task"));
        late["FileUploadEvent"]["MediaBasicInfo"]["Name"] = Value::from("second file");
        assert_eq!(post(events, late).await.status, 200);
        let change = tokio::time::timeout(Duration::from_secs(10), resumed.message())
            .await
            .expect("the change after the cursor")
            .unwrap()
            .unwrap();
        let upload = change.upload.unwrap();
        assert_eq!(upload.upload_id, ready_id);
        assert_eq!(upload.files.len(), 2);
    });
    let (code, lines) = stop(serve);
    assert_eq!(code, 0, "{}", lines.join("\n"));
}

/// `serve --dev` prints the whole loop; run exactly what it prints (with the id filled in)
/// through bash and curl, and see the upload become READY.
#[test]
fn serve_dev_prints_a_curl_loop_that_works() {
    let events_port = free_port();
    let mut serve = ServeProcess::spawn(|command| {
        command
            .args(["--dev", "--listen", "127.0.0.1:0", "--events-listen"])
            .arg(format!("127.0.0.1:{events_port}"))
            .env("RUST_LOG", "warn");
    });
    let mut banner = Vec::new();
    serve.wait_for(|line| {
        let done = line.starts_with("====") && banner.len() > 3;
        banner.push(line.to_owned());
        done.then_some(())
    });
    let find = |prefix: &str| {
        banner
            .iter()
            .map(|l| l.trim())
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{}", banner.join("\n")))
            .to_owned()
    };
    let addr: SocketAddr = find("address:")["address:".len()..].trim().parse().unwrap();
    let store = std::path::PathBuf::from(
        find("store:")["store:".len()..]
            .trim()
            .trim_end_matches("(deleted at exit)")
            .trim(),
    );
    let script_lines = [find("T=$(("), find("curl ")];
    let token = vod_signer::config::DEV_TOKEN;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let upload_id = runtime.block_on(async {
        let mut signer = UploadSignerClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        signer
            .issue_signature(authed(
                pb::IssueSignatureRequest {
                    user_id: "newcomer".into(),
                    validity_seconds: 600,
                    params: None,
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner()
            .upload_id
    });
    assert!(store.exists(), "{store:?}");

    let script = format!(
        "set -e\nUPLOAD_ID={upload_id}\n{}\n",
        script_lines.join("\n")
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.trim(), r#"{"code":0}"#, "{script}\n{output:?}");

    runtime.block_on(async {
        let mut tracker = UploadTrackerClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let upload = tracker
            .get_upload(authed(pb::GetUploadRequest { upload_id }, token))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state(&upload), pb::UploadState::Ready, "{upload:?}");
    });

    serve.signal("INT");
    let (code, _) = serve.finish();
    assert_eq!(code, 0);
    assert!(
        !store.exists(),
        "the development store outlived the process"
    );
}

/// Reconciliation is on by default in a PUSH-only deployment, against Tencent's HTTPS
/// endpoint. Without a system trust store (here: an empty `SSL_CERT_FILE` and `SSL_CERT_DIR`,
/// which replace the platform's store) the server still serves, with reconciliation off and
/// one error line saying why.
#[test]
fn push_only_without_root_certificates_serves_with_reconciliation_off() {
    let dir = EventsDir::new();
    std::fs::write(dir.config_path(), dir.toml("sqlite:uploads.db", true)).unwrap();
    let no_roots = dir.path().join("no-roots.pem");
    std::fs::write(&no_roots, "").unwrap();
    let no_roots_dir = dir.path().join("no-roots");
    std::fs::create_dir(&no_roots_dir).unwrap();
    let mut serve = spawn_serve(
        &dir.config_path(),
        &[
            ("SSL_CERT_FILE", &no_roots),
            ("SSL_CERT_DIR", &no_roots_dir),
        ],
    );
    let (addr, _events) = addresses(&mut serve);
    assert!(std::net::TcpStream::connect(addr).is_ok(), "it serves");
    let (code, lines) = stop(serve);
    assert_eq!(code, 0, "{}", lines.join("\n"));
    let off: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("reconciliation is off"))
        .collect();
    assert_eq!(off.len(), 1, "{}", lines.join("\n"));
    assert!(off[0].contains("ERROR"), "{}", off[0]);
}

//! `get_upload`, `list_uploads` and `watch_uploads` against a real server with an SQLite store
//! and its event receiver; the watch is followed across a server restart.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpListener;
use vod_signer::config::Config;
use vod_signer::testing::{TestServer, http_request, sha256_hex};
use vod_signer_client::{Error, IssueRequest, SignerClient, UploadState, WatchFrom};

const TOKEN: &str = "client-uploads-token-1";
const PATH_TOKEN: &str = "client-test-path-token-0000";

fn config(dir: &Path) -> Config {
    std::fs::write(dir.join("secret-key"), "client-uploads-secret").unwrap();
    std::fs::write(dir.join("path-token"), PATH_TOKEN).unwrap();
    let text = format!(
        r#"
[tracking]
store = "sqlite:uploads.db"

[events]
path_token_file = "path-token"

[[keys]]
secret_id = "AKIDclientUploads"
secret_key_file = "secret-key"

[[callers]]
name = "backend"
token_sha256 = "{}"
track_uploads = true
"#,
        sha256_hex(TOKEN)
    );
    Config::from_toml_str(&text, dir).unwrap()
}

/// Serves `config(dir)` on `listener`, with the event receiver on its own port.
async fn start(listener: TcpListener, dir: &Path) -> TestServer {
    TestServer::builder(config(dir))
        .listener(listener)
        .events()
        .start()
        .await
}

/// POSTs a NewFileUpload for `upload_id` (no SignKey is configured here).
async fn upload_completed(server: &TestServer, upload_id: &str, file_id: &str) {
    let body = format!(
        r#"{{"EventType":"NewFileUpload","FileUploadEvent":{{"FileId":"{file_id}","MediaBasicInfo":{{"Name":"clip","Type":"mp4","MediaUrl":"http://vod.example/{file_id}.mp4","SourceInfo":{{"SourceType":"Upload","SourceContext":"{upload_id}"}}}},"MetaData":null}}}}"#
    );
    let events = server.events_addr.expect("started with .events()");
    let path = format!("/vod/events/{PATH_TOKEN}");
    let response = http_request(events, "POST", &path, &[], body.as_bytes()).await;
    assert_eq!(response.status, 200, "{response:?}");
}

fn client(addr: SocketAddr) -> SignerClient {
    crate::support::client::builder(&[format!("http://{addr}")], TOKEN)
        .build()
        .unwrap()
}

#[tokio::test]
async fn get_and_list_uploads_of_tracked_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = start(listener, dir.path()).await;
    let client = client(addr);

    let mut ids = Vec::new();
    for i in 0..3 {
        let issued = client
            .issue(IssueRequest::for_user("alice").source_context(format!("order-{i}")))
            .await
            .unwrap();
        ids.push(
            issued
                .upload_id
                .expect("a tracked caller gets an upload id"),
        );
    }
    let upload = client.get_upload(&ids[0]).await.unwrap();
    assert_eq!(upload.user_id, "alice");
    assert_eq!(upload.state, UploadState::Issued);
    assert_eq!(upload.source_context.as_deref(), Some("order-0"));
    assert!(upload.files.is_empty());

    upload_completed(&server, &ids[1], "111").await;
    let mut state = UploadState::Issued;
    for _ in 0..100 {
        state = client.get_upload(&ids[1]).await.unwrap().state;
        if state == UploadState::Ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state, UploadState::Ready);
    let upload = client.get_upload(&ids[1]).await.unwrap();
    assert_eq!(upload.files[0].media_url, "http://vod.example/111.mp4");

    let mut listed = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_uploads("alice", 2, token.as_deref())
            .await
            .unwrap();
        listed.extend(page.uploads.into_iter().map(|u| u.upload_id));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids);

    match client.get_upload("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await {
        Err(Error::Other { code, .. }) => assert_eq!(code, tonic::Code::NotFound),
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn watch_uploads_reconnects_and_resumes_after_the_last_change() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = start(listener, dir.path()).await;
    let client = client(addr);
    let first = client
        .issue(IssueRequest::for_user("bob"))
        .await
        .unwrap()
        .upload_id
        .unwrap();
    let second = client
        .issue(IssueRequest::for_user("bob"))
        .await
        .unwrap()
        .upload_id
        .unwrap();

    let changes = client.watch_uploads(WatchFrom::Now, Some("bob".into()));
    let mut changes = Box::pin(changes);
    // Polled once so the watch is open before the event.
    let pending = tokio::time::timeout(Duration::from_millis(300), changes.next()).await;
    assert!(pending.is_err(), "nothing has changed yet: {pending:?}");
    upload_completed(&server, &first, "201").await;
    let change = tokio::time::timeout(Duration::from_secs(5), changes.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(change.upload.upload_id, first);
    assert_eq!(change.event_type, "NewFileUpload");

    // The server goes away; a new one on the same address and store takes over. The change
    // made on it is delivered once, and the first one is not repeated.
    server.stop().await;
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let server = start(listener, dir.path()).await;
    upload_completed(&server, &second, "202").await;
    let change = tokio::time::timeout(Duration::from_secs(10), changes.next())
        .await
        .expect("the watch came back")
        .unwrap()
        .unwrap();
    assert_eq!(change.upload.upload_id, second);
    server.stop().await;
}

#[tokio::test]
async fn a_watch_that_cannot_succeed_ends_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = start(listener, dir.path()).await;
    let client = client(addr);
    let changes = client.watch_uploads(WatchFrom::After("not-a-cursor".into()), None);
    let mut changes = Box::pin(changes);
    match tokio::time::timeout(Duration::from_secs(5), changes.next())
        .await
        .unwrap()
    {
        Some(Err(Error::InvalidArgument { .. })) => {}
        other => panic!("{other:?}"),
    }
    assert!(changes.next().await.is_none());
    server.stop().await;
}

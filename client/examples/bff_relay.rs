//! A minimal BFF endpoint for Tencent's upload SDKs: every request mints a fresh signature and
//! answers `{"code":0,"message":"ok","data":{"signature":"…"}}`, or the documented error body.
//!
//! The app's `getSignature` callback fetches this URL each time the SDK asks (for Apply, for
//! Commit, on retries), so nothing here caches: one request, one new signature.
//!
//! ```text
//! cargo run -- serve --dev &
//! SIGNER_TOKEN=dev-token-published-not-a-secret \
//!     cargo run -p vod-signer-client --example bff_relay &
//! curl -s -H 'x-user-id: u-1' http://127.0.0.1:8081/upload-signature
//! ```
//!
//! Plain tokio, no web framework, to keep the example about the client. A real BFF takes the
//! user from its own session check instead of trusting an `x-user-id` header.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vod_signer_client::bff::AppReply;
use vod_signer_client::{BearerToken, Error, FieldViolation, IssueRequest, SignerClient};

/// The handler: who is asking in, HTTP status and JSON body out.
async fn upload_signature(client: &SignerClient, user_id: Option<&str>) -> AppReply {
    let Some(user_id) = user_id else {
        return AppReply::from_error(&Error::InvalidArgument {
            message: "no user".into(),
            field_violations: vec![FieldViolation {
                field: "x-user-id".into(),
                description: "required".into(),
            }],
        });
    };
    let result = client
        .issue(
            IssueRequest::for_user(user_id)
                .source_context(user_id)
                .one_time()
                // Leave the app's own HTTP timeout room to see our answer.
                .deadline(Duration::from_secs(2)),
        )
        .await;
    match &result {
        Ok(issued) => eprintln!("issued {} for {user_id}", issued.fingerprint),
        // Safe to log: error messages never contain tokens or signatures.
        Err(e) => eprintln!("no signature for {user_id}: {e}"),
    }
    AppReply::from_result(&result)
}

/// Reads one request head (enough for a GET), answers, closes.
async fn serve_one(client: SignerClient, mut socket: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await?;
        if n == 0 || head.len() + n > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let user_id = head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("x-user-id")
            .then(|| value.trim().to_owned())
    });

    let reply = upload_signature(&client, user_id.as_deref().filter(|u| !u.is_empty())).await;
    let body = reply.to_json();
    let mut response = format!("HTTP/1.1 {} \r\n", reply.status);
    for (name, value) in AppReply::HEADERS {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint =
        std::env::var("SIGNER_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let client = SignerClient::builder()
        .endpoint(endpoint)
        .bearer_token(BearerToken::new(std::env::var("SIGNER_TOKEN")?)?)
        .build()?;
    // Not 8080: `serve --dev` receives VOD's event notifications there.
    let listener = TcpListener::bind("127.0.0.1:8081").await?;
    eprintln!("BFF on http://{}/upload-signature", listener.local_addr()?);
    loop {
        let (socket, _) = listener.accept().await?;
        let client = client.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_one(client, socket).await {
                eprintln!("connection: {e}");
            }
        });
    }
}
